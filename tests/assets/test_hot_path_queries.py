"""The statements one download link costs, pinned (PostgreSQL, SQLAlchemy statement counter).

The member and the rule versions come with the token lookup, the tier ranks from the process's
cache, the kit and its asset in one query (plain columns), and the download row in one INSERT.
"""

from __future__ import annotations

from flask import Flask

from tests.assets.conftest import Kits, png_bytes


def test_a_download_link_costs_three_statements(pg_app: Flask, count_queries) -> None:
    kits = Kits(pg_app)
    kit_id = kits.kit(min_tier="certified", segments=[{"city": "Guangzhou"}])
    asset_id = kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    _, member = kits.member(tier="certified", city="Guangzhou")
    path = f"/kits/{kit_id}/assets/{asset_id}/download"
    assert member.get(path).status_code == 200  # the rule versions come into the cache
    with count_queries(pg_app) as statements:
        response = member.get(path)
    assert response.status_code == 200, response.json
    assert [s.split()[0] for s in statements] == ["SELECT", "SELECT", "INSERT"]
    assert "FROM api_tokens" in statements[0] and "FROM kits" in statements[1]
    assert "INSERT INTO downloads" in statements[2]
