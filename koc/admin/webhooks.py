"""设置 · Webhooks: the registered webhooks, their delivery log, a test event and replays.

Pages render from koc.core.events; every write (create, test event, replay, delete) is the
page's script calling /api/v1/webhooks... with the session and the X-CSRFToken header, so the
API's validation, SSRF guard and audit apply. Admins only, like the API.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, render_template, request
from flask_babel import lazy_gettext as _l
from sqlalchemy.orm import joinedload

from koc.admin.blueprint import admin_blueprint, login_required, paginate
from koc.core import events
from koc.core.events.delivery import message_id
from koc.extensions import db

DELIVERIES_PER_PAGE = 50
EVENT_NAMES = {
    "kit.published": _l("A kit is published"),
    "member.tier_changed": _l("A member's tier changes"),
    "group.invite": _l("A member is invited to the senior group"),
    "group.remove": _l("A member is to leave the senior group"),
    events.TEST_EVENT: _l("Test event"),
}
STATUS_NAMES = {"pending": _l("Pending"), "delivered": _l("Delivered"), "failed": _l("Failed")}
FORMAT_NAMES = {"json": _l("JSON, signed (Standard Webhooks)"), "wecom": _l("WeCom group robot")}


def _counts(webhook_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {}
    if webhook_ids:
        for webhook_id, status, count in db.session.execute(
            sa.select(events.WebhookDelivery.webhook_id, events.WebhookDelivery.status,
                      sa.func.count())
            .where(events.WebhookDelivery.webhook_id.in_(webhook_ids))
            .group_by(events.WebhookDelivery.webhook_id, events.WebhookDelivery.status)
        ):
            counts.setdefault(webhook_id, {})[status] = count
    return counts


def _labels() -> dict[str, Any]:
    return {"event_names": EVENT_NAMES, "status_names": STATUS_NAMES,
            "format_names": FORMAT_NAMES, "masked_url": events.masked_url}


@admin_blueprint.get("/webhooks")
@login_required("admin")
def webhooks() -> str:
    hooks = list(db.session.scalars(sa.select(events.Webhook).order_by(events.Webhook.id)))
    return render_template("admin/security/webhooks.html", webhooks=hooks,
                           counts=_counts([h.id for h in hooks]),
                           event_types=events.EVENT_TYPES, formats=events.FORMATS, **_labels())


@admin_blueprint.get("/webhooks/<id:webhook_id>")
@login_required("admin")
def webhook_page(webhook_id: int) -> str:
    webhook = db.session.get(events.Webhook, webhook_id)
    if webhook is None:
        abort(404)
    status = request.args.get("status")
    status = status if status in STATUS_NAMES else None
    deliveries = paginate(events.deliveries_query(webhook_id, status=status)
                          .options(joinedload(events.WebhookDelivery.event)),
                          DELIVERIES_PER_PAGE)
    return render_template("admin/security/webhook.html", webhook=webhook, status=status,
                           deliveries=deliveries, counts=_counts([webhook_id]).get(webhook_id, {}),
                           message_id=message_id, **_labels())
