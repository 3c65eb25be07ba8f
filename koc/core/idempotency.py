"""`Idempotency-Key` on member writes: the same key and body replay the first response.

The key row is inserted (INSERT ... ON CONFLICT DO NOTHING, one statement) before the write runs,
in the same transaction. On PostgreSQL a concurrent retry with the same key then blocks on the
unique index until the first request commits, inserts nothing, and replays the stored response.
On SQLite a write request's transaction holds the database's write lock from its first
statement (koc.core.sqlite), so the retry waits before its insert and finds the stored response
there. Either way fifty retries racing each other make one row. A request that fails rolls back
its key row with everything else, so it can be retried.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from flask import Response, g, request
from flask_smorest import abort
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Mapped, mapped_column

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model, db

HEADER = "Idempotency-Key"
MAX_KEY_LENGTH = 255


class IdempotencyRecord(Model):
    __tablename__ = "idempotency_keys"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    key: Mapped[str] = mapped_column(sa.String(MAX_KEY_LENGTH))
    endpoint: Mapped[str] = mapped_column(sa.String(128))
    request_hash: Mapped[str] = mapped_column(sa.String(64))
    response_status: Mapped[int | None]
    response_body: Mapped[Any | None] = mapped_column(JSONType, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.UniqueConstraint("member_id", "key"),)


def _request_fingerprint() -> str:
    body = request.get_json(silent=True)
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":")) if body is not None else (
        request.get_data(as_text=True)
    )
    return hashlib.sha256(f"{request.method} {request.path}\n{canonical}".encode()).hexdigest()


def _replay(record: IdempotencyRecord, fingerprint: str) -> Response:
    if record.request_hash != fingerprint:
        abort(
            422,
            message="This Idempotency-Key was used with another request body.",
            errors={"headers": {HEADER: ["reused with a different request"]}},
        )
    response = Response(
        json.dumps(record.response_body), status=record.response_status,
        mimetype="application/json",
    )
    response.headers["Idempotent-Replayed"] = "true"
    return response


_STATEMENTS: dict[str, tuple[Any, Any]] = {}


def _statements(dialect: str) -> tuple[Any, Any]:
    """(claim the key, store the answer) for `dialect`, built once."""
    found = _STATEMENTS.get(dialect)
    if found is None:
        table = cast(sa.Table, IdempotencyRecord.__table__)
        insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
        claim = (insert(table).values(
                     member_id=sa.bindparam("member_id"), key=sa.bindparam("key"),
                     endpoint=sa.bindparam("endpoint"),
                     request_hash=sa.bindparam("request_hash"),
                     created_at=sa.bindparam("created_at"))
                 .on_conflict_do_nothing(index_elements=["member_id", "key"])
                 .returning(table.c.id))
        answer = (sa.update(table).where(table.c.id == sa.bindparam("record_id"))
                  .values(response_status=sa.bindparam("response_status"),
                          response_body=sa.bindparam("response_body")))
        found = _STATEMENTS.setdefault(dialect, (claim, answer))
    return found


def idempotent(view: Callable[..., Any]) -> Callable[..., Any]:
    """Wrap a member write; the wrapper owns the transaction and commits it on success.

    Must sit inside the auth guard (it needs the member) and outside the smorest argument and
    response decorators (it stores the serialized response).
    """

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        key = request.headers.get(HEADER)
        if key is None:
            response = view(*args, **kwargs)
            if response.status_code < 400:
                db.session.commit()
            return response
        if not key.strip() or len(key) > MAX_KEY_LENGTH:
            abort(422, message="Bad Idempotency-Key.",
                  errors={"headers": {HEADER: [f"must be 1-{MAX_KEY_LENGTH} characters"]}})

        member_id = g.principal.member_id
        fingerprint = _request_fingerprint()
        # One statement claims the key: a new key gets its row (and its id back); a key already
        # used, or being used by a request still running (PostgreSQL waits for that one to end),
        # inserts nothing, and the stored answer is replayed.
        # Core statements built once per dialect, on the session's connection: this runs on
        # every member write, and the ORM's statement handling cost more than the round trip.
        claim, answer = _statements(db.session.get_bind().dialect.name)
        connection = db.session.connection()
        record_id = connection.execute(claim, {
            "member_id": member_id, "key": key, "endpoint": request.endpoint or "",
            "request_hash": fingerprint, "created_at": utcnow()}).scalar()
        if record_id is None:
            existing = db.session.scalars(
                sa.select(IdempotencyRecord).filter_by(member_id=member_id, key=key)).one()
            if existing.response_status is None:  # cannot commit without an answer
                db.session.rollback()
                abort(409, message="A request with this Idempotency-Key is still running.")
            return _replay(existing, fingerprint)

        response = view(*args, **kwargs)
        if response.status_code >= 400:
            db.session.rollback()
            return response
        db.session.flush()  # the view's rows first, on the same connection, as before
        db.session.connection().execute(answer, {
            "record_id": record_id, "response_status": response.status_code,
            "response_body": response.get_json()})
        db.session.commit()
        return response

    return wrapper
