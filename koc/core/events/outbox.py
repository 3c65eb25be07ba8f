"""Emitting: events and their delivery rows are written in the caller's transaction."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute

from koc.core.db import UTCDateTime, utcnow
from koc.core.events.models import EVENT_TYPES, OutboxEvent, Webhook, WebhookDelivery
from koc.core.jobs import enqueue_after_commit
from koc.extensions import db


def emit(event_type: str, payload: dict[str, Any]) -> None:
    """Record an event in the caller's transaction; delivery starts once it commits."""
    emit_many(event_type, [payload])


def json_object(*pairs: tuple[str, sa.ColumnElement[Any] | InstrumentedAttribute[Any]]
                ) -> sa.ColumnElement[Any]:
    """A JSON object built in SQL, for emit_select: jsonb_build_object or SQLite's json_object."""
    build = (sa.func.jsonb_build_object if db.session.get_bind().dialect.name == "postgresql"
             else sa.func.json_object)
    return build(*[part for key, value in pairs for part in (sa.literal(key), value)])


def emit_select(event_type: str, payloads: sa.Select) -> int:
    """Record one event per row of `payloads` (a select of one JSON column) in one INSERT ...
    SELECT: a tier run's thousands of changes become events without a round trip each."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    now = utcnow()
    source = payloads.subquery()
    rows = sa.select(sa.literal(event_type), next(iter(source.c)),
                     sa.literal(now, type_=UTCDateTime))
    insert = sa.insert(OutboxEvent).from_select(["event_type", "payload", "created_at"], rows)
    webhooks = db.session.scalars(sa.select(Webhook).where(Webhook.active.is_(True))).all()
    subscribed = [w for w in webhooks if event_type in (w.events or ())]
    if not subscribed:
        return db.session.execute(insert).rowcount  # type: ignore[attr-defined]  # a CursorResult
    event_ids = db.session.scalars(insert.returning(OutboxEvent.id)).all()
    for start in range(0, len(event_ids), 2000):
        db.session.execute(sa.insert(WebhookDelivery).values([
            {"event_id": event_id, "webhook_id": webhook.id, "next_attempt_at": now}
            for webhook in subscribed for event_id in event_ids[start:start + 2000]]))
    enqueue_after_commit("koc.core.events.deliver_due")
    return len(event_ids)


def emit_many(event_type: str, payloads: list[dict[str, Any]], *, chunk: int = 2000) -> None:
    """Record several events of one type at once (a tier run can change thousands of members):
    one read of the webhooks and multi-row inserts, rather than a round of each per event."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if not payloads:
        return
    now = utcnow()
    webhooks = db.session.scalars(sa.select(Webhook).where(Webhook.active.is_(True))).all()
    subscribed = [w for w in webhooks if event_type in (w.events or ())]
    for start in range(0, len(payloads), chunk):
        rows = [{"event_type": event_type, "payload": payload, "created_at": now}
                for payload in payloads[start:start + chunk]]
        insert = sa.insert(OutboxEvent).values(rows)
        if not subscribed:
            db.session.execute(insert)
            continue
        event_ids = db.session.scalars(insert.returning(OutboxEvent.id)).all()
        db.session.execute(sa.insert(WebhookDelivery).values([
            {"event_id": event_id, "webhook_id": webhook.id, "next_attempt_at": now}
            for webhook in subscribed for event_id in event_ids]))
    if subscribed:
        enqueue_after_commit("koc.core.events.deliver_due")
