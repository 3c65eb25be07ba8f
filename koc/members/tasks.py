"""Members background work: bulk imports of the user base."""

from __future__ import annotations

import logging

from celery import shared_task

from koc.core.db import utcnow
from koc.core.jobs import Job, JobStatus
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members import services

log = logging.getLogger(__name__)


@shared_task(name="koc.members.tasks.import_users_task")
def import_users_task(job_id: int) -> None:
    """Run an import job. Upserts are keyed on external_id, so a re-delivered task is harmless."""
    job = db.session.get(Job, job_id)
    if job is None or job.status == JobStatus.succeeded:
        return
    job.status = JobStatus.running.value
    job.started_at = utcnow()
    db.session.commit()
    try:
        data = get_storage().get_bytes(job.payload["storage_key"])
        report = services.import_users(services.text_stream(data), fmt=job.payload["format"])
    except Exception:
        db.session.rollback()
        log.exception("user import job %s failed", job_id)
        job = db.session.get(Job, job_id)
        job.status = JobStatus.failed.value
        job.finished_at = utcnow()
        job.errors = [{"line": None, "message": "the import stopped on an internal error"}]
        db.session.commit()
        raise
    job.processed = report.processed
    job.failed = report.failed
    job.errors = report.errors[:1000]
    # The job ran to the end; `failed` and `errors` say which lines were refused.
    job.status = JobStatus.succeeded.value
    job.finished_at = utcnow()
    db.session.commit()
    get_storage().delete(job.payload["storage_key"])
