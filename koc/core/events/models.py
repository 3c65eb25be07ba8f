"""The outbox's tables: events, the webhooks that subscribe to them, one delivery row per pair."""

from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.crypto import EncryptedText
from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model

EVENT_TYPES = ("kit.published", "member.tier_changed", "group.invite", "group.remove",
               "invitation.created", "invitation.expiring")
FORMATS = ("json", "wecom")
# Sent to one webhook on request (POST /api/v1/webhooks/{id}/test); nobody subscribes to it.
TEST_EVENT = "webhook.test"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # gave up after MAX_ATTEMPTS; kept for inspection and replay


class Webhook(Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # For WeCom the URL holds the robot's key: never returned whole by the API, and, like the
    # secret, encrypted at rest (koc.core.crypto).
    url: Mapped[str] = mapped_column(EncryptedText)
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    format: Mapped[str] = mapped_column(sa.String(16), default="json")
    secret: Mapped[str | None] = mapped_column(EncryptedText)
    active: Mapped[bool] = mapped_column(default=True)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("format IN ('json', 'wecom')", name="format_known"),
        sa.CheckConstraint("format = 'wecom' OR secret IS NOT NULL", name="json_is_signed"),
    )


class OutboxEvent(Model):
    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(Model):
    __tablename__ = "webhook_deliveries"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_id: Mapped[int] = mapped_column(
        sa.ForeignKey("outbox_events.id", ondelete="CASCADE"))
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(sa.String(16), default=DeliveryStatus.pending.value)
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    last_error: Mapped[str | None] = mapped_column(sa.String(500))
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    event: Mapped[OutboxEvent] = relationship()
    webhook: Mapped[Webhook] = relationship()

    __table_args__ = (
        # A fan-out run twice cannot deliver one event twice to one webhook.
        sa.UniqueConstraint("event_id", "webhook_id"),
        sa.CheckConstraint("status IN ('pending', 'delivered', 'failed')", name="status_known"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
