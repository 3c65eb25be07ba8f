from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import db


class KitStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class AssetStatus(enum.StrEnum):
    pending = "pending"
    ready = "ready"


class Kit(db.Model):
    __tablename__ = "kits"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    title: Mapped[str] = mapped_column(sa.String(200))
    notes: Mapped[str] = mapped_column(sa.Text, default="")
    min_tier: Mapped[str | None] = mapped_column(sa.String(32))
    segments: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    available_from: Mapped[datetime | None] = mapped_column(UTCDateTime)
    available_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(sa.String(16), default=KitStatus.draft.value, index=True)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    published_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    assets: Mapped[list[Asset]] = relationship(
        back_populates="kit", order_by="Asset.id", cascade="all, delete-orphan"
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('draft', 'published', 'archived')", name="status_known"),
        sa.CheckConstraint(
            "available_from IS NULL OR available_until IS NULL "
            "OR available_from < available_until",
            name="window_ordered",
        ),
    )


class Asset(db.Model):
    __tablename__ = "assets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kit_id: Mapped[int] = mapped_column(sa.ForeignKey("kits.id", ondelete="CASCADE"), index=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    storage_key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    status: Mapped[str] = mapped_column(sa.String(16), default=AssetStatus.pending.value)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    completed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    kit: Mapped[Kit] = relationship(back_populates="assets")

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'ready')", name="status_known"),
        sa.CheckConstraint("size > 0", name="size_positive"),
    )


class Download(db.Model):
    """One download URL issued to a member: who, what, when."""

    __tablename__ = "downloads"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    asset_id: Mapped[int] = mapped_column(sa.ForeignKey("assets.id", ondelete="CASCADE"),
                                          index=True)
    kit_id: Mapped[int] = mapped_column(sa.ForeignKey("kits.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
