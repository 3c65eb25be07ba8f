"""Submissions background work: clearing media uploads never attached to a submission."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task

from koc.core.db import utcnow
from koc.core.storage import delete_objects_then_rows
from koc.extensions import db
from koc.settings import Settings
from koc.submissions.models import MediaUpload

log = logging.getLogger(__name__)
UNATTACHED_AFTER = timedelta(days=2)


def periodic_tasks(settings: Settings) -> dict:
    return {
        "submissions-clear-unattached-media": {
            "task": "koc.submissions.tasks.clear_unattached_media",
            "schedule": timedelta(hours=6),
        }
    }


@shared_task(name="koc.submissions.tasks.clear_unattached_media")
def clear_unattached_media() -> int:
    """Delete uploads that no submission claimed, with their objects."""
    cutoff = utcnow() - UNATTACHED_AFTER
    cleared = delete_objects_then_rows(db.session.scalars(
        sa.select(MediaUpload).where(MediaUpload.submission_id.is_(None),
                                     MediaUpload.created_at < cutoff).limit(1000)
    ).all())
    db.session.commit()
    if cleared:
        log.info("cleared %d unattached media uploads", cleared)
    return cleared
