"""Scoring: parts that add up, the audience normalisation, caps, and rules as validated data."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from koc.submissions.services.scoring import ScoreInputs, default_rules, score

POSTED = datetime(2026, 11, 1, 10, tzinfo=UTC)


def _inputs(**kw) -> ScoreInputs:
    values = {"metrics": {"views": 1000, "likes": 50, "comments": 5, "saves": 8, "shares": 1},
              "rating": 3, "followers": None, "posted_at": POSTED, "window": None, **kw}
    return ScoreInputs(**values)


def _parts_sum(breakdown: dict) -> Decimal:
    return sum((Decimal(str(v)) for v in breakdown["parts"].values()), Decimal(0))


@pytest.mark.parametrize("inputs", [
    _inputs(),
    _inputs(rating=5, window=(None, None)),
    _inputs(rating=1, followers=37),
    _inputs(metrics={"views": 10**9, "likes": 10**8, "comments": 10**7, "saves": 10**7,
                     "shares": 10**7}, rating=5, window=(POSTED, None)),
    _inputs(metrics={}, rating=None),
])
def test_breakdown_parts_add_up_to_the_score_exactly(inputs) -> None:
    total, breakdown = score(inputs, default_rules(), 3)
    assert _parts_sum(breakdown) == total
    assert breakdown["rules_version"] == 3


def test_small_account_is_scored_as_if_scaled_to_the_reference_audience() -> None:
    rules = default_rules()
    small, _ = score(_inputs(metrics={"likes": 50}, followers=500), rules, 1)
    reference, _ = score(_inputs(metrics={"likes": 100}, followers=1000), rules, 1)
    big, _ = score(_inputs(metrics={"likes": 50}, followers=100_000), rules, 1)
    assert small == reference
    assert big < small
    # Below the floor, followers count as the floor: 10 followers are not a 100x multiplier.
    tiny, breakdown = score(_inputs(metrics={"likes": 50}, followers=10), rules, 1)
    floor, _ = score(_inputs(metrics={"likes": 50}, followers=100), rules, 1)
    assert tiny == floor
    assert breakdown["inputs"]["audience_factor"] == 10


def test_engagement_is_on_a_log_scale() -> None:
    rules = default_rules()
    ten = score(_inputs(metrics={"likes": 10}), rules, 1)[1]["parts"]["likes"]
    hundred = score(_inputs(metrics={"likes": 100}), rules, 1)[1]["parts"]["likes"]
    assert hundred < 2.1 * ten  # ten times the likes, about twice the points


def test_rating_multiplies_and_window_bonus_adds() -> None:
    rules = default_rules()
    plain, parts3 = score(_inputs(rating=3), rules, 1)
    high, _ = score(_inputs(rating=5), rules, 1)
    assert parts3["parts"]["rating"] == 0
    assert high > plain
    in_window, breakdown = score(_inputs(window=(datetime(2026, 10, 1, tzinfo=UTC),
                                                 datetime(2026, 12, 1, tzinfo=UTC))), rules, 1)
    late, late_breakdown = score(_inputs(window=(None, datetime(2026, 10, 1, tzinfo=UTC))),
                                 rules, 1)
    assert breakdown["parts"]["in_window"] == 5
    assert in_window - plain == 5
    assert "in_window" not in late_breakdown["parts"] and late == plain


def test_caps_bring_engagement_and_total_down_as_named_parts() -> None:
    rules = copy.deepcopy(default_rules())
    rules["engagement"]["cap"] = 20
    rules["total_cap"] = 25
    huge = {"views": 10**7, "likes": 10**6, "comments": 10**5, "saves": 10**5, "shares": 10**5}
    total, breakdown = score(_inputs(metrics=huge, rating=5), rules, 1)
    assert total == 25
    assert breakdown["parts"]["engagement_cap"] < 0 and breakdown["parts"]["cap"] < 0
    assert _parts_sum(breakdown) == total


# --- the rules as data, through the API ---------------------------------------------------------

def test_rules_default_to_version_zero_and_saving_makes_the_next_version(staff_api) -> None:
    admin = staff_api("admin")
    current = admin.get("/scoring/rules").json
    assert current["version"] == 0
    rules = current["rules"]
    rules["base"] = 20
    saved = admin.put("/scoring/rules", json={"rules": rules})
    assert saved.status_code == 200, saved.json
    assert saved.json["version"] == 1
    assert staff_api("viewer").get("/scoring/rules").json["rules"]["base"] == 20
    assert staff_api("reviewer").put("/scoring/rules", json={"rules": rules}).status_code == 403


def test_approved_score_keeps_its_rules_version_and_new_approvals_use_the_new_one(
    staff_api, member_api
) -> None:
    admin = staff_api("admin")
    _, member = member_api()
    post = {"platform": "xiaohongshu", "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": {"likes": 10}}
    first = member.post("/submissions", json={
        **post, "post_url": "https://www.xiaohongshu.com/explore/" + "a" * 24}).json
    second = member.post("/submissions", json={
        **post, "post_url": "https://www.xiaohongshu.com/explore/" + "b" * 24}).json
    approved = admin.post(f"/submissions/{first['id']}/review", json={"decision": "approve"}).json
    rules = admin.get("/scoring/rules").json["rules"]
    rules["base"] = 50
    admin.put("/scoring/rules", json={"rules": rules})
    # New metrics re-score the first under the version it was approved with.
    rescored = admin.post(f"/submissions/{first['id']}/metrics", json={"likes": 10}).json
    assert rescored["score"] == approved["score"]
    assert rescored["score_breakdown"]["rules_version"] == 0
    later = admin.post(f"/submissions/{second['id']}/review", json={"decision": "approve"}).json
    assert later["score_breakdown"]["rules_version"] == 1
    assert later["score"] == approved["score"] + 40


@pytest.mark.parametrize(("change", "field"), [
    (lambda r: r.update(base=-1), "base"),
    (lambda r: r["engagement"]["weights"].pop("likes"), "likes"),
    (lambda r: r["engagement"]["weights"].update(likes="lots"), "likes"),
    (lambda r: r["engagement"].update(points_per_log=None), "points_per_log"),
    (lambda r: r["audience"].update(reference_followers=0), "reference_followers"),
    (lambda r: r["audience"].update(min_followers=5000), "min_followers"),
    (lambda r: r["rating_multipliers"].pop("5"), "rating_multipliers"),
    (lambda r: r["rating_multipliers"].update({"6": 2}), "rating_multipliers"),
    (lambda r: r.update(in_window_bonus="yes"), "in_window_bonus"),
    (lambda r: r.update(total_cap=-5), "total_cap"),
    (lambda r: r.update(points_expire_after_days=0), "points_expire_after_days"),
    (lambda r: r["anomalies"].update(jump_factor=1), "jump_factor"),
    (lambda r: r["anomalies"].update(media_max_distance=64), "media_max_distance"),
    (lambda r: r.update(surprise=1), "surprise"),
])
def test_bad_rules_are_422_naming_the_field_and_save_nothing(staff_api, change, field) -> None:
    admin = staff_api("admin")
    rules = admin.get("/scoring/rules").json["rules"]
    change(rules)
    response = admin.put("/scoring/rules", json={"rules": rules})
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert admin.get("/scoring/rules").json["version"] == 0
