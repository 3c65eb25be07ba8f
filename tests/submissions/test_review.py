"""Review: fixed reasons with free text, ratings, bulk decisions, re-opening with its log."""

from __future__ import annotations

import pytest


def test_reject_takes_a_reason_from_the_list_and_free_text(member_api, staff_api,
                                                           post_submission) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    created = post_submission(member)
    rejected = reviewer.post(f"/submissions/{created['id']}/review", json={
        "decision": "reject", "reason": "outside_window", "note": "posted a week late"})
    assert rejected.status_code == 200, rejected.json
    assert rejected.json["status"] == "rejected"
    assert (rejected.json["reason"], rejected.json["note"]) == ("outside_window",
                                                                "posted a week late")
    assert rejected.json["score"] is None
    # The member sees why.
    mine = member.get(f"/submissions/{created['id']}").json
    assert mine["reason"] == "outside_window"
    assert member.get("/me/points").json == []


@pytest.mark.parametrize(("body", "field"), [
    ({"decision": "reject"}, "reason"),
    ({"decision": "reject", "reason": "ugly"}, "reason"),
    ({"decision": "reject", "reason": "other"}, "note"),
    ({"decision": "reject", "reason": "off_brief", "note": "x" * 1001}, "note"),
    ({"decision": "approve", "reason": "duplicate"}, "reason"),
    ({"decision": "approve", "rating": 0}, "rating"),
    ({"decision": "approve", "rating": "5"}, "rating"),
    ({"decision": "approve", "surprise": True}, "surprise"),
])
def test_bad_review_is_422_naming_the_field(member_api, staff_api, post_submission,
                                           body, field) -> None:
    _, member = member_api()
    created = post_submission(member)
    response = staff_api("reviewer").post(f"/submissions/{created['id']}/review", json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert member.get(f"/submissions/{created['id']}").json["status"] == "pending"


def test_bulk_review_decides_all_at_once(member_api, staff_api, post_submission) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    ids = [post_submission(member)["id"] for _ in range(3)]
    response = reviewer.post("/submissions/bulk-review",
                             json={"ids": ids, "decision": "approve", "rating": 4})
    assert response.status_code == 200, response.json
    assert response.json["reviewed"] == 3
    assert {s["status"] for s in response.json["submissions"]} == {"approved"}
    scores = sum(s["score"] for s in response.json["submissions"])
    assert member.get("/me").json["points"]["balance"] == pytest.approx(scores)
    assert len(member.get("/me/points").json) == 3


def test_bulk_review_with_one_decided_or_unknown_id_changes_nothing(member_api, staff_api,
                                                                    post_submission) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    first, second = (post_submission(member)["id"] for _ in range(2))
    reviewer.post(f"/submissions/{first}/review", json={"decision": "approve"})
    conflict = reviewer.post("/submissions/bulk-review",
                             json={"ids": [second, first], "decision": "reject",
                                   "reason": "duplicate"})
    assert conflict.status_code == 409
    assert str(first) in conflict.json["message"]
    unknown = reviewer.post("/submissions/bulk-review",
                            json={"ids": [second, 987654], "decision": "approve"})
    assert unknown.status_code == 422 and "987654" in str(unknown.json["errors"]["json"]["ids"])
    assert member.get(f"/submissions/{second}").json["status"] == "pending"


@pytest.mark.parametrize(("body", "field"), [
    ({"decision": "approve"}, "ids"),
    ({"ids": [], "decision": "approve"}, "ids"),
    ({"ids": [1, 1], "decision": "approve"}, "ids"),
    ({"ids": list(range(1, 202)), "decision": "approve"}, "ids"),
    ({"ids": ["1"], "decision": "approve"}, "ids"),
    ({"ids": [1], "decision": "reject"}, "reason"),
    ({"ids": [1], "decision": "later"}, "decision"),
])
def test_bad_bulk_review_is_422_naming_the_field(staff_api, body, field) -> None:
    response = staff_api("reviewer").post("/submissions/bulk-review", json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])


def test_viewer_may_not_review_in_bulk_or_reopen(staff_api) -> None:
    viewer = staff_api("viewer")
    assert viewer.post("/submissions/bulk-review",
                       json={"ids": [1], "decision": "approve"}).status_code == 403
    assert viewer.post("/submissions/1/reopen", json={"note": "x"}).status_code == 403


def test_reopening_is_logged_and_takes_the_points_back_with_a_new_entry(
    member_api, staff_api, post_submission
) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    created = post_submission(member)
    approved = reviewer.post(f"/submissions/{created['id']}/review",
                             json={"decision": "approve", "rating": 5}).json
    reopened = reviewer.post(f"/submissions/{created['id']}/reopen",
                             json={"note": "the proof link is dead"})
    assert reopened.status_code == 200
    assert reopened.json["status"] == "pending" and reopened.json["score"] is None
    ledger = member.get("/me/points").json
    assert [entry["points"] for entry in ledger] == [-approved["score"], approved["score"]]
    assert member.get("/me").json["points"]["balance"] == 0

    again = reviewer.post(f"/submissions/{created['id']}/review",
                          json={"decision": "reject", "reason": "invalid_proof"})
    assert again.status_code == 200
    events = staff_api("viewer").get(f"/submissions/{created['id']}/events").json
    assert [(e["action"], e["rating"], e["reason"]) for e in events] == [
        ("approve", 5, None), ("reopen", 5, None), ("reject", None, "invalid_proof")]
    assert events[1]["note"] == "the proof link is dead"
    assert events[1]["score"] == approved["score"]
    # Members never see the review log.
    assert member.get(f"/submissions/{created['id']}/events").status_code == 403


def test_reopening_a_pending_submission_is_409_and_a_note_is_required(member_api, staff_api,
                                                                       post_submission) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    created = post_submission(member)
    assert reviewer.post(f"/submissions/{created['id']}/reopen",
                         json={"note": "why"}).status_code == 409
    missing = reviewer.post(f"/submissions/{created['id']}/reopen", json={})
    assert missing.status_code == 422 and "note" in str(missing.json["errors"])
    assert reviewer.post("/submissions/999999/reopen", json={"note": "x"}).status_code == 404


def test_new_metrics_on_an_approved_post_book_the_difference(member_api, staff_api,
                                                             post_submission) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    admin = staff_api("admin")
    created = post_submission(member, metrics={"likes": 10})
    approved = reviewer.post(f"/submissions/{created['id']}/review",
                             json={"decision": "approve", "rating": 3}).json
    # Staff figures count at once.
    grown = admin.post(f"/submissions/{created['id']}/metrics",
                       json={"views": 9000, "likes": 900, "comments": 50, "saves": 120}).json
    assert grown["score"] > approved["score"]
    ledger = member.get("/me/points").json
    assert ledger[0]["source"] == "submission_adjustment"
    assert ledger[0]["points"] == pytest.approx(grown["score"] - approved["score"])
    assert ledger[0]["submission_id"] == created["id"]
    # The same numbers again change nothing, so nothing is booked.
    admin.post(f"/submissions/{created['id']}/metrics",
               json={"views": 9000, "likes": 900, "comments": 50, "saves": 120})
    assert len(member.get("/me/points").json) == 2
    assert member.get("/me").json["points"]["balance"] == pytest.approx(grown["score"])
    history = member.get(f"/submissions/{created['id']}/metrics").json
    assert [s["likes"] for s in history] == [900, 900, 10]
    assert [s["source"] for s in history] == ["staff", "staff", "member"]


def test_audience_size_comes_from_the_members_account_on_that_platform(
    app, staff_api, post_submission
) -> None:
    from tests.conftest import Api

    admin = staff_api("admin")
    reviewer = staff_api("reviewer")
    members = []
    for followers, name in ((500, "small"), (50_000, "big")):
        admin.put(f"/users/{name}", json={})
        code = admin.post("/invitations", json={"external_id": name}).json["code"]
        accepted = Api(app.test_client()).post(f"/invitations/{code}/accept", json={
            "display_name": name, "accept_terms": True,
            "social_accounts": [{"platform": "xiaohongshu", "handle": name,
                                 "followers": followers}]}).json
        members.append(Api(app.test_client(), accepted["token"]))
        # Declared counts count only through the floor; a reviewer confirms these.
        account_id = accepted["member"]["social_accounts"][0]["id"]
        assert reviewer.post(f"/social-accounts/{account_id}/followers",
                             json={"followers": followers}).status_code == 200
    scores = []
    for member in members:
        created = post_submission(member, metrics={"likes": 200})
        reviewed = reviewer.post(f"/submissions/{created['id']}/review",
                                 json={"decision": "approve"}).json
        scores.append(reviewed)
    small, big = scores
    assert small["score_breakdown"]["inputs"]["followers"] == 500
    assert small["score"] > big["score"]
