"""Benefits granted and revoked exactly once: badges, early-access drops, the senior group."""

from __future__ import annotations

import base64
import random
import threading
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from koc.core.db import utcnow
from koc.extensions import db
from tests.conftest import Api, new_member, staff_token_for


def _approved(member: Api, reviewer: Api, *, likes: int = 10, days_ago: float = 1) -> None:
    created = member.post("/submissions", json={
        "platform": "weibo",
        "post_url": f"https://weibo.com/7/{abs(hash((member.token, likes, days_ago)))}",
        "posted_at": (utcnow() - timedelta(days=days_ago)).isoformat(),
        "metrics": {"likes": likes}})
    assert created.status_code == 201, created.json
    assert reviewer.post(f"/submissions/{created.json['id']}/review",
                         json={"decision": "approve"}).status_code == 200


def _recalc(app) -> None:
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()


def test_badge_is_signed_checkable_with_the_public_key_alone_and_revoked_on_suspension(
    app, member_api, staff_api
) -> None:
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"))
    _recalc(app)
    _recalc(app)  # a second run issues nothing more
    badges = member.get("/me").json["badges"]
    assert len(badges) == 1
    badge_id = badges[0]["badge_id"]

    anonymous = Api(app.test_client())
    key = anonymous.get("/badges/public-key").json
    badge = anonymous.get(f"/badges/{badge_id}").json
    assert badge["valid"] is True and badge["tier"] == "certified"
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(key["public_key"]))
    public.verify(base64.b64decode(badge["signature"]), badge["payload"].encode())
    assert f'"member_id":{member_id}' in badge["payload"]
    svg = app.test_client().get(f"/api/v1/badges/{badge_id}/badge.svg")
    assert svg.mimetype == "image/svg+xml" and b"Certified KOC" in svg.data

    staff_api("admin").patch(f"/members/{member_id}", json={"status": "suspended"})
    revoked = anonymous.get(f"/badges/{badge_id}").json
    assert revoked["revoked"] is True and revoked["valid"] is False
    assert anonymous.get("/badges/not-a-badge").status_code == 404


def test_tampered_badge_does_not_verify(app, member_api, staff_api) -> None:
    from koc.tiers.models import Badge

    _, member = member_api()
    _approved(member, staff_api("reviewer"))
    _recalc(app)
    badge_id = member.get("/me").json["badges"][0]["badge_id"]
    with app.app_context():
        db.session.query(Badge).filter_by(badge_id=badge_id).update({"tier_key": "senior"})
        db.session.commit()
    assert Api(app.test_client()).get(f"/badges/{badge_id}").json["valid"] is False


def _drop(admin: Api, **extra) -> dict:
    body = {"product_name": "Blind box S2", "sku": "BB-S2", "quantity": 10,
            "opens_at": (utcnow() - timedelta(hours=1)).isoformat(),
            "closes_at": (utcnow() + timedelta(days=1)).isoformat(), **extra}
    response = admin.post("/drops", json=body)
    assert response.status_code == 201, response.json
    return response.json


@pytest.mark.postgres
def test_fifty_concurrent_claims_for_ten_units_give_exactly_ten(pg_app) -> None:
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    drop = _drop(admin)
    members = [new_member(pg_app, admin, f"claimer-{n}")[1] for n in range(50)]
    statuses: list[int] = []

    def claim(member: Api) -> None:
        client = Api(pg_app.test_client(), member.token)
        statuses.append(client.post(f"/drops/{drop['id']}/claims").status_code)

    threads = [threading.Thread(target=claim, args=(m,)) for m in members]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(statuses) == [201] * 10 + [409] * 40
    assert admin.get("/drops").json[0]["allocated"] == 10
    assert len(admin.get(f"/drops/{drop['id']}/seeding").json) == 10


def test_retried_claim_is_one_claim_and_limits_and_tiers_are_enforced(app, member_api,
                                                                       staff_api) -> None:
    admin = staff_api("admin")
    drop = _drop(admin, quantity=5)
    gated = _drop(admin, min_tier="early_access")
    _, member = member_api()
    first = member.post(f"/drops/{drop['id']}/claims", headers={"Idempotency-Key": "c1"})
    retry = member.post(f"/drops/{drop['id']}/claims", headers={"Idempotency-Key": "c1"})
    assert first.status_code == 201 and retry.json["id"] == first.json["id"]
    again = member.post(f"/drops/{drop['id']}/claims", headers={"Idempotency-Key": "c2"})
    assert again.status_code == 409  # one per member
    assert member.post(f"/drops/{gated['id']}/claims").status_code == 403
    assert [d["id"] for d in member.get("/drops").json] == [drop["id"]]
    assert admin.get("/drops").json[-1]["allocated"] == 1


def test_lottery_is_drawn_once_and_anyone_can_rerun_it_from_the_seed(app, member_api,
                                                                      staff_api) -> None:
    from koc.tiers.models import Drop
    from koc.tiers.tasks import draw_closed_lotteries

    admin = staff_api("admin")
    drop = _drop(admin, quantity=3, allocation="lottery")
    members = [member_api()[1] for _ in range(7)]
    for member in members:
        assert member.post(f"/drops/{drop['id']}/claims").status_code == 201
    assert members[0].post(f"/drops/{drop['id']}/claims").status_code == 409
    with app.app_context():
        db.session.get(Drop, drop["id"]).closes_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
        assert draw_closed_lotteries.run() == 1
        assert draw_closed_lotteries.run() == 0
    result = members[0].get(f"/drops/{drop['id']}/lottery").json
    assert len(result["winner_ids"]) == 3 and len(result["entry_ids"]) == 7
    rerun = sorted(random.Random(result["seed"]).sample(sorted(result["entry_ids"]), 3))
    assert rerun == result["winner_ids"]
    assert admin.post(f"/drops/{drop['id']}/draw").json["winner_ids"] == rerun


@pytest.mark.clock
def test_seeded_members_who_did_not_post_in_time_are_listed(app, member_api,
                                                            staff_api) -> None:
    from koc.tiers.models import DropClaim

    admin = staff_api("admin")
    drop = _drop(admin, post_within_days=7)
    poster_id, poster = member_api()
    silent_id, silent = member_api()
    for member in (poster, silent):
        assert member.post(f"/drops/{drop['id']}/claims").status_code == 201
    with app.app_context():
        db.session.query(DropClaim).update({"created_at": utcnow() - timedelta(days=8)})
        db.session.commit()
    _approved(poster, staff_api("reviewer"))
    report = {row["member_id"]: row for row in admin.get(f"/drops/{drop['id']}/seeding").json}
    assert (report[poster_id]["posted"], report[poster_id]["overdue"]) == (True, False)
    assert (report[silent_id]["posted"], report[silent_id]["overdue"]) == (False, True)


@pytest.mark.clock
def test_senior_member_is_invited_and_listed_for_removal_after_demotion(app, member_api,
                                                                        staff_api) -> None:
    reviewer = staff_api("reviewer")
    admin = staff_api("admin")
    member_id, member = member_api()
    _approved(member, reviewer, likes=1500, days_ago=10)
    _recalc(app)
    assert member.get("/me").json["tier"]["key"] == "senior"
    groups = member.get("/me/groups").json["groups"]
    assert len(groups) == 1 and groups[0]["code"]
    assert [m["member_id"] for m in admin.get("/groups/senior/roster").json["members"]] == [
        member_id]

    for days in (3, 2, 1):
        _approved(member, reviewer, likes=5, days_ago=days)
    _recalc(app)
    roster = admin.get("/groups/senior/roster").json
    assert roster["members"] == [] and [m["member_id"] for m in roster["to_remove"]] == [
        member_id]
    assert member.get("/me/groups").json["groups"] == []
    assert admin.post(f"/groups/senior/roster/{member_id}/removed").status_code == 200
    assert admin.get("/groups/senior/roster").json["to_remove"] == []


@pytest.mark.clock
def test_senior_whose_tier_staff_remove_is_listed_for_removal_from_the_group(
        app, member_api, staff_api) -> None:
    admin = staff_api("admin")
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"), likes=1500, days_ago=10)
    _recalc(app)
    assert [m["member_id"] for m in admin.get("/groups/senior/roster").json["members"]] == [
        member_id]

    # No tier at all (NULL), not a lower one: the seat must still be listed for removal.
    changed = admin.patch(f"/members/{member_id}",
                          json={"tier": None, "reason": "posts were bought"})
    assert changed.status_code == 200, changed.json
    roster = admin.get("/groups/senior/roster").json
    assert roster["members"] == []
    assert [m["member_id"] for m in roster["to_remove"]] == [member_id]


def test_tier_changes_and_group_moves_are_sent_to_subscribed_webhooks(app, member_api,
                                                                      staff_api) -> None:
    from koc.core.events import OutboxEvent, WebhookDelivery

    admin = staff_api("admin")
    hook = admin.post("/webhooks", json={
        "url": "https://hooks.example.com/koc",
        "events": ["member.tier_changed", "group.invite"], "secret": "s" * 20})
    assert hook.status_code == 201, hook.json
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"), likes=1500, days_ago=2)
    _recalc(app)
    _recalc(app)  # nothing changes the second time, so nothing more is sent
    with app.app_context():
        sent = {(e.event_type, e.payload["member_id"], e.payload.get("to"))
                for e in db.session.query(OutboxEvent)}
        deliveries = db.session.query(WebhookDelivery).count()
    assert sent == {("member.tier_changed", member_id, "senior"),
                    ("group.invite", member_id, None)}
    assert deliveries == 2


def test_a_run_promoting_many_leaves_the_extra_badges_to_a_task(app, member_api, staff_api,
                                                                monkeypatch) -> None:
    from koc.core.jobs.dispatch import _PENDING
    from koc.tiers.models import Badge
    from koc.tiers.services import badges
    from koc.tiers.services.engine import recalculate
    from koc.tiers.tasks import issue_badges

    monkeypatch.setattr(badges, "BADGES_INLINE", 2)
    reviewer = staff_api("reviewer")
    for _ in range(5):
        _approved(member_api()[1], reviewer)
    with app.app_context():
        recalculate(trigger="test")
        queued = [task_name for task_name, _ in db.session().info.get(_PENDING, [])]
        db.session.commit()
        assert db.session.query(Badge).count() == 2
        assert "koc.tiers.tasks.issue_badges" in queued
        assert issue_badges.run(chunk=2) == 3
        assert issue_badges.run(chunk=2) == 0  # running it again issues nothing
        assert db.session.query(Badge).filter(Badge.revoked_at.is_(None)).count() == 5


def test_badges_left_over_are_issued_by_the_periodic_catch_up(app, member_api, staff_api,
                                                              monkeypatch) -> None:
    from koc.tiers.models import Badge
    from koc.tiers.services import badges
    from koc.tiers.services.engine import recalculate
    from koc.tiers.tasks import issue_badges

    schedule = app.extensions["celery"].conf.beat_schedule
    assert schedule[issue_badges.name]["schedule"].total_seconds() == 600
    monkeypatch.setattr(badges, "BADGES_INLINE", 1)
    reviewer = staff_api("reviewer")
    for _ in range(3):
        _approved(member_api()[1], reviewer)
    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()  # the follow-up task is lost: nothing consumes the queue here
        assert db.session.query(Badge).count() == 1
        assert issue_badges.run() == 2
        assert db.session.query(Badge).count() == 3


def test_suspension_for_fraud_takes_badge_pending_claims_and_group_seat_at_once_logged(
    app, member_api, staff_api
) -> None:
    admin = staff_api("admin")
    member_id, member = member_api()
    _approved(member, staff_api("reviewer"), likes=1500, days_ago=10)
    _recalc(app)
    assert member.get("/me").json["tier"]["key"] == "senior"
    badge_id = member.get("/me").json["badges"][0]["badge_id"]
    first_come = _drop(admin, quantity=2)
    lottery = _drop(admin, quantity=1, allocation="lottery")
    honest = member_api()[1]
    for claimer in (member, honest):
        assert claimer.post(f"/drops/{first_come['id']}/claims").status_code == 201
        assert claimer.post(f"/drops/{lottery['id']}/claims").status_code == 201
    def stock() -> dict[int, int]:
        return {d["id"]: d["allocated"] for d in admin.get("/drops").json}

    assert stock()[first_come["id"]] == 2

    assert admin.patch(f"/members/{member_id}", json={
        "status": "suspended", "reason": "bought likes"}).status_code == 200

    # Nothing waits for the next run: badge, claims and seat are gone in the same request.
    assert Api(app.test_client()).get(f"/badges/{badge_id}").json["revoked"] is True
    assert stock()[first_come["id"]] == 1  # the voided unit is back for someone else
    roster = admin.get("/groups/senior/roster").json
    assert [m["member_id"] for m in roster["to_remove"]] == [member_id]
    update = admin.get("/audit", query_string={"action": "member.update"}).json[0]
    assert update["target"] == f"member:{member_id}"
    assert update["details"]["effects"] == {
        "badges_issued": 0, "badges_revoked": 1, "claims_voided": 2,
        "group_invited": 0, "group_removal_due": 1}

    # The lottery is drawn among the entries that stand, and its proof re-runs over them.
    from koc.tiers.models import Drop

    with app.app_context():
        db.session.get(Drop, lottery["id"]).closes_at = utcnow() - timedelta(seconds=1)
        db.session.commit()
    drawn = admin.post(f"/drops/{lottery['id']}/draw").json
    assert len(drawn["entry_ids"]) == 1 and drawn["winner_ids"] == drawn["entry_ids"]
    assert random.Random(drawn["seed"]).sample(drawn["entry_ids"], 1) == drawn["winner_ids"]
    # Suspending again voids nothing more.
    admin.patch(f"/members/{member_id}", json={"status": "suspended"})
    again = admin.get("/audit", query_string={"action": "member.update"}).json[0]
    assert again["details"]["effects"]["claims_voided"] == 0
