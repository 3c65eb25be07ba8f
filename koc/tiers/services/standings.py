"""Leaderboard standings: each member's points, approved posts and engagement over the windows
the panel offers (7, 30, 90 and 365 days), computed for everyone by a periodic task so the
leaderboard sorts one small row per member instead of summing a year of posts and ledger
entries per request (the 365-day view read about 850,000 rows of each at the reference size).

The task (koc.tiers.tasks.refresh_leaderboards) calls `refresh` every ten minutes. Per window,
under a row lock on the window's refresh row (two runs at once take turns), it deletes the
window's standings and inserts them again from the base tables, so a re-run writes the same
rows and a run that dies half-way leaves the previous ones. Readers take the standings of a
window once a refresh has written it and show when (`as_of`); any other window, or one never
refreshed, is summed from the base tables as before.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import PointsEntry, Submission, SubmissionStatus
from koc.tiers.models import LeaderboardRefresh, LeaderboardStanding

PRESET_WINDOWS = (7, 30, 90, 365)


def window_sums(since: datetime, until: datetime) -> sa.Select:
    """member_id, points, approved, engagement of every member with points booked or approved
    posts posted in [since, until]; the others have no row."""
    points = (sa.select(PointsEntry.member_id.label("member_id"),
                        sa.func.sum(PointsEntry.points).label("points"))
              .where(PointsEntry.created_at >= since, PointsEntry.created_at <= until)
              .group_by(PointsEntry.member_id).subquery())
    posts = (sa.select(Submission.member_id.label("member_id"),
                       sa.func.count().label("approved"),
                       sa.func.sum(Submission.interactions).label("engagement"))
             .where(Submission.status == SubmissionStatus.approved.value,
                    Submission.posted_at >= since, Submission.posted_at <= until)
             .group_by(Submission.member_id).subquery())
    return (sa.select(Member.id.label("member_id"),
                      sa.func.coalesce(points.c.points, 0).label("points"),
                      sa.func.coalesce(posts.c.approved, 0).label("approved"),
                      sa.func.coalesce(posts.c.engagement, 0).label("engagement"))
            .outerjoin(points, points.c.member_id == Member.id)
            .outerjoin(posts, posts.c.member_id == Member.id)
            .where(sa.or_(points.c.member_id.is_not(None), posts.c.member_id.is_not(None))))


def as_of(window_days: int) -> datetime | None:
    """When the window's standings were computed; None: not a preset window, or not yet."""
    if window_days not in PRESET_WINDOWS:
        return None
    return db.session.scalar(sa.select(LeaderboardRefresh.as_of)
                             .where(LeaderboardRefresh.window_days == window_days))


def standings_of(window_days: int) -> sa.Subquery:
    """The window's stored standings, in the shape `window_sums` gives."""
    return (sa.select(LeaderboardStanding.member_id, LeaderboardStanding.points,
                      LeaderboardStanding.approved, LeaderboardStanding.engagement)
            .where(LeaderboardStanding.window_days == window_days).subquery("standings"))


def _locked_refresh(window_days: int, now: datetime) -> None:
    """The window's refresh row, created if missing, locked until the caller commits."""
    insert: Any = (pg_insert if db.session.get_bind().dialect.name == "postgresql"
                   else sqlite_insert)(LeaderboardRefresh)
    db.session.execute(insert.values(window_days=window_days, as_of=now)
                       .on_conflict_do_nothing(index_elements=["window_days"]))
    db.session.execute(sa.select(LeaderboardRefresh.window_days)
                       .where(LeaderboardRefresh.window_days == window_days).with_for_update())


def refresh(now: datetime) -> dict[str, int]:
    """Recompute every preset window's standings as of `now`; see the module's story. Flushes.
    Returns the members ranked per window."""
    ranked = {}
    for window_days in PRESET_WINDOWS:
        _locked_refresh(window_days, now)
        db.session.execute(sa.delete(LeaderboardStanding)
                           .where(LeaderboardStanding.window_days == window_days))
        sums = window_sums(now - timedelta(days=window_days), now).subquery()
        table = cast(sa.Table, LeaderboardStanding.__table__)
        db.session.execute(sa.insert(table).from_select(
            ["window_days", "member_id", "points", "approved", "engagement"],
            sa.select(sa.literal(window_days), sums.c.member_id, sums.c.points,
                      sums.c.approved, sums.c.engagement)))
        # Counted, not the cursor's rowcount: psycopg reports -1 for an INSERT ... SELECT here.
        ranked[str(window_days)] = int(db.session.scalar(
            sa.select(sa.func.count()).select_from(table)
            .where(table.c.window_days == window_days)) or 0)
        db.session.execute(sa.update(LeaderboardRefresh)
                           .where(LeaderboardRefresh.window_days == window_days)
                           .values(as_of=now))
    db.session.flush()
    return ranked
