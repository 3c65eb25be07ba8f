"""成员 (/admin/members) and 排行榜 (/admin/leaderboard) through the test client."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from flask import Flask

from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import PointsEntry


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Flask:
    """Both databases: the filters use JSON and date comparisons that differ between them."""
    if request.param == "sqlite":
        return make_app()
    return make_app(KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))



def _ids(html: str) -> list[int]:
    return [int(n) for n in re.findall(r'<tr data-member-id="(\d+)"', html)]


@pytest.fixture
def roster(app: Flask, member_api: Callable[..., Any]) -> dict[str, int]:
    ids = {
        "sh_vip": member_api(city="上海", store_code="SH01", tags=["vip", "mom"])[0],
        "sh": member_api(city="上海", store_code="SH02", tags=["mom"])[0],
        "bj": member_api(city="北京", store_code="BJ01")[0],
        "formula": member_api(city="=cmd|' /C calc'!A0")[0],
    }
    now = utcnow()
    with app.app_context():
        for offset, key in enumerate(ids):
            member = db.session.get(Member, ids[key])
            member.joined_at = now - timedelta(days=10 - offset)
        db.session.get(Member, ids["sh_vip"]).tier_key = "senior"
        risky = db.session.get(Member, ids["sh"])
        risky.tier_key = "certified"
        risky.tier_below_since = now - timedelta(days=1)
        db.session.get(Member, ids["bj"]).status = "suspended"
        db.session.get(Member, ids["formula"]).display_name = "=HYPERLINK(\"x\")"
        db.session.commit()
    return ids


def test_roster_filters_by_tier_city_store_tag_status_and_risk(signed_in, roster):
    viewer = signed_in("viewer", locale="zh_CN")

    everyone = viewer.get("/admin/members")
    assert everyone.status_code == 200
    # Newest first by default; tiers by their names in Chinese, never their keys.
    assert _ids(everyone.text) == [roster["formula"], roster["bj"], roster["sh"], roster["sh_vip"]]
    assert "资深 KOC" in everyone.text and "认证 KOC" in everyone.text
    assert ">senior<" not in everyone.text
    assert "4 名成员" in everyone.text

    def ids(**args: str) -> list[int]:
        return _ids(viewer.get("/admin/members", query_string=args).text)

    assert ids(city="上海") == [roster["sh"], roster["sh_vip"]]
    assert ids(store_code="SH01") == [roster["sh_vip"]]
    assert ids(tag="mom", sort="joined") == [roster["sh_vip"], roster["sh"]]
    assert ids(tag="vip") == [roster["sh_vip"]]
    assert ids(tier="senior") == [roster["sh_vip"]]
    assert ids(tier="none") == [roster["formula"], roster["bj"]]
    assert ids(status="suspended") == [roster["bj"]]
    assert ids(at_risk="true") == [roster["sh"]]
    assert ids(q="KOC user-2") == [roster["sh"]]
    assert ids(sort="name")[0] == roster["formula"]  # "=" sorts before "K"


def test_roster_search_finds_part_of_a_name_or_handle_and_a_whole_crm_id(signed_in, roster, app):
    from koc.members.models import SocialAccount, User

    with app.app_context():
        db.session.add(SocialAccount(member_id=roster["bj"], platform="xiaohongshu",
                                     handle="LittleRedBear_50%", followers=900,
                                     followers_source="declared"))
        external_id = db.session.get(Member, roster["sh_vip"]).user.external_id
        # Renamed in the fixture: its CRM id is in no name, so only the id finds it.
        renamed_id = db.session.get(Member, roster["formula"]).user.external_id
        assert db.session.query(User).filter_by(external_id=renamed_id).count() == 1
        db.session.commit()
    viewer = signed_in("viewer", locale="zh_CN")

    def ids(q: str) -> list[int]:
        return _ids(viewer.get("/admin/members", query_string={"q": q}).text)

    assert ids("redbear") == [roster["bj"]]  # part of a handle, any case
    assert ids("@LittleRed") == [roster["bj"]]  # as members write it
    assert ids("bear_50%") == [roster["bj"]]  # LIKE's wildcards are plain characters
    assert ids("bear_5%0") == []
    assert ids("koc " + external_id) == [roster["sh_vip"]]  # part of the display name
    assert ids(renamed_id) == [roster["formula"]]  # the CRM id, whole
    assert roster["formula"] not in ids(renamed_id[:-1])  # a part of one is no one's id
    assert ids("nobody-at-all") == []


def test_roster_refuses_a_bad_filter_by_name_and_keeps_what_was_typed(signed_in, roster):
    viewer = signed_in("viewer", locale="en")
    response = viewer.get("/admin/members?sort=points&status=gone&city=上海")
    assert response.status_code == 422
    assert "Sort: Not a valid value." in response.text
    assert "Status: Not a valid value." in response.text
    assert 'value="上海"' in response.text


def test_roster_pages_keep_their_filters(app: Flask, signed_in, member_api):
    for _n in range(52):
        member_api(city="杭州")
    viewer = signed_in("viewer", locale="en")
    first = viewer.get("/admin/members?city=杭州&sort=joined")
    assert len(_ids(first.text)) == 50
    assert "Page 1 of 2" in first.text
    assert 'href="/admin/members?city=%E6%9D%AD%E5%B7%9E&amp;sort=joined&amp;page=2"' in first.text
    second = viewer.get("/admin/members?city=杭州&sort=joined&page=2")
    assert len(_ids(second.text)) == 2
    assert not set(_ids(first.text)) & set(_ids(second.text))


def test_admin_exports_the_filtered_roster_as_csv_safe_for_spreadsheets(signed_in, roster):
    admin = signed_in("admin", locale="zh_CN")
    assert 'id="export-csv"' in admin.get("/admin/members").text

    response = admin.get("/admin/members.csv?city=上海&sort=joined")
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    assert "attachment" in response.headers["Content-Disposition"]
    text = response.get_data(as_text=True)
    assert text.startswith("\ufeff")
    rows = list(csv.reader(io.StringIO(text.lstrip("\ufeff"))))
    assert rows[0][:3] == ["成员编号", "名称", "客户编号"]
    assert [int(r[0]) for r in rows[1:]] == [roster["sh_vip"], roster["sh"]]
    assert rows[1][5] == "vip mom" and rows[1][6] == "资深 KOC"
    assert rows[2][8] == "是"

    everyone = list(csv.reader(io.StringIO(admin.get("/admin/members.csv").get_data(
        as_text=True).lstrip("\ufeff"))))
    formula = next(r for r in everyone if r[0] == str(roster["formula"]))
    # A cell a spreadsheet would run as a formula is written as text.
    assert formula[1] == "'=HYPERLINK(\"x\")"
    assert formula[3].startswith("'=cmd")


def test_viewers_see_no_export_and_cannot_fetch_it(signed_in, roster):
    viewer = signed_in("viewer", locale="en")
    assert "export-csv" not in viewer.get("/admin/members").text
    assert viewer.get("/admin/members.csv").status_code == 403


@pytest.mark.clock
def test_leaderboard_page_ranks_members_with_tier_names_and_filters(
    app: Flask, signed_in, roster,
):
    now = utcnow()
    with app.app_context():
        for key, points in (("sh_vip", "30"), ("sh", "70"), ("formula", "5")):
            db.session.add(PointsEntry(member_id=roster[key], source="adjustment",
                                       reference=key, points=Decimal(points),
                                       created_at=now - timedelta(days=3)))
        db.session.commit()
    viewer = signed_in("viewer", locale="zh_CN")

    page = viewer.get("/admin/leaderboard")
    assert page.status_code == 200
    assert _ids(page.text) == [roster["sh"], roster["sh_vip"], roster["formula"]]
    assert "认证 KOC" in page.text and "排行榜" in page.text
    assert _ids(viewer.get("/admin/leaderboard?city=上海").text) == [roster["sh"],
                                                                     roster["sh_vip"]]
    assert _ids(viewer.get("/admin/leaderboard?window_days=1").text) == []
    bad = viewer.get("/admin/leaderboard?window_days=0&metric=likes")
    assert bad.status_code == 422
    assert "取值无效" in bad.text
