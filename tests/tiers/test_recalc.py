"""Tier recalculation: promotion by the default rules, locks, re-runs, preview, rule edits."""

from __future__ import annotations

from datetime import timedelta

import pytest

from koc.core.db import utcnow
from koc.extensions import db


def _approved_posts(app, member_api, staff_api, *, weeks_ago: list[int], likes: int = 10):
    member_id, member = member_api()
    reviewer = staff_api("reviewer")
    for n, weeks in enumerate(weeks_ago):
        posted = (utcnow() - timedelta(weeks=weeks, hours=1)).isoformat()
        created = member.post("/submissions", json={
            "platform": "douyin", "post_url": f"https://www.douyin.com/video/{member_id}{n:06d}",
            "posted_at": posted, "metrics": {"likes": likes}})
        assert created.status_code == 201, created.json
        assert reviewer.post(f"/submissions/{created.json['id']}/review",
                             json={"decision": "approve", "rating": 3}).status_code == 200
    return member_id, member


def _recalc(app):
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        summary = recalculate(trigger="test")
        db.session.commit()
        return summary


@pytest.mark.clock
def test_default_rules_promote_by_posts_streak_and_best_post(app, member_api, staff_api) -> None:
    _, nobody = member_api()
    _, one_post = _approved_posts(app, member_api, staff_api, weeks_ago=[0])
    _, streak = _approved_posts(app, member_api, staff_api, weeks_ago=[0, 1, 2])
    _, gap = _approved_posts(app, member_api, staff_api, weeks_ago=[0, 2, 4])
    _, viral = _approved_posts(app, member_api, staff_api, weeks_ago=[1], likes=1000)
    summary = _recalc(app)
    assert summary.promotions == 5 - 1
    tiers = {name: api.get("/me").json["tier"] for name, api in
             [("nobody", nobody), ("one", one_post), ("streak", streak), ("gap", gap),
              ("viral", viral)]}
    assert tiers["nobody"] is None
    assert tiers["one"]["key"] == "certified"
    assert tiers["streak"]["key"] == "early_access"
    assert tiers["gap"]["key"] == "certified"
    assert tiers["viral"]["key"] == "senior"
    progress = gap.get("/me").json["progress"]
    assert progress["next_tier"]["key"] == "early_access"
    streak_req = next(r for r in progress["requirements"] if r["metric"] == "weekly_streak")
    assert (streak_req["current"], streak_req["required"], streak_req["met"]) == (1, 3, False)


def test_second_run_changes_nothing_and_locked_tier_is_left_alone(app, member_api,
                                                                   staff_api) -> None:
    locked_id, locked = _approved_posts(app, member_api, staff_api, weeks_ago=[0])
    admin = staff_api("admin")
    patched = admin.patch(f"/members/{locked_id}", json={"tier_locked": True})
    assert patched.status_code == 200
    _approved_posts(app, member_api, staff_api, weeks_ago=[0])
    assert _recalc(app).promotions == 1
    assert _recalc(app).promotions == 0
    assert locked.get("/me").json["tier"] is None
    history = admin.get(f"/members/{locked_id}").json["tier_history"]
    assert history == []


def test_manual_tier_change_is_logged_with_who_and_why(app, member_api, staff_api) -> None:
    member_id, member = member_api()
    admin = staff_api("admin")
    response = admin.patch(f"/members/{member_id}",
                           json={"tier": "senior", "reason": "store manager's pick"})
    assert response.status_code == 200
    assert member.get("/me").json["tier"]["key"] == "senior"
    entry = response.json["tier_history"][0]
    assert entry["to_tier"] == "senior" and entry["reason"] == "store manager's pick"
    assert entry["changed_by_staff_id"] is not None
    bad = admin.patch(f"/members/{member_id}", json={"tier": "platinum"})
    assert bad.status_code == 422 and "tier" in bad.json["errors"]["json"]


def test_preview_writes_nothing_and_saved_rules_apply_to_the_next_run(app, member_api,
                                                                       staff_api) -> None:
    _, member = _approved_posts(app, member_api, staff_api, weeks_ago=[0])
    admin = staff_api("admin")
    tiers = admin.get("/tiers").json["tiers"]
    tiers[0]["rules"] = {"all": [{"metric": "approved_submissions", "min": 2}]}
    preview = admin.post("/tiers/rules/preview", json={"tiers": tiers})
    assert preview.status_code == 200
    assert preview.json["promotions"] == 0
    assert member.get("/me").json["tier"] is None
    saved = admin.put("/tiers/rules", json={"tiers": tiers})
    assert saved.status_code == 200 and saved.json["version"] == 1
    assert _recalc(app).promotions == 0
    assert member.get("/me").json["progress"]["requirements"][0]["required"] == 2


@pytest.mark.parametrize(("change", "field"), [
    ({"rules": {"any": [{"metric": "horoscope", "min": 1}]}}, "metric"),
    ({"rules": {"all": [], "any": []}}, "rules"),
    ({"rank": 0}, "rank"),
    ({"key": "Not A Key"}, "key"),
])
def test_bad_rules_are_422_naming_the_field(staff_api, change, field) -> None:
    admin = staff_api("admin")
    tiers = admin.get("/tiers").json["tiers"]
    tiers[0].update(change)
    response = admin.put("/tiers/rules", json={"tiers": tiers})
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])


@pytest.mark.postgres
def test_two_runs_at_once_on_postgres_do_not_overlap(pg_app) -> None:
    from koc.tiers.services.engine import recalculate

    with pg_app.app_context():
        first = recalculate(trigger="test")  # holds the advisory lock until commit
        # A nested app context has its own session and connection: a second worker.
        with pg_app.app_context():
            second = recalculate(trigger="test")
            db.session.commit()
        db.session.commit()
        third = recalculate(trigger="test")
        db.session.commit()
    assert first.skipped is False
    assert second.skipped is True
    assert third.skipped is False


def test_recalculation_runs_the_same_queries_for_ten_members_or_thirty(
    app, member_api, staff_api, count_queries
) -> None:
    """Set-based: the number of statements does not grow with the number of members."""
    from koc.tiers.services.engine import recalculate

    def run() -> int:
        with count_queries(app) as statements, app.app_context():
            recalculate(trigger="test")
            db.session.rollback()
        return len(statements)

    for n in range(10):
        _approved_posts(app, member_api, staff_api, weeks_ago=[n % 3])
    with_ten = run()
    for n in range(20):
        _approved_posts(app, member_api, staff_api, weeks_ago=[n % 3, 1])
    assert run() == with_ten


@pytest.mark.parametrize("database", ["sqlite", "postgres"])
def test_member_locked_while_the_run_computes_keeps_the_tier_staff_set(
    request, database, make_app
) -> None:
    from koc.members.models import Member
    from koc.tiers.services import engine, history
    from koc.tiers.services import rules as tier_rules
    from tests.conftest import Api, new_member, staff_token_for

    app = make_app() if database == "sqlite" else make_app(
        KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    ids = []
    for n in range(2):
        member_id, member = new_member(app, admin, f"race-{n}")
        created = member.post("/submissions", json={
            "platform": "weibo", "post_url": f"https://weibo.com/1/{member_id}",
            "posted_at": utcnow().isoformat(), "metrics": {"likes": 3}}).json
        reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
        ids.append(member_id)

    with app.app_context():
        rules = tier_rules.current_rules()
        _, planned = engine.plan_changes(rules, now=utcnow())
        assert {c["member_id"] for c in planned} == set(ids)
        # SQLite cannot turn a read transaction into a write after another writer committed
        # (it answers "database is locked"), so the run's read ends here; PostgreSQL has no
        # such limit, and the plan is just as stale either way.
        db.session.commit()
        # Staff lock the first member between the read and the write.
        with app.app_context():
            db.session.get(Member, ids[0]).tier_locked = True
            db.session.commit()
        for change in planned:
            change["reason"] = "test"
        applied = engine._apply_changes(planned, run_id=None, rules_version=0, now=utcnow())
        db.session.commit()
        assert applied == {ids[1]}
        assert db.session.get(Member, ids[0]).tier_key is None
        assert db.session.get(Member, ids[1]).tier_key == "certified"
        assert [h.member_id for h in history.tier_history(ids[1])] == [ids[1]]
        assert history.tier_history(ids[0]) == []
