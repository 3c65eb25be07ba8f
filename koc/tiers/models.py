from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import db


class TierRuleSet(db.Model):
    """One saved version of the tier rules; the highest version is in force."""

    __tablename__ = "tier_rule_sets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TierRun(db.Model):
    __tablename__ = "tier_runs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    trigger: Mapped[str] = mapped_column(sa.String(16))
    kind: Mapped[str] = mapped_column(sa.String(16), default="full")
    rules_version: Mapped[int]
    status: Mapped[str] = mapped_column(sa.String(16), default="running")
    members_evaluated: Mapped[int] = mapped_column(default=0)
    promotions: Mapped[int] = mapped_column(default=0)
    demotions: Mapped[int] = mapped_column(default=0)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class TierChange(db.Model):
    """Every change of a member's tier: by a run (with its rules version) or by staff."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(sa.String(32))
    to_tier: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.String(500))
    rules_version: Mapped[int | None]
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tier_runs.id", ondelete="SET NULL"))
    changed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_tier_changes_member_changed", "member_id", "changed_at"),)
