"""Candidates: filtered by segment, last-order window and score, paged, with reasons as data."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from koc.core.db import utcnow
from tests.conftest import Api, new_member, staff_token_for


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_candidates_filter_page_and_explain_themselves(request, engine) -> None:
    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    recent = (utcnow() - timedelta(days=3)).isoformat()
    long_ago = (utcnow() - timedelta(days=200)).isoformat()
    users = {
        "gz-top": {"city": "广州", "tags": ["mother-baby"], "orders_count": 40,
                   "last_order_at": recent},
        "gz-mid": {"city": "广州", "tags": ["toys"], "orders_count": 10, "last_order_at": long_ago},
        "gz-low": {"city": "广州", "orders_count": 1, "store_code": "GZ01"},
        "sh-top": {"city": "上海", "tags": ["mother-baby"], "orders_count": 90},
    }
    for external_id, fields in users.items():
        assert admin.put(f"/users/{external_id}", json=fields).status_code == 201
    new_member(app, admin, "member-already", orders_count=500)

    def ids(query: str) -> list[str]:
        response = admin.get(f"/candidates?{query}")
        assert response.status_code == 200, response.json
        return [c["external_id"] for c in response.json]

    assert ids("") == ["sh-top", "gz-top", "gz-mid", "gz-low"]
    assert ids("city=广州") == ["gz-top", "gz-mid", "gz-low"]
    assert ids("tag=mother-baby") == ["sh-top", "gz-top"]
    assert ids("store_code=GZ01") == ["gz-low"]
    assert ids("ordered_within_days=30") == ["gz-top"]
    top = admin.get("/candidates?city=广州").json[0]
    assert ids(f"min_score={top['score']}") == ["sh-top", "gz-top"]
    assert ids("page=2&page_size=3") == ["gz-low"]
    assert ids("limit=2&page=2&page_size=1") == ["gz-top"]
    paged = admin.get("/candidates?page_size=3")
    assert json.loads(paged.headers["X-Pagination"])["total"] == 4

    assert {"code": "orders", "value": 40} in top["reasons"]
    assert {"code": "ordered_within_days", "value": 30} in top["reasons"]
    assert admin.get("/candidates?ordered_within_days=0").status_code == 422


def many_users(app, count: int) -> None:
    """`count` scored users in one statement, none of them tagged."""
    from koc.extensions import db

    with app.app_context():
        db.session.execute(db.text(
            "INSERT INTO users (external_id, display_name, city, tags, orders_count, spend_cents,"
            " shares_count, community_posts_count, candidate_score, created_at, updated_at) "
            "SELECT 'bulk-' || g, 'bulk ' || g, 'Shanghai', '[]'::jsonb, g % 23, 0, 0, 0,"
            " (g % 1000) / 10.0, now(), now() FROM generate_series(1, :count) AS g"),
            {"count": count})
        db.session.execute(db.text("ANALYZE users"))
        db.session.commit()


def test_a_ranking_that_would_walk_the_whole_base_gives_up_naming_its_filters(
        pg_app, monkeypatch) -> None:
    from koc.members.services import candidates

    many_users(pg_app, 200_000)
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    assert admin.get("/candidates?city=Shanghai").status_code == 200
    # A tag no one has: the best-first walk reads all 200,000 before the page would fill.
    monkeypatch.setattr(candidates, "TIME_LIMIT_MS", 20)
    slow = admin.get("/candidates?city=Shanghai&tag=no-one-has-it")
    assert slow.status_code == 422, slow.json
    assert set(slow.json["errors"]["query"]) == {"city", "tag"}
    # The connection went back with its limit undone: the next read runs as long as it needs.
    monkeypatch.setattr(candidates, "TIME_LIMIT_MS", 60_000)
    assert admin.get("/candidates?city=Shanghai&tag=no-one-has-it").json == []
