"""Kits background work: clearing uploads that were started and never finished."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task

from koc.assets.models import Asset, AssetStatus
from koc.core.db import utcnow
from koc.core.storage import delete_objects_then_rows
from koc.extensions import db
from koc.settings import Settings

log = logging.getLogger(__name__)
ABANDONED_AFTER = timedelta(days=2)


def periodic_tasks(settings: Settings) -> dict:
    return {
        "assets-clear-abandoned-uploads": {
            "task": "koc.assets.tasks.clear_abandoned_uploads",
            "schedule": timedelta(hours=6),
        }
    }


@shared_task(name="koc.assets.tasks.clear_abandoned_uploads")
def clear_abandoned_uploads() -> int:
    """Delete assets still pending long after their upload URL expired, and any partial object."""
    cutoff = utcnow() - ABANDONED_AFTER
    cleared = delete_objects_then_rows(db.session.scalars(
        sa.select(Asset).where(Asset.status == AssetStatus.pending.value,
                               Asset.created_at < cutoff).limit(1000)
    ).all())
    db.session.commit()
    if cleared:
        log.info("cleared %d abandoned uploads", cleared)
    return cleared
