from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model


class KitStatus(enum.StrEnum):
    draft = "draft"
    published = "published"
    archived = "archived"


class AssetStatus(enum.StrEnum):
    pending = "pending"
    ready = "ready"


class Kit(Model):
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
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    product_name: Mapped[str | None] = mapped_column(sa.String(200))
    # Before this moment the product is unreleased: only `embargo_tier` and above see the kit.
    launch_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    embargo_tier: Mapped[str | None] = mapped_column(sa.String(32))
    # Per-member visible watermark on image downloads while the embargo lasts.
    watermark: Mapped[bool] = mapped_column(default=False)
    # The zip of every ready asset, made by a task; stale once an asset changes.
    bundle_key: Mapped[str | None] = mapped_column(sa.String(512), unique=True)
    bundle_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    # Ids of the assets inside the zip: it is current while they are the ready assets.
    bundle_assets: Mapped[list[int] | None] = mapped_column(JSONType)
    bundle_built_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

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
        sa.CheckConstraint("launch_at IS NULL OR embargo_tier IS NOT NULL",
                           name="embargo_names_a_tier"),
    )

    def embargoed(self, now: datetime) -> bool:
        return self.launch_at is not None and now < self.launch_at


class Asset(Model):
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
    # Set while a presigned multipart upload is open; None for a single PUT.
    upload_id: Mapped[str | None] = mapped_column(sa.String(1024))
    part_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    # The store's ETag at completion: the checksum task hashes only that version.
    etag: Mapped[str | None] = mapped_column(sa.String(128))
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    width: Mapped[int | None]
    height: Mapped[int | None]
    preview_key: Mapped[str | None] = mapped_column(sa.String(512), unique=True)

    kit: Mapped[Kit] = relationship(back_populates="assets")

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'ready')", name="status_known"),
        sa.CheckConstraint("size > 0", name="size_positive"),
    )

    @property
    def is_image(self) -> bool:
        return self.content_type.startswith("image/")


class Download(Model):
    """One download URL issued to a member: who, what, when; no asset for the kit's bundle."""

    __tablename__ = "downloads"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    asset_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("assets.id", ondelete="CASCADE"), index=True)
    kit_id: Mapped[int] = mapped_column(sa.ForeignKey("kits.id", ondelete="CASCADE"), index=True)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    watermark_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("watermarks.id", ondelete="SET NULL"))


class Watermark(Model):
    """One member's marked copy of one embargoed image, made once and kept in storage.

    `code` is printed on the image; a leaked copy names its member through it, or through
    `sha256` when the copy is byte-identical.
    """

    __tablename__ = "watermarks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    asset_id: Mapped[int] = mapped_column(sa.ForeignKey("assets.id", ondelete="CASCADE"))
    member_id: Mapped[int] = mapped_column(sa.ForeignKey("members.id", ondelete="CASCADE"),
                                           index=True)
    code: Mapped[str] = mapped_column(sa.String(16), unique=True)
    storage_key: Mapped[str] = mapped_column(sa.String(512), unique=True)
    # NULL until the task has stored the marked copy.
    sha256: Mapped[str | None] = mapped_column(sa.String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    ready_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    asset: Mapped[Asset] = relationship()

    __table_args__ = (sa.UniqueConstraint("asset_id", "member_id"),)
