"""The points ledger: append-only entries, booked as differences.

Points follow one rule: the ledger holds, for every submission, entries that add up to its
current score when it is approved and to zero otherwise. Every change (a review, new metrics, a
re-opened decision) books the difference as a new entry keyed on the event that caused it, so
nothing is edited in place and a retried event books nothing twice.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from typing import cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from koc.core.db import utcnow
from koc.extensions import db
from koc.submissions.models import (
    PointsEntry,
    Submission,
    SubmissionStatus,
)

LEDGER_SOURCE_SUBMISSION = "submission"
LEDGER_SOURCE_ADJUSTMENT = "submission_adjustment"
LEDGER_SOURCE_EXPIRY = "expiry"


def booked_for(submission: Submission) -> Decimal:
    """What the ledger holds for one submission."""
    booked = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0)).where(
            PointsEntry.member_id == submission.member_id,
            PointsEntry.source.in_([LEDGER_SOURCE_SUBMISSION, LEDGER_SOURCE_ADJUSTMENT]),
            sa.or_(PointsEntry.submission_id == submission.id,
                   # Rows booked before entries carried submission_id.
                   sa.and_(PointsEntry.submission_id.is_(None),
                           PointsEntry.source == LEDGER_SOURCE_SUBMISSION,
                           PointsEntry.reference == str(submission.id))),
        )
    )
    return Decimal(booked or 0)


def sync_points(submission: Submission, *, event: str, description: str) -> Decimal:
    """Book the difference between the submission's due points and what the ledger holds."""
    due = submission.score if submission.status == SubmissionStatus.approved else Decimal(0)
    difference = Decimal(due or 0) - booked_for(submission)
    if difference == 0:
        return difference
    first = db.session.scalar(sa.select(PointsEntry.id).filter_by(
        member_id=submission.member_id, source=LEDGER_SOURCE_SUBMISSION,
        reference=str(submission.id)))
    if first is None:
        book_points(submission.member_id, source=LEDGER_SOURCE_SUBMISSION,
                    reference=str(submission.id), points=difference,
                    description=f"approved submission {submission.id}",
                    submission_id=submission.id)
    else:
        book_points(submission.member_id, source=LEDGER_SOURCE_ADJUSTMENT,
                    reference=f"{submission.id}:{event}", points=difference,
                    description=description, submission_id=submission.id)
    return difference


def book_points(member_id: int, *, source: str, reference: str, points: Decimal,
                description: str, submission_id: int | None = None) -> bool:
    """Append a ledger entry unless one with this key exists; returns whether it was booked."""
    exists = db.session.scalar(
        sa.select(PointsEntry.id).filter_by(member_id=member_id, source=source,
                                            reference=reference)
    )
    if exists is not None:
        return False
    db.session.add(PointsEntry(member_id=member_id, source=source, reference=reference,
                               points=points, description=description[:200],
                               submission_id=submission_id, created_at=utcnow()))
    db.session.flush()
    return True


def points_totals(member_id: int) -> dict[str, float]:
    """balance: everything; lifetime: everything earned, net of corrections, before expiry."""
    balance, lifetime = db.session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(PointsEntry.points), 0),
            sa.func.coalesce(sa.func.sum(sa.case(
                (PointsEntry.source != LEDGER_SOURCE_EXPIRY, PointsEntry.points), else_=0)), 0),
        ).where(PointsEntry.member_id == member_id)
    ).one()
    return {"balance": float(balance), "lifetime": float(lifetime)}


def ledger_query(member_id: int) -> sa.Select:
    return (sa.select(PointsEntry).where(PointsEntry.member_id == member_id)
            .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc()))


def expire_points(*, days: int, now: datetime | None = None) -> int:
    """Book an expiry entry for every member holding points older than `days`; one statement.

    What is due to expire is the net of everything booked before the cutoff, less what earlier
    runs expired already. The reference is the cutoff date, so a second run on the same day
    books nothing (the unique key refuses it), and a run that died is simply run again.
    Returns the number of entries booked.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    earned = sa.func.sum(sa.case(
        (sa.and_(PointsEntry.source != LEDGER_SOURCE_EXPIRY, PointsEntry.created_at < cutoff),
         PointsEntry.points), else_=0))
    expired = sa.func.sum(sa.case((PointsEntry.source == LEDGER_SOURCE_EXPIRY,
                                   PointsEntry.points), else_=0))
    totals = (sa.select(PointsEntry.member_id, (earned + expired).label("due"))
              .group_by(PointsEntry.member_id).subquery())
    rows = sa.select(
        totals.c.member_id, sa.literal(LEDGER_SOURCE_EXPIRY), sa.literal(cutoff.date().isoformat()),
        -totals.c.due, sa.literal(f"points older than {days} days expired"),
        sa.literal(now, PointsEntry.created_at.type),
    ).where(totals.c.due > 0)
    columns = ["member_id", "source", "reference", "points", "description", "created_at"]
    insert = (postgresql.insert if db.session.get_bind().dialect.name == "postgresql"
              else sqlite.insert)
    table = cast(sa.Table, PointsEntry.__table__)
    statement = (insert(table).from_select(columns, rows)
                 .on_conflict_do_nothing().returning(table.c.id))
    return len(db.session.execute(statement).all())
