"""Tier changes as recorded, and where members stand: a member's history, the members a run
changed, and how many members each tier holds."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import sqlalchemy as sa

from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import TierChange


def tier_history(member_id: int) -> list[TierChange]:
    return list(db.session.scalars(
        sa.select(TierChange).where(TierChange.member_id == member_id)
        .order_by(TierChange.changed_at.desc(), TierChange.id.desc())
    ))


def members_scope(member_ids: list[int] | None, changed_in_run: int | None,
                  member_range: tuple[int, int] | None = None) -> list[Any]:
    """Which members a benefit sync looks at: all, some ids, or those whose tier a run just
    changed (read from the history rows it wrote). `member_range` keeps one part of a split
    run to its own id range: the parts share the run's id, and a part that also took the
    changes other parts had committed raced them for the same badges and seats."""
    within = [Member.id.between(*member_range)] if member_range is not None else []
    if member_ids is not None:
        return [Member.id.in_(member_ids), *within]
    if changed_in_run is not None:
        return [Member.id.in_(sa.select(TierChange.member_id)
                              .where(TierChange.run_id == changed_in_run)), *within]
    return within


def members_per_tier() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for tier_key, count in db.session.execute(
        sa.select(Member.tier_key, sa.func.count()).group_by(Member.tier_key)
    ):
        counts[tier_key or "none"] = count
    return dict(counts)
