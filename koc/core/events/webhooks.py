"""Registering webhooks, and showing their URLs without the secrets a URL can hold."""

from __future__ import annotations

from datetime import datetime
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import sqlalchemy as sa

from koc.core.errors import DomainError
from koc.core.events.models import (
    EVENT_TYPES,
    TEST_EVENT,
    DeliveryStatus,
    OutboxEvent,
    Webhook,
    WebhookDelivery,
)
from koc.core.events.targets import check_url
from koc.core.jobs import enqueue_after_commit
from koc.extensions import db


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
    check_url(url)
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


def deliveries_query(webhook_id: int, *, status: str | None = None) -> sa.Select:
    """One webhook's deliveries, newest event first."""
    stmt = (sa.select(WebhookDelivery).where(WebhookDelivery.webhook_id == webhook_id)
            .order_by(WebhookDelivery.event_id.desc()))
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == status)
    return stmt


def get_webhook(webhook_id: int) -> Webhook:
    webhook = db.session.get(Webhook, webhook_id)
    if webhook is None:
        raise DomainError(404, "No such webhook.")
    return webhook


def replay_delivery(webhook_id: int, delivery_id: int, *, now: datetime) -> WebhookDelivery:
    """Send a delivery again (failed after every retry, or delivered and lost by the receiver):
    it is pending from now with a fresh retry budget, under the same `webhook-id`, so a receiver
    that did get it can still drop the repeat. Replaying one already pending changes nothing."""
    delivery = db.session.get(WebhookDelivery, delivery_id)
    if delivery is None or delivery.webhook_id != webhook_id:
        raise DomainError(404, "No such delivery for this webhook.")
    if delivery.status != DeliveryStatus.pending.value:
        delivery.status = DeliveryStatus.pending.value
        delivery.attempts = 0
        delivery.next_attempt_at = now
        delivery.delivered_at = None
        db.session.flush()
        enqueue_after_commit("koc.core.events.deliver_due")
    return delivery


def send_test_event(webhook: Webhook, *, staff_id: int | None, now: datetime) -> WebhookDelivery:
    """A `webhook.test` event for this webhook only, delivered (signed, retried, logged) like
    any other, so a manager can check the receiver before real events flow."""
    event = OutboxEvent(event_type=TEST_EVENT, created_at=now, payload={
        "webhook_id": webhook.id, "sent_by_staff_id": staff_id,
        "message": "A test event from koc: the receiver is reachable and checks signatures."})
    db.session.add(event)
    db.session.flush()
    delivery = WebhookDelivery(event_id=event.id, webhook_id=webhook.id, next_attempt_at=now)
    db.session.add(delivery)
    db.session.flush()
    enqueue_after_commit("koc.core.events.deliver_due")
    return delivery
