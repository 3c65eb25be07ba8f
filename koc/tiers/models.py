from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model


class TierRuleSet(Model):
    """One saved version of the tier rules; the highest version is in force."""

    __tablename__ = "tier_rule_sets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    tiers: Mapped[list[dict[str, Any]]] = mapped_column(JSONType)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TierRun(Model):
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


class TierSnapshot(Model):
    """Members per tier on one day (UTC), written by the tier job: the dashboard's members per
    tier over time. One row per (day, tier); a later run the same day overwrites that day's
    rows, so re-runs converge. `tier_key` "none" counts members without a tier."""

    __tablename__ = "tier_snapshots"

    day: Mapped[date] = mapped_column(sa.Date, primary_key=True)
    tier_key: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    members: Mapped[int] = mapped_column(default=0)
    at_risk: Mapped[int] = mapped_column(default=0)
    taken_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("members >= 0 AND at_risk >= 0 AND at_risk <= members",
                           name="counts_valid"),
    )


ACTIVITY_KINDS = ("submitted", "approved", "points")


class ActivityRollup(Model):
    """The dashboard's activity series by closed UTC hour, written by the rollup task
    (koc.tiers.services.rollups): submissions received (by `created_at`), approvals (approved
    submissions by `reviewed_at`) and points issued (ledger credits by `created_at`).

    `hour` counts hours since the Unix epoch. A row is recomputed whole from the base table
    (never incremented), so a re-run, or two at once, writes the same figure."""

    __tablename__ = "activity_rollups"

    kind: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    hour: Mapped[int] = mapped_column(sa.BigInteger, primary_key=True, autoincrement=False)
    amount: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2), default=Decimal(0))

    __table_args__ = (
        sa.CheckConstraint("kind IN ('submitted', 'approved', 'points')", name="kind_known"),
    )


class RollupMark(Model):
    """How far the activity rollup reaches: every hour in [filled_from, filled_until) is in
    `activity_rollups` (an hour without activity has no row), for all kinds at once.
    `refreshed_at` is when the task last wrote, read by the dashboard to find approvals re-opened
    since (their hours are read from the base table until the next run)."""

    __tablename__ = "rollup_marks"

    name: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    filled_from: Mapped[int] = mapped_column(sa.BigInteger)
    filled_until: Mapped[int] = mapped_column(sa.BigInteger)
    refreshed_at: Mapped[datetime] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("filled_from <= filled_until", name="range_valid"),
    )


class LeaderboardStanding(Model):
    """A member's leaderboard figures over one of the windows the panel offers, as of the last
    refresh (koc.tiers.services.standings): points booked, approved posts posted and their
    engagement. The whole window is recomputed at each refresh, never added to."""

    __tablename__ = "leaderboard_standings"

    window_days: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), primary_key=True, autoincrement=False)
    points: Mapped[Decimal] = mapped_column(sa.Numeric(18, 2))
    approved: Mapped[int] = mapped_column(sa.BigInteger)
    engagement: Mapped[int] = mapped_column(sa.BigInteger)


class PlatformEngagementWeek(Model):
    """The dashboard's engagement by platform as of the last leaderboard refresh: per platform
    and week (0 the oldest of the twelve ending at `as_of`), the approved posts posted that week
    and their likes + comments + saves. Only weeks with posts have a row; the refresh rewrites
    every row (koc.tiers.services.insight.refresh_engagement_by_platform)."""

    __tablename__ = "platform_engagement_weeks"

    week: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    platform: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    posts: Mapped[int] = mapped_column(sa.BigInteger)
    engagement: Mapped[int] = mapped_column(sa.BigInteger)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)


class LeaderboardRefresh(Model):
    """When a window's standings were computed: the leaderboard reads them only once a refresh
    has written them, and says how old they are."""

    __tablename__ = "leaderboard_refreshes"

    window_days: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    as_of: Mapped[datetime] = mapped_column(UTCDateTime)


class TierRunPart(Model):
    """One member-id range of a run split across workers; done once, whoever runs it."""

    __tablename__ = "tier_run_parts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    run_id: Mapped[int] = mapped_column(sa.ForeignKey("tier_runs.id", ondelete="CASCADE"))
    first_member_id: Mapped[int] = mapped_column(sa.BigInteger)
    last_member_id: Mapped[int] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16), default="pending")
    members_evaluated: Mapped[int] = mapped_column(default=0)
    promotions: Mapped[int] = mapped_column(default=0)
    demotions: Mapped[int] = mapped_column(default=0)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.UniqueConstraint("run_id", "first_member_id"),
        sa.CheckConstraint("status IN ('pending', 'succeeded')", name="status_known"),
    )


class TierChange(Model):
    """Every change of a member's tier: by a run (with its rules version) or by staff."""

    __tablename__ = "tier_changes"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    from_tier: Mapped[str | None] = mapped_column(sa.String(32))
    to_tier: Mapped[str | None] = mapped_column(sa.String(32))
    reason: Mapped[str] = mapped_column(sa.String(500))
    rules_version: Mapped[int | None]
    # Indexed: after a run, its badges, senior group and events are synced for the members it
    # changed, read back by run id, and the history grows by every run.
    run_id: Mapped[int | None] = mapped_column(sa.ForeignKey("tier_runs.id", ondelete="SET NULL"),
                                               index=True)
    changed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (sa.Index("ix_tier_changes_member_changed", "member_id", "changed_at"),)


class Badge(Model):
    """A signed assertion that a member holds a tier; anyone can check it with the public key."""

    __tablename__ = "badges"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # Opaque and unguessable: the public badge page is addressed by it, not by the member id.
    badge_id: Mapped[str] = mapped_column(sa.String(32), unique=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"),
                                           index=True)
    tier_key: Mapped[str] = mapped_column(sa.String(32))
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    signature: Mapped[str] = mapped_column(sa.String(128))
    # Which signing key signed it (signed too): after a rotation the public key set still holds
    # the retired key, so the badge stays verifiable. Null on badges from before key ids.
    key_id: Mapped[str | None] = mapped_column(sa.String(16))
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(200))

    __table_args__ = (
        # At most one live badge per member, whatever two runs do at once.
        sa.Index("uq_badges_member_live", "member_id", unique=True,
                 postgresql_where=sa.text("revoked_at IS NULL"),
                 sqlite_where=sa.text("revoked_at IS NULL")),
    )


class Drop(Model):
    """Early access to an unreleased product: limited stock, a tier gate and a window."""

    __tablename__ = "drops"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    product_name: Mapped[str] = mapped_column(sa.String(200))
    sku: Mapped[str] = mapped_column(sa.String(64))
    quantity: Mapped[int]
    per_member_limit: Mapped[int] = mapped_column(default=1)
    min_tier: Mapped[str | None] = mapped_column(sa.String(32))
    opens_at: Mapped[datetime] = mapped_column(UTCDateTime)
    closes_at: Mapped[datetime] = mapped_column(UTCDateTime)
    allocation: Mapped[str] = mapped_column(sa.String(16), default="first_come")
    # Units given out (first come) or won (lottery); never above quantity, checked by the DB.
    allocated: Mapped[int] = mapped_column(default=0)
    post_within_days: Mapped[int] = mapped_column(default=14)
    lottery_seed: Mapped[str | None] = mapped_column(sa.String(64))
    drawn_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("quantity > 0 AND per_member_limit > 0", name="positive"),
        sa.CheckConstraint("allocated >= 0 AND allocated <= quantity", name="within_stock"),
        sa.CheckConstraint("allocation IN ('first_come', 'lottery')", name="allocation_known"),
        sa.CheckConstraint("opens_at < closes_at", name="window_ordered"),
    )


class DropClaim(Model):
    __tablename__ = "drop_claims"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    drop_id: Mapped[int] = mapped_column(sa.ForeignKey("drops.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"),
                                           index=True)
    # claimed (first come), entered / won / lost (lottery); voided when the member was
    # suspended while the claim was still pending (an open drop, an undrawn lottery).
    status: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    voided_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('claimed', 'entered', 'won', 'lost', 'voided')",
                           name="status_known"),
        sa.CheckConstraint("(status = 'voided') = (voided_at IS NOT NULL)",
                           name="voided_when_voided"),
        sa.Index("ix_drop_claims_drop_member", "drop_id", "member_id"),
    )


class GroupMembership(Model):
    """The senior group: who was invited, and who must be taken out after a demotion."""

    __tablename__ = "group_memberships"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    group_key: Mapped[str] = mapped_column(sa.String(32))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    code: Mapped[str] = mapped_column(sa.String(32), unique=True)
    invited_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Set when the member no longer qualifies; cleared if they qualify again before removal.
    removal_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    removed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    # --- WeCom (koc.tiers.services.wecom_groups) ---
    # The join method's `state` (at most 30 characters) naming this invitation: it comes back
    # on the member's entry in groupchat/get, which is how a join is attributed.
    wecom_state: Mapped[str | None] = mapped_column(sa.String(30), unique=True)
    wecom_config_id: Mapped[str | None] = mapped_column(sa.String(64))
    wecom_qr_url: Mapped[str | None] = mapped_column(sa.String(500))
    wecom_chat_id: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    wecom_userid: Mapped[str | None] = mapped_column(sa.String(64))
    joined_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    join_scene: Mapped[int | None]
    left_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # change_external_chat's QuitScene: 0 left on their own, 1 taken out by the owner/admin.
    quit_scene: Mapped[int | None]

    @property
    def state(self) -> str:
        """invited, joined, to_be_removed, removed, or left (on their own, still qualifying)."""
        if self.removed_at is not None:
            return "removed"
        if self.removal_due_at is not None:
            return "to_be_removed"
        if self.left_at is not None:
            return "left"
        return "joined" if self.joined_at is not None else "invited"

    @property
    def left_on_own(self) -> bool:
        return self.left_at is not None and self.quit_scene == 0

    __table_args__ = (
        sa.Index("uq_group_memberships_live", "group_key", "member_id", unique=True,
                 postgresql_where=sa.text("removed_at IS NULL"),
                 sqlite_where=sa.text("removed_at IS NULL")),
    )


class KitAnnouncement(Model):
    """A kit announced to the KOC groups as a WeCom group-message task.

    Drafted, then confirmed by a second step (an admin), then handed to WeCom, which asks each
    group owner to confirm sending in their client (the platform's own confirmation)."""

    __tablename__ = "kit_announcements"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kit_id: Mapped[int] = mapped_column(sa.ForeignKey("kits.id", ondelete="CASCADE"), index=True)
    text: Mapped[str] = mapped_column(sa.String(2000))
    chat_ids: Mapped[list[str]] = mapped_column(JSONType)
    status: Mapped[str] = mapped_column(sa.String(16), default="draft")
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    confirmed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # What WeCom answered: [{"sender", "chat_ids", "msgid"}]; groups over the daily limit.
    tasks: Mapped[list[dict[str, Any]] | None] = mapped_column(JSONType)
    skipped_chat_ids: Mapped[list[str] | None] = mapped_column(JSONType)
    error: Mapped[str | None] = mapped_column(sa.String(500))

    __table_args__ = (
        sa.CheckConstraint("status IN ('draft', 'sent', 'failed')", name="status_known"),
    )


class GroupMessageSend(Model):
    """One group message to one group on one day (China time): the daily limit's counter."""

    __tablename__ = "group_message_sends"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    chat_id: Mapped[str] = mapped_column(sa.String(64))
    sent_on: Mapped[date] = mapped_column(sa.Date)
    slot: Mapped[int] = mapped_column(default=1)
    announcement_id: Mapped[int] = mapped_column(
        sa.ForeignKey("kit_announcements.id", ondelete="CASCADE"), index=True)

    __table_args__ = (sa.UniqueConstraint("chat_id", "sent_on", "slot"),)
