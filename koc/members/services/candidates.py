"""Candidates: users who are not members yet, ranked from first-party behaviour."""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koc.core.db import utcnow
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


def candidate_reasons(user: User, *, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    reasons = []
    if user.orders_count:
        reasons.append(f"{user.orders_count} orders")
    if user.spend_cents:
        reasons.append(f"spent {user.spend_cents / 100:,.2f} yuan")
    if user.shares_count:
        reasons.append(f"shared {user.shares_count} times")
    if user.community_posts_count:
        reasons.append(f"{user.community_posts_count} community posts")
    if user.last_order_at and now - user.last_order_at <= timedelta(days=30):
        reasons.append("ordered in the last 30 days")
    return reasons


def list_candidates(limit: int) -> list[tuple[User, list[str]]]:
    """Users who are not members yet, best first (an index scan on candidate_score)."""
    users = db.session.scalars(
        sa.select(User)
        .where(~sa.exists().where(Member.user_id == User.id))
        .order_by(User.candidate_score.desc(), User.id)
        .limit(limit)
    ).all()
    now = utcnow()
    return [(user, candidate_reasons(user, now=now)) for user in users]

