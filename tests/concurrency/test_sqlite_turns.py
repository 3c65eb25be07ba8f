"""How one request behaves on SQLite when another connection holds the write lock: it waits,
it is run again, or it is answered 503, never 500. The other writer is a raw sqlite3 connection
on the same file, as a second process (the worker, a CLI command) would be."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import closing

import pytest
import sqlalchemy as sa
from flask import Flask, jsonify

from koc.core import sqlite as koc_sqlite
from koc.extensions import db
from tests.conftest import Api, staff_token_for


def _database(app: Flask) -> str:
    return app.config["KOC_SETTINGS"].database_url.removeprefix("sqlite:///")


def _other_writer(app: Flask) -> sqlite3.Connection:
    return sqlite3.connect(_database(app), isolation_level=None, timeout=30)


def _create_user(admin: Api, external_id: str):
    return admin.put(f"/users/{external_id}", json={"display_name": external_id})


def test_a_write_waits_for_the_writer_ahead_of_it(app: Flask) -> None:
    admin = Api(app.test_client(), staff_token_for(app))
    with closing(_other_writer(app)) as other:
        other.execute("BEGIN IMMEDIATE")
        other.execute("INSERT INTO users (external_id, tags, orders_count, spend_cents, "
                      "shares_count, community_posts_count, candidate_score, created_at, "
                      "updated_at) VALUES ('ahead', '[]', 0, 0, 0, 0, 0, "
                      "'2026-01-01 00:00:00', '2026-01-01 00:00:00')")
        started = threading.Event()

        def request_while_locked() -> None:
            started.set()
            results.append(_create_user(admin, "waiter").status_code)

        results: list[int] = []
        thread = threading.Thread(target=request_while_locked)
        thread.start()
        started.wait()
        # The request is queued behind the lock; it goes on when the other writer commits.
        thread.join(timeout=0.5)
        other.execute("COMMIT")
        thread.join(timeout=60)
    assert results == [201]
    assert admin.get("/users/ahead").status_code == 200


def test_a_request_busy_on_every_attempt_is_answered_503_and_writes_nothing(
        app: Flask, monkeypatch: pytest.MonkeyPatch) -> None:
    admin = Api(app.test_client(), staff_token_for(app))
    with app.app_context():
        db.engine.dispose()  # new connections pick up the short busy timeout below
    monkeypatch.setattr(koc_sqlite, "BUSY_TIMEOUT_SECONDS", 0.05)
    with closing(_other_writer(app)) as other:
        other.execute("BEGIN IMMEDIATE")
        response = _create_user(admin, "unlucky")
        other.execute("ROLLBACK")
    assert response.status_code == 503
    assert response.headers["Retry-After"] == "1"
    assert response.json["message"] == "The database is busy; try again shortly."
    assert admin.get("/users/unlucky").status_code == 404


def test_a_read_request_that_writes_after_another_commit_is_run_again_as_a_writer(
        app: Flask) -> None:
    """The failure seen in production: a deferred transaction reads, another writer commits,
    and SQLite refuses the upgrade at once (SQLITE_BUSY_SNAPSHOT). The request is run again,
    beginning immediate, and succeeds."""
    from koc.members.models import User

    attempts: list[bool] = []

    def undeclared_writer():
        attempts.append(koc_sqlite.unit_may_write())
        db.session.scalar(sa.select(sa.func.count()).select_from(User))  # the snapshot
        if len(attempts) == 1:
            with closing(_other_writer(app)) as other:
                other.execute("UPDATE users SET display_name = 'another writer'")
        db.session.execute(sa.update(User).values(display_name="seen"))
        db.session.commit()
        return jsonify(attempts=len(attempts))

    app.add_url_rule("/undeclared-writer", view_func=undeclared_writer)
    with app.app_context():
        db.session.add(User(external_id="someone"))
        db.session.commit()
    response = app.test_client().get("/undeclared-writer")
    assert response.status_code == 200
    assert attempts == [False, True]
    with app.app_context():
        assert db.session.scalar(sa.select(User.display_name)) == "seen"


def test_reads_stay_deferred_and_writes_begin_immediate(app: Flask, count_queries) -> None:
    admin = Api(app.test_client(), staff_token_for(app))
    with count_queries(app) as statements:
        admin.get("/users/nobody")
    assert "BEGIN" in statements and "BEGIN IMMEDIATE" not in statements
    with count_queries(app) as statements:
        _create_user(admin, "writer")
    assert "BEGIN IMMEDIATE" in statements
