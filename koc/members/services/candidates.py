"""Candidates: users who are not members yet, ranked from first-party behaviour."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import aliased

from koc.extensions import db
from koc.members.models import Member, User

# Weights of first-party behaviour; each part is on a log scale so one huge spender does not
# drown out a customer who orders, shares and posts steadily.
CANDIDATE_WEIGHTS = {
    "orders_count": 3.0,
    "spend_yuan": 2.0,
    "shares_count": 2.5,
    "community_posts_count": 2.5,
}


def candidate_score(values: dict[str, Any]) -> float:
    parts = {
        "orders_count": values.get("orders_count") or 0,
        "spend_yuan": (values.get("spend_cents") or 0) / 100,
        "shares_count": values.get("shares_count") or 0,
        "community_posts_count": values.get("community_posts_count") or 0,
    }
    score = sum(CANDIDATE_WEIGHTS[name] * math.log1p(v) for name, v in parts.items())
    return round(score, 4)


def candidate_score_sql(alias: str) -> str:
    """candidate_score as SQL over the columns of `alias`, for set-based merges."""
    parts = {
        "orders_count": f"{alias}.orders_count",
        "spend_yuan": f"{alias}.spend_cents / 100.0",
        "shares_count": f"{alias}.shares_count",
        "community_posts_count": f"{alias}.community_posts_count",
    }
    terms = " + ".join(f"{CANDIDATE_WEIGHTS[name]} * ln(1 + {value})"
                       for name, value in parts.items())
    return f"round(({terms})::numeric, 4)::float8"


RECENT_ORDER_DAYS = 30


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
                     now: datetime) -> sa.Select:
    """Users who are not members yet, best first (an index scan on candidate_score), filtered
    by segment, last-order window and minimum score; `limit` caps how far down one pages."""
    stmt = sa.select(User).where(~sa.exists().where(Member.user_id == User.id),
                                 User.forgotten_at.is_(None))
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
    stmt = stmt.order_by(User.candidate_score.desc(), User.id)
    if limit is None:
        return stmt
    top = aliased(User, stmt.limit(limit).subquery())
    return sa.select(top).order_by(top.candidate_score.desc(), top.id)
