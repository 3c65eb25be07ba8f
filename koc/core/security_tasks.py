"""Periodic clean-up of security records: audit rows past retention, sessions long ended."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any, cast

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.engine import CursorResult

from koc.core import audit
from koc.core.auth import StaffSession
from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.extensions import db

log = logging.getLogger(__name__)
# Ended sessions stay a while for whoever investigates a sign-in (the audit log keeps the rest).
SESSIONS_KEPT = timedelta(days=30)


@periodic_task("koc.core.security_tasks.purge_expired_records", Every(timedelta(hours=6)))
def purge_expired_records() -> tuple[int, int]:
    """Delete audit rows older than KOC_AUDIT_RETENTION_DAYS and sessions ended 30 days ago;
    safe to run twice or concurrently (each run deletes what is past its own cut-off)."""
    now = utcnow()
    settings = current_app.config["KOC_SETTINGS"]
    events = audit.purge_expired(now=now, retention_days=settings.audit_retention_days)
    cutoff = now - SESSIONS_KEPT
    sessions = cast(CursorResult[Any], db.session.execute(sa.delete(StaffSession).where(
        sa.or_(StaffSession.ended_at < cutoff, StaffSession.expires_at < cutoff)))).rowcount
    db.session.commit()
    if events or sessions:
        log.info("purged %d audit rows and %d old sessions", events, sessions)
    return events, sessions
