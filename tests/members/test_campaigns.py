"""Invitation campaigns: the top N of a candidate filter invited in one INSERT ... SELECT, one
event per batch, a funnel from invited to first approved post, revoking, reminders."""

from __future__ import annotations

import csv
import io
from datetime import timedelta

import pytest
import sqlalchemy as sa

from koc.core.db import utcnow
from koc.core.events.models import OutboxEvent
from koc.extensions import db
from koc.members.models import Invitation, User
from koc.members.services import campaigns
from tests.conftest import Api, new_member, staff_token_for


def _seed(app, city: str, count: int, *, start: float, prefix: str) -> None:
    now = utcnow()
    with app.app_context():
        db.session.execute(sa.insert(User), [
            {"external_id": f"{prefix}-{n:05d}", "display_name": f"顾客 {n}", "city": city,
             "tags": [], "orders_count": n, "spend_cents": 0, "shares_count": 0,
             "community_posts_count": 0, "candidate_score": start + n, "created_at": now,
             "updated_at": now} for n in range(count)])
        db.session.commit()


def _events(app, kind: str) -> list[dict]:
    with app.app_context():
        return [e.payload for e in db.session.scalars(
            sa.select(OutboxEvent).where(OutboxEvent.event_type == kind))]


def _links(admin: Api, url: str) -> list[dict[str, str]]:
    response = admin.client.get(url, headers={"Authorization": f"Bearer {admin.token}"})
    assert response.status_code == 200
    assert response.mimetype == "text/csv"
    return list(csv.DictReader(io.StringIO(response.get_data(as_text=True).lstrip("\ufeff"))))


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_campaign_of_1000_is_one_statement_and_its_funnel_follows_members(
        request, engine, count_queries) -> None:
    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    viewer = Api(app.test_client(), staff_token_for(app, "viewer"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    _seed(app, "广州", 1200, start=100.0, prefix="gz")
    _seed(app, "上海", 50, start=5000.0, prefix="sh")

    body = {"name": "六月种草", "filter": {"city": "广州"}, "limit": 1000,
            "expires_in_days": 14, "message": "欢迎加入品牌 KOC 计划"}
    with count_queries(app) as statements:
        created = admin.post("/invitation-campaigns", json=body)
    assert created.status_code == 201, created.json
    assert created.json["invited"] == 1000
    inserts = [s for s in statements if s.lstrip().upper().startswith("INSERT INTO INVITATIONS")]
    assert len(inserts) == 1
    # One event for the batch, never one per person.
    assert [e["invited"] for e in _events(app, "invitation.created")] == [1000]

    links = _links(admin, created.json["links_url"])
    assert len(links) == 1000
    # The best 1,000 of Guangzhou: gz-00200 .. gz-01199; nobody from Shanghai.
    assert {row["external_id"] for row in links} == {f"gz-{n:05d}" for n in range(200, 1200)}
    assert all(row["url"].endswith(f"/join/{row['code']}") and row["status"] == "open"
               for row in links)
    with app.app_context():
        # The codes are stored nowhere.
        stored = db.session.scalars(sa.select(Invitation.code_hash)).all()
        assert set(stored) == {None}
    campaign_id = created.json["id"]

    def funnel() -> dict:
        response = viewer.get(f"/invitation-campaigns/{campaign_id}")
        assert response.status_code == 200
        return response.json

    assert {k: funnel()[k] for k in ("invited", "opened", "accepted", "first_submission",
                                     "first_approval")} == {
        "invited": 1000, "opened": 0, "accepted": 0, "first_submission": 0, "first_approval": 0}

    page = app.test_client()
    codes = [row["code"] for row in links[:4]]
    for code in codes[:3]:
        opened = page.get(f"/join/{code}")
        assert opened.status_code == 200
        assert "欢迎加入品牌 KOC 计划" in opened.get_data(as_text=True)
    assert page.get(f"/join/{codes[0]}").status_code == 200  # opened twice, counted once
    qr = page.get(f"/join/{codes[0]}/qr.svg")
    assert qr.status_code == 200 and qr.mimetype == "image/svg+xml"
    assert page.get(f"/join/{codes[0][:-2]}xx").status_code == 404
    assert page.get(f"/join/{codes[0][:-2]}xx/qr.svg").status_code == 404
    assert funnel()["opened"] == 3

    members = []
    for code in codes[:2]:
        accepted = Api(page).post(f"/invitations/{code}/accept",
                                  json={"display_name": "新 KOC", "accept_terms": True})
        assert accepted.status_code == 201, accepted.json
        members.append(Api(app.test_client(), accepted.json["token"]))
    # Accepting through the API counts as opened too (a mini-program skips the page).
    accepted = Api(page).post(f"/invitations/{codes[3]}/accept",
                              json={"display_name": "直接", "accept_terms": True})
    assert accepted.status_code == 201
    assert Api(page).post(f"/invitations/{codes[3]}/accept", json={
        "display_name": "again", "accept_terms": True}).status_code == 409
    post = members[0].post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://www.xiaohongshu.com/explore/"
        "64b7a1c2000000001e03a6f1", "posted_at": (utcnow() - timedelta(days=1)).isoformat(),
        "metrics": {"likes": 10}})
    assert post.status_code == 201, post.json
    second = members[1].post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://www.xiaohongshu.com/explore/"
        "64b7a1c2000000001e03a6f2", "posted_at": (utcnow() - timedelta(days=1)).isoformat(),
        "metrics": {"likes": 3}})
    assert second.status_code == 201
    assert reviewer.post(f"/submissions/{post.json['id']}/review",
                         json={"decision": "approve", "rating": 4}).status_code == 200
    steps = funnel()
    assert {k: steps[k] for k in ("invited", "opened", "accepted", "first_submission",
                                  "first_approval")} == {
        "invited": 1000, "opened": 4, "accepted": 3, "first_submission": 2, "first_approval": 1}
    assert steps["rates"] == {"opened": 0.004, "accepted": 0.003, "first_submission": 0.002,
                              "first_approval": 0.001}
    # Members left the candidate list at once.
    top = [c["external_id"] for c in viewer.get("/candidates?city=广州&page_size=5").json]
    assert links[0]["external_id"] not in top

    # A second campaign on the same filter skips everyone holding an open invitation.
    again = admin.post("/invitation-campaigns", json={**body, "name": "补发", "limit": 5000})
    assert again.status_code == 201
    assert again.json["invited"] == 200
    assert len(_events(app, "invitation.created")) == 2

    # One code withdrawn, then a whole campaign.
    single = links[10]["code"]
    assert admin.post(f"/invitations/{single}/revoke").status_code == 200
    assert Api(page).post(f"/invitations/{single}/accept", json={
        "display_name": "x", "accept_terms": True}).status_code == 410
    assert page.get(f"/join/{single}").status_code == 410
    assert admin.post(f"/invitations/{codes[0]}/revoke").status_code == 409  # accepted
    revoked = admin.post(f"/invitation-campaigns/{again.json['id']}/revoke")
    assert revoked.status_code == 200 and revoked.json == {"revoked": 200}
    late = _links(admin, again.json["links_url"])[0]
    assert late["status"] == "revoked"
    assert Api(page).post(f"/invitations/{late['code']}/accept", json={
        "display_name": "x", "accept_terms": True}).status_code == 410
    assert viewer.post(f"/invitation-campaigns/{campaign_id}/revoke").status_code == 403

    listed = viewer.get("/invitation-campaigns")
    assert listed.status_code == 200
    assert [(c["name"], c["invited"], c["revoked"]) for c in listed.json] == [
        ("补发", 200, 200), ("六月种草", 1000, 1)]


def test_a_campaign_of_picked_customers_invites_those_still_candidates(app) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _seed(app, "广州", 10, start=1.0, prefix="gz")
    new_member(app, admin, "gz-member")
    picked = ["gz-00003", "gz-00007", "gz-member", "nobody"]
    created = admin.post("/invitation-campaigns", json={
        "name": "挑选", "limit": 100, "filter": {"external_ids": picked}})
    assert created.status_code == 201, created.json
    # A member and an unknown id are not candidates: two invitations, best first.
    assert created.json["invited"] == 2
    links = _links(admin, created.json["links_url"])
    assert [row["external_id"] for row in links] == ["gz-00007", "gz-00003"]
    too_many = admin.post("/invitation-campaigns", json={
        "name": "太多", "limit": 1, "filter": {"external_ids": [f"c{n}" for n in range(1001)]}})
    assert too_many.status_code == 422
    assert "external_ids" in too_many.json["errors"]["json"]["filter"]


def test_bad_campaigns_are_refused_naming_the_field(app) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    for body, field in (({"name": "x", "limit": 0}, "limit"),
                        ({"name": "", "limit": 5}, "name"),
                        ({"name": "x", "limit": 5, "filter": {"town": "a"}}, "filter"),
                        ({"name": "x", "limit": 5, "expires_in_days": 0}, "expires_in_days")):
        response = admin.post("/invitation-campaigns", json=body)
        assert response.status_code == 422, body
        assert field in response.json["errors"]["json"]
    assert admin.get("/invitation-campaigns/999").status_code == 404


@pytest.mark.clock
def test_reminders_go_out_once_per_campaign_before_expiry(app) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _seed(app, "广州", 30, start=1.0, prefix="gz")
    created = admin.post("/invitation-campaigns", json={
        "name": "提醒", "filter": {}, "limit": 30, "expires_in_days": 7})
    assert created.status_code == 201
    with app.app_context():
        campaign = campaigns.get_campaign(created.json["id"])
        expires = campaign.expires_at
        assert campaigns.send_reminders(expires - timedelta(days=3)) == 0
        assert campaigns.send_reminders(expires - timedelta(days=1)) == 1
        assert campaigns.send_reminders(expires - timedelta(hours=12)) == 0
        db.session.commit()
    assert _events(app, "invitation.expiring") == [{
        "campaign_id": created.json["id"], "name": "提醒", "pending": 30,
        "expires_at": expires.isoformat()}]
