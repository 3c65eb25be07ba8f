"""Candidate rules as versioned data: a saved version rescores every user in one UPDATE and
reorders the list; a preview says how the top would change and saves nothing."""

from __future__ import annotations

from datetime import timedelta

import pytest
import sqlalchemy as sa

from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import User
from tests.conftest import Api, new_member, staff_token_for


def _rules(**changes):
    rules = {
        "weights": {"orders_count": 3.0, "spend_yuan": 2.0, "shares_count": 2.5,
                    "community_posts_count": 2.5},
        "recency": {"weight": 0.0, "half_life_days": 30},
        "required": {"city": [], "store_code": [], "tags": []},
        "excluded": {"city": [], "store_code": [], "tags": []},
        "exclusions": {"members": True, "opted_out_tags": ["opted_out"], "staff_tags": ["staff"]},
    }
    rules.update(changes)
    return {"rules": rules}


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_a_rules_change_rescores_every_user_in_one_update_and_reorders(
        request, engine, count_queries) -> None:
    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    viewer = Api(app.test_client(), staff_token_for(app, "viewer"))
    now = utcnow()
    users = {
        "big-spender": {"city": "上海", "orders_count": 80, "spend_cents": 9_000_000,
                        "last_order_at": (now - timedelta(days=300)).isoformat()},
        "recent": {"city": "广州", "orders_count": 3, "shares_count": 2,
                   "last_order_at": (now - timedelta(days=1)).isoformat()},
        "sharer": {"city": "广州", "shares_count": 40, "community_posts_count": 30,
                   "tags": ["toys"]},
        "opted": {"city": "广州", "orders_count": 500, "tags": ["opted_out"]},
        "clerk": {"city": "广州", "orders_count": 400, "tags": ["staff", "toys"]},
    }
    for external_id, fields in users.items():
        assert admin.put(f"/users/{external_id}", json=fields).status_code == 201
    new_member(app, admin, "already-member", orders_count=900)

    def ranking() -> list[str]:
        return [c["external_id"] for c in viewer.get("/candidates").json]

    assert viewer.get("/candidates/rules").json["version"] == 0
    # Version 0 excludes the opted-out and staff tags; members are never candidates.
    assert ranking() == ["big-spender", "sharer", "recent"]

    # What matters to this brand: recent buyers in Guangzhou who share; spend counts for little.
    proposed = _rules(weights={"orders_count": 1.0, "spend_yuan": 0.1, "shares_count": 3.0,
                               "community_posts_count": 1.0},
                      recency={"weight": 20.0, "half_life_days": 14},
                      required={"city": ["广州"], "store_code": [], "tags": []})
    before = {u.external_id: u.candidate_score for u in _users(app)}
    preview = admin.post("/candidates/rules/preview", json={**proposed, "top": 5})
    assert preview.status_code == 200, preview.json
    assert [r["external_id"] for r in preview.json["proposed"]] == ["recent", "sharer"]
    assert [r["external_id"] for r in preview.json["current"]] == [
        "big-spender", "sharer", "recent"]
    assert preview.json["left"] == ["big-spender"]
    assert preview.json["proposed"][0]["previous_rank"] == 3
    # ...and saved nothing.
    assert viewer.get("/candidates/rules").json["version"] == 0
    assert {u.external_id: u.candidate_score for u in _users(app)} == before
    assert ranking() == ["big-spender", "sharer", "recent"]

    with count_queries(app) as statements:
        saved = admin.put("/candidates/rules", json=proposed)
    assert saved.status_code == 200, saved.json
    assert saved.json["version"] == 1
    # The request saves the version; the rescoring is a job's (minutes at 40 million users).
    assert not [s for s in statements if s.lstrip().upper().startswith("UPDATE USERS")]
    from koc.members.tasks import rescore_candidates_job

    with count_queries(app) as statements, app.app_context():
        rescore_candidates_job.run(saved.json["job_id"])
    updates = [s for s in statements if s.lstrip().upper().startswith("UPDATE USERS")]
    assert len(updates) == 1, updates  # one set-based statement per part of 500,000 ids
    job = admin.get(f"/jobs/{saved.json['job_id']}").json
    assert job["status"] == "succeeded" and job["processed"] >= 3
    assert ranking() == ["recent", "sharer"]
    scores = {u.external_id: u.candidate_score for u in _users(app)}
    assert scores["big-spender"] == scores["opted"] == scores["clerk"] == -1
    assert scores["already-member"] == -1
    assert viewer.get("/candidates/rules").json["rules"]["recency"]["weight"] == 20.0

    # New and updated users are scored under the version in force.
    assert admin.put("/users/newcomer", json={"city": "广州", "shares_count": 100_000}
                     ).status_code == 201
    assert ranking()[0] == "newcomer"
    assert admin.put("/users/newcomer", json={"city": "北京"}).status_code == 200
    assert "newcomer" not in ranking()


def _users(app) -> list[User]:
    with app.app_context():
        return list(db.session.scalars(sa.select(User)))


def test_bad_rules_are_refused_naming_the_field(app) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    bad = _rules(weights={"orders_count": -1, "spend_yuan": 1, "shares_count": 1,
                          "community_posts_count": 1})
    response = admin.put("/candidates/rules", json=bad)
    assert response.status_code == 422
    assert "orders_count" in response.json["errors"]["json"]["rules"]["weights"]
    both = _rules(required={"city": ["广州"]}, excluded={"city": ["广州"]})
    response = admin.put("/candidates/rules", json=both)
    assert response.status_code == 422
    assert "city" in response.json["errors"]["json"]["rules"]["excluded"]
    keep_members = _rules(exclusions={"members": False})
    assert admin.put("/candidates/rules", json=keep_members).status_code == 422
    viewer = Api(app.test_client(), staff_token_for(app, "viewer"))
    assert viewer.put("/candidates/rules", json=_rules()).status_code == 403
    assert admin.get("/candidates/rules").json["version"] == 0
