"""The metrics tier rules are written in, each computed for every member in one grouped query.

A query returns (member_id, value) rows for the members that have any activity; members with
none are 0. `member_ids` narrows a query to some members (incremental runs, one member's /me),
`member_range` to an id range (one part of a run split across workers).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.orm import InstrumentedAttribute

from koc.extensions import db
from koc.members.models import Member, SocialAccount
from koc.submissions.models import PointsEntry, Submission, SubmissionStatus
from koc.submissions.services import audience
from koc.tiers.services.rules import RuleSet, clauses

# Metric name -> what it measures, as a member reads it in /me.
METRICS = {
    "approved_submissions": "approved posts",
    "points_earned": "points earned",
    "weekly_streak": "consecutive weeks with an approved post",
    "best_post_interactions": "likes + comments + saves of the best post",
    "best_post_reach": "likes + comments + saves of the best post per 1,000 followers "
                       "(confirmed, or at least the floor)",
    "average_rating": "average reviewer rating",
    "distinct_kits": "different kits used",
}
STREAK_DEFAULT_WINDOW_DAYS = 90

MetricKey = tuple[str, int | None]
MetricValues = dict[MetricKey, dict[int, float]]


def metric_key(condition: dict[str, Any]) -> MetricKey:
    window = condition.get("window_days")
    if condition["metric"] == "weekly_streak" and window is None:
        window = STREAK_DEFAULT_WINDOW_DAYS
    return condition["metric"], window


def metric_keys(tiers: Iterable[dict[str, Any]]) -> set[MetricKey]:
    """Every (metric, window) the tiers' conditions read."""
    return {metric_key(c) for tier in tiers for c in clauses(tier["rules"])}


def _week_index(column: InstrumentedAttribute[datetime]) -> sa.ColumnElement[int]:
    """Whole weeks since the epoch, weeks starting on Monday (the epoch was a Thursday)."""
    if db.session.get_bind().dialect.name == "postgresql":
        # date_part gives double precision; extract() gives numeric, much slower to divide.
        seconds: sa.ColumnElement[Any] = sa.func.date_part("epoch", column)
    else:
        seconds = sa.cast(sa.func.strftime("%s", column), sa.Integer)
    return sa.cast(sa.func.floor((seconds + 3 * 86400) / 604800), sa.BigInteger)


MemberRange = tuple[int, int]


def in_scope(column: InstrumentedAttribute[int], member_ids: list[int] | None,
             member_range: MemberRange | None) -> list[sa.ColumnElement[bool]]:
    conditions = []
    if member_ids is not None and db.session.get_bind().dialect.name == "postgresql":
        # One array parameter however many ids: an IN list binds one parameter per id, and
        # PostgreSQL takes at most 65,535 (an incremental run can have more active members).
        conditions.append(column == sa.any_(sa.literal(list(member_ids),
                                                       type_=ARRAY(sa.BigInteger))))
    elif member_ids is not None:
        conditions.append(column.in_(member_ids))
    if member_range is not None:
        conditions.append(column.between(*member_range))
    return conditions


@contextmanager
def planned_for_few_rows(active: bool = True) -> Iterator[None]:
    """PostgreSQL: the statements inside planned without sequential scans or JIT compilation,
    for a read of some members by id (an incremental run). Restored on the way out; after an
    error the transaction's rollback restores them (set_config(..., true) is local to it).

    The statistics overestimate the posts per member 10 to 20 times (ANALYZE's sample of a
    skewed column: 28,550 distinct members estimated for 500,000), so at 5,000 ids the planner
    read every member (0.1 s, where by primary key it takes 0.015 s) and JIT-compiled the
    per-member metric query (0.27 s of its 0.6 s) for work it thought 15 times bigger."""
    if not active or db.session.get_bind().dialect.name != "postgresql":
        yield
        return
    saved = db.session.execute(sa.text(
        "SELECT current_setting('enable_seqscan'), current_setting('jit')")).one()
    db.session.execute(sa.text(
        "SELECT set_config('enable_seqscan', 'off', true), set_config('jit', 'off', true)"))
    yield
    db.session.execute(sa.text(
        "SELECT set_config('enable_seqscan', :seqscan, true), set_config('jit', :jit, true)"),
        {"seqscan": saved[0], "jit": saved[1]})


def metric_query(  # noqa: PLR0911 - one branch per metric reads better than a table of lambdas
    metric: str, window_days: int | None, now: datetime, member_ids: list[int] | None,
    member_range: MemberRange | None = None, *, floor: int | None = None,
) -> sa.Select:
    """`floor`: the unconfirmed-followers floor (default: the setting)."""
    floor = audience.followers_floor() if floor is None else floor
    since = now - timedelta(days=window_days) if window_days else None
    approved = [Submission.status == SubmissionStatus.approved.value,
                *in_scope(Submission.member_id, member_ids, member_range)]
    if since is not None:
        approved.append(Submission.posted_at >= since)
    per_member = Submission.member_id

    if metric == "approved_submissions":
        return sa.select(per_member, sa.func.count()).where(*approved).group_by(per_member)
    if metric == "best_post_interactions":
        return (sa.select(per_member, sa.func.max(Submission.interactions))
                .where(*approved).group_by(per_member))
    if metric == "best_post_reach":
        # Normalised to the audience of the account the post was made on, so a small creator's
        # breakout post counts as much as a big account's routine one; an unconfirmed declared
        # count only through the floor scoring uses too.
        followers = (sa.select(sa.func.max(audience.effective_followers(floor)))
                     .where(SocialAccount.member_id == Submission.member_id,
                            SocialAccount.platform == Submission.platform)
                     .scalar_subquery())
        reach = Submission.interactions * 1000.0 / sa.func.nullif(followers, 0)
        return sa.select(per_member, sa.func.max(reach)).where(*approved).group_by(per_member)
    if metric == "average_rating":
        return (sa.select(per_member, sa.func.avg(Submission.rating))
                .where(*approved, Submission.rating.is_not(None)).group_by(per_member))
    if metric == "distinct_kits":
        return (sa.select(per_member, sa.func.count(sa.distinct(Submission.kit_id)))
                .where(*approved, Submission.kit_id.is_not(None)).group_by(per_member))
    if metric == "points_earned":
        where = [PointsEntry.points > 0,
                 *in_scope(PointsEntry.member_id, member_ids, member_range)]
        if since is not None:
            where.append(PointsEntry.created_at >= since)
        return (sa.select(PointsEntry.member_id, sa.func.sum(PointsEntry.points))
                .where(*where).group_by(PointsEntry.member_id))
    if metric == "weekly_streak":
        # Gaps and islands: consecutive week numbers minus their row number are constant
        # within a run of consecutive weeks.
        week = _week_index(Submission.posted_at)
        # GROUP BY rather than DISTINCT lets PostgreSQL follow the (member, status, posted_at)
        # index instead of sorting every approved post.
        weeks = (sa.select(per_member.label("member_id"), week.label("week"))
                 .where(*approved).group_by(per_member, week).subquery())
        islands = sa.select(
            weeks.c.member_id,
            (weeks.c.week - sa.func.row_number().over(
                partition_by=weeks.c.member_id, order_by=weeks.c.week)).label("island"),
        ).subquery()
        runs = (sa.select(islands.c.member_id, sa.func.count().label("length"))
                .group_by(islands.c.member_id, islands.c.island).subquery())
        return sa.select(runs.c.member_id, sa.func.max(runs.c.length)).group_by(runs.c.member_id)
    raise ValueError(f"unknown metric {metric}")


# Metrics read straight off a member's approved submissions: computed together, one grouped pass
# over those rows for every window the rules use (FILTER per window), instead of a query each.
_POST_METRICS = {"approved_submissions", "best_post_interactions", "best_post_reach",
                 "average_rating", "distinct_kits"}
_COUNTS = {"approved_submissions", "distinct_kits"}


def _followers_by_account(floor: int, member_ids: list[int] | None,
                          member_range: MemberRange | None) -> sa.Subquery:
    """(member, platform) -> the audience reach divides by: one grouped pass over the accounts,
    joined to the posts, where a correlated sub-plan per post would run millions of times.
    Narrowed to the members in scope: PostgreSQL does not push the join's member ids into a
    grouped subquery, so an incremental run would group every account of the programme."""
    return (sa.select(SocialAccount.member_id, SocialAccount.platform,
                      sa.func.max(audience.effective_followers(floor)).label("followers"))
            .where(*in_scope(SocialAccount.member_id, member_ids, member_range))
            .group_by(SocialAccount.member_id, SocialAccount.platform).subquery("audience"))


def _post_aggregate(metric: str, reach: sa.ColumnElement[Any] | None) -> Any:
    if metric == "approved_submissions":
        return sa.func.count()
    if metric == "best_post_interactions":
        return sa.func.max(Submission.interactions)
    if metric == "best_post_reach":
        return sa.func.max(reach)
    if metric == "average_rating":
        return sa.func.avg(Submission.rating)
    return sa.func.count(sa.distinct(Submission.kit_id))  # distinct_kits


def post_metrics_query(keys: Iterable[MetricKey], now: datetime, member_ids: list[int] | None,
                       member_range: MemberRange | None = None, *,
                       floor: int | None = None) -> tuple[sa.Select, list[MetricKey]]:
    """One grouped query for every post metric in `keys`; its columns after member_id follow
    the returned key order.

    For some members on PostgreSQL (an incremental run, one member's /me), the query is driven
    by their ids: for each id, an aggregate over that member's posts read off the
    (member_id, status, posted_at) index. As `member_id = ANY(ids)`, the plan hung on the
    estimated posts per member, which ANALYZE's sample gets 10 to 20 times too high when a few
    members post most (28,550 distinct members estimated for 500,000): at 5,000 ids it read
    the whole approved-posts index (7.7 million buffers, 1.7 s) instead of their 80,000
    posts (0.26 s)."""
    ordered = sorted({k for k in keys if k[0] in _POST_METRICS}, key=str)
    floor = audience.followers_floor() if floor is None else floor
    windows = [window for _, window in ordered]
    by_id = member_ids is not None and db.session.get_bind().dialect.name == "postgresql"
    scope: Any = None
    if by_id:
        scope = (sa.func.unnest(sa.literal(list(cast(list[int], member_ids)),
                                           type_=ARRAY(sa.BigInteger)))
                 .table_valued("id").render_derived(name="scope"))
        where = [Submission.status == SubmissionStatus.approved.value,
                 Submission.member_id == scope.c.id,
                 *in_scope(Submission.member_id, None, member_range)]
    else:
        where = [Submission.status == SubmissionStatus.approved.value,
                 *in_scope(Submission.member_id, member_ids, member_range)]
    bounded = [window for window in windows if window]
    if bounded and len(bounded) == len(windows):  # every metric windowed: skip older posts
        where.append(Submission.posted_at >= now - timedelta(days=max(bounded)))
    needs_reach = any(metric == "best_post_reach" for metric, _ in ordered)
    source: Any = Submission
    reach: sa.ColumnElement[Any] | None = None
    if needs_reach:
        if by_id:  # the member's own accounts, per platform
            followers: Any = (
                sa.select(SocialAccount.platform,
                          sa.func.max(audience.effective_followers(floor)).label("followers"))
                .where(SocialAccount.member_id == scope.c.id)
                .group_by(SocialAccount.platform).correlate(scope).lateral("audience"))
            joined = followers.c.platform == Submission.platform
        else:
            followers = _followers_by_account(floor, member_ids, member_range)
            joined = sa.and_(followers.c.member_id == Submission.member_id,
                             followers.c.platform == Submission.platform)
        source = sa.outerjoin(Submission, followers, joined)
        reach = Submission.interactions * 1000.0 / sa.func.nullif(followers.c.followers, 0)
    columns = []
    for metric, window in ordered:
        condition = (Submission.posted_at >= now - timedelta(days=window)) if window else None
        aggregate = _post_aggregate(metric, reach)
        columns.append(aggregate.filter(condition) if condition is not None else aggregate)
    if by_id:
        # A member without posts gets a row of zeros and NULLs, which compute() skips.
        per_member = (sa.select(*(c.label(f"m{n}") for n, c in enumerate(columns)))
                      .select_from(source).where(*where).lateral("per_member"))
        stmt = (sa.select(scope.c.id, *per_member.c)
                .select_from(scope.join(per_member, sa.true())))
        return stmt, ordered
    stmt = (sa.select(Submission.member_id, *columns).select_from(source).where(*where)
            .group_by(Submission.member_id))
    return stmt, ordered


def compute(keys: Iterable[MetricKey], *, now: datetime,
            member_ids: Iterable[int] | None = None,
            member_range: MemberRange | None = None) -> MetricValues:
    ids = list(member_ids) if member_ids is not None else None
    keys = set(keys)
    values: MetricValues = {}
    post_keys = [k for k in keys if k[0] in _POST_METRICS]
    if post_keys:
        stmt, ordered = post_metrics_query(post_keys, now, ids, member_range)
        columns: list[dict[int, float]] = [{} for _ in ordered]
        counts = [metric in _COUNTS for metric, _ in ordered]
        for member_id, *row in db.session.execute(stmt):
            for column, is_count, value in zip(columns, counts, row, strict=True):
                # A member with posts, none of them in this window (or none rated, none with a
                # kit), has no value here, as when each metric was its own query.
                if value is not None and not (is_count and value == 0):
                    column[member_id] = float(value)
        for key, column in zip(ordered, columns, strict=True):
            values[key] = column
    for metric, window in sorted(keys - set(post_keys), key=str):
        rows = db.session.execute(metric_query(metric, window, now, ids, member_range))
        values[(metric, window)] = {member_id: float(value or 0) for member_id, value in rows}
    return values


def compute_for(rules: RuleSet, *, now: datetime, member_ids: Iterable[int] | None = None,
                member_range: MemberRange | None = None) -> MetricValues:
    """For each (metric, window) the rules use: member id -> value, one grouped query each."""
    return compute(metric_keys(rules.tiers), now=now, member_ids=member_ids,
                   member_range=member_range)


def members_with_weak_streak(count: int, below: int, *, member_ids: Iterable[int],
                             member_range: MemberRange | None = None) -> set[int]:
    """Those of `member_ids` whose last `count` approved posts all had fewer than `below`
    interactions (the engine asks about a tier's holders and the members about to earn it,
    so only their posts are ranked)."""
    ids = list(member_ids)
    if db.session.get_bind().dialect.name == "postgresql":
        return _weak_streak_lateral(count, below, ids, member_range)
    where = [Submission.status == SubmissionStatus.approved.value,
             *in_scope(Submission.member_id, ids, member_range)]
    recent = sa.select(
        Submission.member_id,
        Submission.interactions,
        sa.func.row_number().over(partition_by=Submission.member_id,
                                  order_by=(Submission.posted_at.desc(), Submission.id.desc())
                                  ).label("recency"),
    ).where(*where).subquery()
    weak = sa.func.sum(sa.case((recent.c.interactions < below, 1), else_=0))
    stmt = (sa.select(recent.c.member_id)
            .where(recent.c.recency <= count)
            .group_by(recent.c.member_id)
            .having(sa.func.count() == count, weak == count))
    return set(db.session.scalars(stmt))


def _weak_streak_lateral(count: int, below: int, ids: list[int],
                         member_range: MemberRange | None) -> set[int]:
    """PostgreSQL: for each member asked about, its last `count` posts read straight off the
    (member_id, status, posted_at) index, instead of ranking every post of every member."""
    holders = (sa.select(Member.id.label("member_id"))
               .where(*in_scope(Member.id, ids, member_range))
               .subquery())
    last_posts = (sa.select(Submission.interactions)
                  .where(Submission.member_id == holders.c.member_id,
                         Submission.status == SubmissionStatus.approved.value)
                  .order_by(Submission.posted_at.desc(), Submission.id.desc())
                  .limit(count).lateral())
    weak = sa.func.sum(sa.case((last_posts.c.interactions < below, 1), else_=0))
    stmt = (sa.select(holders.c.member_id)
            .select_from(holders.join(last_posts, sa.true()))
            .group_by(holders.c.member_id)
            .having(sa.func.count() == count, weak == count))
    return set(db.session.scalars(stmt))
