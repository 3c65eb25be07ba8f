"""A database that stops answering is a 503 with Retry-After, not a 500.

While PostgreSQL restarts or fails over, requests cannot reach it: the client is told to come
back (503, like the object store's outage in koc.core.errors), the transaction is rolled back by
the unit of work, and nothing is half-written. `pool_pre_ping` then replaces the dead pooled
connections on their next checkout, so the service resumes by itself when the database returns.
Other operational errors (a serialization failure, a lock timeout) keep their usual handling.
"""

from __future__ import annotations

import logging

import sqlalchemy as sa
from flask import Flask, jsonify, request

from koc.core.errors import error_body

log = logging.getLogger(__name__)

# SQLSTATE classes of "the server is not there": 08 connection exception, 57P admin or crash
# shutdown and "cannot connect now" (starting up, shutting down).
_UNREACHABLE_STATES = ("08", "57P")


def database_unreachable(exc: sa.exc.DBAPIError) -> bool:
    if exc.connection_invalidated:
        return True
    if not type(exc.orig).__module__.startswith("psycopg"):
        # SQLite's errors (a locked file, a missing table) are handled, or not, elsewhere.
        return False
    state = getattr(exc.orig, "sqlstate", None)
    if state is None:
        # psycopg has no SQLSTATE when it never reached a server (connection refused).
        return isinstance(exc, sa.exc.OperationalError)
    return state.startswith(_UNREACHABLE_STATES)


def _database_down(exc: sa.exc.DBAPIError):
    if not database_unreachable(exc):
        # Every other database error goes on to Flask's usual 500 handling, unchanged.
        raise exc
    log.warning("database unreachable on %s: %s", request.path, str(exc).splitlines()[0])
    body = error_body(503, "The database is not answering; try again shortly.")
    return jsonify(body), 503, {"Retry-After": "10"}


def install(app: Flask) -> None:
    # Not DBAPIError as a whole: an IntegrityError is the code's business, not an outage.
    app.register_error_handler(sa.exc.OperationalError, _database_down)
    app.register_error_handler(sa.exc.InterfaceError, _database_down)
