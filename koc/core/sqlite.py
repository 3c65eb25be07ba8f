"""SQLite for the embedded set-up: writers take turns instead of failing.

- WAL: readers never block the writer, and the writer never blocks readers.
- A unit of work that may write (an HTTP request other than GET/HEAD/OPTIONS, a GET view declared
  with `writes`, a Celery task, a CLI command) starts with BEGIN IMMEDIATE, which takes the
  database's write lock before the first read and waits up to the busy timeout for the writer
  ahead of it. A plain (deferred) BEGIN would not wait: its first read fixes a snapshot, and once
  another writer commits, SQLite refuses to turn that snapshot into a write transaction at once
  (SQLITE_BUSY_SNAPSHOT), without consulting the busy timeout.
- Reads stay deferred, so GET requests run side by side with each other and with the writer.
- A unit of work that still meets "database is locked" is rolled back and run again a few times
  after a short random pause; a request run again always begins immediate.

Why row locks do not matter here: a write transaction holds the lock on the whole database from
its first statement to its commit, so whatever it reads is what it writes against. `FOR UPDATE`
is a no-op on SQLite, and nothing relies on it: the decisions taken under it on PostgreSQL (stock
left, ledger booked, idempotency key used, tier run in progress) are read inside that lock here.
Nothing in this module changes PostgreSQL's behaviour.
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, TypeVar

from flask import Flask, Response, current_app, has_request_context, jsonify, request
from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from koc.core.errors import error_body
from koc.extensions import db

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long a writer waits for the one ahead of it before SQLite gives up with SQLITE_BUSY.
BUSY_TIMEOUT_SECONDS = 30
# Runs of a unit of work that found the database busy, counting the first, and the pause before
# the second; the pause doubles, with jitter so that the losers do not collide again in step.
ATTEMPTS = 5
FIRST_PAUSE_SECONDS = 0.02
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

_SQLITE_BUSY = 5  # primary result code; SQLITE_BUSY_SNAPSHOT (517) and others share it
_WRITES_ATTR = "koc_writes_on_read"
_IMMEDIATE = "koc.sqlite.immediate"
_DML = ("INSERT", "UPDATE", "DELETE", "REPLACE")

# Set by `writing`; otherwise the request decides (and outside a request, everything writes).
_unit_writes: ContextVar[bool] = ContextVar("koc_sqlite_unit_writes", default=False)
_warned_endpoints: set[str] = set()
_installed = False


# --- which transactions begin immediate --------------------------------------------------------

def writes(view: Callable[..., Any]) -> Callable[..., Any]:
    """Declare a GET view that writes (say, it records a download), so that its transaction
    begins immediate like any POST. Put it directly under the route decorator."""
    setattr(view, _WRITES_ATTR, True)
    return view


@contextmanager
def writing() -> Iterator[None]:
    """Declare that the unit of work run inside the block writes, whatever the request."""
    token = _unit_writes.set(True)
    try:
        yield
    finally:
        _unit_writes.reset(token)


def unit_may_write() -> bool:
    """Whether a transaction beginning now begins immediate."""
    if _unit_writes.get():
        return True
    if not has_request_context():
        # Tasks, CLI commands and scripts: assume they write, and let them wait their turn.
        return True
    if request.method not in READ_METHODS:
        return True
    view = current_app.view_functions.get(request.endpoint or "")
    return bool(getattr(view, _WRITES_ATTR, False))


# --- running a unit of work again when the database is busy -------------------------------------

def is_busy(exc: BaseException) -> bool:
    """Whether `exc` (SQLAlchemy's wrapper or sqlite3's own error) is SQLite's SQLITE_BUSY."""
    original = getattr(exc, "orig", exc)
    if not isinstance(original, sqlite3.OperationalError):
        return False
    code = getattr(original, "sqlite_errorcode", None)
    if code is None:
        return "database is locked" in str(original)
    return code & 0xFF == _SQLITE_BUSY


def _pause(attempt: int) -> None:
    time.sleep(random.uniform(0, FIRST_PAUSE_SECONDS * 2 ** (attempt - 1)))  # noqa: S311 - jitter, not a secret


def run_retrying(unit: Callable[[], T], *, what: str) -> T:
    """Run `unit`, and run it again (rolled back, writing) while the database is busy."""
    for attempt in range(1, ATTEMPTS + 1):
        try:
            if attempt == 1:
                return unit()
            with writing():
                return unit()
        except Exception as exc:
            if not is_busy(exc) or attempt == ATTEMPTS:
                raise
            db.session.rollback()
            log.info("database busy in %s (attempt %d of %d): %s", what, attempt, ATTEMPTS, exc)
            _pause(attempt)
    raise AssertionError("unreachable")  # pragma: no cover - the loop returns or raises


class BusyRetryingFlask(Flask):
    """A Flask app that runs a request again when it finds the embedded database busy.

    The whole dispatch is run again (before-request hooks, view), after a rollback: a request's
    unit of work is its transaction. A request busy on every attempt is answered 503 with
    Retry-After, never 500.
    """

    def full_dispatch_request(self) -> Response:
        try:
            return run_retrying(super().full_dispatch_request, what=self._what())
        except Exception as exc:
            if not is_busy(exc):
                raise
            db.session.rollback()
            log.warning("database still busy after %d attempts: %s", ATTEMPTS, self._what())
            body = error_body(503, "The database is busy; try again shortly.")
            return self.finalize_request((jsonify(body), 503, {"Retry-After": "1"}))

    @staticmethod
    def _what() -> str:
        return f"{request.method} {request.path}"


def run_task(name: str, body: Callable[[], T]) -> T:
    """Run a Celery task's body: it writes, and runs again while the database is busy.
    Tasks are safe to run twice (CONVENTIONS.md, Jobs), so running one again is too."""
    with writing():
        return run_retrying(body, what=f"task {name}")


# --- engine hooks ------------------------------------------------------------------------------

def install_pragmas() -> None:
    global _installed  # noqa: PLW0603 - one global listener per process, installed once
    if _installed:
        return
    _installed = True

    @event.listens_for(Engine, "connect")
    def _on_connect(dbapi_connection: object, _record: object) -> None:
        if not isinstance(dbapi_connection, sqlite3.Connection):
            return
        # Let SQLAlchemy, not the sqlite3 module, decide when transactions begin, so SAVEPOINTs
        # work (the recipe from SQLAlchemy's pysqlite notes) and BEGIN IMMEDIATE can be chosen.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints, not at every commit, and the database stays
        # consistent through a crash (SQLite's own advice for WAL); a power cut can lose the
        # last commits, which clients retry (writes are idempotent). FULL cost an fsync per
        # commit: the embedded set-up's write rate was the disk's sync rate.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Writers wait for each other instead of failing at once with "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.close()
        # Python's bundled SQLite may lack math functions; scoring SQL uses ln().
        dbapi_connection.create_function("ln", 1, _ln, deterministic=True)

    @event.listens_for(Engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.dialect.name != "sqlite":
            return
        immediate = unit_may_write()
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
        connection.info[_IMMEDIATE] = immediate

    @event.listens_for(Engine, "before_cursor_execute")
    def _on_execute(connection: Connection, _cursor: object, statement: str, *_args: object
                    ) -> None:
        if (connection.dialect.name == "sqlite" and connection.info.get(_IMMEDIATE) is False
                and statement.lstrip()[:7].upper().startswith(_DML)):
            _warn_write_in_read(statement)


def _warn_write_in_read(statement: str) -> None:
    # It works while nobody else writes; under load it fails (and is run again, writing).
    where = f"{request.method} {request.endpoint}" if has_request_context() else "a read block"
    if where in _warned_endpoints:
        return
    _warned_endpoints.add(where)
    log.warning("%s writes in a read transaction (%s...); declare the view with "
                "koc.core.sqlite.writes", where, statement.strip()[:60])


def _ln(value: float | None) -> float | None:
    return None if value is None or value <= 0 else math.log(value)
