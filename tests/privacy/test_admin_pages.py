"""The member page's personal-data card: admins download the export and forget the person."""

from __future__ import annotations

import json

import pytest
from flask import Flask

from koc.core.auth import create_staff
from koc.extensions import db
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.privacy.conftest import make_person

pytestmark = pytest.mark.clock


def _signed_in(app: Flask, email: str, role: str):
    with app.app_context():
        create_staff(email=email, role=role, password=PASSWORD)
        db.session.commit()
    client = app.test_client()
    assert login(client, email, **{"Accept-Language": "en"}).status_code == 302
    return client


def test_admin_downloads_the_export_and_forgets_the_person_from_the_member_page(
    app: Flask,
) -> None:
    person = make_person(app)
    viewer = _signed_in(app, "viewer@example.com", "viewer")
    assert "forget-person" not in viewer.get(f"/admin/members/{person.member_id}").text
    assert viewer.get(f"/admin/members/{person.member_id}/export.json").status_code == 403

    admin = _signed_in(app, "boss@example.com", "admin")
    page = admin.get(f"/admin/members/{person.member_id}")
    assert page.status_code == 200 and "forget-person" in page.text
    export = admin.get(f"/admin/members/{person.member_id}/export.json")
    assert export.status_code == 200 and "attachment" in export.headers["Content-Disposition"]
    assert json.loads(export.text)["user"]["display_name"] == "王小明"

    token = csrf_token(page.text)
    wrong = admin.post(f"/admin/members/{person.member_id}/forget",
                       data={"csrf_token": token, "confirm": "crm-4"})
    assert wrong.status_code == 302
    assert person.admin.get(f"/users/{person.external_id}").json["forgotten_at"] is None
    without_csrf = admin.post(f"/admin/members/{person.member_id}/forget",
                              data={"confirm": person.external_id})
    assert without_csrf.status_code == 400
    done = admin.post(f"/admin/members/{person.member_id}/forget",
                      data={"csrf_token": token, "confirm": person.external_id})
    assert done.status_code == 302
    user = person.admin.get(f"/users/{person.external_id}").json
    assert user["display_name"] is None and user["forgotten_at"]
    page = admin.get(f"/admin/members/{person.member_id}").text
    assert "小明爱分享" not in page and "forgotten" in page
    actions = [e["action"] for e in person.admin.get("/audit").json]
    assert "user.forget" in actions and "member.export" in actions
