"""The audit log: staff writes and sensitive reads recorded in the same transaction, listed at
GET /api/v1/audit with filters, newest first."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from flask import Flask

from koc.core import audit
from koc.core.db import utcnow
from koc.extensions import db
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import Api, new_member, staff_token_for
from tests.security.conftest import audit_rows


@pytest.fixture
def admin(app: Flask) -> Api:
    return Api(app.test_client(), staff_token_for(app, email="auditor@example.com"))


def test_the_writes_the_issue_names_are_each_recorded_with_actor_target_and_address(
        app: Flask, admin: Api):
    member_id, _member = new_member(app, admin, "ext-1", city="Guangzhou")
    kit = admin.post("/kits", json={"title": "Spring"}).json
    assert admin.patch(f"/kits/{kit['id']}", json={"title": "Spring 2"}).status_code == 200
    asset = admin.post(f"/kits/{kit['id']}/assets", json={
        "filename": "a.jpg", "content_type": "image/jpeg", "size": 10}).json
    assert admin.client.delete(f"/api/v1/kits/{kit['id']}/assets/{asset['asset_id']}",
                               headers={"Authorization": f"Bearer {admin.token}"}
                               ).status_code == 204
    assert admin.post(f"/kits/{kit['id']}/archive").status_code == 200
    assert admin.patch(f"/members/{member_id}", json={
        "status": "suspended", "reason": "spam"}).status_code == 200
    assert admin.patch(f"/members/{member_id}", json={
        "tier_locked": True, "reason": "pinned"}).status_code == 200
    now = utcnow()
    drop = admin.post("/drops", json={
        "product_name": "Sample", "sku": "S-1", "quantity": 3, "per_member_limit": 1,
        "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(days=1)).isoformat()}).json
    hook = admin.post("/webhooks", json={"url": "https://hooks.example.com/koc",
                                         "events": ["kit.published"],
                                         "secret": "a-webhook-secret-of-some-length"}).json
    assert admin.client.delete(f"/api/v1/webhooks/{hook['id']}", headers={
        "Authorization": f"Bearer {admin.token}"}).status_code == 204

    rows = audit_rows(app, actor="auditor@example.com")
    by_action = {row.action: row for row in rows}

    for action, target in [("user.upsert", "user:ext-1"), ("kit.create", f"kit:{kit['id']}"),
                           ("kit.update", f"kit:{kit['id']}"),
                           ("asset.delete", f"asset:{asset['asset_id']}"),
                           ("kit.archive", f"kit:{kit['id']}"),
                           ("member.update", f"member:{member_id}"),
                           ("drop.create", f"drop:{drop['id']}"),
                           ("webhook.delete", f"webhook:{hook['id']}")]:
        assert by_action[action].target == target, action
    suspension, lock = [r for r in rows if r.action == "member.update"]
    assert suspension.details["before"]["status"] == "active"
    assert suspension.details["after"] == {"status": "suspended", "reason": "spam"}
    assert lock.details["after"]["tier_locked"] is True
    assert all(row.ip == "127.0.0.1" and row.actor_staff_id is not None for row in rows)
    # Writes no handler names (an invitation, the webhook's creation) are logged by endpoint.
    assert {"members.create_invitation", "webhooks.register_webhook"} <= set(by_action)
    assert "a-webhook-secret" not in json.dumps([r.details for r in rows])


def test_a_refused_write_leaves_no_audit_row(app: Flask, admin: Api):
    assert admin.patch("/members/424242", json={"status": "suspended"}).status_code == 404
    assert admin.put("/users/x", json={"orders_count": -1}).status_code == 422

    assert audit_rows(app) == []


def test_reads_are_not_logged_but_sensitive_ones_are(app: Flask, admin: Api):
    assert admin.get("/members").status_code == 200
    assert admin.get("/candidates", query_string={"limit": 20}).status_code == 200
    assert audit_rows(app) == []

    assert admin.get("/candidates", query_string={"limit": 500}).status_code == 200
    assert admin.get("/leaks", query_string={"code": "ABCDEFGH"}).status_code == 404

    (row,) = audit_rows(app)
    assert (row.action, row.details) == ("candidates.list", {"limit": 500})


def test_the_audit_list_filters_and_pages_newest_first(app: Flask, admin: Api):
    other = Api(app.test_client(), staff_token_for(app, email="other@example.com"))
    for n in range(3):
        assert admin.put(f"/users/u{n}", json={}).status_code == 201
    assert other.put("/users/u9", json={}).status_code == 201
    with app.app_context():
        audit.record("kit.publish", "kit:1", actor="cli:ops", now=utcnow() - timedelta(days=3))
        db.session.commit()

    everything = admin.get("/audit").json
    mine = admin.get("/audit", query_string={"actor": "auditor@example.com"}).json
    by_id = admin.get("/audit", query_string={"actor": str(mine[0]["actor_staff_id"])}).json
    one = admin.get("/audit", query_string={"target": "user:u1"}).json
    kits = admin.get("/audit", query_string={"action": "kit."}).json
    old = admin.get("/audit", query_string={
        "until": (utcnow() - timedelta(days=1)).isoformat()}).json
    recent = admin.get("/audit", query_string={
        "since": (utcnow() - timedelta(days=1)).isoformat()}).json
    page = admin.get("/audit", query_string={"page_size": 2, "page": 2})

    assert [e["target"] for e in everything] == ["user:u9", "user:u2", "user:u1", "user:u0",
                                                 "kit:1"]
    assert [e["target"] for e in mine] == ["user:u2", "user:u1", "user:u0"] == [
        e["target"] for e in by_id]
    assert [(e["action"], e["actor"]) for e in one] == [("user.upsert", "auditor@example.com")]
    assert [e["actor"] for e in kits] == ["cli:ops"] == [e["actor"] for e in old]
    assert len(recent) == 4
    assert [e["target"] for e in page.json] == ["user:u1", "user:u0"]
    assert json.loads(page.headers["X-Pagination"])["total"] == 5
    assert admin.get("/audit", query_string={"since": "yesterday"}).status_code == 422


def test_only_admins_read_the_audit_log(app: Flask):
    assert Api(app.test_client(), staff_token_for(app, "reviewer")).get("/audit").status_code \
        == 403
    assert Api(app.test_client()).get("/audit").status_code == 401


def test_admin_panel_writes_are_recorded_with_the_signed_in_staff(app: Flask, admin: Api):
    from koc.core.auth import create_staff

    with app.app_context():
        create_staff(email="panel@example.com", role="admin", password=PASSWORD)
        db.session.commit()
    browser = app.test_client()
    assert login(browser, "panel@example.com").status_code == 302
    kit_id = admin.post("/kits", json={"title": "Panel kit"}).json["id"]
    page = browser.get(f"/admin/kits/{kit_id}")
    assert page.status_code == 200

    response = browser.post(f"/admin/kits/{kit_id}/publish",
                            data={"csrf_token": csrf_token(page.text)})

    assert response.status_code in (302, 303)
    rows = [r for r in audit_rows(app, actor="panel@example.com")
            if r.target == f"kit:{kit_id}"]
    assert len(rows) == 1 and rows[0].details["method"] == "POST"


def test_secrets_never_reach_the_details(app: Flask):
    with app.app_context():
        event = audit.record("x.test", None, {"password": "hunter2", "nested": {
            "secret": "s3", "ok": 1}, "token": "koc_abc", "long": "y" * 2000})
        db.session.commit()
        assert event.details["password"] == "[hidden]"
        assert event.details["nested"] == {"secret": "[hidden]", "ok": 1}
        assert event.details["token"] == "[hidden]"
        assert len(event.details["long"]) < 600


def test_retention_deletes_only_rows_past_the_window(app: Flask):
    now = utcnow()
    with app.app_context():
        audit.record("old.one", None, actor="cli", now=now - timedelta(days=800))
        audit.record("new.one", None, actor="cli", now=now - timedelta(days=10))
        db.session.commit()
        assert audit.purge_expired(now=now, retention_days=730) == 1
        db.session.commit()
    assert [r.action for r in audit_rows(app)] == ["new.one"]


def test_the_periodic_clean_up_applies_retention_and_drops_long_ended_sessions(
        make_app):
    from koc.core.auth import StaffSession
    from koc.core.celery import _periodic_tasks
    from koc.core.security_tasks import purge_expired_records

    app = make_app(KOC_AUDIT_RETENTION_DAYS="30")
    assert "koc.core.security_tasks.purge_expired_records" in str(
        _periodic_tasks(app.config["KOC_SETTINGS"]))
    now = utcnow()
    with app.app_context():
        from koc.core.auth import create_staff

        staff = create_staff(email="s@example.com", role="viewer", password=PASSWORD)
        db.session.add_all([
            StaffSession(session_hash="a" * 64, staff_id=staff.id, created_at=now,
                         expires_at=now - timedelta(days=31)),
            StaffSession(session_hash="b" * 64, staff_id=staff.id, created_at=now,
                         expires_at=now + timedelta(hours=1))])
        audit.record("old.one", None, actor="cli", now=now - timedelta(days=31))
        audit.record("new.one", None, actor="cli", now=now - timedelta(days=29))
        db.session.commit()

        assert purge_expired_records.run() == (1, 1)
        assert purge_expired_records.run() == (0, 0)
        assert [s.session_hash[0] for s in db.session.scalars(db.select(StaffSession))] == ["b"]


@pytest.mark.parametrize(("hops", "expected"), [("0", "127.0.0.1"), ("1", "203.0.113.7")])
def test_the_client_address_comes_from_the_proxy_only_when_one_is_configured(
        make_app, hops: str, expected: str):
    app = make_app(KOC_PROXY_HOPS=hops)
    admin = Api(app.test_client(), staff_token_for(app))

    response = admin.put("/users/p1", json={}, headers={"X-Forwarded-For": "203.0.113.7",
                                                        "X-Forwarded-Proto": "https"})

    assert response.status_code == 201
    (row,) = audit_rows(app, action="user.upsert")
    assert row.ip == expected
