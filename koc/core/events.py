"""Domain events through an outbox, delivered to registered webhooks by Celery tasks.

`emit()` writes the event and one delivery row per subscribed webhook in the caller's
transaction, so an event exists exactly when the change that caused it was committed; the
delivery task is sent only after that commit. Delivery is at least once: each request carries
the event id (`X-KOC-Event-Id`) for receivers to drop repeats, and a failed one is retried with
exponential backoff until MAX_ATTEMPTS, its row kept, so a receiver that is down loses nothing.

Two formats: `json` (the event as JSON, signed `X-KOC-Signature: sha256=<hex HMAC of the body>`
with the webhook's secret) and `wecom`, a WeCom group robot, which gets pending events batched
into text messages of at most 2,048 bytes, because a robot takes at most 20 messages a minute.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import json
import logging
import urllib.error
import urllib.request
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.celery import Every, periodic_task
from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.core.errors import DomainError
from koc.core.jobs import enqueue_after_commit
from koc.extensions import db

log = logging.getLogger(__name__)

EVENT_TYPES = ("kit.published", "member.tier_changed", "group.invite", "group.remove")
FORMATS = ("json", "wecom")
MAX_ATTEMPTS = 15
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(hours=1)
# A delivery being sent is pushed this far into the future, so a second worker skips it.
CLAIM_LEASE = timedelta(minutes=2)
SEND_TIMEOUT = 10
WECOM_MAX_BYTES = 2048
USER_AGENT = "koc-webhooks/1"


class DeliveryStatus(enum.StrEnum):
    pending = "pending"
    delivered = "delivered"
    failed = "failed"  # gave up after MAX_ATTEMPTS; kept for inspection and replay


class Webhook(db.Model):
    __tablename__ = "webhooks"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    # For WeCom the URL holds the robot's key: never returned whole by the API.
    url: Mapped[str] = mapped_column(sa.String(2000))
    events: Mapped[list[str]] = mapped_column(JSONType, default=list)
    format: Mapped[str] = mapped_column(sa.String(16), default="json")
    secret: Mapped[str | None] = mapped_column(sa.String(200))
    active: Mapped[bool] = mapped_column(default=True)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint("format IN ('json', 'wecom')", name="format_known"),
        sa.CheckConstraint("format = 'wecom' OR secret IS NOT NULL", name="json_is_signed"),
    )


class OutboxEvent(db.Model):
    __tablename__ = "outbox_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    event_type: Mapped[str] = mapped_column(sa.String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class WebhookDelivery(db.Model):
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


# --- emitting ----------------------------------------------------------------------------------

def emit(event_type: str, payload: dict[str, Any]) -> None:
    """Record an event in the caller's transaction; delivery starts once it commits."""
    emit_many(event_type, [payload])


def json_object(*pairs: tuple[str, sa.ColumnElement]) -> sa.ColumnElement:
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
        return db.session.execute(insert).rowcount
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


# --- registering webhooks ----------------------------------------------------------------------

def _is_wecom_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.path.endswith("/cgi-bin/webhook/send") and any(
        name == "key" and value for name, value in parse_qsl(parts.query))


def register_webhook(*, url: str, events: list[str], secret: str | None, fmt: str,
                     staff_id: int | None) -> Webhook:
    errors: dict[str, list[str]] = {}
    if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
        errors["url"] = ["must be an http:// or https:// URL"]
    elif fmt == "wecom" and not _is_wecom_url(url):
        errors["url"] = ["a WeCom robot URL ends in /cgi-bin/webhook/send?key=..."]
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown or not events:
        errors["events"] = [f"choose from {', '.join(EVENT_TYPES)}"]
    if fmt == "json" and not secret:
        errors["secret"] = ["required to sign deliveries"]
    if errors:
        raise DomainError(422, "The webhook is not valid.", errors={"json": errors})
    webhook = Webhook(url=url, events=sorted(set(events)), secret=secret or None, format=fmt,
                      created_by_staff_id=staff_id)
    db.session.add(webhook)
    db.session.flush()
    return webhook


def masked_url(webhook: Webhook) -> str:
    """The URL with secrets in its query (a WeCom key) reduced to their last four characters."""
    parts = urlsplit(webhook.url)
    if not parts.query:
        return webhook.url
    query = [(name, "****" + value[-4:] if name.lower() in ("key", "token", "secret") else value)
             for name, value in parse_qsl(parts.query, keep_blank_values=True)]
    return urlunsplit(parts._replace(query=urlencode(query, safe="*")))


# --- delivering --------------------------------------------------------------------------------

def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode("utf-8"), body, hashlib.sha256).hexdigest()


def backoff(attempts: int) -> timedelta:
    return min(RETRY_BASE * 2 ** max(attempts - 1, 0), RETRY_CAP)


class DeliveryFailed(Exception):
    pass


def _post(url: str, body: bytes, headers: dict[str, str]) -> bytes:
    # Schemes were checked at registration: only http(s) URLs are ever stored.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST",
        headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers})
    try:
        with urllib.request.urlopen(request, timeout=SEND_TIMEOUT) as response:  # noqa: S310
            return response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, OSError) as exc:
        raise DeliveryFailed(f"unreachable: {exc}") from exc
    except Exception as exc:
        # Anything else (a malformed answer, a bad redirect) is one failed attempt too, so the
        # claim is released by the normal backoff instead of waiting out its lease.
        raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc


def _claim(webhook_id: int, *, limit: int) -> list[WebhookDelivery]:
    """Take due deliveries of one webhook for this run, committed, so a rival run skips them."""
    now = utcnow()
    query = (sa.select(WebhookDelivery)
             .where(WebhookDelivery.webhook_id == webhook_id,
                    WebhookDelivery.status == DeliveryStatus.pending.value,
                    WebhookDelivery.next_attempt_at <= now)
             .order_by(WebhookDelivery.event_id).limit(limit))
    if db.engine.dialect.name == "postgresql":
        query = query.with_for_update(skip_locked=True)
    claimed = db.session.scalars(query).all()
    for delivery in claimed:
        delivery.next_attempt_at = now + CLAIM_LEASE
    db.session.commit()
    return claimed


def _record(deliveries: list[WebhookDelivery], error: str | None) -> None:
    now = utcnow()
    for delivery in deliveries:
        delivery.attempts += 1
        if error is None:
            delivery.status = DeliveryStatus.delivered.value
            delivery.delivered_at = now
            delivery.last_error = None
        else:
            delivery.last_error = error[:500]
            if delivery.attempts >= MAX_ATTEMPTS:
                delivery.status = DeliveryStatus.failed.value
            else:
                delivery.next_attempt_at = now + backoff(delivery.attempts)
    db.session.commit()


def _event_body(event: OutboxEvent) -> bytes:
    return json.dumps({"id": event.id, "type": event.event_type,
                       "created_at": event.created_at.isoformat(), "data": event.payload},
                      ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")


def _send_json(webhook: Webhook) -> int:
    sent = 0
    for delivery in _claim(webhook.id, limit=50):
        body = _event_body(delivery.event)
        try:
            _post(webhook.url, body, {
                "X-KOC-Signature": signature(webhook.secret or "", body),
                "X-KOC-Event": delivery.event.event_type,
                "X-KOC-Event-Id": str(delivery.event_id),
            })
        except DeliveryFailed as exc:
            log.warning("webhook %s: event %s not delivered (%s)", webhook.id,
                        delivery.event_id, exc)
            _record([delivery], str(exc))
        else:
            _record([delivery], None)
            sent += 1
    return sent


def describe(event: OutboxEvent) -> str:
    data = event.payload
    if event.event_type == "kit.published":
        line = f"新素材包 / New kit: {data.get('title', '')} (#{data.get('kit_id')})"
        if data.get("product_name"):
            line += f" · {data['product_name']}"
        if data.get("launch_at"):
            line += f" · launch {data['launch_at'][:10]}"
        return line
    if event.event_type == "member.tier_changed":
        return (f"等级变化 / Tier change: member #{data.get('member_id')} "
                f"{data.get('from') or '-'} → {data.get('to') or '-'}")
    if event.event_type == "group.invite":
        return f"邀请入群 / Invite to the senior group: member #{data.get('member_id')}"
    if event.event_type == "group.remove":
        return f"移出群 / Remove from the senior group: member #{data.get('member_id')}"
    return f"{event.event_type} #{event.id}"


def wecom_batches(lines: list[str], *, limit: int = WECOM_MAX_BYTES) -> list[tuple[str, int]]:
    """Pack lines into messages of at most `limit` UTF-8 bytes: (content, lines it covers).

    A line too long for a message on its own is cut at a character boundary.
    """
    messages: list[tuple[str, int]] = []
    current: list[str] = []
    size = 0
    for original in lines:
        line, encoded = original, original.encode("utf-8")
        if len(encoded) > limit:
            line = encoded[: limit - 3].decode("utf-8", "ignore") + "..."
            encoded = line.encode("utf-8")
        extra = len(encoded) + (1 if current else 0)
        if current and size + extra > limit:
            messages.append(("\n".join(current), len(current)))
            current, size = [], 0
            extra = len(encoded)
        current.append(line)
        size += extra
    if current:
        messages.append(("\n".join(current), len(current)))
    return messages


def _send_wecom(webhook: Webhook) -> int:
    claimed = _claim(webhook.id, limit=200)
    lines = [describe(delivery.event) for delivery in claimed]
    sent = 0
    for content, count in wecom_batches(lines):
        batch, claimed = claimed[:count], claimed[count:]
        body = json.dumps({"msgtype": "text", "text": {"content": content}},
                          ensure_ascii=False).encode("utf-8")
        try:
            answer = json.loads(_post(webhook.url, body, {}) or b"{}")
            # WeCom answers 200 with an error code for a bad key or the rate limit.
            if answer.get("errcode", 0) != 0:
                raise DeliveryFailed(f"WeCom errcode {answer.get('errcode')}: "
                                     f"{answer.get('errmsg', '')}")
        except (DeliveryFailed, ValueError) as exc:
            log.warning("WeCom webhook %s: %d events not delivered (%s)", webhook.id,
                        len(batch), exc)
            _record(batch + claimed, str(exc))
            return sent
        _record(batch, None)
        sent += len(batch)
    return sent


def deliver_to(webhook_id: int) -> int:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None or not webhook.active:
        return 0
    return _send_wecom(webhook) if webhook.format == "wecom" else _send_json(webhook)


@periodic_task("koc.core.events.deliver_due", Every(timedelta(seconds=15)))
def deliver_due() -> int:
    """Send every delivery that is due, webhook by webhook; safe to run concurrently.

    Sent after each commit that emits, and every 15 seconds by the scheduler, which is also
    what picks up retries once their backoff has passed.
    """
    webhook_ids = db.session.scalars(
        sa.select(WebhookDelivery.webhook_id)
        .where(WebhookDelivery.status == DeliveryStatus.pending.value,
               WebhookDelivery.next_attempt_at <= utcnow())
        .distinct()
    ).all()
    db.session.commit()
    sent = 0
    for webhook_id in webhook_ids:
        sent += deliver_to(webhook_id)
    earliest = db.session.scalar(
        sa.select(sa.func.min(WebhookDelivery.next_attempt_at))
        .where(WebhookDelivery.status == DeliveryStatus.pending.value))
    db.session.commit()
    if earliest is not None:
        # The next retry does not wait for the scheduler's tick when it is due sooner.
        delay = max((earliest - utcnow()).total_seconds(), 1.0)
        if delay < 15:
            try:
                deliver_due.apply_async(countdown=delay)
            except Exception:
                log.warning("could not schedule the next delivery run; the scheduler will")
    return sent
