"""The panel's staff, token and audit pages: admins only, each change audited and effective."""

from __future__ import annotations

import re

import sqlalchemy as sa
from flask import Flask

from koc.core.auth import ApiToken, Staff, create_staff, issue_token
from koc.extensions import db
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import Api
from tests.security.conftest import audit_rows


def _account(app: Flask, email: str, role: str = "admin") -> int:
    with app.app_context():
        staff = create_staff(email=email, role=role, password=PASSWORD)
        db.session.commit()
        return staff.id


def _signed_in(app: Flask, email: str):
    client = app.test_client()
    assert login(client, email, **{"Accept-Language": "en"}).status_code == 302
    return client


def test_only_admins_see_the_security_pages(app: Flask):
    _account(app, "rev@example.com", "reviewer")
    reviewer = _signed_in(app, "rev@example.com")
    for path in ("/admin/staff", "/admin/tokens", "/admin/audit"):
        assert reviewer.get(path).status_code == 403
    assert app.test_client().get("/admin/staff").status_code == 302


def test_an_admin_deactivates_a_colleague_and_their_token_stops_at_once(app: Flask):
    _account(app, "boss@example.com")
    leaver = _account(app, "leaver@example.com", "reviewer")
    with app.app_context():
        secret = issue_token(staff_id=leaver)
        db.session.commit()
    boss = _signed_in(app, "boss@example.com")
    page = boss.get("/admin/staff")
    assert page.status_code == 200 and "leaver@example.com" in page.text

    response = boss.post(f"/admin/staff/{leaver}/deactivate",
                         data={"csrf_token": csrf_token(page.text)})

    assert response.status_code == 302
    assert Api(app.test_client(), secret).get("/submissions").status_code == 401
    assert "已停用" in boss.get("/admin/staff").text  # the panel speaks zh-CN by default
    (row,) = audit_rows(app, action="staff.deactivate")
    assert row.actor == "boss@example.com" and row.details["tokens_revoked"] == 1


def test_an_admin_changes_a_role_and_sets_a_password(app: Flask):
    _account(app, "boss@example.com")
    other = _account(app, "other@example.com", "viewer")
    boss = _signed_in(app, "boss@example.com")
    token = csrf_token(boss.get("/admin/staff").text)

    boss.post(f"/admin/staff/{other}/role", data={"csrf_token": token, "role": "reviewer"})
    boss.post(f"/admin/staff/{other}/password", data={"csrf_token": token,
                                                      "password": "another long password"})

    with app.app_context():
        assert db.session.get(Staff, other).role == "reviewer"
    assert login(app.test_client(), "other@example.com",
                 "another long password").status_code == 302
    assert [r.action for r in audit_rows(app, target=f"staff:{other}")] == [
        "staff.role", "staff.password", "staff.login"]


def test_the_last_admin_cannot_demote_themselves(app: Flask):
    me = _account(app, "solo@example.com")
    solo = _signed_in(app, "solo@example.com")
    token = csrf_token(solo.get("/admin/staff").text)

    response = solo.post(f"/admin/staff/{me}/role", data={"csrf_token": token, "role": "viewer"},
                         follow_redirects=True)

    assert "last active admin" in response.text
    with app.app_context():
        assert db.session.get(Staff, me).role == "admin"


def test_tokens_page_lists_and_revokes(app: Flask):
    owner = _account(app, "boss@example.com")
    with app.app_context():
        secret = issue_token(staff_id=owner)
        db.session.commit()
        token_id = db.session.scalar(sa.select(ApiToken.id).where(
            ApiToken.display_prefix == secret[:12]))
    boss = _signed_in(app, "boss@example.com")
    page = boss.get("/admin/tokens")
    assert secret[:12] in page.text and secret not in page.text

    boss.post(f"/admin/tokens/{token_id}/revoke", data={"csrf_token": csrf_token(page.text)})

    assert Api(app.test_client(), secret).get("/tokens").status_code == 401
    assert "已吊销" in boss.get("/admin/tokens").text


def test_audit_page_filters(app: Flask):
    _account(app, "boss@example.com")
    boss = _signed_in(app, "boss@example.com")
    page = boss.get("/admin/audit", query_string={"action": "staff.login"})
    assert page.status_code == 200
    assert re.findall(r"<code>([a-z_.]+)</code>", page.text) == ["staff.login"]
    assert "boss@example.com" in page.text
