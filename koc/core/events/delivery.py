"""Delivering: JSON posts signed in the Standard Webhooks format and batched WeCom robot
messages, retried with backoff, to public addresses only (koc.core.events.targets)."""

from __future__ import annotations

import base64
import json
import logging
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from standardwebhooks.webhooks import Webhook as StandardWebhook

from koc.core import metrics
from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.events.models import (
    TEST_EVENT,
    DeliveryStatus,
    OutboxEvent,
    Webhook,
    WebhookDelivery,
)
from koc.core.events.targets import TargetRefused, opener
from koc.extensions import db

log = logging.getLogger(__name__)

MAX_ATTEMPTS = 15
RETRY_BASE = timedelta(seconds=5)
RETRY_CAP = timedelta(hours=1)
# A delivery being sent is pushed this far into the future, so a second worker skips it.
CLAIM_LEASE = timedelta(minutes=2)
SEND_TIMEOUT = 10
WECOM_MAX_BYTES = 2048
USER_AGENT = "koc-webhooks/1"


SECRET_PREFIX = "whsec_"  # noqa: S105 - the Standard Webhooks marker of a base64 secret


def signing_key(secret: str) -> bytes:
    """The HMAC key: a `whsec_<base64>` secret is its decoded bytes (the Standard Webhooks
    convention); any other secret is its UTF-8 bytes."""
    if secret.startswith(SECRET_PREFIX):
        return base64.b64decode(secret[len(SECRET_PREFIX):] + "==")
    return secret.encode("utf-8")


def message_id(event_id: int) -> str:
    # The same for every attempt at one event: receivers drop repeats by it.
    return f"koc-evt-{event_id}"


def standard_headers(secret: str, event_id: int, body: bytes, now: datetime) -> dict[str, str]:
    """`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of
    id.timestamp.body>`: the timestamp is signed, so a captured delivery cannot be replayed
    once outside the receiver's tolerance (5 minutes in the reference libraries)."""
    msg_id = message_id(event_id)
    signed = StandardWebhook(signing_key(secret)).sign(msg_id, now, body.decode("utf-8"))
    return {"webhook-id": msg_id, "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": signed}


def signature(secret: str, body: bytes, *, event_id: int, now: datetime) -> str:
    return standard_headers(secret, event_id, body, now)["webhook-signature"]


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
        with opener().open(request, timeout=SEND_TIMEOUT) as response:
            return response.read(65536)
    except urllib.error.HTTPError as exc:
        raise DeliveryFailed(f"HTTP {exc.code}") from exc
    except TargetRefused as exc:
        raise DeliveryFailed(f"refused: {exc}") from exc
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
    claimed = list(db.session.scalars(query))
    for delivery in claimed:
        delivery.next_attempt_at = now + CLAIM_LEASE
    db.session.commit()
    return claimed


def _record(deliveries: list[WebhookDelivery], error: str | None) -> None:
    now = utcnow()
    for delivery in deliveries:
        metrics.webhook_attempted(delivery.webhook_id, delivered=error is None)
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


def _outbox_backlog() -> Iterator[Metric]:
    """Deliveries waiting, per webhook: read when Prometheus scrapes (koc.core.metrics)."""
    rows = db.session.execute(
        sa.select(WebhookDelivery.webhook_id, sa.func.count())
        .where(WebhookDelivery.status == DeliveryStatus.pending.value)
        .group_by(WebhookDelivery.webhook_id)).all()
    backlog = GaugeMetricFamily("koc_outbox_backlog", "Webhook deliveries waiting to be sent.",
                                labels=["webhook_id"])
    for webhook_id, count in rows:
        backlog.add_metric([str(webhook_id)], float(count))
    yield backlog


metrics.add_scrape_collector(_outbox_backlog)


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
                **standard_headers(webhook.secret or "", delivery.event_id, body, utcnow()),
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


_INVITATION_LINES: dict[str, Callable[[dict[str, Any]], str]] = {
    # One line per batch of invitations: the robot summarises, never one message per person.
    "invitation.created": lambda data: (
        f"邀请活动 / Invitation campaign: {data.get('name', '')} (#{data.get('campaign_id')})"
        f" · {data.get('invited', 0)} 人 invited · 截止 until "
        f"{str(data.get('expires_at', ''))[:10]}"),
    "invitation.expiring": lambda data: (
        f"邀请即将过期 / Invitations expiring: {data.get('name', '')} "
        f"(#{data.get('campaign_id')}) · {data.get('pending', 0)} 人未接受 not accepted"
        f" · {str(data.get('expires_at', ''))[:10]}"),
}


def _kit_line(data: dict) -> str:
    line = f"新素材包 / New kit: {data.get('title', '')} (#{data.get('kit_id')})"
    if data.get("product_name"):
        line += f" · {data['product_name']}"
    if data.get("launch_at"):
        line += f" · launch {data['launch_at'][:10]}"
    return line


# One line per event in the WeCom robot's summaries, in both languages the teams read.
_LINES = {
    "kit.published": _kit_line,
    "member.tier_changed": lambda data: (
        f"等级变化 / Tier change: member #{data.get('member_id')} "
        f"{data.get('from') or '-'} → {data.get('to') or '-'}"),
    "group.invite": lambda data: (
        f"邀请入群 / Invite to the senior group: member #{data.get('member_id')}"),
    "group.remove": lambda data: (
        f"移出群 / Remove from the senior group: member #{data.get('member_id')}"),
    TEST_EVENT: lambda _data: "测试消息 / Test event from koc",
    **_INVITATION_LINES,
}


def describe(event: OutboxEvent) -> str:
    line = _LINES.get(event.event_type)
    return line(event.payload) if line is not None else f"{event.event_type} #{event.id}"


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
