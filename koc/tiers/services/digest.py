"""What changed for one member since a moment: tier moves, points, reviews, new kits and drops.

The member portal's home page shows it against the member's previous visit; the queries are
indexed lookups over the member's own rows plus the kits and drops they may see.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa

from koc.assets.services.kits import kits_visible_to
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import PointsEntry, Submission
from koc.tiers.models import TierChange
from koc.tiers.services.drops import open_drops_for


@dataclass
class Digest:
    since: datetime
    tier_changes: list[TierChange] = field(default_factory=list)
    points: Decimal = Decimal(0)
    reviewed: list[Submission] = field(default_factory=list)
    new_kits: int = 0
    new_drops: int = 0

    @property
    def empty(self) -> bool:
        return not (self.tier_changes or self.points or self.reviewed or self.new_kits
                    or self.new_drops)


def changes_since(member: Member, since: datetime, *, tier_ranks: dict[str, int]) -> Digest:
    digest = Digest(since=since)
    digest.tier_changes = list(db.session.scalars(
        sa.select(TierChange).where(TierChange.member_id == member.id,
                                    TierChange.changed_at > since)
        .order_by(TierChange.changed_at.desc()).limit(5)))
    digest.points = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0)).where(
            PointsEntry.member_id == member.id, PointsEntry.created_at > since)) or Decimal(0)
    digest.reviewed = list(db.session.scalars(
        sa.select(Submission).where(Submission.member_id == member.id,
                                    Submission.reviewed_at > since)
        .order_by(Submission.reviewed_at.desc()).limit(5)))
    digest.new_kits = sum(1 for kit in kits_visible_to(member, tier_ranks)
                          if kit.published_at is not None and kit.published_at > since)
    digest.new_drops = sum(1 for drop in open_drops_for(member, tier_ranks)
                           if drop.opens_at > since or drop.created_at > since)
    return digest
