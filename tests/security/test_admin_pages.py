"""The panel's staff, token and audit pages: admins only, each change audited and effective."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

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


def _invitation_link(text: str) -> str:
    (link,) = re.findall(r"http://[^\s<\"]+/admin/invitation/[^\s<\"]+", text)
    return link.split("localhost", 1)[-1]


def test_an_admin_invites_a_colleague_who_chooses_a_password_through_a_link_that_works_once(
        app: Flask):
    _account(app, "boss@example.com")
    boss = _signed_in(app, "boss@example.com")
    page = boss.get("/admin/staff")
    invited = boss.post("/admin/staff", data={"csrf_token": csrf_token(page.text),
                                              "email": " New.Reviewer@Example.com ",
                                              "role": "reviewer"}, follow_redirects=True)
    assert invited.status_code == 200
    assert "已邀请 new.reviewer@example.com 成为审核员" in invited.text
    path = _invitation_link(invited.text)
    (row,) = audit_rows(app, action="staff.invite")
    assert row.actor == "boss@example.com"
    assert row.details == {"email": "new.reviewer@example.com", "role": "reviewer"}
    # The account exists but nobody knows its password yet.
    assert login(app.test_client(), "new.reviewer@example.com").status_code != 302

    colleague = app.test_client()
    form = colleague.get(path, headers={"Accept-Language": "zh-CN"})
    assert form.status_code == 200 and "new.reviewer@example.com" in form.text
    token = csrf_token(form.text)
    mismatch = colleague.post(path, data={"csrf_token": token, "password": "a-long-secret",
                                          "confirm": "another-secret"})
    assert mismatch.status_code == 422
    chosen = colleague.post(path, data={"csrf_token": token, "password": "a-long-secret",
                                        "confirm": "a-long-secret"})
    assert chosen.status_code == 302 and chosen.headers["Location"].endswith("/admin/login")
    signed = app.test_client()
    assert login(signed, "new.reviewer@example.com", "a-long-secret").status_code == 302
    assert signed.get("/admin/reviews").status_code == 200
    assert signed.get("/admin/staff").status_code == 403
    # Spent: the password it was made under has changed.
    assert app.test_client().get(path).status_code == 410
    (accepted,) = audit_rows(app, action="staff.invitation_accepted")
    assert accepted.actor == "new.reviewer@example.com"


def test_an_invitation_expires_is_refused_for_a_deactivated_account_and_is_for_admins_only(
        app: Flask):
    import time_machine

    _account(app, "boss@example.com")
    _account(app, "rev@example.com", "reviewer")
    boss = _signed_in(app, "boss@example.com")
    token = csrf_token(boss.get("/admin/staff").text)

    def invite(email: str) -> str:
        answer = boss.post("/admin/staff", data={"csrf_token": token, "email": email,
                                                 "role": "viewer"}, follow_redirects=True)
        return _invitation_link(answer.text)

    late = invite("late@example.com")
    with time_machine.travel(datetime.now(UTC) + timedelta(hours=73)):
        assert app.test_client().get(late).status_code == 410
    assert app.test_client().get(late).status_code == 200

    leaver = invite("leaver@example.com")
    with app.app_context():
        staff_id = db.session.scalar(sa.select(Staff.id).where(Staff.email == "leaver@example.com"))
    boss.post(f"/admin/staff/{staff_id}/deactivate", data={"csrf_token": token})
    assert app.test_client().get(leaver).status_code == 410

    again = boss.post("/admin/staff", data={"csrf_token": token, "email": "late@example.com",
                                            "role": "admin"}, follow_redirects=True)
    assert "late@example.com 已有账号" in again.text
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).select_from(Staff).where(
            Staff.email == "late@example.com")) == 1
    assert app.test_client().get("/admin/invitation/forged").status_code == 410
    reviewer = _signed_in(app, "rev@example.com")
    refused = reviewer.post("/admin/staff", data={
        "csrf_token": csrf_token(reviewer.get("/admin/reviews").text),
        "email": "x@example.com", "role": "admin"})
    assert refused.status_code == 403
