"""Tier changes as recorded, and where members stand: a member's history, the members a run
changed, and how many members each tier holds."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import TierChange
from koc.tiers.services.metrics import in_scope


def tier_history(member_id: int) -> list[TierChange]:
    return list(db.session.scalars(
        sa.select(TierChange).where(TierChange.member_id == member_id)
        .order_by(TierChange.changed_at.desc(), TierChange.id.desc())
    ))


def members_scope(member_ids: list[int] | None,
                  member_range: tuple[int, int] | None = None) -> list[Any]:
    """Which members a benefit sync looks at: all, or some ids (a run passes the members whose
    tier it just wrote). `member_range` keeps one part of a split run to its own id range."""
    within = [Member.id.between(*member_range)] if member_range is not None else []
    if member_ids is not None:
        # One array parameter on PostgreSQL (a run can change 100,000 members; an IN list
        # binds one parameter each), whose length the planner sees: reading the members back
        # from the run's just-written history rows, which have no statistics yet, got nested
        # loops over the whole table (ten seconds at 64,000 promotions).
        return [*in_scope(Member.id, member_ids, None), *within]
    return within


def members_per_tier() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for tier_key, count in db.session.execute(
        sa.select(Member.tier_key, sa.func.count()).group_by(Member.tier_key)
    ):
        counts[tier_key or "none"] = count
    return dict(counts)
