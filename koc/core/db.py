"""Column types and helpers shared by every domain's models."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy import orm
from sqlalchemy.dialects.postgresql import JSONB

# JSON on SQLite, JSONB on PostgreSQL (indexable, compact).
JSONType = sa.JSON().with_variant(JSONB(), "postgresql")

# Big integer primary keys on PostgreSQL; SQLite only auto-increments a plain INTEGER key.
BigIntPK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(sa.types.TypeDecorator):
    """Timezone-aware UTC datetimes on both engines.

    SQLite has no time zones and hands back naive values; this type stores UTC and always
    returns aware datetimes, so comparisons never mix naive and aware values.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given; use an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


# --- rows read or written by Core statements, as ORM instances ---------------------------------

_COLUMNS: dict[type, tuple[tuple[str, ...], tuple[Any, ...], tuple[str, ...]]] = {}


def mapped_columns(cls: type) -> tuple[tuple[str, ...], tuple[Any, ...]]:
    """(attribute names, columns) of a mapped class, in one fixed order: what a Core select
    names so that `as_loaded` can build the instance from its part of the row."""
    found = _COLUMNS.get(cls)
    if found is None:
        mapper: Any = sa.inspect(cls)
        attributes = tuple(mapper.column_attrs)
        primary_key = tuple(mapper.get_property_by_column(c).key for c in mapper.primary_key)
        found = _COLUMNS.setdefault(cls, (tuple(a.key for a in attributes),
                                          tuple(a.columns[0] for a in attributes), primary_key))
    return found[0], found[1]


def as_loaded(session: orm.Session, cls: type, values: Mapping[str, Any]) -> Any:
    """The instance of `cls` for a row a Core statement read or wrote (every column attribute in
    `values`), in `session` as if an ORM query had loaded it: persistent, no pending changes.

    Where the session already holds that row's object, that one is returned, its expired
    attributes filled from `values`, as an ORM query would. Core statements with this skip the
    ORM's per-row loading machinery (and, for inserts, the unit of work), which on the hot
    paths cost more than the round trips.
    """
    mapped_columns(cls)
    primary_key = _COLUMNS[cls][2]
    identity: Any = sa.inspect(cls).identity_key_from_primary_key([values[k] for k in primary_key])
    existing = session.identity_map.get(identity)
    if existing is not None:
        # As a query does: expired attributes (after a commit) take the row's values, the
        # loaded ones (and any change not flushed yet) are kept.
        for key in sa.inspect(existing).unloaded & values.keys():
            orm.attributes.set_committed_value(existing, key, values[key])
        return existing
    # As the ORM's own loading does: a bare instance whose attributes go straight into its
    # dict (no constructor, no attribute events), then its state marked as loaded.
    instance: Any = sa.inspect(cls).class_manager.new_instance()
    instance.__dict__.update(values)
    orm.make_transient_to_detached(instance)
    session.add(instance)
    return instance


# --- reads that must give up rather than hold a connection -------------------------------------


class StatementTooSlow(Exception):
    """A statement ran past the time `time_limited` allowed it; the transaction was rolled back."""


@contextmanager
def time_limited(session: orm.Session, milliseconds: int) -> Iterator[None]:
    """Statements in the block give up after `milliseconds` on PostgreSQL and raise
    StatementTooSlow, with the transaction rolled back (and the limit with it).

    For reads whose cost depends on what a person typed: a filter that matches almost no one in a
    ranking of tens of millions can walk a whole index, and it must not hold a connection and a
    core for minutes. SQLite runs in-process on small data and has no such limit.
    """
    if session.get_bind().dialect.name != "postgresql":
        yield
        return
    # The limit in force before (an operator may have set one for the role), restored after.
    before = session.execute(sa.text(
        "SELECT current_setting('statement_timeout'), "
        "set_config('statement_timeout', :limit, true)"), {"limit": str(milliseconds)}).scalar()
    try:
        yield
    except sa.exc.OperationalError as exc:
        if not isinstance(exc.orig, psycopg.errors.QueryCanceled):
            raise
        session.rollback()
        raise StatementTooSlow(str(exc.orig)) from exc
    session.execute(sa.text("SELECT set_config('statement_timeout', :limit, true)"),
                    {"limit": before})
