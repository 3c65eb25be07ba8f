"""Background jobs that a caller can follow: a row per job, updated by the task that runs it.

`GET /api/v1/jobs/{id}` reads this table; Celery keeps no results. Tasks are enqueued only after
the transaction that created their job row commits, so a worker never looks for a row that is not
there yet, and a rolled-back request enqueues nothing.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from koc.core.celery import Every, periodic_task
from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import db

STALE_AFTER = timedelta(minutes=5)
log = logging.getLogger(__name__)


class JobStatus(enum.StrEnum):
    queued = "queued"
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class Job(db.Model):
    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(64))
    task_name: Mapped[str | None] = mapped_column(sa.String(128))
    status: Mapped[str] = mapped_column(sa.String(16), default=JobStatus.queued.value)
    processed: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    errors: Mapped[list[dict[str, Any]]] = mapped_column(JSONType, default=list)
    result: Mapped[dict[str, Any] | None] = mapped_column(JSONType)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('queued', 'running', 'succeeded', 'failed')", name="status_known"
        ),
    )


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
    except Exception:
        db.session.rollback()
        log.exception("job %s (%s) failed", job_id, job.kind)
        job = db.session.get(Job, job_id)
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


def enqueue_after_commit(task_name: str, *args: Any) -> None:
    """Send the task named `task_name` once the current transaction commits; drop it if the
    transaction rolls back.

    Work is asked for by name so that services never import a tasks module (tasks sit above
    services); tests/core/test_jobs.py checks that every name asked for is a registered task.
    """
    db.session().info.setdefault(_PENDING, []).append((task_name, args))


_PENDING = "koc.pending_tasks"


@event.listens_for(Session, "after_commit")
def _send_pending_tasks(session: Session) -> None:
    pending = session.info.pop(_PENDING, [])
    if not pending:
        return
    registry = current_app.extensions["celery"].tasks
    for task_name, args in pending:
        try:
            registry[task_name].delay(*args)
        except Exception:
            # The data is committed; a broker outage must not turn the request into an error.
            # Jobs left queued are resent by requeue_stale_jobs; periodic work catches up on
            # its own schedule.
            log.exception("could not send %s%r; it is sent again later", task_name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending_tasks(session: Session) -> None:
    session.info.pop(_PENDING, None)


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
