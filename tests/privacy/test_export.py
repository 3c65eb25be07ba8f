"""Personal-data export (PIPL): everything held about a person, to staff (audited) or to them."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import Api, new_member
from tests.privacy.conftest import make_person

pytestmark = pytest.mark.clock


def test_export_holds_everything_about_the_person_and_staff_reads_are_audited(app: Flask) -> None:
    person = make_person(app)
    admin = person.admin
    # A download link issued to the member is part of what is held about them.
    response = admin.get(f"/members/{person.member_id}/export")
    assert response.status_code == 200, response.json
    data = response.json
    assert data["user"]["external_id"] == "crm-42" and data["user"]["display_name"] == "王小明"
    assert data["user"]["spend_cents"] == 99_900 and data["user"]["tags"] == ["mother-baby"]
    assert data["member"]["display_name"] == "小明爱分享"
    assert data["social_accounts"][0]["handle"] == "xiaoming_shares"
    assert data["social_accounts"][0]["followers_source"] == "declared"
    [submission] = data["submissions"]
    assert submission["caption"].startswith("我家宝宝") and submission["snapshots"]
    assert submission["media"][0]["id"] == person.media_id
    assert data["ledger"] and data["ledger"][0]["submission_id"] == person.submission_id
    assert data["badges"][0]["badge_id"] == person.badge_id
    assert data["tier_history"] and data["invitations"][0]["accepted_at"]
    for part in ("downloads", "watermarks", "claims", "group_memberships", "follower_checks",
                 "media"):
        assert isinstance(data[part], list), part
    assert data["exported_at"].endswith("+00:00")

    events = admin.get("/audit", query_string={"action": "member.export"}).json
    assert [e["target"] for e in events] == [f"member:{person.member_id}"]
    # Viewers and reviewers may not export; an unknown member is 404.
    assert person.reviewer.get(f"/members/{person.member_id}/export").status_code == 403
    assert admin.get("/members/999999/export").status_code == 404


def test_member_exports_only_their_own_data(app: Flask) -> None:
    person = make_person(app)
    _, other = new_member(app, person.admin, "someone-else")
    mine = person.member.get("/me/export")
    assert mine.status_code == 200
    assert mine.json["member"]["id"] == person.member_id
    theirs = other.get("/me/export").json
    assert theirs["member"]["id"] != person.member_id and theirs["submissions"] == []
    # A member cannot use the staff export, for themselves or anyone.
    assert person.member.get(f"/members/{person.member_id}/export").status_code == 403
    assert Api(app.test_client()).get("/me/export").status_code == 401
