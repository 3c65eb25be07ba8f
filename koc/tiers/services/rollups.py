"""The activity rollup behind the dashboard's weekly series: submissions received, approvals and
points issued per closed UTC hour, so the dashboard sums a few thousand small rows instead of
scanning every submission and ledger entry of the last twelve weeks.

The periodic task (koc.tiers.tasks.refresh_activity_rollups) calls `refresh`. Each run, under a
row lock on the mark (two runs at once take turns):
- recomputes whole hours from the base tables (delete the hour's rows, insert the grouped sums),
  never adds to a stored figure, so a re-run writes the same rows and a run that dies half-way
  leaves the previous ones;
- fills the hours closed since the last run, and the last SETTLE_HOURS again, for writes whose
  clock read fell inside an hour but that committed after it was filled;
- recomputes the hours of approvals re-opened since the last run (re-opening is the one way an
  approval leaves a closed hour);
- with `full=True` (daily) recomputes every hour it holds, which catches anything else that
  changed history (a member deleted with their posts, a bulk load with old timestamps).

Readers (koc.tiers.services.insight.weekly_activity) take the rollup for hours before the mark
and read the rest, the still-open edge, from the base tables through their time indexes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from koc.extensions import db
from koc.submissions.models import PointsEntry, ReviewEvent, Submission, SubmissionStatus
from koc.tiers.models import ActivityRollup, RollupMark

HOUR_SECONDS = 3600
MARK = "activity"
# An hour is closed this long after it ends: every write that read the clock inside it has
# committed by then (request transactions last milliseconds; the margin is generous).
CLOSE_AFTER = timedelta(minutes=10)
# Each run recomputes this many of its last filled hours again (late commits).
SETTLE_HOURS = 2
# How far back the first run fills; older hours stay with the base tables.
BACKFILL_DAYS = 400
# Re-opens are looked for from this long before the last run (transactions in flight then).
REOPEN_MARGIN = timedelta(minutes=10)
# A decision's `reviewed_at` is read a moment before its event's `created_at`.
DECISION_SLACK = timedelta(seconds=60)


@dataclass(frozen=True)
class Source:
    """One series: the rows of `column`'s table that count, and what each adds (None: one)."""

    kind: str
    column: Any
    value: Any
    where: tuple[Any, ...]


def sources() -> tuple[Source, ...]:
    return (
        Source("submitted", Submission.created_at, None, ()),
        Source("approved", Submission.reviewed_at, None,
               (Submission.status == SubmissionStatus.approved.value,)),
        Source("points", PointsEntry.created_at, PointsEntry.points, (PointsEntry.points > 0,)),
    )


def hour_of(moment: datetime) -> int:
    """The hour (since the Unix epoch, UTC) that holds `moment`."""
    return int(moment.timestamp()) // HOUR_SECONDS


def hour_start(hour: int) -> datetime:
    return datetime.fromtimestamp(hour * HOUR_SECONDS, UTC)


def _hour_column(column: Any) -> sa.ColumnElement[int]:
    """`column`'s hour in SQL, the same floor as `hour_of`."""
    if db.session.get_bind().dialect.name == "sqlite":
        seconds: Any = sa.cast(sa.func.strftime("%s", column), sa.Integer)
    else:
        seconds = sa.cast(sa.func.floor(sa.extract("epoch", column)), sa.BigInteger)
    return seconds // HOUR_SECONDS


def _recompute(source: Source, first: int, until: int) -> None:
    """The hours [first, until) of one series, again from the base table."""
    if first >= until:
        return
    db.session.execute(sa.delete(ActivityRollup).where(
        ActivityRollup.kind == source.kind, ActivityRollup.hour >= first,
        ActivityRollup.hour < until))
    hour = _hour_column(source.column).label("hour")
    amount = sa.func.sum(source.value) if source.value is not None else sa.func.count()
    rows = (sa.select(sa.literal(source.kind).label("kind"), hour, amount.label("amount"))
            .where(source.column >= hour_start(first), source.column < hour_start(until),
                   *source.where)
            .group_by(hour))
    db.session.execute(sa.insert(ActivityRollup).from_select(["kind", "hour", "amount"], rows))


def _spans(hours: Iterable[int]) -> list[tuple[int, int]]:
    """Sorted hours as [first, until) runs of consecutive hours."""
    spans: list[tuple[int, int]] = []
    for hour in sorted(set(hours)):
        if spans and spans[-1][1] == hour:
            spans[-1] = (spans[-1][0], hour + 1)
        else:
            spans.append((hour, hour + 1))
    return spans


def reopened_hours(since: datetime) -> set[int]:
    """Hours whose approvals may have dropped since `since`: for each submission re-opened since
    then, the hours of its approvals (and the hour a moment before each, see DECISION_SLACK)."""
    reopened = (sa.select(ReviewEvent.submission_id)
                .where(ReviewEvent.action == "reopen", ReviewEvent.created_at >= since))
    hours: set[int] = set()
    for (at,) in db.session.execute(
        sa.select(ReviewEvent.created_at)
        .where(ReviewEvent.action == "approve", ReviewEvent.submission_id.in_(reopened))):
        hours.update((hour_of(at), hour_of(at - DECISION_SLACK)))
    return hours


def current_mark() -> RollupMark | None:
    return db.session.get(RollupMark, MARK)


def _locked_mark(now: datetime) -> RollupMark:
    """The mark row, locked for this transaction; created (holding no hours) on a first run.
    INSERT ... ON CONFLICT DO NOTHING: two first runs at once make one row."""
    start = hour_of(now - timedelta(days=BACKFILL_DAYS))
    insert = pg_insert if db.session.get_bind().dialect.name == "postgresql" else sqlite_insert
    db.session.execute(insert(RollupMark).values(
        name=MARK, filled_from=start, filled_until=start, refreshed_at=now,
    ).on_conflict_do_nothing(index_elements=[RollupMark.name]))
    mark = db.session.scalars(
        sa.select(RollupMark).where(RollupMark.name == MARK).with_for_update()
        .execution_options(populate_existing=True)).one()
    return mark


def refresh(now: datetime, *, full: bool = False) -> dict[str, Any]:
    """Bring the rollup up to the hours closed at `now`; see the module's story. Flushes."""
    mark = _locked_mark(now)
    closed = hour_of(now - CLOSE_AFTER)
    if full:
        first = mark.filled_from
    else:
        first = max(mark.filled_from, min(mark.filled_until, closed) - SETTLE_HOURS)
    until = max(closed, mark.filled_until)
    for source in sources():
        _recompute(source, first, until)
    # Approvals re-opened since the last run, in hours this run did not just recompute.
    dirty = {hour for hour in reopened_hours(mark.refreshed_at - REOPEN_MARGIN)
             if mark.filled_from <= hour < first}
    approved = next(source for source in sources() if source.kind == "approved")
    for span_first, span_until in _spans(dirty):
        _recompute(approved, span_first, span_until)
    mark.filled_until = until
    mark.refreshed_at = now
    db.session.flush()
    return {"first_hour": hour_start(first).isoformat(), "until": hour_start(until).isoformat(),
            "reopened_hours": len(dirty), "full": full}


@dataclass(frozen=True)
class Plan:
    """What a reader of [start, end) takes from the rollup and what from the base tables."""

    first: int            # rollup hours [first, until), minus `skip` (per kind)
    until: int
    skip: dict[str, set[int]]
    edges: dict[str, list[tuple[datetime, datetime]]]  # base-table spans, per kind


def plan(start: datetime, end: datetime, boundaries: Iterable[datetime]) -> Plan:
    """Split [start, end) for readers that bucket by `boundaries` (times inside the span): the
    rollup gives whole hours that no boundary cuts; the base tables give the rest, namely
    the span's ragged ends, the hours a boundary cuts, the hours not filled yet, and (for
    approvals) the hours of decisions re-opened since the last run."""
    kinds = [source.kind for source in sources()]
    mark = current_mark()
    first = hour_of(start)
    if hour_start(first) < start:  # the first hour starting at or after `start`
        first += 1
    until = hour_of(end)  # hours before this end at or before `end`
    if mark is not None:
        first, until = max(first, mark.filled_from), min(until, mark.filled_until)
    if mark is None or first >= until:
        return Plan(first=0, until=0, skip={k: set() for k in kinds},
                    edges={k: [(start, end)] for k in kinds})
    cut = {hour_of(b) for b in boundaries if int(b.timestamp()) % HOUR_SECONDS or b.microsecond}
    reopened = reopened_hours(mark.refreshed_at - REOPEN_MARGIN)
    skip = {kind: {h for h in cut | (reopened if kind == "approved" else set())
                   if first <= h < until} for kind in kinds}
    edges = {}
    for kind in kinds:
        spans = [(start, hour_start(first)),
                 *((hour_start(a), hour_start(b)) for a, b in _spans(skip[kind])),
                 (hour_start(until), end)]
        edges[kind] = [(a, b) for a, b in spans if a < b]
    return Plan(first=first, until=until, skip=skip, edges=edges)


def rollup_sums(kind: str, p: Plan, ends: list[datetime]) -> dict[int, Decimal]:
    """The rollup's hours of `p` summed per bucket (the index of the first of `ends` the hour
    ends at or before)."""
    if p.first >= p.until:
        return {}
    bucket = sa.case(*((ActivityRollup.hour < hour_of(end), index)
                       for index, end in enumerate(ends)))
    rows = (sa.select(bucket.label("bucket"), ActivityRollup.amount.label("amount"))
            .where(ActivityRollup.kind == kind, ActivityRollup.hour >= p.first,
                   ActivityRollup.hour < p.until,
                   ActivityRollup.hour.not_in(sorted(p.skip[kind])) if p.skip[kind]
                   else sa.true())
            .subquery())
    return {index: Decimal(amount) for index, amount in db.session.execute(
        sa.select(rows.c.bucket, sa.func.sum(rows.c.amount)).group_by(rows.c.bucket))
        if index is not None}
