"""Domain events through an outbox, delivered to registered webhooks by Celery tasks.

`emit()` writes the event and one delivery row per subscribed webhook in the caller's
transaction, so an event exists exactly when the change that caused it was committed; the
delivery task is sent only after that commit. Delivery is at least once: each request carries
the event id (`X-KOC-Event-Id`) for receivers to drop repeats, and a failed one is retried with
exponential backoff until MAX_ATTEMPTS, its row kept, so a receiver that is down loses nothing.

Two formats: `json` (the event as JSON, signed in the Standard Webhooks format: `webhook-id`,
`webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256 of id.timestamp.body>` with the
webhook's secret, so a replayed delivery is refused by its timestamp) and `wecom`, a WeCom group
robot, which gets pending events batched into text messages of at most 2,048 bytes, because a
robot takes at most 20 messages a minute. Targets must be public addresses and redirects are not
followed (`targets`); secrets and robot URLs are encrypted at rest (koc.core.crypto).

The package: `models` (the tables), `outbox` (emitting), `webhooks` (registering) and
`delivery` (sending, the periodic task); `api` is the webhooks' HTTP endpoints.
"""

from koc.core.events.delivery import (
    MAX_ATTEMPTS,
    WECOM_MAX_BYTES,
    backoff,
    deliver_due,
    deliver_to,
    describe,
    signature,
    standard_headers,
    wecom_batches,
)
from koc.core.events.models import (
    EVENT_TYPES,
    FORMATS,
    TEST_EVENT,
    DeliveryStatus,
    OutboxEvent,
    Webhook,
    WebhookDelivery,
)
from koc.core.events.outbox import emit, emit_many, emit_select, json_object
from koc.core.events.webhooks import (
    deliveries_query,
    get_webhook,
    masked_url,
    register_webhook,
    replay_delivery,
    send_test_event,
)

__all__ = [
    "EVENT_TYPES",
    "FORMATS",
    "MAX_ATTEMPTS",
    "TEST_EVENT",
    "WECOM_MAX_BYTES",
    "DeliveryStatus",
    "OutboxEvent",
    "Webhook",
    "WebhookDelivery",
    "backoff",
    "deliver_due",
    "deliver_to",
    "deliveries_query",
    "describe",
    "emit",
    "emit_many",
    "emit_select",
    "get_webhook",
    "json_object",
    "masked_url",
    "register_webhook",
    "replay_delivery",
    "send_test_event",
    "signature",
    "standard_headers",
    "wecom_batches",
]
