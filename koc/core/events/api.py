"""`/api/v1/webhooks`: where domain events are delivered (see koc.core.events)."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from marshmallow import Schema, fields

from koc.core import audit, events
from koc.core import fields as kf
from koc.core.auth import current_principal, staff_required
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.pagination import Blueprint, SelectPage
from koc.extensions import db

blp = Blueprint("webhooks", __name__, description="Webhooks for domain events")


class WebhookInSchema(Schema):
    url = kf.String(required=True, min_length=8, max_length=2000)
    events = kf.List(kf.OneOf(events.EVENT_TYPES), required=True, min_items=1,
                     max_items=len(events.EVENT_TYPES))
    secret = kf.String(load_default=None, allow_none=True, min_length=16, max_length=200)
    format = kf.OneOf(["json", "wecom"], load_default="json")


class WebhookSchema(Schema):
    """A webhook as the API shows it: never the secret, nor a key in the URL."""

    id = fields.Integer()
    url = fields.String(metadata={"description": "Keys in the query are masked."})
    events = fields.List(fields.String())
    format = fields.String()
    active = fields.Boolean()
    created_at = fields.DateTime()
    pending = fields.Integer()
    failed = fields.Integer()


def _webhook_view(webhook: events.Webhook) -> dict[str, Any]:
    counts = dict(db.session.execute(
        sa.select(events.WebhookDelivery.status, sa.func.count())
        .where(events.WebhookDelivery.webhook_id == webhook.id)
        .group_by(events.WebhookDelivery.status)).all())
    return {"id": webhook.id, "url": events.masked_url(webhook), "events": webhook.events,
            "format": webhook.format, "active": webhook.active,
            "created_at": webhook.created_at,
            "pending": counts.get("pending", 0), "failed": counts.get("failed", 0)}


@blp.post("/webhooks")
@blp.arguments(WebhookInSchema)
@blp.response(201, WebhookSchema)
@staff_required("admin")
def register_webhook(data: dict):
    webhook = events.register_webhook(url=data["url"], events=data["events"],
                                      secret=data["secret"], fmt=data["format"],
                                      staff_id=current_principal().staff_id)
    return _webhook_view(webhook)


@blp.get("/webhooks")
@blp.response(200, WebhookSchema(many=True))
@staff_required("admin")
def list_webhooks():
    return [_webhook_view(w) for w in db.session.scalars(
        sa.select(events.Webhook).order_by(events.Webhook.id)).all()]


class DeliveryQuerySchema(Schema):
    status = kf.OneOf([s.value for s in events.DeliveryStatus], load_default=None)


class DeliverySchema(Schema):
    id = fields.Integer()
    event_id = fields.Integer()
    event_type = fields.String(attribute="event.event_type")
    webhook_message_id = fields.Function(lambda d: events.delivery.message_id(d.event_id),
                                         metadata={"description": "the `webhook-id` header"})
    status = fields.String()
    attempts = fields.Integer()
    next_attempt_at = fields.DateTime()
    last_error = fields.String(allow_none=True)
    delivered_at = fields.DateTime(allow_none=True)


@blp.get("/webhooks/<id:webhook_id>/deliveries")
@blp.arguments(DeliveryQuerySchema, location="query")
@blp.response(200, DeliverySchema(many=True))
@blp.paginate(SelectPage)
@staff_required("admin")
def list_deliveries(query: dict, webhook_id: int):
    events.get_webhook(webhook_id)
    return events.deliveries_query(webhook_id, status=query["status"])


@blp.post("/webhooks/<id:webhook_id>/deliveries/<id:delivery_id>/replay")
@blp.response(200, DeliverySchema)
@staff_required("admin")
def replay_delivery(webhook_id: int, delivery_id: int):
    delivery = events.replay_delivery(webhook_id, delivery_id, now=utcnow())
    audit.record("webhook.replay", f"webhook:{webhook_id}", {"delivery": delivery_id,
                                                             "event": delivery.event_id})
    return delivery


@blp.post("/webhooks/<id:webhook_id>/test")
@blp.response(201, DeliverySchema)
@staff_required("admin")
def send_test_event(webhook_id: int):
    """Send a `webhook.test` event to this webhook only; its delivery shows in the log."""
    webhook = events.get_webhook(webhook_id)
    staff_id = current_principal().staff_id
    delivery = events.send_test_event(webhook, staff_id=staff_id, now=utcnow())
    audit.record("webhook.test", f"webhook:{webhook_id}", {"delivery": delivery.id})
    return delivery


@blp.delete("/webhooks/<id:webhook_id>")
@blp.response(204)
@staff_required("admin")
def delete_webhook(webhook_id: int):
    webhook = db.session.get(events.Webhook, webhook_id)
    if webhook is None:
        raise DomainError(404, "No such webhook.")
    audit.record("webhook.delete", f"webhook:{webhook_id}", {"url": events.masked_url(webhook)})
    db.session.delete(webhook)
