"""The embedded set-up under concurrent writers, through `koc serve` and real HTTP.

The same races the PostgreSQL tests run (idempotent retries, claims never over quantity, a ledger
never credited twice, two tier runs at once), here with gunicorn's two worker processes and CLI
commands writing to one SQLite file at the same moment, and no server error allowed.
"""

from __future__ import annotations

import json
import random
import uuid
from datetime import UTC, datetime, timedelta

from tests.concurrency.conftest import HttpApi, Served, race

CLIENTS = 50


def _now() -> datetime:
    # The server reads the wall clock; only offsets from it are used, never a calendar date.
    return datetime.now(UTC)


def _post_body(url: str, likes: int = 40) -> dict:
    return {"platform": "xiaohongshu", "post_url": url,
            "posted_at": (_now() - timedelta(hours=2)).isoformat(),
            "metrics": {"views": 500, "likes": likes, "comments": 3, "saves": 6}}


def _note_url() -> str:
    return f"https://www.xiaohongshu.com/explore/{uuid.uuid4().hex[:24]}"


def _members(served: Served, prefix: str, count: int) -> list[tuple[int, HttpApi]]:
    return [served.new_member(f"{prefix}-{n}") for n in range(count)]


def test_fifty_concurrent_retries_with_one_idempotency_key_make_one_submission(
        served: Served) -> None:
    member_id, member = served.new_member("retrier")
    body, key = _post_body(_note_url()), f"retry-{uuid.uuid4()}"

    def retry(client: HttpApi):
        def call():
            response = client.post("/submissions", json=body, headers={"Idempotency-Key": key})
            return (response.status_code, response.json().get("id"),
                    response.headers.get("Idempotent-Replayed"))
        return call

    results = race([retry(member.fresh()) for _ in range(CLIENTS)])

    assert {status for status, _, _ in results} == {201}, results
    assert len({submission_id for _, submission_id, _ in results}) == 1
    assert [replayed for _, _, replayed in results].count(None) == 1  # the rest are replays
    assert len(served.admin.get(f"/submissions?member_id={member_id}").json()) == 1
    assert served.query("SELECT count(*) FROM idempotency_keys WHERE key = ?", key) == [(1,)]
    assert served.server_errors() == []


def test_fifty_concurrent_claims_on_ten_units_give_exactly_ten_while_a_cli_run_writes(
        served: Served) -> None:
    drop = served.admin.post("/drops", json={
        "product_name": "Blind box S3", "sku": f"BB-{uuid.uuid4().hex[:6]}", "quantity": 10,
        "opens_at": (_now() - timedelta(hours=1)).isoformat(),
        "closes_at": (_now() + timedelta(days=1)).isoformat()})
    assert drop.status_code == 201, drop.text
    drop_id = drop.json()["id"]
    claimers = [api for _, api in _members(served, "claimer", CLIENTS)]

    # Another process writes the whole time, as the worker's periodic tier runs would.
    with served.cli_repeatedly("tiers", "recalc") as recalcs:
        statuses = race([lambda api=api: api.post(f"/drops/{drop_id}/claims").status_code
                         for api in claimers])

    assert recalcs and all(run.returncode == 0 for run in recalcs), recalcs
    assert sorted(statuses) == [201] * 10 + [409] * (CLIENTS - 10)
    listed = next(d for d in served.admin.get("/drops").json() if d["id"] == drop_id)
    assert listed["allocated"] == 10
    assert len(served.admin.get(f"/drops/{drop_id}/seeding").json()) == 10
    assert served.query("SELECT count(*) FROM drop_claims WHERE drop_id = ?", drop_id) == [(10,)]
    assert served.server_errors() == []


def _ledger_matches_scores(served: Served, member_ids: list[int]) -> None:
    """Every submission's ledger entries add up to its score when approved, to 0 otherwise;
    each member's balance is the sum of their approved scores."""
    per_submission = served.query("""
        SELECT s.id, s.status, s.score, coalesce(sum(p.points), 0)
        FROM submissions AS s LEFT JOIN points_ledger AS p ON p.submission_id = s.id
        WHERE s.member_id IN (SELECT value FROM json_each(?)) GROUP BY s.id""",
        json.dumps(member_ids))
    for submission_id, status, score, booked in per_submission:
        due = score if status == "approved" else 0
        assert round(booked, 2) == round(due, 2), (submission_id, status, score, booked)
    for member_id in member_ids:
        approved = served.admin.get(
            f"/submissions?member_id={member_id}&status=approved&page_size=100").json()
        balance = served.query(
            "SELECT coalesce(sum(points), 0) FROM points_ledger WHERE member_id = ?", member_id)
        assert round(balance[0][0], 2) == round(sum(s["score"] for s in approved), 2)


def test_concurrent_reviews_and_re_reviews_never_credit_the_ledger_twice(served: Served) -> None:
    members = _members(served, "reviewed", 3)
    member_ids = [member_id for member_id, _ in members]
    reviewers = [served.reviewer.fresh() for _ in range(CLIENTS)]
    submissions = []
    for n in range(6):
        _, api = members[n % len(members)]
        created = api.post("/submissions", json=_post_body(_note_url(), likes=40 + 10 * n))
        assert created.status_code == 201, created.text
        submissions.append((api, created.json()["id"]))

    # Fifty reviewers approve one pending post at once: one decision, one credit.
    first = submissions[0][1]
    statuses = race([lambda r=r: r.post(f"/submissions/{first}/review",
                                        json={"decision": "approve", "rating": 4}).status_code
                     for r in reviewers])
    assert sorted(statuses) == [200] + [409] * (CLIENTS - 1)
    assert served.query("SELECT count(*) FROM points_ledger WHERE submission_id = ?",
                        first) == [(1,)]

    # Then rounds of everything at once on the same posts: approvals, rejections, re-opens and
    # new metrics, each of which moves the ledger.
    rng = random.Random(8)
    for _round in range(4):
        calls = []
        for n in range(CLIENTS):
            owner, submission_id = rng.choice(submissions)
            reviewer = reviewers[n]
            action = rng.choice(["approve", "reject", "reopen", "metrics"])
            if action == "approve":
                calls.append(lambda r=reviewer, s=submission_id: r.post(
                    f"/submissions/{s}/review", json={"decision": "approve"}).status_code)
            elif action == "reject":
                calls.append(lambda r=reviewer, s=submission_id: r.post(
                    f"/submissions/{s}/review",
                    json={"decision": "reject", "reason": "off_brief"}).status_code)
            elif action == "reopen":
                calls.append(lambda r=reviewer, s=submission_id: r.post(
                    f"/submissions/{s}/reopen", json={"note": "second look"}).status_code)
            else:
                likes, device = rng.randrange(0, 5000), owner.fresh()
                calls.append(lambda o=device, s=submission_id, likes=likes: o.post(
                    f"/submissions/{s}/metrics", json={"likes": likes}).status_code)
        statuses = race(calls)
        assert set(statuses) <= {200, 201, 409}, statuses
        _ledger_matches_scores(served, member_ids)
    assert served.server_errors() == []


def test_two_tier_runs_at_once_promote_each_member_once(served: Served) -> None:
    members = _members(served, "tiered", 8)
    for _, api in members:
        created = api.post("/submissions", json=_post_body(_note_url()))
        assert created.status_code == 201, created.text
        assert served.reviewer.post(f"/submissions/{created.json()['id']}/review",
                                    json={"decision": "approve"}).status_code == 200
    # Earlier tests' runs may have promoted their own members; only these are new.
    before = served.query("SELECT count(*) FROM tier_runs")[0][0]

    runs = [served.cli_in_background("tiers", "recalc") for _ in range(2)]
    api_runs = race([lambda: served.admin.post("/tiers/recalculate").status_code] * 4)
    outputs = [run.communicate(timeout=300) for run in runs]

    assert [run.returncode for run in runs] == [0, 0], [err for _, err in outputs]
    assert set(api_runs) == {202}
    ids = [member_id for member_id, _ in members]
    # One history row and one live badge per member: the run after the first changed nothing.
    changes = served.query("SELECT member_id, to_tier FROM tier_changes WHERE member_id IN "
                           "(SELECT value FROM json_each(?)) ORDER BY member_id", json.dumps(ids))
    assert changes == [(member_id, "certified") for member_id in ids]
    badges = served.query("SELECT member_id FROM badges WHERE revoked_at IS NULL AND member_id "
                          "IN (SELECT value FROM json_each(?)) ORDER BY member_id", json.dumps(ids))
    assert badges == [(member_id,) for member_id in ids]
    for _, api in members:
        assert api.get("/me").json()["tier"]["key"] == "certified"
    # Both command-line runs finished: each ran after the other committed, or said it skipped.
    finished = served.query("SELECT status, count(*) FROM tier_runs WHERE id > ? "
                            "AND trigger = 'cli' GROUP BY status", before)
    skipped = sum("nothing done" in out for out, _ in outputs)
    assert finished == [("succeeded", 2 - skipped)]
    assert served.server_errors() == []
