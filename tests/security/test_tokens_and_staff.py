"""Tokens that expire and can be revoked; staff deactivated, re-roled, re-passworded; panel
sessions that end on the server."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from koc.core.auth import ApiToken, Staff, StaffSession, create_staff, issue_token
from koc.core.db import utcnow
from koc.extensions import db
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import Api, new_member, staff_token_for
from tests.security.conftest import audit_rows, run_cli


def _staff(app: Flask, email: str, role: str = "admin") -> int:
    with app.app_context():
        staff = create_staff(email=email, role=role, password=PASSWORD)
        db.session.commit()
        return staff.id


def _token(app: Flask, email: str, **kwargs) -> str:
    with app.app_context():
        staff = db.session.scalar(sa.select(Staff).filter_by(email=email))
        secret = issue_token(staff_id=staff.id, **kwargs)
        db.session.commit()
        return secret


# --- tokens ------------------------------------------------------------------------------------

def test_tokens_list_shows_prefix_owner_and_lifetimes_never_the_secret(app: Flask):
    admin = Api(app.test_client(), staff_token_for(app, email="boss@example.com"))
    _member_id, member = new_member(app, admin, "m1")

    response = admin.get("/tokens", query_string={"kind": "staff"})

    assert response.status_code == 200
    (row,) = response.json
    assert row["prefix"] == admin.token[:12]
    assert row["owner"] == {"kind": "staff", "staff_id": row["owner"]["staff_id"],
                            "email": "boss@example.com", "role": "admin", "member_id": None}
    created, expires = (utcnow().fromisoformat(row[k]) for k in ("created_at", "expires_at"))
    assert expires - created == timedelta(days=90)
    assert row["last_used_at"] is not None and row["active"] is True
    assert admin.token not in response.text
    members = admin.get("/tokens", query_string={"kind": "member"}).json
    assert [t["prefix"] for t in members] == [member.token[:12]]
    paging = admin.get("/tokens", query_string={"kind": "member"}).headers["X-Pagination"]
    assert json.loads(paging)["total"] == 1
    assert Api(app.test_client(), staff_token_for(app, "reviewer")).get("/tokens").status_code \
        == 403
    assert Api(app.test_client()).get("/tokens").status_code == 401


def test_a_revoked_token_stops_working_at_once_and_revoking_again_changes_nothing(app: Flask):
    admin = Api(app.test_client(), staff_token_for(app))
    _id, member = new_member(app, admin, "m2")
    token_id = admin.get("/tokens", query_string={"kind": "member"}).json[0]["id"]
    assert member.get("/me").status_code == 200

    assert admin.client.delete(f"/api/v1/tokens/{token_id}",
                               headers={"Authorization": f"Bearer {admin.token}"}
                               ).status_code == 204
    assert member.get("/me").status_code == 401
    again = admin.client.delete(f"/api/v1/tokens/{token_id}",
                                headers={"Authorization": f"Bearer {admin.token}"})
    assert again.status_code == 204
    assert admin.client.delete("/api/v1/tokens/999999", headers={
        "Authorization": f"Bearer {admin.token}"}).status_code == 404
    row = admin.get("/tokens", query_string={"active": "false"}).json[0]
    assert row["revoke_reason"] == "revoked by admin" and row["active"] is False
    rows = audit_rows(app, target=f"token:{token_id}")
    assert [(r.action, r.details["changed"]) for r in rows] == [("token.revoke", True),
                                                                 ("token.revoke", False)]


def test_an_expired_staff_token_is_refused(app: Flask):
    _staff(app, "old@example.com")
    expired = _token(app, "old@example.com", expires_at=utcnow() - timedelta(seconds=1))
    fresh = _token(app, "old@example.com")

    assert Api(app.test_client(), expired).get("/tokens").status_code == 401
    assert Api(app.test_client(), fresh).get("/tokens").status_code == 200


def test_a_member_token_lives_while_it_is_used(app: Flask):
    admin = Api(app.test_client(), staff_token_for(app))
    _id, member = new_member(app, admin, "m3")
    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.member_id.is_not(None)))
        # Last used long ago, ending tomorrow: one use pushes the end 90 days out.
        token.last_used_at = utcnow() - timedelta(days=89)
        token.expires_at = utcnow() + timedelta(days=1)
        db.session.commit()

    assert member.get("/me").status_code == 200

    with app.app_context():
        token = db.session.scalar(sa.select(ApiToken).where(ApiToken.member_id.is_not(None)))
        assert token.expires_at > utcnow() + timedelta(days=89)
        token.expires_at = utcnow() - timedelta(minutes=1)
        db.session.commit()
    assert member.get("/me").status_code == 401


def test_koc_token_revoke_by_shown_prefix(app: Flask):
    _staff(app, "ops@example.com")
    secret = _token(app, "ops@example.com")

    result = run_cli(app, "token", "revoke", secret[:12])

    assert result.exit_code == 0, result.output
    assert f"revoked token {secret[:12]}" in result.output
    assert Api(app.test_client(), secret).get("/tokens").status_code == 401
    assert run_cli(app, "token", "revoke", "koc_nothing1").exit_code == 1
    (row,) = audit_rows(app, action="token.revoke")
    assert row.actor.startswith("cli")


def test_koc_token_create_takes_a_lifetime(app: Flask):
    _staff(app, "ops2@example.com")
    result = run_cli(app, "token", "create", "--staff", "ops2@example.com", "--days", "7")
    assert result.exit_code == 0, result.output
    secret = result.output.strip().splitlines()[-1]
    admin = Api(app.test_client(), secret)
    row = admin.get("/tokens").json[0]
    lifetime = utcnow().fromisoformat(row["expires_at"]) - utcnow().fromisoformat(
        row["created_at"])
    assert timedelta(days=7) - timedelta(seconds=5) < lifetime <= timedelta(days=7)


# --- staff lifecycle and panel sessions --------------------------------------------------------

def _signed_in(app: Flask, email: str) -> FlaskClient:
    client = app.test_client()
    assert login(client, email).status_code == 302
    return client


def test_deactivation_ends_the_staff_members_sessions_and_tokens_at_once(app: Flask):
    _staff(app, "keeper@example.com")
    _staff(app, "leaver@example.com")
    token = _token(app, "leaver@example.com")
    browser = _signed_in(app, "leaver@example.com")
    assert browser.get("/admin/").status_code == 200

    result = run_cli(app, "staff", "deactivate", "leaver@example.com")

    assert result.exit_code == 0, result.output
    assert "1 sessions ended, 1 tokens revoked" in result.output
    assert browser.get("/admin/").status_code == 302
    assert Api(app.test_client(), token).get("/tokens").status_code == 401
    assert login(app.test_client(), "leaver@example.com").status_code == 200  # refused
    # Re-activated, the account signs in afresh; the old token stays dead.
    assert run_cli(app, "staff", "activate", "leaver@example.com").exit_code == 0
    assert _signed_in(app, "leaver@example.com").get("/admin/").status_code == 200
    assert Api(app.test_client(), token).get("/tokens").status_code == 401
    actions = [r.action for r in audit_rows(app) if r.action.startswith("staff.")]
    assert "staff.deactivate" in actions and "staff.activate" in actions


def test_the_last_active_admin_cannot_be_deactivated_or_demoted(app: Flask):
    _staff(app, "only@example.com")

    for args in (("deactivate", "only@example.com"), ("role", "only@example.com", "viewer")):
        result = run_cli(app, "staff", *args)
        assert result.exit_code == 1
        assert "last active admin" in result.output
    _staff(app, "second@example.com")
    assert run_cli(app, "staff", "role", "only@example.com", "viewer").exit_code == 0


def test_a_role_change_applies_to_the_next_request(app: Flask):
    _staff(app, "a1@example.com")
    _staff(app, "changing@example.com")
    token = _token(app, "changing@example.com")
    assert Api(app.test_client(), token).get("/tokens").status_code == 200

    result = run_cli(app, "staff", "role", "changing@example.com", "viewer")

    assert result.exit_code == 0 and "admin -> viewer" in result.output
    assert Api(app.test_client(), token).get("/tokens").status_code == 403
    (row,) = audit_rows(app, action="staff.role")
    assert row.details == {"before": "admin", "after": "viewer"}


def test_a_password_reset_ends_sessions_and_tokens_and_the_old_password(app: Flask):
    _staff(app, "forgetful@example.com", role="viewer")
    token = _token(app, "forgetful@example.com")
    browser = _signed_in(app, "forgetful@example.com")

    short = run_cli(app, "staff", "password", "forgetful@example.com", "--password", "short")
    assert short.exit_code == 2 and "at least 8" in short.output
    result = run_cli(app, "staff", "password", "forgetful@example.com",
                     input="a brand new passphrase\na brand new passphrase\n")

    assert result.exit_code == 0, result.output
    assert browser.get("/admin/").status_code == 302
    assert Api(app.test_client(), token).get("/tokens").status_code == 401
    assert login(app.test_client(), "forgetful@example.com").status_code == 200  # refused
    assert login(app.test_client(), "forgetful@example.com",
                 "a brand new passphrase").status_code == 302
    (row,) = audit_rows(app, action="staff.password")
    assert "passphrase" not in str(row.details)


def test_logout_ends_the_session_on_the_server_so_a_copied_cookie_is_worthless(app: Flask):
    _staff(app, "careful@example.com")
    browser = _signed_in(app, "careful@example.com")
    copied = browser.get_cookie("session").value
    page = browser.get("/admin/")

    assert browser.post("/admin/logout",
                        data={"csrf_token": csrf_token(page.text)}).status_code == 302

    thief = app.test_client()
    thief.set_cookie("session", copied)
    assert thief.get("/admin/").status_code == 302
    with app.app_context():
        (row,) = db.session.scalars(sa.select(StaffSession)).all()
        assert row.end_reason == "signed out" and row.ended_at is not None
    assert [r.action for r in audit_rows(app) if r.action.startswith("staff.log")] == [
        "staff.login", "staff.logout"]


def test_a_session_ends_after_its_lifetime(make_app: Callable[..., Flask]):
    app = make_app(KOC_STAFF_SESSION_HOURS="2")
    _staff(app, "night@example.com")
    browser = _signed_in(app, "night@example.com")
    with app.app_context():
        row = db.session.scalars(sa.select(StaffSession)).one()
        assert row.expires_at - row.created_at == timedelta(hours=2)
        row.expires_at = utcnow() - timedelta(seconds=1)
        db.session.commit()

    assert browser.get("/admin/").status_code == 302


@pytest.mark.parametrize("value", ["0", "x", "100000"])
def test_lifetimes_are_checked_at_start_up(make_app: Callable[..., Flask], value: str):
    from koc.settings import SettingsError

    with pytest.raises(SettingsError, match="KOC_STAFF_TOKEN_DAYS"):
        make_app(KOC_STAFF_TOKEN_DAYS=value)
