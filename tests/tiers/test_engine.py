"""The tier engine over time: low-water mark, grace period, weak posts, incremental runs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from koc.core.db import utcnow
from koc.extensions import db

# One tier, easy to reason about: 10 approved posts in 30 days; holds at 9 (90%); drops after
# 7 days below and 14 days at the tier.
ONE_TIER = [{"key": "certified", "name": "Certified", "rank": 1,
             "rules": {"all": [{"metric": "approved_submissions", "min": 10,
                                "window_days": 30}]},
             "demotion": {"low_water": 0.9, "min_days_at_tier": 14, "days_below": 7}}]


@pytest.fixture
def t0() -> datetime:
    """The moment the test starts; its dates are stated relative to it."""
    return utcnow().replace(microsecond=0)


def week_start(at: datetime) -> datetime:
    """Monday 00:00 UTC of the week holding `at`: where the weekly streak's weeks begin."""
    midnight = at.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return midnight - timedelta(days=midnight.weekday())


def midweek(weeks_ago: int, now: datetime) -> datetime:
    """Wednesday noon of the week `weeks_ago` weeks before the one holding `now`."""
    return week_start(now) - timedelta(weeks=weeks_ago) + timedelta(days=2, hours=12)


def _post(app, member, reviewer, posted_at: datetime, likes: int = 10) -> None:
    created = member.post("/submissions", json={
        "platform": "douyin",
        "post_url": f"https://www.douyin.com/video/{abs(hash((member.token, posted_at, likes)))}",
        "posted_at": posted_at.isoformat(), "metrics": {"likes": likes}})
    assert created.status_code == 201, created.json
    reviewed = reviewer.post(f"/submissions/{created.json['id']}/review",
                             json={"decision": "approve", "rating": 3})
    assert reviewed.status_code == 200


def _run(app, at: datetime, **kw):
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        summary = recalculate(trigger="test", now=at, **kw)
        db.session.commit()
        return summary


def _tier(app, member_id: int) -> str | None:
    from koc.members.models import Member

    with app.app_context():
        return db.session.get(Member, member_id).tier_key


@pytest.fixture
def one_tier(staff_api):
    admin = staff_api("admin")
    assert admin.put("/tiers/rules", json={"tiers": ONE_TIER}).status_code == 200
    return admin


@pytest.mark.clock
def test_member_holds_at_the_low_water_mark_and_drops_only_after_the_grace_period(
    app, one_tier, member_api, staff_api, t0
) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    _post(app, member, reviewer, t0 - timedelta(days=25))
    for n in range(9):
        _post(app, member, reviewer, t0 - timedelta(days=1, minutes=n))
    assert _run(app, t0).promotions == 1

    # The oldest post leaves the window: 9 of 10 is exactly the low-water mark, still held.
    _run(app, t0 + timedelta(days=6))
    assert _tier(app, member_id) == "certified"

    # Every post has left the window: below, and the grace period starts.
    _run(app, t0 + timedelta(days=30))
    assert _tier(app, member_id) == "certified"
    six_days = _run(app, t0 + timedelta(days=36))
    assert (six_days.demotions, _tier(app, member_id)) == (0, "certified")
    seven_days = _run(app, t0 + timedelta(days=37, minutes=1))
    assert seven_days.demotions == 1
    assert _tier(app, member_id) is None
    history = one_tier.get(f"/members/{member_id}").json["tier_history"]
    assert history[0]["from_tier"] == "certified" and history[0]["to_tier"] is None
    assert "below the requirements" in history[0]["reason"]


@pytest.mark.clock
def test_member_who_recovers_during_grace_keeps_the_tier(app, one_tier, member_api,
                                                         staff_api, t0) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    for n in range(10):
        _post(app, member, reviewer, t0 - timedelta(days=20, minutes=n))
    _run(app, t0)
    _run(app, t0 + timedelta(days=11))  # all ten left the window: below from here
    with app.app_context():
        from koc.members.models import Member

        assert db.session.get(Member, member_id).tier_below_since is not None
    for n in range(9):
        _post(app, member, reviewer, utcnow() - timedelta(minutes=n))
    _run(app, utcnow() + timedelta(days=1))
    _run(app, utcnow() + timedelta(days=20))  # long past the grace period, but recovered
    assert _tier(app, member_id) == "certified"


@pytest.mark.clock
def test_member_below_the_mark_is_told_how_much_grace_is_left(app, one_tier, member_api,
                                                              staff_api) -> None:
    reviewer = staff_api("reviewer")
    _, member = member_api()
    for n in range(10):
        _post(app, member, reviewer, utcnow() - timedelta(days=30, hours=1, minutes=n))
    _run(app, utcnow() - timedelta(hours=3))  # the posts were inside the window then
    _run(app, utcnow())
    current = member.get("/me").json["progress"]["current_tier"]
    assert current["key"] == "certified"
    assert current["at_risk"] is True
    assert 6 <= current["grace_days_left"] <= 7
    hold = current["hold_requirements"][0]
    assert (hold["current"], hold["required"], hold["met"]) == (0, 9, False)


@pytest.mark.clock
def test_locked_member_is_never_demoted(app, one_tier, member_api, staff_api, t0) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    for n in range(10):
        _post(app, member, reviewer, t0 - timedelta(days=1, minutes=n))
    _run(app, t0)
    assert one_tier.patch(f"/members/{member_id}", json={"tier_locked": True}).status_code == 200
    for days in (40, 60, 90):
        _run(app, t0 + timedelta(days=days))
    assert _tier(app, member_id) == "certified"


@pytest.mark.clock
def test_three_weak_posts_in_a_row_take_a_member_out_of_senior(app, member_api, staff_api,
                                                               t0) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    # One post a fortnight: never two weeks in a row, so no weekly streak gives early access
    # on the way down, whichever weekday the test runs on.
    _post(app, member, reviewer, midweek(7, t0), likes=1500)
    _run(app, t0)
    assert _tier(app, member_id) == "senior"
    for weeks_ago in (5, 3):
        _post(app, member, reviewer, midweek(weeks_ago, t0), likes=20)
    _run(app, t0)
    assert _tier(app, member_id) == "senior"  # two weak posts are not yet a pattern
    _post(app, member, reviewer, midweek(1, t0), likes=20)
    summary = _run(app, t0)
    assert summary.demotions == 1
    # Out of senior, down to the highest tier still held: certified.
    assert _tier(app, member_id) == "certified"
    history = member.get("/me").json
    assert history["tier"]["key"] == "certified"


def test_a_member_whose_last_posts_are_weak_is_not_promoted_then_dropped_run_after_run(
        app, member_api, staff_api, t0) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    # A breakout post seven weeks ago, then three weak ones, all approved before any run: the
    # senior rule is met (the 90-day best post), the weak-post rule says not senior.
    _post(app, member, reviewer, midweek(7, t0), likes=1500)
    for weeks_ago in (5, 3, 1):
        _post(app, member, reviewer, midweek(weeks_ago, t0), likes=20)
    tiers = []
    for _ in range(3):
        _run(app, t0)
        tiers.append(_tier(app, member_id))
    # Straight to the tier it keeps, and no badge, group seat or message given and taken back.
    assert tiers == ["certified"] * 3
    history = staff_api("viewer").get(f"/members/{member_id}").json["tier_history"]
    assert [change["to_tier"] for change in history] == ["certified"]


@pytest.mark.clock
def test_weak_posts_in_three_weeks_running_leave_a_senior_member_with_early_access(
    app, member_api, staff_api, t0
) -> None:
    reviewer = staff_api("reviewer")
    member_id, member = member_api()
    _post(app, member, reviewer, midweek(7, t0), likes=1500)
    _run(app, t0)
    for weeks_ago in (3, 2, 1):
        _post(app, member, reviewer, midweek(weeks_ago, t0), likes=20)
    assert _run(app, t0).demotions == 1
    assert _tier(app, member_id) == "early_access"


@pytest.mark.clock
def test_weekly_streak_weeks_start_on_monday_at_midnight_utc(app, member_api, staff_api,
                                                              t0) -> None:
    from koc.tiers.services import metrics

    reviewer = staff_api("reviewer")
    across_id, across = member_api()
    within_id, within = member_api()
    monday = week_start(t0) - timedelta(weeks=2)
    # Sunday 23:59:59 and Monday 00:00 are two weeks; Monday 00:00 and Sunday 23:59:59 one.
    for at in (monday - timedelta(seconds=1), monday):
        _post(app, across, reviewer, at)
    for at in (monday, monday + timedelta(weeks=1, seconds=-1)):
        _post(app, within, reviewer, at)
    with app.app_context():
        streaks = metrics.compute([("weekly_streak", 90)], now=t0)[("weekly_streak", 90)]
    assert (streaks[across_id], streaks[within_id]) == (2, 1)


def test_incremental_run_reads_only_members_with_new_activity(app, member_api, staff_api,
                                                              count_queries) -> None:
    reviewer = staff_api("reviewer")
    first_id, first = member_api()
    _post(app, first, reviewer, utcnow() - timedelta(days=1))
    assert _run(app, utcnow()).promotions == 1
    second_id, second = member_api()
    _post(app, second, reviewer, utcnow() - timedelta(hours=1))
    summary = _run(app, utcnow() + timedelta(seconds=1), incremental=True)
    assert (summary.kind, summary.members_evaluated, summary.promotions) == ("incremental", 1, 1)
    assert _tier(app, second_id) == "certified"
    again = _run(app, utcnow() + timedelta(seconds=2), incremental=True)
    assert (again.members_evaluated, again.promotions) == (0, 0)
    assert _tier(app, first_id) == "certified"


def test_preview_counts_demotions_and_members_entering_grace(app, member_api,
                                                             staff_api) -> None:
    reviewer = staff_api("reviewer")
    _, member = member_api()
    for n in range(3):
        _post(app, member, reviewer, utcnow() - timedelta(days=1, minutes=n))
    _run(app, utcnow())
    admin = staff_api("admin")
    stricter = admin.get("/tiers").json["tiers"]
    stricter[0]["rules"] = {"all": [{"metric": "approved_submissions", "min": 5}]}
    preview = admin.post("/tiers/rules/preview", json={"tiers": stricter}).json
    assert preview["demotions"] == 0 and preview["entering_grace"] == 1
    assert member.get("/me").json["tier"]["key"] == "certified"


def test_a_full_run_split_in_parts_survives_a_dead_worker_and_never_redoes_a_part(
    app, member_api, staff_api
) -> None:
    from koc.tiers.models import TierRun
    from koc.tiers.services.engine import run_part, start_split_run

    reviewer = staff_api("reviewer")
    ids = []
    for _ in range(5):
        member_id, member = member_api()
        _post(app, member, reviewer, utcnow() - timedelta(days=1))
        ids.append(member_id)
    with app.app_context():
        parts = start_split_run(trigger="test", part_size=2)
        db.session.commit()
        assert len(parts) == 3
        assert run_part(parts[0]) is True
        db.session.commit()
        # The worker with the other parts died. While the parts are fresh, no second run
        # starts; once they are stale, the same run resumes with only the unfinished parts.
        assert start_split_run(trigger="test", part_size=2) == []
        resumed = start_split_run(trigger="test", part_size=2,
                                  now=utcnow() + timedelta(minutes=31))
        db.session.commit()
        assert resumed == parts[1:]
        for part in resumed:
            assert run_part(part) is True
            db.session.commit()
        assert run_part(parts[0]) is False  # a re-delivered part does nothing
        run = db.session.scalars(db.select(TierRun).where(TierRun.kind == "split")).one()
        assert (run.status, run.members_evaluated, run.promotions) == ("succeeded", 5, 5)
    assert {_tier(app, member_id) for member_id in ids} == {"certified"}

    with app.app_context():
        again = start_split_run(trigger="test", part_size=2)
        db.session.commit()
        for part in again:
            run_part(part)
            db.session.commit()
        latest = db.session.scalars(db.select(TierRun).order_by(TierRun.id.desc())).first()
        assert (latest.status, latest.promotions) == ("succeeded", 0)


@pytest.mark.postgres
def test_one_part_taken_by_two_workers_at_once_is_done_once(pg_app) -> None:
    from koc.tiers.services.engine import run_part, start_split_run
    from tests.conftest import Api, new_member, staff_token_for

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    new_member(pg_app, admin, "part-1")
    with pg_app.app_context():
        (part,) = start_split_run(trigger="test", part_size=1000)
        db.session.commit()
        assert run_part(part) is True  # holds the part's lock until commit
        with pg_app.app_context():  # a second worker, with its own connection
            assert run_part(part) is False
            db.session.rollback()
        db.session.commit()
        assert run_part(part) is False


@pytest.mark.postgres
def test_incremental_run_on_postgres_reads_only_active_members(pg_app) -> None:
    from tests.conftest import Api, new_member, staff_token_for

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    new_member(pg_app, admin, "quiet")
    _run(pg_app, utcnow())
    active_id, active = new_member(pg_app, admin, "active")
    _post(pg_app, active, reviewer, utcnow() - timedelta(hours=1))
    summary = _run(pg_app, utcnow() + timedelta(seconds=1), incremental=True)
    assert (summary.members_evaluated, summary.promotions) == (1, 1)
    assert _tier(pg_app, active_id) == "certified"


@pytest.mark.clock
@pytest.mark.postgres
def test_three_weak_posts_take_a_member_out_of_senior_on_postgres(pg_app, t0) -> None:
    from tests.conftest import Api, new_member, staff_token_for

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    member_id, member = new_member(pg_app, admin, "fading")
    steady_id, steady = new_member(pg_app, admin, "steady")
    for someone in (member, steady):
        _post(pg_app, someone, reviewer, midweek(7, t0), likes=1500)
    _run(pg_app, t0)
    # A fortnight apart, so no weekly streak holds early access for either of them.
    for weeks_ago in (5, 3, 1):
        _post(pg_app, member, reviewer, midweek(weeks_ago, t0), likes=20)
    for weeks_ago in (5, 3):
        _post(pg_app, steady, reviewer, midweek(weeks_ago, t0), likes=20)
    summary = _run(pg_app, t0)
    assert summary.demotions == 1
    assert (_tier(pg_app, member_id), _tier(pg_app, steady_id)) == ("certified", "senior")


@pytest.mark.postgres
def test_two_parts_finishing_together_both_close_cleanly(pg_app, monkeypatch) -> None:
    """Each part's tier_changes rows lock the run row KEY SHARE (their foreign key); two parts
    that then both locked it FOR UPDATE to close the run deadlocked. Both must succeed."""
    import threading

    from koc.tiers.models import TierRun
    from koc.tiers.services import engine
    from tests.conftest import Api, new_member, staff_token_for

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    for name in ("left", "right"):
        _, member = new_member(pg_app, admin, name)
        _post(pg_app, member, reviewer, utcnow() - timedelta(hours=1))
    with pg_app.app_context():
        parts = engine.start_split_run(trigger="test", part_size=1)
        db.session.commit()
    assert len(parts) == 2
    both_planned = threading.Barrier(2, timeout=30)
    scope = engine._recalculate_scope

    def in_step(*args, **kwargs):
        result = scope(*args, **kwargs)  # the part's tier_changes are written by now
        both_planned.wait()
        return result

    monkeypatch.setattr(engine, "_recalculate_scope", in_step)
    errors: list[BaseException] = []

    def worker(part_id: int) -> None:
        try:
            with pg_app.app_context():
                assert engine.run_part(part_id) is True
                db.session.commit()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(part,)) for part in parts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert errors == []
    with pg_app.app_context():
        run = db.session.scalars(db.select(TierRun).order_by(TierRun.id.desc())).first()
        assert (run.status, run.promotions) == ("succeeded", 2)


def _seats(app, member_id: int) -> list[tuple[bool, bool]]:
    """The member's senior-group rows: (live, due for removal) each."""
    import sqlalchemy as sa

    from koc.tiers.models import GroupMembership

    with app.app_context():
        return [(removed is None, due is not None) for removed, due in db.session.execute(
            sa.select(GroupMembership.removed_at, GroupMembership.removal_due_at)
            .where(GroupMembership.member_id == member_id).order_by(GroupMembership.id))]


@pytest.mark.clock
@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_incremental_runs_move_only_the_active_seniors_in_the_group_as_a_full_run_would(
    request, engine: str, t0
) -> None:
    from tests.conftest import Api, new_member, staff_token_for

    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    fading_id, fading = new_member(app, admin, "fading")
    back_id, back = new_member(app, admin, "back")
    steady_id, steady = new_member(app, admin, "steady")
    for someone in (fading, back, steady):
        _post(app, someone, reviewer, midweek(7, t0), likes=1500)
    _run(app, utcnow())
    assert {m: _seats(app, m) for m in (fading_id, back_id, steady_id)} == {
        fading_id: [(True, False)], back_id: [(True, False)], steady_id: [(True, False)]}

    # Two seniors post three weak notes in a row (a fortnight apart: no weekly streak); the
    # third senior posts nothing and is not read.
    for someone in (fading, back):
        for weeks_ago in (5, 3, 1):
            _post(app, someone, reviewer, midweek(weeks_ago, t0), likes=20)
    summary = _run(app, utcnow(), incremental=True)
    assert (summary.members_evaluated, summary.demotions) == (2, 2)
    assert _seats(app, fading_id) == _seats(app, back_id) == [(True, True)]
    assert _seats(app, steady_id) == [(True, False)]

    # One of them is back with a strong post before staff took them out: the removal is
    # called off on the seat they have, no second invitation.
    _post(app, back, reviewer, utcnow() - timedelta(hours=1), likes=1500)
    summary = _run(app, utcnow(), incremental=True)
    assert (summary.members_evaluated, summary.promotions) == (1, 1)
    assert _tier(app, back_id) == "senior"
    assert {m: _seats(app, m) for m in (fading_id, back_id, steady_id)} == {
        fading_id: [(True, True)], back_id: [(True, False)], steady_id: [(True, False)]}


@pytest.mark.postgres
def test_reach_read_for_some_members_divides_by_each_members_own_followers(pg_app) -> None:
    from koc.tiers.services import metrics
    from tests.conftest import Api, staff_token_for

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    ids = []
    for name, followers in (("big", 50_000), ("small", 2_000)):
        assert admin.put(f"/users/{name}", json={}).status_code in (200, 201)
        code = admin.post("/invitations", json={"external_id": name}).json["code"]
        accepted = Api(pg_app.test_client()).post(f"/invitations/{code}/accept", json={
            "display_name": name, "accept_terms": True,
            "social_accounts": [{"platform": "xiaohongshu", "handle": name,
                                 "followers": followers}]})
        assert accepted.status_code == 201, accepted.json
        member = Api(pg_app.test_client(), accepted.json["token"])
        created = member.post("/submissions", json={
            "platform": "xiaohongshu", "post_url": f"https://www.xiaohongshu.com/explore/{name}",
            "posted_at": (utcnow() - timedelta(days=2)).isoformat(), "metrics": {"likes": 300}})
        assert created.status_code == 201, created.json
        assert reviewer.post(f"/submissions/{created.json['id']}/review",
                             json={"decision": "approve"}).status_code == 200
        ids.append(accepted.json["member"]["id"])

    key = ("best_post_reach", 90)
    with pg_app.app_context():
        some = metrics.compute([key, ("approved_submissions", None)], now=utcnow(),
                               member_ids=[*ids, 10**9])  # and an id with nothing
        everyone = metrics.compute([key, ("approved_submissions", None)], now=utcnow())
    # 300 interactions per 1,000 of 50,000 followers, and of 2,000.
    assert some[key] == {ids[0]: 6.0, ids[1]: 150.0}
    assert some == {k: {m: v for m, v in column.items() if m in ids}
                    for k, column in everyone.items()}
