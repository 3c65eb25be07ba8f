"""Rules history for the rules pages: every saved version, newest first, and restoring an older
one by saving it again; the scoring preview's worked breakdown of a sample post."""

from __future__ import annotations

from collections.abc import Callable

from koc.submissions.services.scoring import default_rules
from koc.tiers.services.rules import DEFAULT_TIERS


def _with_certified_min(minimum: int) -> list[dict]:
    tiers = [dict(t) for t in DEFAULT_TIERS]
    tiers[0] = {**tiers[0], "rules": {"any": [{"metric": "approved_submissions",
                                               "min": minimum}]}}
    return tiers


def test_tier_rule_versions_list_newest_first_and_an_old_one_restores_as_a_new_version(
    staff_api: Callable
):
    admin, viewer = staff_api("admin"), staff_api("viewer")
    for minimum in (2, 3):
        assert admin.put("/tiers/rules", json={"tiers": _with_certified_min(minimum)}
                         ).status_code == 200

    listed = viewer.get("/tiers/rules/versions")

    assert listed.status_code == 200
    assert [v["version"] for v in listed.json] == [2, 1]
    assert listed.json[1]["tiers"][0]["rules"]["any"][0]["min"] == 2
    assert listed.json[0]["created_by_staff_id"] is not None
    restored = admin.put("/tiers/rules", json={"tiers": listed.json[1]["tiers"]})
    assert restored.status_code == 200 and restored.json["version"] == 3
    assert admin.get("/tiers").json["tiers"][0]["rules"]["any"][0]["min"] == 2
    assert viewer.put("/tiers/rules", json={"tiers": listed.json[1]["tiers"]}).status_code == 403


def test_scoring_preview_explains_a_sample_post_and_saves_nothing(staff_api: Callable):
    admin = staff_api("admin")
    rules = default_rules()

    answer = admin.post("/scoring/rules/preview", json={"rules": rules, "sample": {
        "metrics": {"views": 5000, "likes": 300, "comments": 40, "saves": 80},
        "rating": 4, "followers": 2000, "followers_confirmed": True, "in_window": True}})

    assert answer.status_code == 200, answer.json
    parts = answer.json["score_breakdown"]["parts"]
    assert round(sum(parts.values()), 2) == answer.json["score"]
    assert "in_window" in parts
    assert answer.json["score_breakdown"]["inputs"]["followers"] == 2000
    assert admin.get("/scoring/rules/versions").json == []
    assert admin.get("/scoring/rules").json["version"] == 0


def test_scoring_preview_names_the_bad_field(staff_api: Callable):
    admin = staff_api("admin")
    rules = default_rules()
    rules["audience"] = {"reference_followers": 100, "min_followers": 500}

    answer = admin.post("/scoring/rules/preview", json={"rules": rules,
                                                       "sample": {"rating": 9}})

    assert answer.status_code == 422
    assert "rating" in answer.json["errors"]["json"]["sample"]
    fixed = admin.post("/scoring/rules/preview", json={"rules": rules})
    assert fixed.status_code == 422
    assert "min_followers" in fixed.json["errors"]["json"]["rules"]["audience"]
