"""GET /api/v1/leaderboard: who drives the programme over a window, best first."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import PointsEntry, Submission
from koc.tiers.services import insight

pytestmark = pytest.mark.clock

_posts = itertools.count(1)


@pytest.fixture(params=["sqlite", "postgresql"])
def app(request: pytest.FixtureRequest, make_app: Callable[..., Flask]) -> Flask:
    """Both databases: the filters use JSON and date comparisons that differ between them."""
    if request.param == "sqlite":
        return make_app()
    return make_app(KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))



def _approved_post(member_id: int, *, posted_at: datetime, interactions: int) -> None:
    n = next(_posts)
    db.session.add(Submission(
        member_id=member_id, platform="xiaohongshu", post_url=f"https://x.test/{n}",
        canonical_url=f"https://x.test/{n}", posted_at=posted_at, status="approved",
        reviewed_at=posted_at, interactions=interactions))


def _points(member_id: int, points: str, *, at: datetime) -> None:
    db.session.add(PointsEntry(member_id=member_id, source="adjustment",
                               reference=str(next(_posts)), points=Decimal(points),
                               created_at=at))


@pytest.fixture
def programme(app: Flask, member_api: Callable[..., Any]) -> dict[str, int]:
    """Three KOCs in two cities, one with only old activity, one suspended."""
    ids = {
        "ann": member_api(city="上海", store_code="SH01")[0],
        "bo": member_api(city="上海", store_code="SH02")[0],
        "cai": member_api(city="北京", store_code="BJ01")[0],
        "old": member_api(city="上海", store_code="SH01")[0],
        "gone": member_api(city="上海", store_code="SH01")[0],
    }
    now = utcnow()
    with app.app_context():
        _points(ids["ann"], "50", at=now - timedelta(days=2))
        _approved_post(ids["ann"], posted_at=now - timedelta(days=3), interactions=100)
        _points(ids["bo"], "20", at=now - timedelta(days=1))
        for days in (1, 4, 9):
            _approved_post(ids["bo"], posted_at=now - timedelta(days=days), interactions=400)
        _points(ids["cai"], "80", at=now - timedelta(days=5))
        _points(ids["old"], "500", at=now - timedelta(days=45))
        _approved_post(ids["old"], posted_at=now - timedelta(days=45), interactions=9000)
        _points(ids["gone"], "900", at=now - timedelta(days=1))
        db.session.get(Member, ids["gone"]).status = "suspended"
        db.session.commit()
    return ids


def test_leaderboard_ranks_the_window_by_points_then_engagement_then_posts(staff_api, programme):
    viewer = staff_api("viewer")

    by_points = viewer.get("/leaderboard?window_days=30")
    assert by_points.status_code == 200, by_points.json
    assert [row["member_id"] for row in by_points.json] == [
        programme["cai"], programme["ann"], programme["bo"]]
    ann = by_points.json[1]
    assert ann == {"member_id": programme["ann"], "display_name": ann["display_name"],
                   "tier": None, "tier_name": None, "points": 50.0, "approved": 1,
                   "engagement": 100}

    by_engagement = viewer.get("/leaderboard?window_days=30&metric=engagement").json
    assert [(r["member_id"], r["engagement"]) for r in by_engagement] == [
        (programme["bo"], 1200), (programme["ann"], 100), (programme["cai"], 0)]

    # A longer window brings back the member whose activity is 45 days old.
    by_posts = viewer.get("/leaderboard?window_days=60&metric=approved").json
    assert [(r["member_id"], r["approved"]) for r in by_posts][:2] == [
        (programme["bo"], 3), (programme["ann"], 1)]
    assert programme["old"] in {r["member_id"] for r in by_posts}
    assert programme["gone"] not in {r["member_id"] for r in by_posts}


def test_leaderboard_filters_by_city_and_store_and_pages(staff_api, programme):
    viewer = staff_api("viewer")

    shanghai = viewer.get("/leaderboard", query_string={"city": "上海"}).json
    assert [r["member_id"] for r in shanghai] == [programme["ann"], programme["bo"]]
    store = viewer.get("/leaderboard", query_string={"store_code": "SH02"}).json
    assert [r["member_id"] for r in store] == [programme["bo"]]

    first = viewer.get("/leaderboard?page_size=2&page=1")
    second = viewer.get("/leaderboard?page_size=2&page=2")
    assert [r["member_id"] for r in first.json + second.json] == [
        programme["cai"], programme["ann"], programme["bo"]]
    assert '"total": 3' in first.headers["X-Pagination"]
    past_the_end = viewer.get("/leaderboard?page_size=2&page=5")
    assert past_the_end.json == []
    assert '"total": 3' in past_the_end.headers["X-Pagination"]


def test_leaderboard_refuses_bad_input_naming_the_field_and_members(staff_api, member_api):
    viewer = staff_api("viewer")
    for query, field in (("window_days=0", "window_days"), ("metric=likes", "metric"),
                         ("window_days=abc", "window_days")):
        response = viewer.get(f"/leaderboard?{query}")
        assert response.status_code == 422, query
        assert field in str(response.json["errors"]), response.json
    _member_id, member = member_api()
    assert member.get("/leaderboard").status_code in (401, 403)


def test_weekly_activity_puts_each_post_and_credit_in_its_seven_day_span(
    app: Flask, member_api: Callable[..., Any],
):
    member_id = member_api()[0]
    now = datetime(2027, 3, 1, 0, 20, tzinfo=UTC)
    with app.app_context():
        for days_ago in (1, 7, 8, 83, 85):  # 7 days ago opens the last span; 85 is too old
            _approved_post(member_id, posted_at=now - timedelta(days=days_ago), interactions=1)
            _points(member_id, "2.5", at=now - timedelta(days=days_ago))
        _points(member_id, "-10", at=now - timedelta(days=1))  # a correction is not "issued"
        db.session.flush()
        db.session.execute(sa.update(Submission).values(
            created_at=Submission.posted_at, reviewed_at=Submission.posted_at))
        activity = insight.weekly_activity(now, weeks=12)
        db.session.rollback()

    assert activity.week_starts[-1] == now - timedelta(days=7)
    assert activity.week_starts[0] == now - timedelta(days=84)
    assert activity.submitted == [1] + [0] * 9 + [1, 2]
    assert activity.approved == activity.submitted
    assert activity.points_issued == [Decimal("2.5")] + [0] * 9 + [Decimal("2.5"), Decimal("5")]


def _ranking(viewer: Any, query: str) -> list[tuple[int, float, int, int]]:
    rows = viewer.get(f"/leaderboard?{query}").json
    return [(r["member_id"], r["points"], r["approved"], r["engagement"]) for r in rows]


def test_preset_windows_read_the_refreshed_standings_until_the_next_refresh(
        app: Flask, staff_api, programme, signed_in):
    from koc.tiers.tasks import refresh_leaderboards

    viewer = staff_api("viewer")
    live = {days: _ranking(viewer, f"window_days={days}") for days in (7, 30, 90, 365)}
    with app.app_context():
        refresh_leaderboards()
        # A second run writes the same rows, not twice as many, and says how many.
        summary = refresh_leaderboards()
        stored = db.session.scalar(sa.text("SELECT count(*) FROM leaderboard_standings"))
    assert {days: _ranking(viewer, f"window_days={days}") for days in live} == live
    # Each window holds every member with activity in it once (7 and 30 days: four, the
    # suspended one included, as the leaderboard leaves it out when it reads; 90 and 365
    # days: the member with 45-day-old activity too).
    assert stored == 4 + 4 + 5 + 5
    assert [summary[str(days)] for days in (7, 30, 90, 365)] == [4, 4, 5, 5]

    with app.app_context():
        _points(programme["bo"], "1000", at=utcnow() - timedelta(minutes=1))
        db.session.get(Member, programme["cai"]).status = "suspended"
        db.session.commit()
    # The preset window keeps the figures of its refresh; a suspension shows at once.
    assert _ranking(viewer, "window_days=30") == [
        row for row in live[30] if row[0] != programme["cai"]]
    # Any other window is summed from the posts and ledger as they are now.
    assert _ranking(viewer, "window_days=31")[0][:2] == (programme["bo"], 1020.0)
    page = signed_in("viewer").get("/admin/leaderboard?window_days=30")
    assert page.status_code == 200
    assert 'id="as-of"' in page.get_data(as_text=True)

    with app.app_context():
        refresh_leaderboards()
    assert _ranking(viewer, "window_days=30")[0][:2] == (programme["bo"], 1020.0)
