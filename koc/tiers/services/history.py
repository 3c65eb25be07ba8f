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


def members_scope(member_ids: list[int] | None, changed_in_run: int | None) -> list[Any]:
    """Which members a benefit sync looks at: all, some ids, or those whose tier a run just
    changed (read from the history rows it wrote)."""
    if member_ids is not None:
        return [Member.id.in_(member_ids)]
    if changed_in_run is not None:
        return [Member.id.in_(sa.select(TierChange.member_id)
                              .where(TierChange.run_id == changed_in_run))]
    return []


def members_per_tier() -> dict[str, int]:
    counts: dict[str, int] = defaultdict(int)
    for tier_key, count in db.session.execute(
        sa.select(Member.tier_key, sa.func.count()).group_by(Member.tier_key)
    ):
        counts[tier_key or "none"] = count
    return dict(counts)
