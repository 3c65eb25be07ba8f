"""Starting a job, running its work once, and re-sending jobs lost on the way to the broker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs.dispatch import enqueue_after_commit
from koc.core.jobs.models import Job, JobStatus
from koc.core.sqlite import is_busy
from koc.extensions import db

STALE_AFTER = timedelta(minutes=5)
log = logging.getLogger(__name__)


def start_job(task_name: str, *, kind: str, payload: dict[str, Any] | None = None,
              staff_id: int | None = None) -> Job:
    """Create a job row and send the task `task_name(job.id)` once the transaction commits."""
    job = Job(kind=kind, task_name=task_name, payload=payload or {},
              created_by_staff_id=staff_id, errors=[])
    db.session.add(job)
    db.session.flush()
    enqueue_after_commit(task_name, job.id)
    return job


def run_job(job_id: int, work: Callable[[Job], None]) -> bool:
    """Run `work(job)` for a job that has not succeeded yet, and record how it ended.

    `work` fills in processed, failed, errors and result; this commits. A job delivered twice
    (or re-sent by the sweep) runs once; one that died half-way runs again from the start, so
    `work` must be safe to repeat. Returns whether the work ran and succeeded.
    """
    job = db.session.get(Job, job_id)
    if job is None or job.status == JobStatus.succeeded:
        return False
    job.status = JobStatus.running.value
    job.started_at = utcnow()
    db.session.commit()
    try:
        work(job)
    except Exception as exc:
        db.session.rollback()
        if is_busy(exc):
            # The embedded database was busy: no failure of the job's. The task runs again
            # (koc.core.sqlite.run_task) and the job with it, from where it had committed.
            raise
        log.exception("job %s (%s) failed", job_id, job.kind)
        job = db.session.get_one(Job, job_id)
        job.status = JobStatus.failed.value
        job.finished_at = utcnow()
        internal = {"line": None, "message": "the job stopped on an internal error"}
        job.errors = [*job.errors, internal]
        db.session.commit()
        raise
    job.status = JobStatus.succeeded.value
    job.finished_at = utcnow()
    db.session.commit()
    return True


@periodic_task("koc.core.jobs.requeue_stale_jobs", Every(timedelta(minutes=1)))
def requeue_stale_jobs() -> int:
    """Send again jobs still queued long after they were created (lost on the way to the broker).

    Job tasks skip a job that already succeeded, so a job sent twice runs its work once.
    """
    cutoff = utcnow() - STALE_AFTER
    stale = db.session.scalars(
        sa.select(Job).where(Job.status == JobStatus.queued.value, Job.created_at < cutoff,
                             Job.task_name.is_not(None)).limit(100)
    ).all()
    for job in stale:
        current_app.extensions["celery"].send_task(job.task_name, args=[job.id])
    return len(stale)


def purge_job_reports(*, now: datetime, retention_days: int, limit: int = 1000) -> int:
    """Empty the per-line error reports of jobs that finished more than `retention_days` ago
    (an import's report quotes the file's lines, personal data included); counts are kept."""
    cutoff = now - timedelta(days=retention_days)
    # Emptied reports are '[]' in either database's JSON text, so a run skips them.
    jobs = db.session.scalars(sa.select(Job).where(
        Job.finished_at < cutoff, Job.status.in_([JobStatus.succeeded.value,
                                                  JobStatus.failed.value]),
        sa.cast(Job.errors, sa.Text) != "[]")
        .order_by(Job.id).limit(limit)).all()
    for job in jobs:
        job.errors = []
        job.result = {**(job.result or {}), "errors_purged_at": now.isoformat()}
    db.session.flush()
    return len(jobs)


@periodic_task("koc.core.jobs.purge_job_reports", Every(timedelta(hours=1)))
def purge_job_reports_task() -> int:
    settings = current_app.config["KOC_SETTINGS"]
    purged = purge_job_reports(now=utcnow(), retention_days=settings.import_report_retention_days)
    db.session.commit()
    return purged
