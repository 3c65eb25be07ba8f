"""The review queue shows the account a post was made on and lets a reviewer check its followers;
held submissions come back to the queue with their unconfirmed figures."""

from __future__ import annotations

import re

from flask import Flask

from koc.core.auth import create_staff
from koc.extensions import db
from tests.admin.conftest import PASSWORD, login
from tests.conftest import Api

_CSRF_META = re.compile(r'<meta name="csrf-token" content="([^"]+)"')


def _as_the_page_writes(client, page: str, path: str, body: dict):
    """What the queue's script sends: the API with the panel session and its CSRF header."""
    token = _CSRF_META.search(page)
    assert token, "no CSRF meta tag"
    return client.post(f"/api/v1{path}", json=body, headers={"X-CSRFToken": token.group(1)})


def _reviewer(app: Flask):
    with app.app_context():
        create_staff(email="audience@example.com", role="reviewer",
                     password=PASSWORD).locale = "en"
        db.session.commit()
    client = app.test_client()
    assert login(client, "audience@example.com").status_code == 302
    return client


def _join(app: Flask, admin: Api, name: str, followers: int) -> tuple[dict, Api]:
    admin.put(f"/users/{name}", json={})
    code = admin.post("/invitations", json={"external_id": name}).json["code"]
    accepted = Api(app.test_client()).post(f"/invitations/{code}/accept", json={
        "display_name": name, "accept_terms": True, "social_accounts": [{
            "platform": "xiaohongshu", "handle": f"{name}_red", "followers": followers,
            "url": f"https://www.xiaohongshu.com/user/profile/{'b' * 24}"}]}).json
    return accepted["member"], Api(app.test_client(), accepted["token"])


def test_reviewer_sees_the_account_and_confirms_its_followers_from_the_queue(
    app: Flask, staff_api, post_submission
) -> None:
    joined, member = _join(app, staff_api("admin"), "lin", followers=3)
    account_id = joined["social_accounts"][0]["id"]
    created = post_submission(member)
    client = _reviewer(app)
    page = client.get("/admin/reviews").text
    assert "lin_red" in page
    assert "Declared followers: 3" in page
    assert "Not confirmed" in page
    assert f"https://www.xiaohongshu.com/user/profile/{'b' * 24}" in page
    action = f"/social-accounts/{account_id}/followers"
    assert f'data-url="/api/v1{action}"' in page
    saved = _as_the_page_writes(client, page, action, {
        "followers": 1250, "submission_id": created["id"], "note": "checked profile"})
    assert saved.status_code == 200, saved.json
    page = client.get("/admin/reviews").text
    assert "Confirmed followers: 1250" in page and "Confirmed by a reviewer" in page
    checked = staff_api("viewer").get(f"/social-accounts/{account_id}").json
    assert checked["confirmed_followers"] == 1250
    assert [(c["confirmed"], c["submission_id"], c["note"]) for c in checked["checks"]] == [
        (1250, created["id"], "checked profile")]


def test_a_held_submission_is_confirmed_from_the_queue(app: Flask, staff_api,
                                                       post_submission) -> None:
    _, member = _join(app, staff_api("admin"), "wu", followers=5000)
    created = post_submission(member, metrics={"likes": 20})
    staff_api("reviewer").post(f"/submissions/{created['id']}/review",
                               json={"decision": "approve"})
    member.post(f"/submissions/{created['id']}/metrics", json={"likes": 100_000})
    client = _reviewer(app)
    page = client.get("/admin/reviews").text
    assert "Held: approved" in page
    action = re.search(rf'data-url="/api/v1(/submissions/{created["id"]}/metrics/\d+/decision)"',
                       page)
    assert action, "no confirm form for the held figures"
    before = member.get("/me").json["points"]["balance"]
    done = _as_the_page_writes(client, page, action.group(1),
                               {"decision": "confirm", "note": "seen on RED"})
    assert done.status_code == 200, done.json
    assert member.get("/me").json["points"]["balance"] > before
    assert "Held: approved" not in client.get("/admin/reviews").text


def test_member_page_shows_where_each_tier_number_came_from(app: Flask, staff_api,
                                                            post_submission) -> None:
    joined, member = _join(app, staff_api("admin"), "he", followers=40)
    account_id = joined["social_accounts"][0]["id"]
    created = post_submission(member, metrics={"likes": 20})
    client = _reviewer(app)
    page = client.get(f"/admin/members/{joined['id']}").text
    assert "Counts as at least the floor until confirmed" in page
    reviewer = staff_api("reviewer")
    reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    member.post(f"/submissions/{created['id']}/metrics", json={"likes": 30})
    snapshot_id = member.get(f"/submissions/{created['id']}/metrics").json[0]["id"]
    page = client.get("/admin/reviews").text
    assert _as_the_page_writes(client, page, f"/social-accounts/{account_id}/followers",
                               {"followers": 900, "submission_id": created["id"]}
                               ).status_code == 200
    assert _as_the_page_writes(client, page,
                               f"/submissions/{created['id']}/metrics/{snapshot_id}/decision",
                               {"decision": "confirm"}).status_code == 200
    page = client.get(f"/admin/members/{joined['id']}").text
    accounts = page[page.index('id="social-accounts"'):page.index('id="best-posts"')]
    assert '<td class="num">900</td>' in accounts and "Confirmed by a reviewer" in accounts
    assert '<td class="num">40</td>' in accounts  # as declared
    assert "audience@example.com" in accounts
    best = page[page.index('id="best-posts"'):page.index('id="timeline"')]
    assert f"#{created['id']}" in best and ">30<" in best
    assert "audience@example.com" in best
