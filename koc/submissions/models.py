from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import db

METRICS = ("views", "likes", "comments", "saves", "shares")


class SubmissionStatus(enum.StrEnum):
    pending = "pending"
    approved = "approved"
    rejected = "rejected"


class MediaUpload(db.Model):
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


class Submission(db.Model):
    __tablename__ = "submissions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    kit_id: Mapped[int | None] = mapped_column(sa.ForeignKey("kits.id", ondelete="SET NULL"),
                                               index=True)
    platform: Mapped[str] = mapped_column(sa.String(32))
    post_url: Mapped[str] = mapped_column(sa.String(1000))
    # The post's identity after normalisation: the same post submitted twice is one row.
    canonical_url: Mapped[str] = mapped_column(sa.String(1000), unique=True)
    caption: Mapped[str] = mapped_column(sa.Text, default="")
    posted_at: Mapped[datetime] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), default=SubmissionStatus.pending.value)
    rating: Mapped[int | None]
    review_reason: Mapped[str | None] = mapped_column(sa.String(1000))
    reviewed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    reviewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # likes + comments + saves of the latest snapshot, kept here so the tier job reads one
    # column in a grouped query instead of finding each submission's latest snapshot.
    interactions: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    score: Mapped[Decimal | None] = mapped_column(sa.Numeric(12, 2))
    score_breakdown: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    snapshots: Mapped[list[MetricSnapshot]] = relationship(
        back_populates="submission", order_by="MetricSnapshot.id", cascade="all, delete-orphan"
    )
    media: Mapped[list[MediaUpload]] = relationship(order_by="MediaUpload.id")

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'approved', 'rejected')", name="status_known"),
        sa.CheckConstraint("rating IS NULL OR rating BETWEEN 1 AND 5", name="rating_range"),
        # The tier recalculation reads approved submissions per member by date.
        sa.Index("ix_submissions_member_status_posted", "member_id", "status", "posted_at"),
        sa.Index("ix_submissions_status_created", "status", "created_at"),
    )

    @property
    def latest_metrics(self) -> dict[str, int]:
        if not self.snapshots:
            return dict.fromkeys(METRICS, 0)
        latest = self.snapshots[-1]
        return {name: getattr(latest, name) for name in METRICS}


class MetricSnapshot(db.Model):
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
    recorded_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    submission: Mapped[Submission] = relationship(back_populates="snapshots")

    __table_args__ = (
        sa.CheckConstraint(
            "views >= 0 AND likes >= 0 AND comments >= 0 AND saves >= 0 AND shares >= 0",
            name="metrics_not_negative",
        ),
    )


class PointsEntry(db.Model):
    """Append-only points ledger; (member, source, reference) is unique so nothing books twice."""

    __tablename__ = "points_ledger"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"))
    source: Mapped[str] = mapped_column(sa.String(32))
    reference: Mapped[str] = mapped_column(sa.String(64))
    points: Mapped[Decimal] = mapped_column(sa.Numeric(12, 2))
    description: Mapped[str] = mapped_column(sa.String(200), default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.UniqueConstraint("member_id", "source", "reference"),
        sa.Index("ix_points_ledger_member_created", "member_id", "created_at"),
    )
