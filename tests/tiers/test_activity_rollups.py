"""The dashboard's activity rollup: the weekly figures it gives (closed hours from the rollup,
the open edge from the base tables) are the same as a direct count over the base tables, a
re-run converges on the same rows, and an approval re-opened in a closed hour stops counting
at once, before the task has run again."""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
import time_machine
from flask import Flask

from koc.extensions import db
from koc.submissions.models import PointsEntry, ReviewEvent, Submission
from koc.submissions.services.review import reopen_submission
from koc.tiers.models import ActivityRollup, RollupMark
from koc.tiers.services import insight, rollups
from tests.conftest import Api, new_member, staff_token_for

# Neither on the hour nor on the minute, so every week boundary cuts an hour.
NOW = datetime(2026, 11, 20, 9, 37, 12, 345678, tzinfo=UTC)
WEEKS = 12
_ids = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Flask:
    """Both databases: the hour of a timestamp is computed differently in each."""
    if request.param == "sqlite":
        return make_app()
    return make_app(KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))


def _moments(rng: random.Random, count: int) -> list[datetime]:
    """Times over the thirteen weeks before NOW and a little after, with some exactly on the
    week boundaries and on hour boundaries, where an off-by-one would show."""
    span = (WEEKS + 1) * 7 * 24 * 3600
    found = [NOW - timedelta(seconds=rng.uniform(-600, span)) for _ in range(count)]
    boundaries = insight.week_starts(NOW, WEEKS)
    found += boundaries + [b - timedelta(microseconds=1) for b in boundaries]
    found += [rollups.hour_start(rollups.hour_of(NOW) - n) for n in (1, 2, 30, 500)]
    return found


def _fill(app: Flask, member_id: int, seed: int) -> list[int]:
    """Submissions (pending, approved, rejected) and ledger entries (credits and debits) at those
    times; returns the ids of the approved submissions."""
    rng = random.Random(seed)
    approved = []
    with app.app_context():
        for at in _moments(rng, 300):
            n = next(_ids)
            status = rng.choice(["pending", "approved", "approved", "rejected"])
            reviewed = at + timedelta(hours=rng.uniform(0, 30)) if status != "pending" else None
            submission = Submission(
                member_id=member_id, platform="weibo", post_url=f"https://w.test/{seed}/{n}",
                canonical_url=f"https://w.test/{seed}/{n}", posted_at=at - timedelta(days=1),
                status=status, reviewed_at=reviewed, created_at=at)
            db.session.add(submission)
            db.session.flush()
            if status == "approved":
                approved.append(submission.id)
                db.session.add(ReviewEvent(submission_id=submission.id, action="approve",
                                           created_at=reviewed))
            db.session.add(PointsEntry(
                member_id=member_id, source="adjustment", reference=f"{seed}-{n}",
                points=Decimal(rng.choice(["10", "2.5", "-4", "30.25"])), created_at=at))
        db.session.commit()
    return approved


def _direct(app: Flask) -> tuple[list[int], list[int], list[Decimal]]:
    """The weekly figures counted in Python over every base row, the definition itself."""
    ends = [*insight.week_starts(NOW, WEEKS)[1:], NOW]
    start = insight.week_starts(NOW, WEEKS)[0]

    def week(at: datetime | None) -> int | None:
        if at is None or not start <= at < NOW:
            return None
        return next(i for i, end in enumerate(ends) if at < end)

    submitted, approved, points = [0] * WEEKS, [0] * WEEKS, [Decimal(0)] * WEEKS
    with app.app_context():
        for created, reviewed, status in db.session.execute(
                sa.select(Submission.created_at, Submission.reviewed_at, Submission.status)):
            if (w := week(created)) is not None:
                submitted[w] += 1
            if status == "approved" and (w := week(reviewed)) is not None:
                approved[w] += 1
        for created, amount in db.session.execute(
                sa.select(PointsEntry.created_at, PointsEntry.points)):
            if amount > 0 and (w := week(created)) is not None:
                points[w] += amount
    return submitted, approved, points


def _dashboard(app: Flask, **kw: Any) -> tuple[list[int], list[int], list[Decimal]]:
    with app.app_context():
        activity = insight.weekly_activity(NOW, WEEKS, **kw)
    return activity.submitted, activity.approved, activity.points_issued


def _refresh(app: Flask, at: datetime, **kw: Any) -> None:
    with app.app_context():
        rollups.refresh(at, **kw)
        db.session.commit()


def _rollup_rows(app: Flask) -> list[tuple]:
    with app.app_context():
        return [tuple(row) for row in db.session.execute(
            sa.select(ActivityRollup.kind, ActivityRollup.hour, ActivityRollup.amount)
            .order_by(ActivityRollup.kind, ActivityRollup.hour))]


def _member(app: Flask) -> int:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    return new_member(app, admin, f"rollup-{next(_ids)}")[0]


def test_weekly_figures_from_the_rollup_and_the_open_edge_equal_a_direct_count(app):
    member_id = _member(app)
    _fill(app, member_id, seed=1)
    expected = _direct(app)
    assert sum(expected[0]) > 200 and sum(expected[1]) > 50  # the data fills the weeks

    # No rollup yet: everything from the base tables.
    assert _dashboard(app) == expected
    # Filled up to five hours ago: those hours from the rollup, the rest (the open edge, the
    # hours the week boundaries cut) from the base tables.
    _refresh(app, NOW - timedelta(hours=5))
    with app.app_context():
        mark = db.session.get(RollupMark, rollups.MARK)
        assert mark.filled_until == rollups.hour_of(NOW - timedelta(hours=5) - rollups.CLOSE_AFTER)
    assert _rollup_rows(app)
    assert _dashboard(app) == expected
    assert _dashboard(app, use_rollup=False) == expected


def test_a_rerun_and_a_full_run_converge_on_the_same_rows(app):
    member_id = _member(app)
    _fill(app, member_id, seed=2)
    _refresh(app, NOW - timedelta(days=3))
    _refresh(app, NOW)
    once = _rollup_rows(app)
    _refresh(app, NOW)
    _refresh(app, NOW, full=True)
    assert _rollup_rows(app) == once
    # Filled in one go, the same rows as filled in steps.
    with app.app_context():
        db.session.execute(sa.delete(ActivityRollup))
        db.session.execute(sa.delete(RollupMark))
        db.session.commit()
    _refresh(app, NOW)
    assert _rollup_rows(app) == once
    assert _dashboard(app) == _direct(app)


def test_new_activity_after_the_run_is_counted_from_the_open_edge(app):
    member_id = _member(app)
    _fill(app, member_id, seed=3)
    _refresh(app, NOW - timedelta(hours=2))
    with app.app_context():
        db.session.add(Submission(
            member_id=member_id, platform="weibo", post_url="https://w.test/late",
            canonical_url="https://w.test/late", posted_at=NOW - timedelta(days=1),
            status="approved", reviewed_at=NOW - timedelta(minutes=3),
            created_at=NOW - timedelta(minutes=20)))
        db.session.add(PointsEntry(member_id=member_id, source="adjustment", reference="late",
                                   points=Decimal("7"), created_at=NOW - timedelta(minutes=3)))
        db.session.commit()
    assert _dashboard(app) == _direct(app)


def test_an_approval_reopened_in_a_closed_hour_stops_counting_before_the_next_run(app):
    member_id = _member(app)
    approved = _fill(app, member_id, seed=4)
    _refresh(app, NOW - timedelta(hours=1))
    with app.app_context():
        # Approved in hours the rollup holds: re-opening takes them out of those hours.
        old = db.session.scalars(
            sa.select(Submission).where(Submission.id.in_(approved),
                                        Submission.reviewed_at < NOW - timedelta(days=2))
            .order_by(Submission.id).limit(3)).all()
        assert len(old) == 3
        with time_machine.travel(NOW - timedelta(minutes=30), tick=False):
            for submission in old:
                reopen_submission(submission, note="wrong account", staff_id=None)
        db.session.commit()
    expected = _direct(app)
    before = _dashboard(app, use_rollup=False)
    assert before == expected
    assert _dashboard(app) == expected
    # The next run recomputes those hours; the figures stay the same.
    _refresh(app, NOW)
    assert _dashboard(app) == expected


def test_two_runs_at_once_take_turns_and_write_what_one_run_writes(
    make_app: Callable[..., Flask], postgres_url: str
):
    app = make_app(KOC_DATABASE_URL=postgres_url)
    member_id = _member(app)
    _fill(app, member_id, seed=5)
    _refresh(app, NOW)
    serial = _rollup_rows(app)
    with app.app_context():
        db.session.execute(sa.delete(ActivityRollup))
        db.session.execute(sa.delete(RollupMark))
        db.session.commit()

    barrier = threading.Barrier(2)
    failures: list[BaseException] = []

    def run() -> None:
        try:
            with app.app_context():
                barrier.wait()
                rollups.refresh(NOW)
                db.session.commit()
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == []
    assert _rollup_rows(app) == serial
    assert _dashboard(app) == _direct(app)


def test_engagement_by_platform_sums_each_platforms_approved_posts_by_the_week_they_went_up(app):
    member_id = _member(app)
    starts = insight.week_starts(NOW, WEEKS)
    posts = [  # platform, posted at, status, interactions
        ("xiaohongshu", starts[0], "approved", 100),             # the first moment counted
        ("xiaohongshu", starts[0] - timedelta(microseconds=1), "approved", 1_000),  # before
        ("xiaohongshu", starts[5] + timedelta(hours=3), "approved", 40),
        ("xiaohongshu", starts[5] + timedelta(days=2), "approved", 2),
        ("douyin", starts[5] + timedelta(days=1), "approved", 7),
        ("douyin", starts[11], "pending", 500),                  # not approved: not counted
        ("douyin", NOW - timedelta(seconds=1), "approved", 9),   # the last week
        ("weibo", NOW, "approved", 3),                           # the span ends before NOW
    ]
    with app.app_context():
        for n, (platform, posted_at, status, interactions) in enumerate(posts):
            db.session.add(Submission(
                member_id=member_id, platform=platform, post_url=f"https://p.test/{n}",
                canonical_url=f"https://p.test/{n}", posted_at=posted_at, status=status,
                interactions=interactions, created_at=NOW - timedelta(days=1)))
        db.session.commit()
        found = insight.engagement_by_platform(NOW, WEEKS)

    assert found.week_starts == starts
    # The programme's platform order, only platforms with approved posts in the span.
    assert list(found.engagement) == ["xiaohongshu", "douyin"]
    assert found.engagement["xiaohongshu"] == [100, 0, 0, 0, 0, 42, 0, 0, 0, 0, 0, 0]
    assert found.posts["xiaohongshu"] == [1, 0, 0, 0, 0, 2, 0, 0, 0, 0, 0, 0]
    assert found.engagement["douyin"] == [0, 0, 0, 0, 0, 7, 0, 0, 0, 0, 0, 9]

    # The leaderboard refresh stores the same figures; the dashboard then reads those, as of the
    # refresh, until the next one (a re-run writes the same rows).
    later = NOW + timedelta(minutes=7)
    with app.app_context():
        assert insight.refresh_engagement_by_platform(NOW) == 4
        assert insight.refresh_engagement_by_platform(NOW) == 4
        db.session.add(Submission(
            member_id=member_id, platform="weibo", post_url="https://p.test/late",
            canonical_url="https://p.test/late", posted_at=NOW - timedelta(hours=1),
            status="approved", interactions=50, created_at=NOW))
        db.session.commit()
        stored = insight.engagement_by_platform(later, WEEKS)
        live = insight.engagement_by_platform(later, WEEKS, use_stored=False)
    assert stored.as_of == NOW and stored.week_starts == starts
    assert (stored.engagement, stored.posts) == (found.engagement, found.posts)
    # (50, and 3 from the post at NOW, which the later span holds)
    assert live.as_of is None and live.engagement["weibo"][-1] == 53
