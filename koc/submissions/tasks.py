"""Submissions background work: media hashes, metrics imports, points expiry, upload clean-up."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, run_job
from koc.core.storage import delete_objects_then_rows, get_storage
from koc.extensions import db
from koc.submissions.models import MediaUpload
from koc.submissions.services import anomalies, imports, ledger, rules

log = logging.getLogger(__name__)
UNATTACHED_AFTER = timedelta(days=2)


@periodic_task("koc.submissions.tasks.clear_unattached_media", Every(timedelta(hours=6)))
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


@shared_task(name="koc.submissions.tasks.hash_media_task")
def hash_media_task(media_id: int) -> int:
    """Perceptual hash of one attached image, and near-duplicate flags; safe to run twice."""
    flags = anomalies.hash_media(media_id, get_storage())
    db.session.commit()
    return len(flags)


@periodic_task("koc.submissions.tasks.check_history_anomalies", Every(timedelta(seconds=30)))
def check_history_anomalies() -> int:
    """New submissions' checks against the member's other posts, after their commit."""
    checked = 0
    while (done := anomalies.check_pending_history()):
        db.session.commit()
        checked += done
    return checked


@shared_task(name="koc.submissions.tasks.import_metrics_task")
def import_metrics_task(job_id: int) -> None:
    storage = get_storage()

    def work(job: Job) -> None:
        data = storage.get_bytes(job.payload["storage_key"])
        tolerance = current_app.config["KOC_SETTINGS"].import_agreement_tolerance
        report = imports.import_metrics(data.decode("utf-8-sig"), job_id=job.id,
                                         commit=db.session.commit, tolerance=tolerance)
        job.processed = report.processed
        job.failed = report.failed
        job.errors = report.errors

    if run_job(job_id, work):
        storage.delete(db.session.get_one(Job, job_id).payload["storage_key"])


# Expiry is off unless the scoring rules set points_expire_after_days; the task then books one
# entry per member per day at most, so hourly runs cost one grouped query.
@periodic_task("koc.submissions.tasks.expire_points_task", Every(timedelta(hours=1)))
def expire_points_task() -> int:
    days = rules.current_scoring()[1].get("points_expire_after_days")
    if not days:
        return 0
    booked = ledger.expire_points(days=days)
    db.session.commit()
    if booked:
        log.info("expired points for %d members", booked)
    return booked
