"""The ledger and duplicates on PostgreSQL, where concurrent requests really race."""

from __future__ import annotations

import random
import threading
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa

from koc.core.db import utcnow
from koc.extensions import db
from koc.submissions.models import PointsEntry, Submission
from tests.conftest import Api, new_member, staff_token_for

pytestmark = pytest.mark.postgres
NOTE = "65a1b2c3000000001f00aa01"


def _post(url: str, **metrics: int) -> dict:
    return {"platform": "xiaohongshu", "post_url": url, "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": metrics or {"views": 500, "likes": 40, "comments": 3, "saves": 6}}


def _race(calls) -> list:
    results: list = [None] * len(calls)
    barrier = threading.Barrier(len(calls))

    def run(index: int) -> None:
        barrier.wait()
        results[index] = calls[index]()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def _ledger(app) -> dict[int, Decimal]:
    with app.app_context():
        rows = db.session.execute(sa.select(PointsEntry.id, PointsEntry.points)).all()
        db.session.remove()
    return dict(rows)


def _approved_scores(app) -> Decimal:
    with app.app_context():
        total = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(Submission.score), 0))
                                  .where(Submission.status == "approved"))
        db.session.remove()
    return Decimal(total)


def test_one_post_in_three_spellings_by_two_members_at_once_is_one_submission(pg_app) -> None:
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    _, alice = new_member(pg_app, admin, "alice")
    _, bob = new_member(pg_app, admin, "bob")
    spellings = [
        (alice, f"https://www.xiaohongshu.com/explore/{NOTE}"),
        (bob, f"https://xiaohongshu.com/discovery/item/{NOTE}?xsec_token=abc&xsec_source=pc"),
        (bob, f"分享一篇笔记 HTTPS://WWW.XIAOHONGSHU.COM/explore/{NOTE.upper()}/#c 好物"),
    ]

    def attempt(member: Api, url: str):
        def call():
            response = Api(pg_app.test_client(), member.token).post("/submissions",
                                                                    json=_post(url))
            return response.status_code, response.json
        return call

    results = _race([attempt(member, url) for member, url in spellings])
    created = [body for status, body in results if status == 201]
    conflicts = [body for status, body in results if status == 409]
    assert len(created) == 1 and len(conflicts) == 2, results
    winner = created[0]["id"]
    for body in conflicts:
        assert body["errors"]["existing_submission_id"] == winner
        assert f"submission {winner}" in body["message"]
    assert [s["id"] for s in admin.get("/submissions").json] == [winner]


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_after_random_metrics_and_reviews_the_ledger_matches_approved_scores(pg_app,
                                                                             seed) -> None:
    rng = random.Random(seed)
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    members = [new_member(pg_app, admin, f"m{seed}-{i}")[1] for i in range(2)]
    ids = []
    for n in range(5):
        owner = rng.choice(members)
        url = f"https://www.xiaohongshu.com/explore/{seed:04x}{n:020x}"
        ids.append((owner, owner.post("/submissions", json=_post(url)).json["id"]))

    seen: dict[int, Decimal] = {}
    for _step in range(40):
        owner, submission_id = rng.choice(ids)
        action = rng.choice(["metrics", "metrics", "approve", "reject", "reopen"])
        if action == "metrics":
            metrics = {name: rng.randrange(0, 5000) for name in
                       ("views", "likes", "comments", "saves", "shares")}
            response = rng.choice([owner, admin]).post(f"/submissions/{submission_id}/metrics",
                                                       json=metrics)
            assert response.status_code == 201
        elif action == "approve":
            response = reviewer.post(f"/submissions/{submission_id}/review", json={
                "decision": "approve", "rating": rng.choice([None, 1, 2, 3, 4, 5])})
            assert response.status_code in (200, 409)
        elif action == "reject":
            response = reviewer.post(f"/submissions/{submission_id}/review", json={
                "decision": "reject", "reason": "off_brief"})
            assert response.status_code in (200, 409)
        else:
            response = reviewer.post(f"/submissions/{submission_id}/reopen",
                                     json={"note": "second look"})
            assert response.status_code in (200, 409)
        ledger = _ledger(pg_app)
        # Append-only: every entry seen before is still there with the same points.
        assert all(ledger.get(entry_id) == points for entry_id, points in seen.items())
        seen = ledger
        assert sum(ledger.values(), Decimal(0)) == _approved_scores(pg_app)

    balances = sum(Decimal(str(m.get("/me").json["points"]["balance"])) for m in members)
    assert balances == _approved_scores(pg_app)


def test_concurrent_metric_updates_book_each_difference_once(pg_app) -> None:
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    _, member = new_member(pg_app, admin, "busy")
    submission_id = member.post("/submissions", json=_post(
        f"https://www.xiaohongshu.com/explore/{NOTE}")).json["id"]
    reviewer.post(f"/submissions/{submission_id}/review", json={"decision": "approve",
                                                                "rating": 4})

    def update(likes: int):
        def call():
            return Api(pg_app.test_client(), member.token).post(
                f"/submissions/{submission_id}/metrics", json={"likes": likes}).status_code
        return call

    assert _race([update(100 * (i + 1)) for i in range(10)]) == [201] * 10
    final = Decimal(str(admin.get(f"/submissions/{submission_id}").json["score"]))
    assert sum(_ledger(pg_app).values(), Decimal(0)) == final
    assert Decimal(str(member.get("/me").json["points"]["balance"])) == final


@pytest.mark.clock
def test_points_expire_after_n_days_as_ledger_entries_once_per_day(pg_app) -> None:
    from koc.submissions.tasks import expire_points_task

    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    reviewer = Api(pg_app.test_client(), staff_token_for(pg_app, "reviewer"))
    _, old_timer = new_member(pg_app, admin, "old")
    _, newcomer = new_member(pg_app, admin, "new")
    for n, member in enumerate((old_timer, newcomer)):
        created = member.post("/submissions", json=_post(
            f"https://www.xiaohongshu.com/explore/{n:024x}")).json
        reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    earned = old_timer.get("/me").json["points"]["balance"]
    with pg_app.app_context():
        old_id = old_timer.get("/me").json["id"]
        db.session.execute(sa.update(PointsEntry).where(PointsEntry.member_id == old_id)
                           .values(created_at=utcnow() - timedelta(days=400)))
        db.session.commit()
        assert expire_points_task.run() == 0  # expiry is off by default
        rules = admin.get("/scoring/rules").json["rules"]
        rules["points_expire_after_days"] = 365
        assert admin.put("/scoring/rules", json={"rules": rules}).status_code == 200
        assert expire_points_task.run() == 1
        assert expire_points_task.run() == 0  # the same day again books nothing
        db.session.remove()
    assert old_timer.get("/me").json["points"] == {"balance": 0, "lifetime": earned}
    ledger = old_timer.get("/me/points").json
    assert ledger[0]["source"] == "expiry" and ledger[0]["points"] == -earned
    assert newcomer.get("/me").json["points"]["balance"] > 0
