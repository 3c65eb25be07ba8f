"""Fixtures for the admin panel: staff who sign in through the login form, and pending posts."""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from koc.core.auth import create_staff
from koc.extensions import db

PASSWORD = "correct horse battery staple"
_CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')


def csrf_token(html: str) -> str:
    match = _CSRF.search(html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def login(client: FlaskClient, email: str, password: str = PASSWORD, **headers: str):
    page = client.get("/admin/login", headers=headers)
    return client.post(
        "/admin/login",
        data={"csrf_token": csrf_token(page.text), "email": email, "password": password},
        headers=headers,
    )


@pytest.fixture
def make_staff(app: Flask) -> Callable[..., tuple[int, str]]:
    """Create a staff account; returns (id, email). Password is PASSWORD."""
    counter = itertools.count(1)

    def factory(role: str = "reviewer", *, active: bool = True, locale: str = "zh_CN"
                ) -> tuple[int, str]:
        email = f"{role}{next(counter)}@example.com"
        with app.app_context():
            staff = create_staff(email=email, role=role, password=PASSWORD)
            staff.active = active
            staff.locale = locale
            db.session.commit()
            return staff.id, email

    return factory


@pytest.fixture
def signed_in(app: Flask, make_staff: Callable[..., tuple[int, str]]
              ) -> Callable[..., FlaskClient]:
    """A test client signed in through the login form as a new staff member with `role`."""

    def factory(role: str = "reviewer", locale: str = "en") -> FlaskClient:
        _staff_id, email = make_staff(role, locale=locale)
        client = app.test_client()
        response = login(client, email)
        assert response.status_code == 302, response.text
        return client

    return factory


@pytest.fixture
def pending_submission(member_api: Callable[..., Any]) -> Callable[..., int]:
    """Post a submission as a new (or given) member; returns the submission id."""
    counter = itertools.count(1)

    def factory(*, caption: str = "新品开箱", member: Any = None, **metrics: int) -> int:
        _member_id, api = member if member is not None else member_api()
        response = api.post("/submissions", json={
            "platform": "xiaohongshu",
            "post_url": f"https://www.xiaohongshu.com/explore/{next(counter):024x}",
            "posted_at": "2026-11-01T10:00:00+00:00",
            "caption": caption,
            "metrics": metrics or {"views": 1200, "likes": 80, "comments": 12, "saves": 30},
        })
        assert response.status_code == 201, response.json
        return response.json["id"]

    return factory
