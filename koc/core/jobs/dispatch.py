"""Asking for background work by task name, sent only once the transaction commits."""

from __future__ import annotations

import logging
from typing import Any

from flask import current_app
from sqlalchemy import event
from sqlalchemy.orm import Session

from koc.extensions import db

log = logging.getLogger(__name__)
_PENDING = "koc.pending_tasks"


def enqueue_after_commit(task_name: str, *args: Any) -> None:
    """Send the task named `task_name` once the current transaction commits; drop it if the
    transaction rolls back.

    Work is asked for by name so that services never import a tasks module (tasks sit above
    services); tests/core/test_jobs.py checks that every name asked for is a registered task.
    """
    db.session().info.setdefault(_PENDING, []).append((task_name, args))


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


def _drop_pending_tasks(session: Session) -> None:
    session.info.pop(_PENDING, None)


def install() -> None:
    """Hook the sending into every session; called by create_app, never at import."""
    if not event.contains(Session, "after_commit", _send_pending_tasks):
        event.listen(Session, "after_commit", _send_pending_tasks)
        event.listen(Session, "after_rollback", _drop_pending_tasks)
