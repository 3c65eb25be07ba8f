"""Shared fixtures: apps on the embedded set-up (SQLite + a storage folder) or on PostgreSQL.

Factories are fixtures that return callables, so a test says what it needs in one line.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from koc import create_app
from koc.extensions import db

pytest_plugins = ["tests.plugins.services", "tests.plugins.seaweedfs", "tests.plugins.clock",
                  "tests.plugins.passwords"]


def build_app(instance: Path, **env: str) -> Flask:
    environ = {
        "KOC_ENV": "test",
        "KOC_SECRET_KEY": "test-secret-key-0123456789",
        "KOC_PUBLIC_URL": "http://localhost",
        # Tests make many members and calls from one address in seconds; tests/security turns
        # the limits on and checks them.
        "KOC_RATELIMIT_ENABLED": "false",
        **env,
    }
    return create_app(environ, instance_path=str(instance))


@pytest.fixture
def make_app(tmp_path: Path) -> Iterator[Callable[..., Flask]]:
    """Build an app; with no KOC_DATABASE_URL it gets a fresh SQLite file with the schema."""
    apps: list[Flask] = []

    def factory(**env: str) -> Flask:
        instance = tmp_path / f"instance{len(apps)}"
        instance.mkdir()
        app = build_app(instance, **env)
        with app.app_context():
            if "KOC_DATABASE_URL" not in env:
                db.create_all()
            from koc.core.celery import ensure_broker_dirs
            from koc.core.storage import get_storage

            ensure_broker_dirs(app.config["KOC_SETTINGS"])
            if not app.config["KOC_SETTINGS"].uses_s3:
                get_storage().ensure_bucket()
        apps.append(app)
        return app

    yield factory
    for app in apps:
        with app.app_context():
            db.session.remove()
            db.engine.dispose()


@pytest.fixture
def app(make_app: Callable[..., Flask]) -> Flask:
    return make_app()


@pytest.fixture
def pg_app(make_app: Callable[..., Flask], postgres_url: str) -> Flask:
    return make_app(KOC_DATABASE_URL=postgres_url)


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


class Api:
    """A test client speaking the API with a bearer token."""

    def __init__(self, client: FlaskClient, token: str | None = None) -> None:
        self.client = client
        self.token = token

    def _headers(self, headers: dict[str, str] | None) -> dict[str, str]:
        merged = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return {**merged, **(headers or {})}

    def get(self, path: str, **kw: Any):
        return self.client.get(f"/api/v1{path}", headers=self._headers(kw.pop("headers", None)),
                               **kw)

    def post(self, path: str, json: Any = None, **kw: Any):
        return self.client.post(f"/api/v1{path}", json=json,
                                headers=self._headers(kw.pop("headers", None)), **kw)

    def put(self, path: str, json: Any = None, **kw: Any):
        return self.client.put(f"/api/v1{path}", json=json,
                               headers=self._headers(kw.pop("headers", None)), **kw)

    def patch(self, path: str, json: Any = None, **kw: Any):
        return self.client.patch(f"/api/v1{path}", json=json,
                                 headers=self._headers(kw.pop("headers", None)), **kw)


def staff_token_for(app: Flask, role: str = "admin", email: str | None = None) -> str:
    from koc.core.auth import create_staff, issue_token

    with app.app_context():
        email = email or f"{role}-{uuid.uuid4().hex[:12]}@example.com"
        staff = create_staff(email=email, role=role, password="correct horse battery")
        token = issue_token(staff_id=staff.id)
        db.session.commit()
        return token


@pytest.fixture
def staff_api(app: Flask) -> Callable[[str], Api]:
    def factory(role: str = "admin") -> Api:
        return Api(app.test_client(), staff_token_for(app, role))

    return factory


def new_member(app: Flask, admin: Api, external_id: str, **user: Any) -> tuple[int, Api]:
    """Upsert a user, invite and accept; returns (member id, the member's API client)."""
    assert admin.put(f"/users/{external_id}", json=user).status_code in (200, 201)
    invite = admin.post("/invitations", json={"external_id": external_id})
    assert invite.status_code == 201, invite.json
    accepted = Api(app.test_client()).post(
        f"/invitations/{invite.json['code']}/accept",
        json={"display_name": f"KOC {external_id}", "accept_terms": True},
    )
    assert accepted.status_code == 201, accepted.json
    return accepted.json["member"]["id"], Api(app.test_client(), accepted.json["token"])


@pytest.fixture
def member_api(app: Flask, staff_api: Callable[[str], Api]) -> Callable[..., tuple[int, Api]]:
    admin = staff_api("admin")
    counter = iter(range(1, 10**6))

    def factory(**user: Any) -> tuple[int, Api]:
        return new_member(app, admin, f"user-{next(counter)}", **user)

    return factory


@pytest.fixture
def count_queries() -> Callable[[Flask], Any]:
    """`with count_queries(app) as queries:` collects the SQL statements run inside the block."""
    from contextlib import contextmanager

    from sqlalchemy import event

    @contextmanager
    def counter(app: Flask) -> Iterator[list[str]]:
        statements: list[str] = []

        def record(_conn, _cursor, statement, *_args) -> None:
            statements.append(statement)

        with app.app_context():
            engine = db.engine
        event.listen(engine, "before_cursor_execute", record)
        try:
            yield statements
        finally:
            event.remove(engine, "before_cursor_execute", record)

    return counter
