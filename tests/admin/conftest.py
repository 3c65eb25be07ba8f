"""Fixtures for the admin panel: staff who sign in through the login form, and pending posts."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.serving import make_server

from koc.core.auth import create_staff
from koc.extensions import db
from tests.plugins.services import missing_service

PASSWORD = "correct horse battery staple"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots"
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


# --- the browser: Debian's Chromium over a live server -----------------------------------------

@pytest.fixture
def live_server(app: Flask) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, name="live-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def zh_page() -> Iterator[Any]:
    """A Chromium page in zh-CN that records console errors in `page.problems`."""
    if not CHROMIUM.exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 900})
            page = context.new_page()
            page.set_default_timeout(15_000)
            problems: list[str] = []
            # A CSP violation, a missing script or a script error shows up here.
            page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error"
                    else None)
            page.on("pageerror", lambda exc: problems.append(str(exc)))
            page.problems = problems
            yield page
            context.close()
        finally:
            browser.close()


def sign_in(page: Any, live_server: str, email: str, path: str) -> None:
    """Open `path`, sign in on the login page it redirects to, and land on `path`."""
    page.goto(f"{live_server}{path}")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.locator("button[type=submit]").last.click()
    page.wait_for_url(f"{live_server}{path}")


def screenshot(page: Any, name: str) -> None:
    """A full-page screenshot into screenshots/ (git-ignored), for a person to look at."""
    SCREENSHOTS.mkdir(exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
