"""Emitting: events and their delivery rows are written in the caller's transaction."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
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
    _insert_deliveries(event_ids, subscribed, now)
    return len(event_ids)


def emit_many(event_type: str, payloads: list[dict[str, Any]]) -> None:
    """Record several events of one type at once (a tier run can change thousands of members):
    one read of the webhooks and batched inserts, rather than a round of each per event."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")
    if not payloads:
        return
    now = utcnow()
    webhooks = db.session.scalars(sa.select(Webhook).where(Webhook.active.is_(True))).all()
    subscribed = [w for w in webhooks if event_type in (w.events or ())]
    rows = [{"event_type": event_type, "payload": payload, "created_at": now}
            for payload in payloads]
    # A list of parameter sets, not .values(rows): SQLAlchemy compiles the statement once and
    # sends the rows in multi-row batches, where a literal multi-row VALUES was compiled anew
    # for every chunk (two seconds of a tier run's 20,000 group invitations).
    if not subscribed:
        db.session.execute(sa.insert(OutboxEvent), rows)
        return
    event_ids = db.session.scalars(
        sa.insert(OutboxEvent).returning(OutboxEvent.id, sort_by_parameter_order=True), rows
    ).all()
    _insert_deliveries(event_ids, subscribed, now)


def _insert_deliveries(event_ids: Sequence[int], subscribed: Sequence[Webhook],
                       now: datetime) -> None:
    """One delivery row per event and subscribed webhook, sent once the caller commits."""
    if not event_ids:
        return
    db.session.execute(sa.insert(WebhookDelivery), [
        {"event_id": event_id, "webhook_id": webhook.id, "next_attempt_at": now}
        for webhook in subscribed for event_id in event_ids])
    enqueue_after_commit("koc.core.events.deliver_due")
