"""Background jobs that a caller can follow: a row per job, updated by the task that runs it.

`GET /api/v1/jobs/{id}` reads this table; Celery keeps no results. Tasks are enqueued only after
the transaction that created their job row commits, so a worker never looks for a row that is not
there yet, and a rolled-back request enqueues nothing.
"""

from __future__ import annotations

import enum
import logging
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from celery import Task, shared_task
from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Mapped, Session, mapped_column

from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import db
from koc.settings import Settings

MAX_REPORTED_ERRORS = 1000
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

    def add_error(self, line: int | None, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_REPORTED_ERRORS:
            # Reassign so the JSON column is seen as changed.
            self.errors = [*self.errors, {"line": line, "message": message}]


def start_job(task: Task, *, kind: str, payload: dict[str, Any] | None = None,
              staff_id: int | None = None) -> Job:
    """Create a job row and send `task(job.id)` once the current transaction commits."""
    job = Job(kind=kind, task_name=task.name, payload=payload or {},
              created_by_staff_id=staff_id, errors=[])
    db.session.add(job)
    db.session.flush()
    enqueue_after_commit(task, job.id)
    return job


def enqueue_after_commit(task: Task, *args: Any) -> None:
    """Send `task` once the current transaction commits; drop it if the transaction rolls back."""
    db.session().info.setdefault(_PENDING, []).append((task, args))


_PENDING = "koc.pending_tasks"


@event.listens_for(Session, "after_commit")
def _send_pending_tasks(session: Session) -> None:
    for task, args in session.info.pop(_PENDING, []):
        try:
            task.delay(*args)
        except Exception:
            # The data is committed; a broker outage must not turn the request into an error.
            # Jobs left queued are sent again by requeue_stale_jobs.
            log.exception("could not send %s%r; it will be retried", task.name, args)


@event.listens_for(Session, "after_rollback")
def _drop_pending_tasks(session: Session) -> None:
    session.info.pop(_PENDING, None)


def periodic_tasks(settings: Settings) -> dict[str, Any]:
    return {
        "jobs-requeue-stale": {
            "task": "koc.core.jobs.requeue_stale_jobs",
            "schedule": timedelta(minutes=1),
        }
    }


@shared_task(name="koc.core.jobs.requeue_stale_jobs")
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
