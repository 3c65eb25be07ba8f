"""The statements one submission costs, pinned: the hot path must not grow round trips unnoticed.

Counted on PostgreSQL (what production runs) with a SQLAlchemy `before_cursor_execute` counter;
BEGIN and COMMIT are not cursor executions, so the count is the statements the request sends
besides those two.
"""

from __future__ import annotations

import itertools
import re

import pytest
from flask import Flask

from tests.conftest import Api, new_member, staff_token_for

_counter = itertools.count(1)


def _body() -> dict:
    return {"platform": "xiaohongshu",
            "post_url": f"https://www.xiaohongshu.com/explore/{next(_counter):024x}",
            "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": {"views": 800, "likes": 40, "comments": 4, "saves": 9}}


def _kinds(statements: list[str]) -> list[str]:
    """'SELECT api_tokens', 'INSERT submissions', ...: what each statement is about; a statement
    whose CTEs insert into several tables is 'INSERT submissions+metric_snapshots'."""
    kinds = []
    for statement in statements:
        if statement.startswith("WITH"):  # data-modifying CTEs: the tables they write
            kinds.append("INSERT " + "+".join(re.findall(r"INSERT INTO (\w+)", statement)))
            continue
        flat = statement
        while (stripped := re.sub(r"\([^()]*\)", "", flat)) != flat:  # drop sub-queries
            flat = stripped
        words = flat.split()
        verb = words[0]
        table = words[{"SELECT": words.index("FROM") + 1 if "FROM" in words else 1,
                       "INSERT": 2, "UPDATE": 1}.get(verb, 1)]
        kinds.append(f"{verb} {table}")
    return kinds


@pytest.fixture
def pg_member(pg_app: Flask) -> Api:
    admin = Api(pg_app.test_client(), staff_token_for(pg_app))
    _, member = new_member(pg_app, admin, "hot-path-1", city="Guangzhou")
    return member


def test_a_submission_with_an_idempotency_key_costs_four_statements(
        pg_app: Flask, pg_member: Api, count_queries) -> None:
    pg_member.post("/submissions", json=_body())  # rule versions come into the process's cache
    with count_queries(pg_app) as statements:
        response = pg_member.post("/submissions", json=_body(),
                                  headers={"Idempotency-Key": "k-pinned"})
    assert response.status_code == 201, response.json
    # The token lookup brings the member, its user and the rule versions; the key is claimed in
    # one statement; the submission and its first snapshot are one statement; the history
    # anomaly checks wait for a task after the commit.
    assert _kinds(statements) == ["SELECT api_tokens", "INSERT idempotency_keys",
                                  "INSERT submissions+metric_snapshots",
                                  "UPDATE idempotency_keys"]


def test_a_submission_without_a_key_costs_two_statements(pg_app: Flask, pg_member: Api,
                                                           count_queries) -> None:
    pg_member.post("/submissions", json=_body())
    with count_queries(pg_app) as statements:
        assert pg_member.post("/submissions", json=_body()).status_code == 201
    assert _kinds(statements) == ["SELECT api_tokens", "INSERT submissions+metric_snapshots"]


def test_a_replayed_key_costs_two_statements(pg_app: Flask, pg_member: Api,
                                             count_queries) -> None:
    body = _body()
    first = pg_member.post("/submissions", json=body, headers={"Idempotency-Key": "again"})
    with count_queries(pg_app) as statements:
        again = pg_member.post("/submissions", json=body, headers={"Idempotency-Key": "again"})
    assert (again.status_code, again.json["id"]) == (201, first.json["id"])
    assert _kinds(statements) == ["SELECT api_tokens", "INSERT idempotency_keys",
                                  "SELECT idempotency_keys"]


def test_rules_saved_by_another_process_apply_at_the_next_request(
        pg_app: Flask, make_app, postgres_url: str, pg_member: Api) -> None:
    # A second app on the same database stands for another gunicorn worker with its own cache.
    other = make_app(KOC_DATABASE_URL=postgres_url)
    pg_member.post("/submissions", json=_body())  # this process caches version 0 (defaults)
    admin = Api(other.test_client(), staff_token_for(other))
    rules = admin.get("/scoring/rules").json["rules"]
    rules["anomalies"]["likes_above_views"] = False
    assert admin.put("/scoring/rules", json={"rules": rules}).status_code == 200
    created = pg_member.post("/submissions", json={**_body(),
                                                   "metrics": {"views": 10, "likes": 500}})
    assert created.status_code == 201
    flags = Api(pg_app.test_client(), staff_token_for(pg_app, "viewer")).get(
        f"/submissions/{created.json['id']}/flags").json
    assert flags == []  # the other process's rules were in force, not the cached defaults
