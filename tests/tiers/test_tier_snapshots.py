"""The daily tier snapshot the tier job writes: one row per (day, tier), a re-run the same day
overwrites it, and the dashboard's history shows days without a snapshot as gaps."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import TierSnapshot
from koc.tiers.services import snapshots
from koc.tiers.services.engine import recalculate
from tests.conftest import Api, new_member, staff_token_for

DAY = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)


def _rows(app: Flask) -> list[tuple]:
    with app.app_context():
        return [tuple(r) for r in db.session.execute(
            sa.select(TierSnapshot.day, TierSnapshot.tier_key, TierSnapshot.members,
                      TierSnapshot.at_risk).order_by(TierSnapshot.day, TierSnapshot.tier_key))]


def _set_tier(app: Flask, member_id: int, tier: str | None, *, at_risk: bool = False) -> None:
    with app.app_context():
        member = db.session.get(Member, member_id)
        member.tier_key, member.tier_locked = tier, True
        member.tier_below_since = DAY - timedelta(days=1) if at_risk else None
        db.session.commit()


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_tier_job_writes_one_snapshot_per_day_and_a_rerun_overwrites_it(
    request: pytest.FixtureRequest, engine: str
):
    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    ids = [new_member(app, admin, f"snap-{n}")[0] for n in range(3)]
    _set_tier(app, ids[0], "senior")
    _set_tier(app, ids[1], "senior", at_risk=True)

    with app.app_context():
        recalculate(trigger="test", now=DAY)
        db.session.commit()
    first = _rows(app)
    _set_tier(app, ids[1], None)
    with app.app_context():
        recalculate(trigger="test", now=DAY + timedelta(hours=5))
        recalculate(trigger="test", now=DAY + timedelta(hours=6))
        db.session.commit()
    same_day = _rows(app)
    with app.app_context():
        recalculate(trigger="test", now=DAY + timedelta(days=1))
        db.session.commit()

    day = DAY.date()
    assert first == [(day, "none", 1, 0), (day, "senior", 2, 1)]
    assert same_day == [(day, "none", 2, 0), (day, "senior", 1, 0)]
    assert _rows(app)[2:] == [(day + timedelta(days=1), "none", 2, 0),
                              (day + timedelta(days=1), "senior", 1, 0)]


def test_a_tier_that_empties_during_the_day_is_written_as_zero(
    app: Flask, member_api: Callable
):
    member_id, _api = member_api()
    _set_tier(app, member_id, "certified")
    with app.app_context():
        snapshots.take_snapshot(DAY)
        db.session.commit()
    _set_tier(app, member_id, None)
    with app.app_context():
        snapshots.take_snapshot(DAY + timedelta(hours=1))
        db.session.commit()

    assert _rows(app) == [(DAY.date(), "certified", 0, 0), (DAY.date(), "none", 1, 0)]


def test_history_shows_days_without_a_snapshot_as_gaps(app: Flask, member_api: Callable):
    member_id, _api = member_api()
    _set_tier(app, member_id, "certified")
    with app.app_context():
        snapshots.take_snapshot(DAY - timedelta(days=2))
        snapshots.take_snapshot(DAY)
        db.session.commit()
        days, per_tier = snapshots.history(DAY, 4)

    assert days == [DAY.date() - timedelta(days=n) for n in (3, 2, 1, 0)]
    assert per_tier == {"certified": [None, 1, None, 1]}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_an_incremental_run_moves_todays_counts_as_a_recount_would(
    request: pytest.FixtureRequest, engine: str
):
    from koc.core.db import utcnow

    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    new_member(app, admin, "snap-quiet")
    poster_id, poster = new_member(app, admin, "snap-poster")
    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()
    before = {key: (members, risk) for _, key, members, risk in _rows(app)}

    created = poster.post("/submissions", json={
        "platform": "weibo", "post_url": f"https://weibo.com/7/snap-{poster_id}",
        "posted_at": (utcnow() - timedelta(days=1)).isoformat(), "metrics": {"likes": 10}})
    assert reviewer.post(f"/submissions/{created.json['id']}/review",
                         json={"decision": "approve"}).status_code == 200
    with app.app_context():
        summary = recalculate(trigger="test", incremental=True)
        db.session.commit()
    assert (summary.members_evaluated, summary.promotions) == (1, 1)
    moved = _rows(app)
    with app.app_context():
        recalculate(trigger="test")  # a full run recounts every member
        db.session.commit()

    assert moved == _rows(app)
    after = {key: (members, risk) for _, key, members, risk in moved}
    assert after["certified"][0] == before.get("certified", (0, 0))[0] + 1
    assert after["none"][0] == before["none"][0] - 1
