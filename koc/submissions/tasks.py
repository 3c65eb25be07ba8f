"""Submissions background work: media hashes, metrics imports, points expiry, upload clean-up."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, JobStatus, run_job
from koc.core.storage import Storage, delete_objects_then_rows, get_storage
from koc.extensions import db
from koc.submissions.models import MediaUpload
from koc.submissions.services import (
    anomalies,
    imports,
    ledger,
    posts,
    privacy,
    rules,
    short_links,
    uploads,
)

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


@shared_task(name="koc.submissions.tasks.resolve_short_link_task")
def resolve_short_link_task(submission_id: int) -> str:
    """Follow a submission's short link to its post; safe to run twice.

    The platform is asked between two transactions, so no row or (on SQLite) database lock is
    held while it answers."""
    found = posts.short_link_to_resolve(submission_id)
    db.session.commit()
    if found is None:
        return "done"
    settings = current_app.config["KOC_SETTINGS"]
    resolver = short_links.resolver(enabled=settings.resolve_short_links,
                                    timeout=settings.short_link_timeout)
    if resolver is None:
        return "unresolved"
    outcome = posts.apply_resolved_link(submission_id, resolver(found[0]))
    db.session.commit()
    return outcome


@shared_task(name="koc.submissions.tasks.fingerprint_media_task")
def fingerprint_media_task(media_id: int) -> str | None:
    """SHA-256 of one attached upload (kept for exports and leak look-ups); safe to run twice."""
    digest = uploads.fingerprint_media(media_id, get_storage())
    db.session.commit()
    return digest


def _run_import_job(job_id: int, work: Callable[[Job], None], storage: Storage) -> None:
    try:
        run_job(job_id, work)
    finally:
        # The file goes when the job ends, failed included; deleting twice is harmless.
        job = db.session.get(Job, job_id)
        if job is not None and job.status in (JobStatus.succeeded, JobStatus.failed):
            storage.delete(job.payload["storage_key"])


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

    _run_import_job(job_id, work, storage)


@shared_task(name="koc.submissions.tasks.import_followers_task")
def import_followers_task(job_id: int) -> None:
    storage = get_storage()

    def work(job: Job) -> None:
        data = storage.get_bytes(job.payload["storage_key"])
        report = imports.import_followers(data.decode("utf-8-sig"), job_id=job.id, now=utcnow(),
                                          commit=db.session.commit)
        job.processed = report.processed
        job.failed = report.failed
        job.errors = report.errors

    _run_import_job(job_id, work, storage)


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


@shared_task(name="koc.submissions.tasks.delete_member_media")
def delete_member_media(member_id: int) -> int:
    """A forgotten member's stored media: deleted after the forgetting committed; safe to run
    again (forgetting again sends it again)."""
    deleted = privacy.delete_member_media(member_id, get_storage())
    db.session.commit()
    return deleted
