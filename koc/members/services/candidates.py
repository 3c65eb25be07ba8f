"""Candidates: users who are not members yet, ranked from first-party behaviour."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.orm import aliased
from sqlalchemy.sql.expression import ClauseElement, Executable

from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import Member, User

RECENT_ORDER_DAYS = 30
FILTERS = ("city", "store_code", "tag", "ordered_within_days", "min_score")
# A ranking read gives up after this long (PostgreSQL; koc.core.db.time_limited): filters that
# together match almost no one can walk a whole segment of tens of millions before a page fills.
TIME_LIMIT_MS = 5_000


def candidate_reasons(user: User, *, now: datetime) -> list[dict[str, Any]]:
    """Why a user ranks where they do, as data ({"code", "value"}): the admin panel words it in
    the reader's language."""
    reasons: list[dict[str, Any]] = []
    if user.orders_count:
        reasons.append({"code": "orders", "value": user.orders_count})
    if user.spend_cents:
        reasons.append({"code": "spend_cents", "value": user.spend_cents})
    if user.shares_count:
        reasons.append({"code": "shares", "value": user.shares_count})
    if user.community_posts_count:
        reasons.append({"code": "community_posts", "value": user.community_posts_count})
    if user.last_order_at and now - user.last_order_at <= timedelta(days=RECENT_ORDER_DAYS):
        reasons.append({"code": "ordered_within_days", "value": RECENT_ORDER_DAYS})
    return reasons


def _has_tag(tag: str) -> sa.ColumnElement[bool]:
    if db.session.get_bind().dialect.name == "postgresql":
        # jsonb @> (the column is JSONB there), which a GIN index can serve
        return sa.type_coerce(User.tags, JSONB).contains([tag])
    each = sa.func.json_each(User.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value == tag))


def candidates_query(*, limit: int | None = None, city: str | None = None,
                     store_code: str | None = None, tag: str | None = None,
                     ordered_within_days: int | None = None, min_score: float | None = None,
                     external_ids: list[str] | None = None, now: datetime) -> sa.Select:
    """Users who are not members yet, best first (an index scan on candidate_score), filtered
    by segment, last-order window and minimum score, or picked by customer id (`external_ids`:
    the ones a manager ticked); `limit` caps how far down one pages."""
    # candidate_score >= 0 is the partial indexes' predicate: users the rules exclude (members
    # and forgotten people among them) are not in them, and the best come first from an index
    # scan that stops after the page. No other column of the table is needed to decide, so a
    # segment's count reads its index alone, not a heap page per user.
    stmt = sa.select(User).where(User.candidate_score >= 0,
                                 ~sa.exists().where(Member.user_id == User.id))
    if city is not None:
        stmt = stmt.where(User.city == city)
    if store_code is not None:
        stmt = stmt.where(User.store_code == store_code)
    if tag is not None:
        stmt = stmt.where(_has_tag(tag))
    if ordered_within_days is not None:
        stmt = stmt.where(User.last_order_at >= now - timedelta(days=ordered_within_days))
    if min_score is not None:
        stmt = stmt.where(User.candidate_score >= min_score)
    if external_ids is not None:
        stmt = stmt.where(User.external_id.in_(external_ids))
    stmt = stmt.order_by(User.candidate_score.desc(), User.id)
    if limit is None:
        return stmt
    top = aliased(User, stmt.limit(limit).subquery())
    return sa.select(top).order_by(top.candidate_score.desc(), top.id)


class _Explain(Executable, ClauseElement):
    """EXPLAIN (FORMAT JSON) of a select, its parameters bound as usual (SQLAlchemy's recipe)."""

    inherit_cache = False

    def __init__(self, stmt: sa.Select) -> None:
        self.stmt = stmt


@compiles(_Explain, "postgresql")
def _compile_explain(element: _Explain, compiler: Any, **kw: Any) -> str:
    return "EXPLAIN (FORMAT JSON) " + compiler.process(element.stmt, **kw)


# Above this many rows (as the planner estimates them) a count is the planner's estimate, not
# an exact COUNT(*) over millions of rows.
ESTIMATE_ABOVE = 100_000


def count_candidates(stmt: sa.Select) -> tuple[int, bool]:
    """(how many rows `stmt` gives, estimated?): on PostgreSQL the planner's estimate when it is
    large (a COUNT(*) over 40 million users takes seconds); exact otherwise."""
    counted = sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())
    if db.session.get_bind().dialect.name == "postgresql":
        plan = db.session.execute(_Explain(stmt.order_by(None))).scalar_one()
        estimate = int(plan[0]["Plan"]["Plan Rows"])
        if estimate > ESTIMATE_ABOVE:
            return estimate, True
    return int(db.session.scalar(counted) or 0), False


def too_slow(given: dict[str, Any]) -> DomainError:
    """The answer to a ranking that ran past TIME_LIMIT_MS: 422 naming the filters given."""
    names = [name for name in FILTERS if given.get(name) is not None] or ["filter"]
    message = ("these filters together match too few users to rank in time; "
               "narrow them differently (one city or store, a tag on its own)")
    return DomainError(422, f"{', '.join(names)}: {message}",
                       errors={"query": {name: [message] for name in names}})

