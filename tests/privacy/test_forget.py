"""Forgetting a person (PIPL): anonymised everywhere, totals kept, safe to repeat, never back."""

from __future__ import annotations

import json

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.extensions import db
from koc.submissions.models import MediaUpload
from tests.privacy.conftest import USER, make_person

pytestmark = pytest.mark.clock


def _run_media_deletion(app: Flask, member_id: int) -> int:
    from koc.submissions.tasks import delete_member_media

    with app.app_context():
        return delete_member_media.run(member_id)


def test_forgotten_person_is_anonymised_everywhere_and_totals_stay(any_app: Flask) -> None:
    app = any_app
    person = make_person(app)
    admin = person.admin
    with app.app_context():
        storage_key = db.session.get_one(MediaUpload, person.media_id).storage_key
    waiting = person.member.post("/submissions", json={
        "platform": "weibo", "post_url": "https://weibo.com/123/waiting-post",
        "caption": "王小明的第二篇", "posted_at": "2026-11-01T10:00:00+00:00",
        "metrics": {"likes": 3}}).json["id"]
    points_before = person.member.get("/me").json["points"]
    stats_before = admin.get("/stats/tiers").json

    forgot = admin.client.delete(f"/api/v1/users/{person.external_id}",
                                 headers={"Authorization": f"Bearer {admin.token}"})
    assert forgot.status_code == 204, forgot.json
    # The member's token is revoked at once.
    assert person.member.get("/me").status_code == 401

    user = admin.get(f"/users/{person.external_id}").json
    for name in ("display_name", "city", "store_code", "last_order_at"):
        assert user[name] is None, name
    assert user["tags"] == [] and user["orders_count"] == 0 and user["spend_cents"] == 0

    detail = admin.get(f"/members/{person.member_id}").json
    assert detail["display_name"] == f"forgotten member {person.member_id}"
    assert detail["status"] == "suspended"
    account = detail["social_accounts"][0]
    assert account["handle"].startswith("forgotten-") and account["url"] is None

    submission = admin.get(f"/submissions/{person.submission_id}").json
    assert submission["caption"] == "" and submission["post_url"] == ""
    assert submission["status"] == "approved"
    # A post still waiting can no longer be judged: rejected, out of the queue, nothing booked.
    pending = admin.get(f"/submissions/{waiting}").json
    assert pending["status"] == "rejected" and pending["caption"] == ""
    # Points and statistics keep the anonymous member: the ledger is untouched.
    export = admin.get(f"/members/{person.member_id}/export").json
    assert sum(float(e["points"]) for e in export["ledger"]) == float(points_before["lifetime"])
    assert admin.get("/stats/tiers").json == stats_before

    badge = admin.get(f"/badges/{person.badge_id}").json
    assert badge["revoked"] is True and badge["valid"] is False
    assert badge["member"]["display_name"] is None

    # Stored media go after the commit, by a task that is safe to re-run.
    assert _run_media_deletion(app, person.member_id) == 1
    assert _run_media_deletion(app, person.member_id) == 0
    with app.app_context():
        from koc.core.storage import get_storage

        assert get_storage().head(storage_key) is None

    # Nothing personal is left in what the service answers about the person.
    text = json.dumps(export, ensure_ascii=False)
    for secret in ("王小明", "小明爱分享", "xiaoming_shares", "Guangzhou", "GZ01", "abc123",
                   "我家宝宝", "6650a1b2c3d4e5f6a7b8c9d0", "mother-baby"):
        assert secret not in text, secret

    # The audit log keeps the event, without the personal data.
    events = admin.get("/audit", query_string={"action": "user.forget"}).json
    assert len(events) == 1
    assert "王小明" not in json.dumps(events, ensure_ascii=False)


def test_forgetting_twice_is_204_unknown_is_404_and_the_person_stays_forgotten(
    any_app: Flask,
) -> None:
    app = any_app
    person = make_person(app)
    admin = person.admin
    headers = {"Authorization": f"Bearer {admin.token}"}
    assert admin.client.delete("/api/v1/users/crm-42", headers=headers).status_code == 204
    assert admin.client.delete("/api/v1/users/crm-42", headers=headers).status_code == 204
    assert admin.client.delete("/api/v1/users/nobody", headers=headers).status_code == 404

    # A PUT cannot bring the person back; neither can an invitation or a re-activation.
    again = admin.put("/users/crm-42", json=USER)
    assert again.status_code == 410 and "external_id" in again.json["errors"]["json"]
    assert admin.post("/invitations", json={"external_id": "crm-42"}).status_code == 410
    reactivated = admin.patch(f"/members/{person.member_id}", json={"status": "active"})
    assert reactivated.status_code == 409

    # A bulk import skips the forgotten line and says so; the others go in.
    lines = "\n".join(json.dumps({"external_id": ext, "display_name": name, "city": "Shenzhen"},
                                 ensure_ascii=False)
                      for ext, name in (("crm-42", "王小明"), ("crm-43", "李四"))) + "\n"
    job_id = admin.client.post(
        "/api/v1/users/import", headers=headers,
        data={"file": (__import__("io").BytesIO(lines.encode()), "users.jsonl")}).json["job_id"]
    from koc.members.tasks import import_users_task

    with app.app_context():
        import_users_task.run(job_id)
    job = admin.get(f"/jobs/{job_id}").json
    assert job["status"] == "succeeded"
    assert job["processed"] == 1 and job["result"]["progress"]["forgotten"] == 1
    assert admin.get("/users/crm-42").json["display_name"] is None
    assert admin.get("/users/crm-43").json["display_name"] == "李四"
    # Never a candidate again.
    candidates = admin.get("/candidates", query_string={"limit": 50}).json
    assert "crm-42" not in {c["external_id"] for c in candidates}
    # Nor once every user is rescored (what saving new candidate rules does), a person who never
    # became a member included: the blank row would score 0 under any weights, and the
    # candidate list reads the score alone.
    assert admin.put("/users/crm-44", json=USER).status_code in (200, 201)
    assert admin.client.delete("/api/v1/users/crm-44", headers=headers).status_code == 204
    from koc.core.db import utcnow
    from koc.extensions import db
    from koc.members.services.candidate_rules import rescore

    with app.app_context():
        rescore(utcnow())
        db.session.commit()
    candidates = admin.get("/candidates", query_string={"limit": 50}).json
    listed = {c["external_id"] for c in candidates}
    assert "crm-43" in listed and not listed & {"crm-42", "crm-44"}


def test_cli_forgets_a_person(app: Flask) -> None:
    from koc.cli import main

    person = make_person(app)
    runner = app.test_cli_runner()
    result = runner.invoke(main, ["users", "forget", person.external_id])
    assert result.exit_code == 0, result.output
    assert runner.invoke(main, ["users", "forget", person.external_id]).exit_code == 0
    assert runner.invoke(main, ["users", "forget", "nobody"]).exit_code != 0
    with app.app_context():
        from koc.members.models import User

        user = db.session.scalar(sa.select(User).where(User.external_id == "crm-42"))
        assert user.forgotten_at is not None and user.display_name is None
