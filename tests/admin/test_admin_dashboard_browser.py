"""The dashboard, leaderboard and roster in Debian's Chromium, in zh-CN, as a manager sees them.

Full-page screenshots go to screenshots/ at the repository root (git-ignored) for a person to
look at; the assertions are about what the page shows.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from koc.assets.models import Kit
from koc.core.db import utcnow
from koc.core.events.models import OutboxEvent, Webhook, WebhookDelivery
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import Submission
from koc.tiers.models import TierRun, TierSnapshot
from koc.tiers.services.snapshots import take_snapshot
from tests.admin.conftest import screenshot as _screenshot
from tests.admin.conftest import sign_in as _sign_in
from tests.plugins.services import missing_service

pytestmark = pytest.mark.browser

ECHARTS = Path(__file__).resolve().parents[2] / "koc/admin/static/vendor/echarts.min.js"


@pytest.fixture
def busy_programme(app: Flask, member_api: Callable[..., Any], staff_api: Callable[[str], Any],
                   pending_submission: Callable[..., int]) -> dict[str, Any]:
    """Members in two tiers, one at risk, posts (one approved), a tier run and a webhook."""
    reviewer = staff_api("reviewer")
    senior = member_api(city="上海", store_code="SH01")
    certified = member_api(city="北京", store_code="BJ01")
    approved = pending_submission(member=senior, caption="开箱")
    pending_submission(member=certified, caption="<script>alert(1)</script>")
    review = reviewer.post(f"/submissions/{approved}/review",
                           json={"decision": "approve", "rating": 5})
    assert review.status_code == 200, review.json
    now = utcnow()
    with app.app_context():
        db.session.get(Member, senior[0]).tier_key = "senior"
        # Went up yesterday, whatever today is: inside the dashboard's twelve weeks.
        db.session.get(Submission, approved).posted_at = now - timedelta(days=1)
        at_risk = db.session.get(Member, certified[0])
        at_risk.tier_key = "certified"
        at_risk.tier_below_since = now - timedelta(days=2)
        db.session.add(Kit(title="春季新品", status="published", published_at=now))
        db.session.add(TierRun(trigger="schedule", rules_version=0, status="succeeded",
                               members_evaluated=2, started_at=now - timedelta(minutes=5),
                               finished_at=now - timedelta(minutes=4)))
        hook = Webhook(url="https://hooks.example.com/koc", events=["kit.published"],
                       secret="s" * 32)
        event = OutboxEvent(event_type="kit.published", payload={}, created_at=now)
        db.session.add_all([hook, event])
        db.session.flush()
        db.session.add(WebhookDelivery(event_id=event.id, webhook_id=hook.id,
                                       status="failed", attempts=8))
        # The tier job's daily snapshots: yesterday (only the senior), today (both).
        db.session.add(TierSnapshot(day=(now - timedelta(days=1)).date(), tier_key="senior",
                                    members=1, at_risk=0))
        db.session.flush()
        take_snapshot(now)
        db.session.commit()
    return {"senior": senior[0], "certified": certified[0]}


def test_dashboard_draws_every_chart_in_chinese_from_the_programmes_numbers(
    live_server: str, zh_page: Any, make_staff: Callable, busy_programme: dict[str, Any],
):
    if not ECHARTS.exists():
        missing_service("ECharts is not installed: run `make install`")
    from playwright.sync_api import expect

    page = zh_page
    _staff_id, email = make_staff("viewer", locale="zh_CN")
    _sign_in(page, live_server, email, "/admin/")

    expect(page.locator("h1")).to_have_text("概览")
    for name in ("tiers_over_time", "tiers", "activity", "points", "platforms", "funnels",
                 "at_risk", "runs", "webhooks"):
        expect(page.locator(f"#chart-{name} canvas").first).to_be_visible()
    charts = json.loads(page.locator("#charts").get_attribute("data-charts"))
    # Tiers by their names in the panel's language, never the rule keys.
    assert set(charts["tiers"]["labels"]) == {"资深 KOC", "认证 KOC"}
    over_time = {s["name"]: s["data"][-2:] for s in charts["tiers_over_time"]["series"]}
    assert over_time == {"认证 KOC": [0, 1], "资深 KOC": [1, 1]}
    at_risk = dict(zip(charts["at_risk"]["labels"], charts["at_risk"]["series"][0]["data"],
                       strict=True))
    assert at_risk == {"认证 KOC": 1, "新品抢先体验": 0, "资深 KOC": 0}
    submitted, approved = (s["data"] for s in charts["activity"]["series"])
    assert (submitted[-1], approved[-1]) == (2, 1)
    assert sum(charts["points"]["series"][0]["data"]) > 0
    # Platforms by their Chinese names: the one approved post went up on Xiaohongshu this week.
    assert [s["name"] for s in charts["platforms"]["series"]] == ["小红书"]
    assert charts["platforms"]["labels"] == charts["activity"]["labels"]
    assert charts["funnels"]["series"][0]["name"] == "春季新品"
    assert charts["webhooks"]["series"][0]["data"] == [0, 0, 1]
    expect(page.locator("table.compact")).to_contain_text("资深 KOC")
    expect(page.locator("body")).not_to_contain_text("senior")
    _screenshot(page, "dashboard")
    assert page.problems == []


def test_manager_filters_the_roster_exports_it_and_opens_the_leaderboard(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
    busy_programme: dict[str, Any], member_api: Callable[..., Any],
):
    from playwright.sync_api import expect

    page = zh_page
    odd = member_api(city="上海", store_code="SH09", tags=["新客"])[0]
    with app.app_context():
        db.session.get(Member, odd).display_name = "<script>alert(1)</script>"
        db.session.commit()
    _staff_id, email = make_staff("admin", locale="zh_CN")
    _sign_in(page, live_server, email, "/admin/members")

    expect(page.locator("h1")).to_have_text("成员")
    expect(page.locator("#roster tbody tr")).to_have_count(3)
    # A name holding a script tag is shown as text, not run.
    expect(page.locator(f'tr[data-member-id="{odd}"] a')).to_have_text(
        "<script>alert(1)</script>")
    _screenshot(page, "members")

    page.fill("#city", "上海")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("#roster tbody tr")).to_have_count(2)
    page.check("#at_risk")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("#roster tbody tr")).to_have_count(0)
    expect(page.locator("section.card")).to_contain_text("没有符合筛选条件的成员。")
    page.uncheck("#at_risk")
    page.fill("#tag", "新客")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("#roster tbody tr")).to_have_count(1)
    expect(page.locator("#roster-total")).to_have_text("1 名成员")
    _screenshot(page, "members-filtered")

    with page.expect_download() as download_info:
        page.click("#export-csv")
    exported = Path(download_info.value.path()).read_text(encoding="utf-8-sig")
    assert exported.splitlines()[0].startswith("成员编号,名称,客户编号,城市")
    assert "<script>alert(1)</script>" in exported and len(exported.splitlines()) == 2

    page.get_by_role("link", name="排行榜").click()
    expect(page.locator("h1")).to_have_text("排行榜")
    expect(page.locator("#leaderboard tbody tr").first).to_contain_text("资深 KOC")
    page.select_option("#metric", "approved")
    page.get_by_role("button", name="查看").click()
    expect(page.locator("#metric")).to_have_value("approved")
    expect(page.locator("#leaderboard tbody tr")).to_have_count(1)
    _screenshot(page, "leaderboard")
    assert page.problems == []
