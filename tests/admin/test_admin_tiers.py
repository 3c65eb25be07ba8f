"""Admin pages for tiers and benefits: rules editor and live preview, drops, senior roster,
a member's tier timeline. The live preview in a real browser is at the end (marked browser)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from koc.core.auth import Staff
from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import Drop, DropClaim, GroupMembership, TierChange, TierRuleSet
from koc.tiers.services import groups
from koc.tiers.services.rules import DEFAULT_TIERS
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.admin.test_admin_browser import browser_page  # noqa: F401
from tests.conftest import Api


def _approved(member: Api, reviewer: Api, *, likes: int = 10, days_ago: float = 1) -> int:
    created = member.post("/submissions", json={
        "platform": "weibo",
        "post_url": f"https://weibo.com/7/{abs(hash((member.token, likes, days_ago)))}",
        "posted_at": (utcnow() - timedelta(days=days_ago)).isoformat(),
        "metrics": {"likes": likes}})
    assert created.status_code == 201, created.json
    assert reviewer.post(f"/submissions/{created.json['id']}/review",
                         json={"decision": "approve", "rating": 3}).status_code == 200
    return created.json["id"]


def _recalc(app: Flask) -> None:
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()


def _rules_text(tiers: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"tiers": tiers if tiers is not None else DEFAULT_TIERS})


def _stricter_certified() -> list[dict[str, Any]]:
    tiers = json.loads(json.dumps(DEFAULT_TIERS))
    tiers[0]["rules"] = {"all": [{"metric": "approved_submissions", "min": 2}]}
    return tiers


def _count(app: Flask, model) -> int:
    with app.app_context():
        return db.session.scalar(sa.select(sa.func.count()).select_from(model))


def _preview(client: FlaskClient, text: str, token: str | None = None):
    """The page's live preview: the API's preview with the session and its CSRF token."""
    if token is None:
        token = csrf_token(client.get("/admin/tiers").text)
    return client.post("/api/v1/tiers/rules/preview", json=json.loads(text),
                       headers={"X-CSRFToken": token})


def _error_fields(messages: Any, path: str = "") -> list[str]:
    """The API's nested field errors as dotted paths: tiers.0.rules.any.0.metric."""
    if isinstance(messages, dict):
        return [found for key, value in messages.items()
                for found in _error_fields(value, path if key in ("json", "_schema")
                                           else f"{path}.{key}" if path else str(key))]
    return [path]


def _signed_in_as(app: Flask, make_staff: Callable, role: str) -> tuple[int, FlaskClient]:
    staff_id, email = make_staff(role, locale="en")
    client = app.test_client()
    assert login(client, email).status_code == 302
    return staff_id, client


# --- tier rules editor -------------------------------------------------------------------------

def test_viewer_reads_the_rules_but_cannot_save_or_preview(app: Flask, signed_in: Callable):
    viewer = signed_in("viewer")
    page = viewer.get("/admin/tiers")
    assert page.status_code == 200
    assert "Certified KOC" in page.text and "best_post_interactions" in page.text
    assert 'id="rules-form"' not in page.text and 'id="rules-save"' not in page.text
    assert 'class="restore"' not in page.text
    assert "Only admins can change the rules." in page.text
    token = csrf_token(page.text)

    saved = viewer.post("/admin/tiers", data={"csrf_token": token, "rules": _rules_text(),
                                              "action": "save"})
    preview = _preview(viewer, _rules_text(), token)

    assert saved.status_code == 403 and preview.status_code == 403
    assert _count(app, TierRuleSet) == 0


def test_live_preview_counts_members_moving_and_writes_nothing(
    app: Flask, signed_in: Callable, member_api: Callable, staff_api: Callable
):
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"))
    admin = signed_in("admin")
    page = admin.get("/admin/tiers")
    assert 'id="rules-form"' in page.text and "tier_rules.js" in page.text
    assert 'id="rules-save"' in page.text

    current = _preview(admin, _rules_text())
    stricter = _preview(admin, _rules_text(_stricter_certified()))

    assert current.status_code == 200, current.text
    assert current.json["promotions"] == 1 and current.json["demotions"] == 0
    assert current.json["changes"] == [{"member_id": member_id, "from": None, "to": "certified",
                                        "reason": "met the requirements of Certified KOC"}]
    assert stricter.json["promotions"] == 0 and stricter.json["changes"] == []
    assert _count(app, TierRuleSet) == 0 and _count(app, TierChange) == 0
    with app.app_context():
        assert db.session.get(Member, member_id).tier_key is None


def test_preview_button_without_javascript_renders_the_counts(
    app: Flask, signed_in: Callable, member_api: Callable, staff_api: Callable
):
    _member_id, member = member_api()
    _approved(member, staff_api("reviewer"))
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/tiers").text)

    response = admin.post("/admin/tiers", data={"csrf_token": token, "rules": _rules_text(),
                                                "action": "preview"})

    assert response.status_code == 200
    assert '<dd id="preview-promotions">1</dd>' in response.text
    assert "met the requirements of Certified KOC" in response.text
    assert _count(app, TierRuleSet) == 0


def test_save_creates_a_new_version_by_the_signed_in_admin(app: Flask, make_staff: Callable):
    staff_id, admin = _signed_in_as(app, make_staff, "admin")
    token = csrf_token(admin.get("/admin/tiers").text)
    data = {"csrf_token": token, "rules": _rules_text(_stricter_certified()), "action": "save"}

    first = admin.post("/admin/tiers", data=data)
    second = admin.post("/admin/tiers", data=data)

    assert first.status_code == 302 and second.status_code == 302
    page = admin.get("/admin/tiers")
    assert "Tier rules saved as version 2." in page.text
    assert "Version 2 in force." in page.text
    with app.app_context():
        rows = db.session.scalars(sa.select(TierRuleSet).order_by(TierRuleSet.version)).all()
        assert [r.version for r in rows] == [1, 2]
        assert rows[1].created_by_staff_id == staff_id
        assert rows[1].tiers[0]["rules"]["all"][0]["min"] == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"rules": {"any": [{"metric": "horoscope", "min": 1}]}}, "tiers.0.rules.any.0.metric"),
    ({"rules": {"all": [], "any": []}}, "tiers.0.rules.all"),
    ({"rules": {}}, "tiers.0.rules"),  # neither all nor any: the schema-level check
    ({"rank": 0}, "tiers.0.rank"),
    ({"key": "Not A Key"}, "tiers.0.key"),
    ({"rank": 2}, "tiers"),  # two tiers with rank 2: validate_tiers
])
def test_bad_rule_is_refused_naming_the_field(app: Flask, signed_in: Callable, change, field):
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/tiers").text)
    tiers = json.loads(json.dumps(DEFAULT_TIERS))
    tiers[0].update(change)

    saved = admin.post("/admin/tiers", data={"csrf_token": token, "rules": _rules_text(tiers),
                                             "action": "save"})
    preview = _preview(admin, _rules_text(tiers), token)

    assert saved.status_code == 422
    assert f"<code>{field}</code>" in saved.text
    assert "The rules were not saved" in saved.text
    # The edited text is kept, so nothing typed is lost.
    assert "&#34;tiers&#34;" in saved.text or "&quot;tiers&quot;" in saved.text
    assert preview.status_code == 422
    assert field in _error_fields(preview.json["errors"])
    assert _count(app, TierRuleSet) == 0


def test_text_that_is_not_json_is_reported(signed_in: Callable):
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/tiers").text)
    response = admin.post("/admin/tiers", data={"csrf_token": token, "rules": '{"tiers": [',
                                                "action": "preview"})
    assert response.status_code == 422
    assert "<code>json</code>" in response.text


def test_posts_without_csrf_token_are_refused(
    app: Flask, signed_in: Callable, member_api: Callable
):
    admin = signed_in("admin")
    admin.get("/admin/tiers")
    member_id, _member = member_api()
    with app.app_context():
        db.session.add(GroupMembership(group_key=groups.SENIOR_GROUP, member_id=member_id,
                                       code="code-csrf", invited_at=utcnow(),
                                       removal_due_at=utcnow()))
        db.session.commit()

    responses = [
        admin.post("/admin/tiers", data={"rules": _rules_text(), "action": "save"}),
        admin.post("/admin/drops", data={"product_name": "x", "sku": "x", "quantity": "1"}),
        admin.post(f"/admin/groups/senior/{member_id}/removed"),
    ]
    api_writes = [
        admin.put("/api/v1/tiers/rules", json=json.loads(_rules_text())),
        admin.put("/api/v1/tiers/rules", json=json.loads(_rules_text()),
                  headers={"X-CSRFToken": "forged"}),
    ]

    assert [r.status_code for r in responses] == [400] * 3
    assert [r.status_code for r in api_writes] == [403] * 2
    assert _count(app, TierRuleSet) == 0 and _count(app, Drop) == 0
    with app.app_context():
        assert db.session.scalar(sa.select(GroupMembership.removed_at)) is None


# --- drops -------------------------------------------------------------------------------------

def _drop_form(token: str, **overrides: str) -> dict[str, str]:
    now = utcnow().replace(microsecond=0, tzinfo=None)
    return {"csrf_token": token, "product_name": "限定盲盒 Spring", "sku": "BOX-2027",
            "quantity": "10", "per_member_limit": "1", "min_tier": "", "allocation": "first_come",
            "opens_at": (now - timedelta(days=1)).isoformat(timespec="minutes"),
            "closes_at": (now + timedelta(days=6)).isoformat(timespec="minutes"),
            "post_within_days": "7", **overrides}


@pytest.mark.clock
def test_admin_creates_a_drop_and_sees_claims_and_the_seeding_report(
    app: Flask, signed_in: Callable, member_api: Callable, staff_api: Callable
):
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/drops").text)

    created = admin.post("/admin/drops", data=_drop_form(token))

    assert created.status_code == 302, created.text
    with app.app_context():
        drop = db.session.scalars(sa.select(Drop)).one()
        drop_id, opens_at = drop.id, drop.opens_at
    assert opens_at.utcoffset() == timedelta(0)
    poster_id, poster = member_api()
    silent_id, silent = member_api()
    for member in (poster, silent):
        assert member.post(f"/drops/{drop_id}/claims").status_code == 201
    with app.app_context():
        db.session.execute(sa.update(DropClaim).values(created_at=utcnow() - timedelta(days=8)))
        db.session.commit()
    _approved(poster, staff_api("reviewer"))

    page = admin.get("/admin/drops").text
    assert f"Drop {drop_id} created" in page
    assert "限定盲盒 Spring" in page and "BOX-2027" in page
    assert '<dd class="drop-allocated">2 / 10</dd>' in page
    assert "Claimed: 2" in page and "First come, first served" in page
    poster_row = page.split(f'data-member-id="{poster_id}"')[1].split("</tr>")[0]
    silent_row = page.split(f'data-member-id="{silent_id}"')[1].split("</tr>")[0]
    assert "status-posted" in poster_row and "Overdue" in silent_row


@pytest.mark.parametrize(("override", "field"), [
    ({"quantity": "0"}, "quantity"),
    ({"quantity": "lots"}, "quantity"),
    ({"min_tier": "platinum"}, "min_tier"),
    ({"allocation": "raffle"}, "allocation"),
    ({"product_name": ""}, "product_name"),
])
def test_bad_drop_is_refused_naming_the_field(app: Flask, signed_in: Callable, override, field):
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/drops").text)

    response = admin.post("/admin/drops", data=_drop_form(token, **override))

    assert response.status_code == 422
    assert f"<code>{field}</code>" in response.text
    assert 'value="BOX-2027"' in response.text
    assert _count(app, Drop) == 0


def test_drop_window_must_be_ordered(app: Flask, signed_in: Callable):
    admin = signed_in("admin")
    token = csrf_token(admin.get("/admin/drops").text)
    form = _drop_form(token)
    form["opens_at"], form["closes_at"] = form["closes_at"], form["opens_at"]

    response = admin.post("/admin/drops", data=form)

    assert response.status_code == 422 and "<code>closes_at</code>" in response.text


def test_viewer_sees_drops_but_cannot_create_one(app: Flask, signed_in: Callable):
    viewer = signed_in("viewer")
    page = viewer.get("/admin/drops")
    assert page.status_code == 200 and 'id="drop-form"' not in page.text
    response = viewer.post("/admin/drops", data=_drop_form(csrf_token(page.text)))
    assert response.status_code == 403 and _count(app, Drop) == 0


# --- the senior roster -------------------------------------------------------------------------

@pytest.mark.clock
def test_roster_lists_members_and_removal_is_confirmed_by_an_admin(
    app: Flask, make_staff: Callable, signed_in: Callable, member_api: Callable,
    staff_api: Callable
):
    reviewer = staff_api("reviewer")
    leaving_id, leaving = member_api()
    staying_id, staying = member_api()
    for member in (leaving, staying):
        _approved(member, reviewer, likes=1500, days_ago=10)
    _recalc(app)
    for days in (3, 2, 1):
        _approved(leaving, reviewer, likes=5, days_ago=days)
    _recalc(app)
    staff_id, admin = _signed_in_as(app, make_staff, "admin")

    page = admin.get("/admin/groups/senior").text
    to_remove = page.split('id="to-remove"')[1].split('id="members"')[0]
    members = page.split('id="members"')[1]
    assert f'data-member-id="{leaving_id}"' in to_remove
    assert f'data-member-id="{staying_id}"' in members
    assert f'data-member-id="{staying_id}"' not in to_remove

    viewer = signed_in("viewer")
    viewer_page = viewer.get("/admin/groups/senior")
    assert "/removed" not in viewer_page.text
    refused = viewer.post(f"/admin/groups/senior/{leaving_id}/removed",
                          data={"csrf_token": csrf_token(viewer_page.text)})
    assert refused.status_code == 403

    token = csrf_token(page)
    removed = admin.post(f"/admin/groups/senior/{leaving_id}/removed",
                         data={"csrf_token": token})
    again = admin.post(f"/admin/groups/senior/{leaving_id}/removed", data={"csrf_token": token})

    assert removed.status_code == 302 and again.status_code == 302
    after = admin.get("/admin/groups/senior").text
    assert f"Member {leaving_id} is not on the removal list." in after
    assert "Nobody to remove." in after
    with app.app_context():
        row = db.session.scalars(sa.select(GroupMembership)
                                 .where(GroupMembership.member_id == leaving_id)).one()
        assert row.removed_at is not None and row.removed_by_staff_id == staff_id


# --- a member's page ---------------------------------------------------------------------------

def test_member_page_shows_the_tier_timeline_with_reasons_who_and_rules_version(
    app: Flask, make_staff: Callable, member_api: Callable, staff_api: Callable
):
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"))
    _recalc(app)
    api_admin = staff_api("admin")
    assert api_admin.patch(f"/members/{member_id}", json={
        "tier": "senior", "tier_locked": True, "reason": "store manager's pick"}).status_code == 200
    _staff_id, viewer = _signed_in_as(app, make_staff, "viewer")
    with app.app_context():
        changes = db.session.scalars(sa.select(TierChange).order_by(TierChange.id)).all()
        run_id = changes[0].run_id
        manual_by = db.session.get(Staff, changes[1].changed_by_staff_id).email

    page = viewer.get(f"/admin/members/{member_id}")

    assert page.status_code == 200
    text = page.text
    assert "KOC user-1" in text and "user-1" in text
    assert "Senior KOC" in text.split('id="current-tier"')[1].split("</dd>")[0]
    assert "Yes: recalculations leave this tier alone" in text
    timeline = text.split('id="timeline"')[1]
    # Newest first: the manual change, then the run's promotion.
    assert timeline.index("store manager&#39;s pick") < timeline.index(
        "met the requirements of Certified KOC")
    assert f"By {manual_by}" in timeline
    assert f"By recalculation run #{run_id}" in timeline
    assert "Rules version 0" in timeline
    assert viewer.get("/admin/members/999999").status_code == 404


def test_tier_pages_need_a_signed_in_staff_member(client: FlaskClient):
    for path in ("/admin/tiers", "/admin/drops", "/admin/groups/senior", "/admin/members/1"):
        response = client.get(path)
        assert response.status_code == 302
        assert response.headers["Location"] == f"/admin/login?next={path}"


# --- the live preview in a browser -------------------------------------------------------------

@pytest.mark.browser
def test_editing_the_rules_updates_the_live_preview(
    app: Flask, live_server: str, browser_page, make_staff: Callable,  # noqa: F811
    member_api: Callable, staff_api: Callable,
):
    from playwright.sync_api import expect

    page = browser_page
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    _member_id, member = member_api()
    _approved(member, staff_api("reviewer"))
    _staff_id, email = make_staff("admin", locale="en")

    page.goto(f"{live_server}/admin/tiers")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/admin/tiers")

    # The JSON is the advanced view, behind its summary.
    page.click("#advanced summary")
    original = page.input_value("#rules")
    page.fill("#rules", original + "\n")
    expect(page.locator("#preview-promotions")).to_have_text("1")
    expect(page.locator("#preview-sample")).to_contain_text("Certified KOC")

    # The certified tier's single approved post becomes two: nobody would be promoted.
    assert original.count('"min": 1\n') == 1
    page.fill("#rules", original.replace('"min": 1\n', '"min": 2\n'))
    expect(page.locator("#preview-promotions")).to_have_text("0")
    expect(page.locator("#preview-sample")).to_contain_text("No tier changes.")

    page.fill("#rules", original.replace('"rank": 1', '"rank": 0'))
    expect(page.locator("#preview-errors")).to_contain_text("tiers.0.rank")
    expect(page.locator("#preview-status")).to_have_text("The rules are not valid:")
    # Chromium logs every 4xx answer; the 422 for the invalid rules is the expected one.
    assert [p for p in problems if "status of 422" not in p] == []
    assert _count(app, TierRuleSet) == 0
