"""SQLite tweaks for the embedded set-up: foreign keys on, WAL so readers do not block writers."""

from __future__ import annotations

import math
import sqlite3

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

_installed = False


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
        # work (the recipe from SQLAlchemy's pysqlite notes).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.close()
        # Python's bundled SQLite may lack math functions; scoring SQL uses ln().
        dbapi_connection.create_function("ln", 1, _ln, deterministic=True)


    @event.listens_for(Engine, "begin")
    def _on_begin(connection: Connection) -> None:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN")


def _ln(value: float | None) -> float | None:
    return None if value is None or value <= 0 else math.log(value)
