"""The wider user base, one user at a time and in batches of validated records."""

from __future__ import annotations

from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import User
from koc.members.services.candidate_rules import rescore

USER_FIELDS = (
    "display_name", "city", "store_code", "tags", "orders_count", "spend_cents",
    "last_order_at", "shares_count", "community_posts_count",
)



def get_user(external_id: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.external_id == external_id))
    if user is None:
        raise DomainError(404, f"No user with external_id {external_id!r}.")
    return user


def upsert_user(external_id: str, values: dict[str, Any]) -> tuple[User, bool]:
    """Create or update one user; returns (user, created)."""
    fields = {name: values[name] for name in USER_FIELDS if name in values}
    user = db.session.scalar(sa.select(User).where(User.external_id == external_id))
    if user is not None and user.forgotten_at is not None:
        # Forgotten stays forgotten: the CRM must not bring the person back silently.
        raise DomainError(410, f"User {external_id!r} was forgotten (personal data erased) and "
                          "cannot be written again.",
                          errors={"json": {"external_id": ["was forgotten"]}})
    if user is not None:
        for name, value in fields.items():
            setattr(user, name, value)
        db.session.flush()
        _rescore_one(user)
        return user, False
    fields.setdefault("tags", [])
    user = User(external_id=external_id, candidate_score=0.0, **fields)
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        # Another request created the same user a moment ago: this PUT becomes an update.
        return upsert_user(external_id, values)
    _rescore_one(user)
    return user, True


def _rescore_one(user: User) -> None:
    """The user's score under the candidate rules in force: the same SQL as every rescore."""
    rescore(utcnow(), where=User.id == user.id)
    db.session.refresh(user, attribute_names=["candidate_score"])


def _upsert_statement(rows: list[dict[str, Any]]) -> sa.Insert:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(User).values(rows)
    merged = USER_FIELDS
    updated = {name: stmt.excluded[name] for name in merged}
    updated["updated_at"] = stmt.excluded.updated_at
    # A row is rewritten only when a value changes: re-importing an unchanged file writes
    # nothing (and keeps updated_at).
    changed = sa.and_(sa.or_(*(getattr(User, name).is_distinct_from(stmt.excluded[name])
                               for name in merged)),
                      User.forgotten_at.is_(None))
    return stmt.on_conflict_do_update(index_elements=["external_id"], set_=updated,
                                      where=changed)


def upsert_users_bulk(records: list[dict[str, Any]]) -> tuple[int, int, int, int]:
    """One INSERT ... ON CONFLICT for a batch of validated records; safe to repeat.

    Returns (created, updated, merged, forgotten): merged counts each external_id once;
    forgotten people are skipped (never written back) and counted apart.
    """
    if not records:
        return 0, 0, 0, 0
    now = utcnow()
    # The last line wins when one file names the same user twice (ON CONFLICT refuses a batch
    # that touches the same row twice).
    by_id = {r["external_id"]: r for r in records}
    forgotten = set(db.session.scalars(sa.select(User.external_id).where(
        User.external_id.in_(list(by_id)), User.forgotten_at.is_not(None))))
    for ext_id in forgotten:
        del by_id[ext_id]
    if not by_id:
        return 0, 0, 0, len(forgotten)
    rows = [
        {
            "external_id": ext_id,
            **{name: record.get(name) for name in USER_FIELDS},
            "tags": record.get("tags") or [],
            "candidate_score": 0.0,
            "created_at": now,
            "updated_at": now,
        }
        for ext_id, record in by_id.items()
    ]
    existing = db.session.scalar(sa.select(sa.func.count()).select_from(User).where(
        User.external_id.in_(list(by_id))))
    result = cast(sa.CursorResult, db.session.execute(_upsert_statement(rows)))
    # Scored under the rules in force in one UPDATE (rows whose score is already right stay).
    rescore(now, where=User.external_id.in_(list(by_id)))
    created = len(rows) - int(existing or 0)
    return created, max(result.rowcount - created, 0), len(rows), len(forgotten)
