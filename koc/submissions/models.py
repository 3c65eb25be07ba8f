from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model

METRICS = ("views", "likes", "comments", "saves", "shares")
REJECT_REASONS = ("invalid_proof", "duplicate", "outside_window", "off_brief", "other")
REVIEW_ACTIONS = ("approve", "reject", "reopen", "confirm_metrics", "dismiss_metrics")
FLAG_KINDS = ("likes_above_views", "engagement_jump", "engagement_rate", "near_duplicate_media",
              "duplicate_post")
SNAPSHOT_SOURCES = ("member", "staff", "import")
# counted: trusted when it arrived (staff, a trusted import, or the member's figures before the
# review that approved them); unconfirmed: the member's own after approval, recorded and shown
# but not scored; confirmed / dismissed: what staff or an agreeing import made of one.
SNAPSHOT_STATES = ("counted", "unconfirmed", "confirmed", "dismissed")
COUNTED_STATES = ("counted", "confirmed")
FOLLOWER_CHECK_SOURCES = ("reviewer", "import")


def _in(column: str, values: tuple[str, ...]) -> str:
    return f"{column} IN ({', '.join(repr(v) for v in values)})"


class SubmissionStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class MediaUpload(Model):
    """A file a member uploaded (presigned) to attach to a submission."""

    __tablename__ = "media_uploads"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"),
                                           index=True)
    submission_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="SET NULL"), index=True
    )
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    storage_key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # 64-bit perceptual hash of an image, stored signed (PostgreSQL has no unsigned bigint);
    # NULL until the hashing task ran, or for files that are not images.
    phash: Mapped[int | None] = mapped_column(sa.BigInteger)
    hashed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Fixed when the upload is attached to a submission: the store's fingerprint of the object
    # (S3's ETag; the local store's mtime and size), re-checked before review so bytes swapped
    # through a still-valid presigned URL are caught. sha256 is computed by a task afterwards.
    content_etag: Mapped[str | None] = mapped_column(sa.String(200))
    fixed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    sha256: Mapped[str | None] = mapped_column(sa.String(64))

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


# Which submissions wait for a reviewer, as the queue's partial index states it.
REVIEW_QUEUE_SQL = "status = 'pending' OR held_at IS NOT NULL"
DECIDED_SQL = "status IN ('approved', 'rejected') AND held_at IS NULL"


class Submission(Model):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    kit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("kits.id", ondelete="SET NULL"),
                                               index=True)
    platform: Mapped[str] = mapped_column(sa.String(32))
    post_url: Mapped[str] = mapped_column(sa.String(1000))
    # The post's identity after normalisation: the same post submitted twice is one row.
    canonical_url: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    # The platform's own id of the post (a note id, a video id), when the URL names one; unique
    # per platform, so one post earns once however it was linked or by whom.
    post_id: Mapped[str | None] = mapped_column(sa.String(64))
    # A short link (xhslink.com, v.douyin.com) not resolved yet: it does not say which post it
    # is, so approving it needs the post's full URL.
    url_unresolved: Mapped[bool] = mapped_column(default=False)
    # Set when engagement reported after approval jumped past the anomaly rules: the submission
    # is back in the review queue until staff confirm or dismiss the figures.
    held_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    caption: Mapped[str] = mapped_column(sa.Text, default="")
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), default=SubmissionStatus.pending.value)
    rating: Mapped[int | None]
    # The reviewer's free text; `reject_reason` is the code from REJECT_REASONS.
    review_reason: Mapped[str | None] = mapped_column(sa.String(1000))
    reject_reason: Mapped[str | None] = mapped_column(sa.String(32))
    reviewed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    # Indexed for the incremental tier run: "members reviewed since the last run".
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    # likes + comments + saves of the latest snapshot, kept here so the tier job reads one
    # column in a grouped query instead of finding each submission's latest snapshot.
    interactions: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    score: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    score_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    # The scoring rules version the approval used; re-scores on new metrics keep it, so a rules
    # edit never silently changes a decided score.
    scoring_version: Mapped[int | None]
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    snapshots: Mapped[list[MetricSnapshot]] = relationship(
        back_populates="submission", order_by="MetricSnapshot.id", cascade="all, delete-orphan"
    )
    media: Mapped[list[MediaUpload]] = relationship(order_by="MediaUpload.id")
    flags: Mapped[list[SubmissionFlag]] = relationship(
        order_by="SubmissionFlag.id", foreign_keys="SubmissionFlag.submission_id",
        back_populates="submission", cascade="all, delete-orphan",
    )
    events: Mapped[list[ReviewEvent]] = relationship(
        order_by="ReviewEvent.id", back_populates="submission", cascade="all, delete-orphan"
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status_known"),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        sa.CheckConstraint(f"reject_reason IS NULL OR {_in('reject_reason', REJECT_REASONS)}",
                           name="reject_reason_known"),
        # The tier recalculation reads approved submissions per member by date.
        sa.Index("ix_submissions_member_status_posted", "member_id", "status", "posted_at"),
        sa.Index("ix_submissions_status_created", "status", "created_at"),
        sa.UniqueConstraint("platform", "post_id"),
        sa.Index("ix_submissions_held_at", "held_at"),
        # The review queue (pending, or held on new figures), oldest first: its page and its
        # count read this small index instead of the whole table, filtered counts included (on
        # PostgreSQL the index carries what the queue's filters read).
        sa.Index("ix_submissions_queue", "created_at", "id",
                 postgresql_where=sa.text(REVIEW_QUEUE_SQL),
                 sqlite_where=sa.text(REVIEW_QUEUE_SQL),
                 postgresql_include=["platform", "member_id", "kit_id", "url_unresolved"]),
        # The queue's decided view (to re-open), most recently decided first.
        sa.Index("ix_submissions_decided", "reviewed_at", "id",
                 postgresql_where=sa.text(DECIDED_SQL), sqlite_where=sa.text(DECIDED_SQL)),
        # The dashboard's live edge (submissions received in the hours its rollup lacks).
        sa.Index("ix_submissions_created_at", "created_at"),
        # Approvals per hour at the dashboard's live edge: an index-only scan.
        sa.Index("ix_submissions_approved_reviewed", "reviewed_at",
                 postgresql_where=sa.text("status = 'approved'"),
                 sqlite_where=sa.text("status = 'approved'")),
        # The leaderboard's approved posts in a window and the dashboard's engagement by
        # platform: index-only scans on PostgreSQL.
        sa.Index("ix_submissions_approved_posted", "posted_at",
                 postgresql_where=sa.text("status = 'approved'"),
                 sqlite_where=sa.text("status = 'approved'"),
                 postgresql_include=["member_id", "interactions", "platform"]),
    )

    @property
    def latest_metrics(self) -> dict[str, int]:
        """The engagement that counts: the latest trusted or confirmed snapshot."""
        counted = [s for s in self.snapshots if s.state in COUNTED_STATES]
        if not counted:
            return dict.fromkeys(METRICS, 0)
        return counted[-1].metrics

    @property
    def reported_metrics(self) -> dict[str, int]:
        """The latest figures anyone reported, counted or not."""
        if not self.snapshots:
            return dict.fromkeys(METRICS, 0)
        return self.snapshots[-1].metrics

    @property
    def unconfirmed_snapshots(self) -> list[MetricSnapshot]:
        return [s for s in self.snapshots if s.state == "unconfirmed"]


class MetricSnapshot(Model):
    """Engagement of a submission at one moment; history is kept, never overwritten."""

    __tablename__ = "metric_snapshots"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    views: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    likes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    comments: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    saves: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    shares: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    source: Mapped[str] = mapped_column(sa.String(16))
    state: Mapped[str] = mapped_column(sa.String(16), default="counted")
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Who settled an unconfirmed snapshot (staff, or the import snapshot that agreed) and when.
    decided_at: Mapped[datetime | None] = mapped_column(UTCDateTime, index=True)
    decided_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    confirmed_by_snapshot_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("metric_snapshots.id", ondelete="SET NULL"))
    # "job<id>:line<n>" for rows from a CSV import, so an import job that runs again after dying
    # half-way does not add the same snapshot twice.
    import_ref: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    # A new submission's first snapshot waits for the checks against the member's other posts,
    # which run after the commit (koc.submissions.tasks.check_history_anomalies, periodic), so
    # the request that creates it sends no query over the member's history and no task.
    history_pending: Mapped[bool] = mapped_column(default=False, server_default=sa.false())

    submission: Mapped[Submission] = relationship(back_populates="snapshots")

    __table_args__ = (
        sa.CheckConstraint(
            "views >= 0 AND likes >= 0 AND comments >= 0 AND saves >= 0 AND shares >= 0",
            name="metrics_not_negative",
        ),
        sa.Index("ix_metric_snapshots_history_pending", "id",
                 postgresql_where=sa.text("history_pending"),
                 sqlite_where=sa.text("history_pending")),
        sa.CheckConstraint(_in("source", SNAPSHOT_SOURCES), name="source_known"),
        sa.CheckConstraint(_in("state", SNAPSHOT_STATES), name="state_known"),
    )

    @property
    def metrics(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in METRICS}


class PointsEntry(Model):
    """Append-only points ledger; (member, source, reference) is unique so nothing books twice."""

    __tablename__ = "points_ledger"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(sa.String(32))
    reference: Mapped[str] = mapped_column(sa.String(64))
    points: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The submission an entry is about, so "what is booked for this post" is one indexed sum.
    submission_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="SET NULL"), index=True
    )

    __table_args__ = (
        sa.UniqueConstraint("member_id", "source", "reference"),
        sa.Index("ix_points_ledger_member_created", "member_id", "created_at"),
        # Points issued per week, and the leaderboard's points in a window (index-only).
        sa.Index("ix_points_ledger_created_at", "created_at",
                 postgresql_include=["member_id", "points"]),
    )


class ScoringRuleSet(Model):
    """One saved version of the scoring rules; the highest version is in force."""

    __tablename__ = "scoring_rule_sets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class ReviewEvent(Model):
    """Every decision and every re-opening of one, in order: the review log."""

    __tablename__ = "review_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    action: Mapped[str] = mapped_column(sa.String(16))
    rating: Mapped[int | None]
    reason: Mapped[str | None] = mapped_column(sa.String(32))
    note: Mapped[str | None] = mapped_column(sa.String(1000))
    score: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="events")

    __table_args__ = (
        sa.CheckConstraint(_in("action", REVIEW_ACTIONS), name="action_known"),
        # Approvals re-opened since the activity rollup last ran: their hours are recomputed.
        sa.Index("ix_review_events_reopened", "created_at",
                 postgresql_where=sa.text("action = 'reopen'"),
                 sqlite_where=sa.text("action = 'reopen'")),
    )


class SubmissionFlag(Model):
    """Something a reviewer should look at; flags inform, they never decide."""

    __tablename__ = "submission_flags"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    submission_id: Mapped[int] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="CASCADE"), index=True
    )
    kind: Mapped[str] = mapped_column(sa.String(32))
    # What the flag is about (a snapshot, a pair of media), so a re-run raises it once.
    reference: Mapped[str] = mapped_column(sa.String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    related_submission_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="flags",
                                                  foreign_keys=[submission_id])

    __table_args__ = (
        sa.UniqueConstraint("submission_id", "kind", "reference"),
        sa.CheckConstraint(_in("kind", FLAG_KINDS), name="kind_known"),
    )


class FollowerCheck(Model):
    """Each confirmation or correction of a social account's follower count: who, when, from what.

    Kept with submissions because reviewers make them while reviewing posts; the account itself
    carries the current confirmed figure.
    """

    __tablename__ = "follower_checks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    social_account_id: Mapped[int] = mapped_column(
        sa.ForeignKey("social_accounts.id", ondelete="CASCADE"), index=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"),
                                           index=True)
    source: Mapped[str] = mapped_column(sa.String(16))
    declared: Mapped[int] = mapped_column(sa.BigInteger)
    previous: Mapped[int | None] = mapped_column(sa.BigInteger)
    confirmed: Mapped[int] = mapped_column(sa.BigInteger)
    staff_id: Mapped[int | None] = mapped_column(sa.ForeignKey("staff.id", ondelete="SET NULL"))
    # The submission under review when the check was made, if any.
    submission_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("submissions.id", ondelete="SET NULL"))
    note: Mapped[str | None] = mapped_column(sa.String(1000))
    # Indexed for the incremental tier run.
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)

    __table_args__ = (
        sa.CheckConstraint(_in("source", FOLLOWER_CHECK_SOURCES), name="source_known"),
        sa.CheckConstraint("confirmed >= 0", name="confirmed_not_negative"),
    )
