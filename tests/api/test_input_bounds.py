"""Inputs that once gave a 500 (found by the fuzzing pass) now give a 4xx naming the field."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from flask import Flask

from tests.conftest import Api

PAST_64_BITS = 2**63
PAST_32_BITS = 2**31
HUGE = 61008597541989856051200


@pytest.fixture
def admin(staff_api: Callable[[str], Api]) -> Api:
    return staff_api("admin")


def field_errors(response, location: str = "json") -> dict:
    assert response.status_code == 422, response.json
    return response.json["errors"][location]


@pytest.mark.parametrize("path", [
    f"/kits/{PAST_64_BITS}", f"/kits/{HUGE}/bundle", f"/members/{PAST_64_BITS}",
    f"/submissions/{HUGE}/metrics", f"/drops/{PAST_64_BITS}/lottery", "/kits/0",
])
def test_an_id_past_64_bits_in_a_path_is_not_found(admin: Api, path: str) -> None:
    response = admin.post(path) if path.endswith("bundle") else admin.get(path)
    assert response.status_code == 404


def test_a_review_of_a_submission_id_past_64_bits_is_not_found(admin: Api) -> None:
    response = admin.post(f"/submissions/{PAST_64_BITS}/review", json={"decision": "approve"})
    assert response.status_code == 404


def test_query_ids_and_pages_past_their_range_are_refused(admin: Api) -> None:
    assert "kit_id" in field_errors(
        admin.get("/submissions?page=2&kit_id=691182681925247289134153728"), "query")
    assert "page" in field_errors(admin.get("/submissions?page=23280065&kit_id=1"), "query")
    assert "page" in field_errors(admin.get("/drops?page=714978177456954394229604352"),
                                  "query")
    assert "kit_id" in field_errors(admin.get(f"/stats/funnel?kit_id={PAST_64_BITS}"), "query")
    assert "kit_id" in field_errors(admin.get("/submissions?kit_id=1.5"), "query")


def test_a_page_far_past_the_end_is_refused_on_a_submissions_metrics_history(
        admin: Api, member_api) -> None:
    _, member = member_api()
    created = member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://xhslink.com/a/bounds1",
        "posted_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()})
    assert created.status_code == 201, created.json
    response = admin.get(f"/submissions/{created.json['id']}/metrics"
                         "?page=4302571795346505257189376")
    assert "page" in field_errors(response, "query")


def test_a_drop_quantity_past_its_column_and_lone_surrogates_are_refused(admin: Api) -> None:
    now = datetime.now(UTC)
    window = {"opens_at": now.isoformat(), "closes_at": (now + timedelta(days=1)).isoformat()}
    response = admin.post("/drops", json={
        "product_name": "Serum \ud800", "sku": "S-1", "quantity": 32296469924647164, **window})
    assert set(field_errors(response)) == {"product_name", "quantity"}
    at_limit = admin.post("/drops", json={
        "product_name": "Serum", "sku": "S-1", "quantity": PAST_32_BITS - 1, **window})
    assert at_limit.status_code == 201, at_limit.json


def test_bulk_review_refuses_floats_booleans_and_huge_ids_naming_each(admin: Api) -> None:
    response = admin.post("/submissions/bulk-review", json={
        "decision": "approve", "ids": [1, 2.5, True, PAST_64_BITS, 0]})
    assert set(field_errors(response)["ids"]) == {"1", "2", "3", "4"}


def test_bulk_review_with_repeats_and_bad_ids_together_is_a_422(admin: Api) -> None:
    # A repeat beside an invalid item once mixed "_schema" with integer keys: a 500.
    response = admin.post("/submissions/bulk-review", json={
        "decision": "reject", "reason": "invalid_proof", "ids": [168, 0, 168, PAST_64_BITS]})
    assert set(field_errors(response)["ids"]) == {"1", "3"}


def test_engagement_counts_past_the_bound_are_refused(app: Flask, admin: Api,
                                                      member_api) -> None:
    _, member = member_api()
    created = member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://xhslink.com/a/bounds2",
        "posted_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()})
    assert created.status_code == 201, created.json
    response = admin.post(f"/submissions/{created.json['id']}/metrics",
                          json={"shares": PAST_64_BITS, "views": 1.0})
    assert set(field_errors(response)) == {"shares", "views"}


def test_a_submission_with_a_nul_in_its_url_is_refused(member_api) -> None:
    _, member = member_api()
    response = member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://xhslink.com/a/\x00x",
        "posted_at": (datetime.now(UTC) - timedelta(days=1)).isoformat()})
    assert "post_url" in field_errors(response)


def test_a_reopen_note_with_control_characters_is_refused(admin: Api) -> None:
    response = admin.post("/submissions/1/reopen", json={"note": "why\x07"})
    assert "note" in field_errors(response)


@pytest.mark.parametrize("segments", [
    [{"tag": "vip", "city": "Shanghai"}], [{"planet": "Mars"}], [{"tag": "\udc00"}],
    [{"tag": 5}], [{"tag": "x" * 65}], [{"tag": "vip"}] * 101,
])
def test_odd_kit_segments_are_refused(admin: Api, segments: list) -> None:
    assert "segments" in field_errors(admin.post("/kits", json={"title": "K",
                                                                "segments": segments}))
    kit = admin.post("/kits", json={"title": "K"})
    assert "segments" in field_errors(admin.patch(f"/kits/{kit.json['id']}",
                                                  json={"segments": segments}))


def test_a_kit_asset_past_64_bits_in_size_is_refused(admin: Api) -> None:
    kit = admin.post("/kits", json={"title": "K"})
    response = admin.post(f"/kits/{kit.json['id']}/assets", json={
        "filename": "a.png", "content_type": "image/png", "size": PAST_64_BITS})
    assert "size" in field_errors(response)


def test_user_counts_past_32_bits_and_nul_in_tags_are_refused(admin: Api) -> None:
    response = admin.put("/users/u-1", json={"orders_count": PAST_32_BITS,
                                             "tags": ["ok", "bad\x00"]})
    assert set(field_errors(response)) == {"orders_count", "tags"}


@pytest.mark.parametrize("moment", ["9999-12-31T23:59:59-05:00", "0001-01-01T00:00:00+01:00",
                                    "3001-01-01T00:00:00+00:00"])
def test_dates_out_of_range_are_refused(admin: Api, moment: str) -> None:
    response = admin.post("/kits", json={"title": "K", "launch_at": moment})
    assert "launch_at" in field_errors(response)


def test_unknown_webhook_events_are_refused_naming_the_field(admin: Api) -> None:
    response = admin.post("/webhooks", json={"url": "https://hooks.example.com/x",
                                             "events": ["kit.exploded"],
                                             "secret": "0123456789abcdef"})
    assert "events" in field_errors(response)


def test_a_path_key_with_control_characters_is_not_found(admin: Api) -> None:
    assert admin.get("/users/u%001").status_code == 404
    assert admin.get("/badges/b%00").status_code == 404


def test_the_served_document_states_the_bounds(client) -> None:
    document = client.get("/api/v1/openapi.json").json
    kit_id = document["paths"]["/api/v1/kits/{kit_id}"]["parameters"][0]["schema"]
    assert kit_id == {"type": "integer", "format": "int64", "minimum": 1,
                      "maximum": PAST_64_BITS - 1}
    drop = document["components"]["schemas"]["DropIn"]["properties"]
    assert drop["quantity"]["maximum"] == PAST_32_BITS - 1
    assert drop["product_name"]["maxLength"] == 200
    bulk = document["components"]["schemas"]["BulkReviewIn"]["properties"]["ids"]
    assert bulk["maxItems"] == 200
    assert bulk["uniqueItems"] is True
