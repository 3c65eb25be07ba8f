"""Creating submissions: every field's bad input is a 422 naming it, and nothing is written."""

from __future__ import annotations

from datetime import timedelta

import pytest

from koc.core.db import utcnow

GOOD = {"platform": "douyin", "post_url": "https://www.douyin.com/video/7301234567890123456",
        "posted_at": "2026-11-01T10:00:00+00:00", "caption": "开箱", "metrics": {"likes": 3}}


@pytest.mark.parametrize(("change", "field"), [
    ({"platform": None}, "platform"),
    ({"platform": "tiktok"}, "platform"),
    ({"post_url": "short"}, "post_url"),
    ({"post_url": "https://" + "a" * 1000}, "post_url"),
    ({"post_url": "see my post, no link"}, "post_url"),
    ({"posted_at": "2026-11-01"}, "posted_at"),
    ({"caption": "x" * 5001}, "caption"),
    ({"kit_id": "1"}, "kit_id"),
    ({"media_upload_ids": "1"}, "media_upload_ids"),
    ({"media_upload_ids": list(range(21))}, "media_upload_ids"),
    ({"metrics": [1, 2]}, "metrics"),
    ({"metrics": {"views": -1}}, "views"),
    ({"metrics": {"shares": 2.5}}, "shares"),
    ({"metrics": {"hearts": 2}}, "hearts"),
    ({"member_id": 7}, "member_id"),
])
def test_bad_field_is_422_naming_it_and_nothing_is_written(member_api, staff_api,
                                                           change, field) -> None:
    _, member = member_api()
    response = member.post("/submissions", json={**GOOD, **change})
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert staff_api("viewer").get("/submissions").json == []


@pytest.mark.clock
def test_posted_at_in_the_future_is_422_and_nothing_is_written(member_api, staff_api) -> None:
    _, member = member_api()
    day_after_tomorrow = (utcnow() + timedelta(days=2)).isoformat()
    response = member.post("/submissions", json={**GOOD, "posted_at": day_after_tomorrow})
    assert response.status_code == 422, response.json
    assert "posted_at" in response.json["errors"]["json"]
    assert staff_api("viewer").get("/submissions").json == []


def test_missing_required_fields_are_each_named(member_api) -> None:
    _, member = member_api()
    response = member.post("/submissions", json={})
    assert response.status_code == 422
    assert set(response.json["errors"]["json"]) == {"platform", "post_url", "posted_at"}


def test_wechat_channels_share_text_is_accepted_and_duplicates_are_caught(member_api) -> None:
    _, alice = member_api()
    _, bob = member_api()
    share = "视频号·小王 盲盒开箱第3期 #新品"
    body = {**GOOD, "platform": "wechat_channels", "post_url": share}
    first = alice.post("/submissions", json=body)
    assert first.status_code == 201
    again = bob.post("/submissions", json={**body, "post_url": f"  {share}  "})
    assert again.status_code == 409
    assert again.json["errors"]["existing_submission_id"] == first.json["id"]
