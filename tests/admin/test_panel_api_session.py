"""The admin panel's scripts write through /api/v1 with the staff session and the X-CSRFToken
header: the API's guard takes a bearer token, or a live panel session plus its CSRF token."""

from __future__ import annotations

import re
from collections.abc import Callable

import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from koc.core.audit import AuditEvent
from koc.extensions import db
from koc.members.models import Member

_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def page_csrf(client: FlaskClient, path: str = "/admin/") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.status_code
    match = _META.search(page.text)
    assert match, "no CSRF meta tag"
    return match.group(1)


def test_a_signed_in_admin_patches_a_member_through_the_api_with_the_csrf_header(
    app: Flask, signed_in: Callable[..., FlaskClient], member_api: Callable
):
    member_id, _member = member_api()
    admin = signed_in("admin")
    token = page_csrf(admin)

    answer = admin.patch(f"/api/v1/members/{member_id}", headers={"X-CSRFToken": token},
                         json={"status": "suspended", "reason": "刷量嫌疑"})

    assert answer.status_code == 200, answer.json
    assert answer.json["status"] == "suspended"
    with app.app_context():
        assert db.session.get(Member, member_id).status == "suspended"
        event = db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "member.update")).one()
        assert event.actor.startswith("admin") and event.actor_staff_id is not None
        assert event.details["after"]["reason"] == "刷量嫌疑"


def test_a_session_request_without_the_csrf_header_is_refused_and_writes_nothing(
    app: Flask, signed_in: Callable[..., FlaskClient], member_api: Callable
):
    member_id, _member = member_api()
    admin = signed_in("admin")
    page_csrf(admin)

    for headers in ({}, {"X-CSRFToken": "forged"}):
        answer = admin.patch(f"/api/v1/members/{member_id}", headers=headers,
                             json={"status": "suspended"})
        assert answer.status_code == 403, answer.json
        assert "X-CSRFToken" in answer.json["message"]
    # Reads too: the session alone is no credential for the API.
    assert admin.get(f"/api/v1/members/{member_id}").status_code == 403
    with app.app_context():
        assert db.session.get(Member, member_id).status == "active"


def test_a_viewer_session_with_csrf_is_still_only_a_viewer(
    signed_in: Callable[..., FlaskClient], member_api: Callable
):
    member_id, _member = member_api()
    viewer = signed_in("viewer")
    token = page_csrf(viewer)

    assert viewer.get(f"/api/v1/members/{member_id}",
                      headers={"X-CSRFToken": token}).status_code == 200
    answer = viewer.patch(f"/api/v1/members/{member_id}", headers={"X-CSRFToken": token},
                          json={"status": "suspended"})
    assert answer.status_code == 403


def test_a_signed_out_session_or_a_bad_bearer_token_beside_a_session_is_refused(
    signed_in: Callable[..., FlaskClient], member_api: Callable
):
    member_id, _member = member_api()
    admin = signed_in("admin")
    token = page_csrf(admin)
    # A bearer token, when sent, is the only credential looked at.
    bad = admin.get(f"/api/v1/members/{member_id}",
                    headers={"X-CSRFToken": token, "Authorization": "Bearer koc_nope"})
    assert bad.status_code == 401

    assert admin.post("/admin/logout", data={"csrf_token": token}).status_code == 302
    after = admin.get(f"/api/v1/members/{member_id}", headers={"X-CSRFToken": token})
    assert after.status_code == 401
