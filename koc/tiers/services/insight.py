"""What works, in numbers: the leaderboard and the dashboard's series (activity per week, points
issued, engagement by platform, members at risk, the tier job's recent runs, webhook delivery
health).

Every figure is one grouped query; none loops over members or submissions in Python. It reads
members, submissions and the outbox, so it lives in tiers, the top domain.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any, cast

import sqlalchemy as sa

from koc.core.db import UTCDateTime
from koc.core.events.models import OutboxEvent, WebhookDelivery
from koc.extensions import db
from koc.members.models import PLATFORMS, Member, MemberStatus, User
from koc.submissions.models import Submission, SubmissionStatus
from koc.tiers.models import PlatformEngagementWeek, TierRun
from koc.tiers.services import rollups, standings

LEADERBOARD_METRICS = ("points", "engagement", "approved")
WEEK = timedelta(days=7)


# --- the leaderboard ---------------------------------------------------------------------------

def leaderboard_query(*, now: datetime, window_days: int, metric: str = "points",
                      city: str | None = None, store_code: str | None = None) -> sa.Select:
    """Active members with points or approved posts in the last `window_days`, best first.

    Rows: member_id, display_name, tier (key), points, approved, engagement (likes + comments
    + saves of the approved posts posted in the window). Ties go to the lower member id so
    pages are stable. A preset window reads the standings of its last refresh (see
    `standings.as_of`); another window is summed up to `now` from the base tables.
    """
    if metric not in LEADERBOARD_METRICS:
        raise ValueError(metric)
    if standings.as_of(window_days) is not None:
        sums = standings.standings_of(window_days)
    else:
        sums = standings.window_sums(now - timedelta(days=window_days), now).subquery("sums")
    stmt = (sa.select(Member.id.label("member_id"), Member.display_name,
                      Member.tier_key.label("tier"), sums.c.points, sums.c.approved,
                      sums.c.engagement)
            .join(sums, sums.c.member_id == Member.id)
            .where(Member.status == MemberStatus.active.value)
            .order_by(sums.c[metric].desc(), Member.id))
    # The user base is tens of millions of rows: joined only for a segment filter.
    if city or store_code:
        stmt = stmt.join(User, User.id == Member.user_id)
    if city:
        stmt = stmt.where(User.city == city)
    if store_code:
        stmt = stmt.where(User.store_code == store_code)
    return stmt


def leaderboard_page(stmt: sa.Select, *, offset: int, limit: int
                     ) -> tuple[list[dict[str, Any]], int]:
    """One page of `leaderboard_query` rows and the total, in one pass over the aggregates.

    COUNT(*) OVER () rides along with the page, so the window's sums are computed once, not once
    for the page and again for the count; only a page past the end needs a separate count.
    """
    rows = [dict(row) for row in db.session.execute(
        stmt.add_columns(sa.func.count().over().label("total")).offset(offset).limit(limit)
    ).mappings()]
    if rows:
        total = int(rows[0]["total"])
    else:
        total = db.session.scalar(
            sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())) or 0
    for row in rows:
        del row["total"]
    return rows, total


# --- weekly series -----------------------------------------------------------------------------

def week_starts(now: datetime, weeks: int) -> list[datetime]:
    """The starts of the `weeks` seven-day spans ending at `now`, oldest first.

    Spans end at `now` rather than on a calendar Monday, so the last bar is a full week and the
    series means the same whatever time zone the reader is in.
    """
    return [now - WEEK * (weeks - i) for i in range(weeks)]


def _per_week(column: Any, value: Any, starts: list[datetime], now: datetime,
              *where: Any, spans: list[tuple[datetime, datetime]] | None = None) -> list[Any]:
    """One grouped query: each row's week by one CASE (the first end it is before), summed.
    With `spans`, only the rows inside them (each a range its column's index reads)."""
    ends = [*starts[1:], now]
    week = sa.case(*((column < end, index) for index, end in enumerate(ends)))
    if spans is None:
        spans = [(starts[0], now)]
    if not spans:
        return [0] * len(starts)
    amount = (value if value is not None else sa.literal(1)).label("amount")
    # One range per span, glued with UNION ALL: each is an index-only scan of the column's
    # index (an OR of ranges is a bitmap scan that visits the table's rows).
    parts = [sa.select(week.label("week"), amount)
             .where(column >= first, column < until, *where) for first, until in spans]
    # The CASE is grouped on from a subquery: repeated in GROUP BY, PostgreSQL would see its
    # bound ends as other parameters than the select list's.
    rows = (sa.union_all(*parts) if len(parts) > 1 else parts[0]).subquery()
    sums = {index: amount for index, amount in db.session.execute(
        sa.select(rows.c.week, sa.func.sum(rows.c.amount)).group_by(rows.c.week))
        if index is not None}
    return [sums.get(index, 0) for index in range(len(starts))]


@dataclass(frozen=True)
class WeeklyActivity:
    week_starts: list[datetime]
    submitted: list[int]
    approved: list[int]
    points_issued: list[Decimal]


def weekly_activity(now: datetime, weeks: int = 12, *, use_rollup: bool = True
                    ) -> WeeklyActivity:
    """Submissions received, approvals decided and points issued (credits only) per week.

    The closed hours come from the activity rollup (koc.tiers.services.rollups), the rest
    from the base tables; `use_rollup=False` counts everything from the base tables (the
    figures are the same)."""
    starts = week_starts(now, weeks)
    ends = [*starts[1:], now]
    plan = rollups.plan(starts[0], now, starts[1:]) if use_rollup else None
    series: dict[str, list[Any]] = {}
    for source in rollups.sources():
        edge = _per_week(source.column, source.value, starts, now, *source.where,
                         spans=plan.edges[source.kind] if plan else None)
        rolled = rollups.rollup_sums(source.kind, plan, ends) if plan else {}
        series[source.kind] = [edge[i] + rolled.get(i, 0) for i in range(weeks)]
    return WeeklyActivity(week_starts=starts, submitted=[int(n) for n in series["submitted"]],
                          approved=[int(n) for n in series["approved"]],
                          points_issued=[Decimal(p) for p in series["points"]])


# The twelve weeks the leaderboard refresh stores (the dashboard's span).
STORED_PLATFORM_WEEKS = 12


@dataclass(frozen=True)
class PlatformEngagement:
    """Per platform (PLATFORMS order, only those with posts), one figure per week."""

    week_starts: list[datetime]
    engagement: dict[str, list[int]]   # likes + comments + saves of the approved posts
    posts: dict[str, list[int]]        # how many approved posts
    as_of: datetime | None = None      # when stored by the refresh; None: summed just now


def _platform_weeks(now: datetime, weeks: int) -> sa.Select:
    """platform, week (0 the oldest), interactions of each approved post posted in the `weeks`
    weeks ending at `now`: an index-only scan of ix_submissions_approved_posted on PostgreSQL
    (it carries platform and interactions)."""
    ends = [*week_starts(now, weeks)[1:], now]
    week = sa.case(*((Submission.posted_at < end, index) for index, end in enumerate(ends)))
    rows = (sa.select(Submission.platform, week.label("week"),
                      Submission.interactions.label("interactions"))
            .where(Submission.status == SubmissionStatus.approved.value,
                   Submission.posted_at >= now - WEEK * weeks, Submission.posted_at < now)
            .subquery())
    return (sa.select(rows.c.platform, rows.c.week,
                      sa.func.coalesce(sa.func.sum(rows.c.interactions), 0).label("engagement"),
                      sa.func.count().label("posts"))
            .where(rows.c.week.is_not(None))
            .group_by(rows.c.platform, rows.c.week))


def _as_series(starts: list[datetime], rows: Any, as_of: datetime | None) -> PlatformEngagement:
    engagement: dict[str, list[int]] = {}
    posts: dict[str, list[int]] = {}
    for platform, index, total, count in rows:
        engagement.setdefault(platform, [0] * len(starts))[index] = int(total)
        posts.setdefault(platform, [0] * len(starts))[index] = int(count)
    order = {platform: rank for rank, platform in enumerate(PLATFORMS)}
    ranked = sorted(engagement, key=lambda platform: order.get(platform, len(order)))
    return PlatformEngagement(week_starts=starts, engagement={p: engagement[p] for p in ranked},
                              posts={p: posts[p] for p in ranked}, as_of=as_of)


def engagement_by_platform(now: datetime, weeks: int = 12, *, use_stored: bool = True
                           ) -> PlatformEngagement:
    """What the approved posts of each platform earned, by the week they were posted.

    Posts are bucketed by when they went up, not when they were approved: a post's engagement
    grows with its metrics, so a week's figure is the latest counted one, which the activity
    rollup (closed hours that do not change) cannot hold. At the reference size summing twelve
    weeks reads over half a million posts, so the leaderboard refresh stores the figures every
    ten minutes (`refresh_engagement_by_platform`) and this reads them, with `as_of` saying
    when; before a first refresh, or for another span, they are summed now.
    """
    if use_stored and weeks == STORED_PLATFORM_WEEKS:
        stored = db.session.execute(
            sa.select(PlatformEngagementWeek.as_of, PlatformEngagementWeek.platform,
                      PlatformEngagementWeek.week, PlatformEngagementWeek.engagement,
                      PlatformEngagementWeek.posts)).all()
        if stored:
            as_of = max(row.as_of for row in stored)
            return _as_series(week_starts(as_of, weeks), [row[1:] for row in stored], as_of)
    return _as_series(week_starts(now, weeks), db.session.execute(_platform_weeks(now, weeks)),
                      None)


def refresh_engagement_by_platform(now: datetime) -> int:
    """Store the twelve weeks ending at `now` (every row rewritten, so a re-run converges and a
    run that dies half-way leaves the previous figures). The caller holds the leaderboard
    refresh's locks (koc.tiers.tasks.refresh_leaderboards), so two runs take turns. Flushes;
    returns the rows written."""
    db.session.execute(sa.delete(PlatformEngagementWeek))
    sums = _platform_weeks(now, STORED_PLATFORM_WEEKS).subquery()
    table = cast(sa.Table, PlatformEngagementWeek.__table__)
    db.session.execute(sa.insert(table).from_select(
        ["platform", "week", "engagement", "posts", "as_of"],
        sa.select(sums.c.platform, sums.c.week, sums.c.engagement, sums.c.posts,
                  sa.literal(now, UTCDateTime()))))
    # (Counted, not the cursor's rowcount: psycopg reports -1 for an INSERT ... SELECT here.)
    return int(db.session.scalar(sa.select(sa.func.count()).select_from(table)) or 0)


# --- where members stand -----------------------------------------------------------------------

def members_at_risk() -> dict[str, int]:
    """Active members below their tier's low-water mark (the grace period running), per tier."""
    rows = db.session.execute(
        sa.select(Member.tier_key, sa.func.count())
        .where(Member.tier_below_since.is_not(None), Member.tier_key.is_not(None),
               Member.status == MemberStatus.active.value)
        .group_by(Member.tier_key))
    return {tier: count for tier, count in rows if tier is not None}


# --- the machinery -----------------------------------------------------------------------------

def recent_tier_runs(limit: int = 14) -> list[TierRun]:
    """The scheduler's heartbeat: the tier job's last runs, oldest first."""
    runs = list(db.session.scalars(
        sa.select(TierRun).order_by(TierRun.started_at.desc(), TierRun.id.desc()).limit(limit)))
    return runs[::-1]


def webhook_health(now: datetime, days: int = 7) -> dict[str, int]:
    """Deliveries of the events of the last `days`, by status (pending, delivered, failed)."""
    counts = dict.fromkeys(("delivered", "pending", "failed"), 0)
    for status, count in db.session.execute(
        sa.select(WebhookDelivery.status, sa.func.count())
        .join(OutboxEvent, OutboxEvent.id == WebhookDelivery.event_id)
        .where(OutboxEvent.created_at >= now - timedelta(days=days))
        .group_by(WebhookDelivery.status)):
        counts[status] = count
    return counts
