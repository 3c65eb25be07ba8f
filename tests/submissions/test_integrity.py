"""Integrity of the programme (issue 10), through HTTP on both set-ups: a declared audience, a
self-reported jump and a second link to the same post earn nothing they should not."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from flask import Flask

from koc.core.db import utcnow
from koc.extensions import db
from koc.submissions.services import short_links
from tests.conftest import Api, staff_token_for

NOTE = "65a1b2c3000000001f00aa01"
FULL = f"https://www.xiaohongshu.com/explore/{NOTE}?xsec_token=ABC&xsec_source=pc_share"
# Share text as the app copies it, full-width commas included.
SHARE_TEXT = "67 小红书 看看这篇 http://xhslink.com/a/Zx81kQ，复制本条信息，打开【小红书】App查看"  # noqa: RUF001


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def setup(request, make_app) -> Flask:
    if request.param == "postgres":
        return make_app(KOC_DATABASE_URL=request.getfixturevalue("postgres_url"))
    return make_app()


def _staff(app: Flask, role: str) -> Api:
    return Api(app.test_client(), staff_token_for(app, role))


def _join(app: Flask, admin: Api, name: str, followers: int) -> tuple[dict, Api]:
    assert admin.put(f"/users/{name}", json={}).status_code in (200, 201)
    code = admin.post("/invitations", json={"external_id": name}).json["code"]
    accepted = Api(app.test_client()).post(f"/invitations/{code}/accept", json={
        "display_name": name, "accept_terms": True,
        "social_accounts": [{"platform": "xiaohongshu", "handle": name,
                             "followers": followers}]})
    assert accepted.status_code == 201, accepted.json
    return accepted.json["member"], Api(app.test_client(), accepted.json["token"])


def _post(member: Api, url: str, likes: int) -> dict:
    response = member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": url,
        "posted_at": (utcnow() - timedelta(days=2)).isoformat(), "metrics": {"likes": likes}})
    assert response.status_code == 201, response.json
    return response.json


def _recalc(app: Flask) -> None:
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()


def _tier(member: Api) -> str | None:
    tier = member.get("/me").json["tier"]
    return tier and tier["key"]


def test_one_declared_follower_and_one_like_stays_below_senior(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    joined, member = _join(setup, admin, "tiny", followers=1)
    account = joined["social_accounts"][0]
    assert (account["followers"], account["confirmed_followers"],
            account["followers_source"]) == (1, None, "declared")
    created = _post(member, f"https://www.xiaohongshu.com/explore/{NOTE}", likes=1)
    approved = reviewer.post(f"/submissions/{created['id']}/review",
                             json={"decision": "approve", "rating": 3}).json
    # Scored as if the account had the floor's audience, and says so.
    assert approved["score_breakdown"]["inputs"]["followers"] == 1000
    assert approved["score_breakdown"]["inputs"]["followers_confirmed"] is False
    _recalc(setup)
    assert _tier(member) == "certified"

    # A reviewer checks the profile and confirms a real, larger audience: logged, still no lift.
    checked = reviewer.post(f"/social-accounts/{account['id']}/followers",
                            json={"followers": 2400, "note": "profile shows 2.4k",
                                  "submission_id": created["id"]})
    assert checked.status_code == 200, checked.json
    assert checked.json["confirmed_followers"] == 2400
    assert checked.json["followers_source"] == "reviewer"
    assert checked.json["followers_confirmed_by_staff_id"] is not None
    assert [(c["declared"], c["confirmed"], c["note"]) for c in checked.json["checks"]] == [
        (1, 2400, "profile shows 2.4k")]
    _recalc(setup)
    assert _tier(member) == "certified"


def _import_followers(app: Flask, admin: Api, csv: str) -> dict:
    from koc.submissions.tasks import import_followers_task

    response = admin.client.post(
        "/api/v1/social-accounts/followers/import",
        data={"file": (io.BytesIO(csv.encode()), "followers.csv")},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    with app.app_context():
        import_followers_task.run(response.json["job_id"])
    return admin.get(f"/jobs/{response.json['job_id']}").json


def test_a_trusted_follower_import_confirms_audiences_once_and_reports_bad_lines(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    joined, member = _join(setup, admin, "imported", followers=90_000)
    account = joined["social_accounts"][0]
    created = _post(member, f"https://www.xiaohongshu.com/explore/{NOTE}", likes=300)
    reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    declared_points = member.get("/me").json["points"]["balance"]

    csv = ("platform,handle,followers\n"
           "xiaohongshu,imported,1500\n"
           "xiaohongshu,nobody,10\n"
           "xiaohongshu,imported,-4\n"
           "douyin,,7\n")
    job = _import_followers(setup, admin, csv)
    assert (job["status"], job["processed"], job["failed"]) == ("succeeded", 1, 3)
    assert [e["line"] for e in job["errors"]] == [3, 4, 5]
    assert "followers" in job["errors"][1]["message"]
    audience = admin.get(f"/social-accounts/{account['id']}").json
    assert (audience["followers"], audience["confirmed_followers"],
            audience["followers_source"]) == (90_000, 1500, "import")
    # The floor had counted the declared 90,000 as 1,000; the confirmed 1,500 re-scores the
    # approved post through one ledger adjustment.
    confirmed_points = member.get("/me").json["points"]["balance"]
    assert confirmed_points != declared_points
    ledger = member.get("/me/points").json
    assert sum(1 for row in ledger if "followers" in (row["description"] or "")) == 1

    # The same file again (a re-sent job, a second upload) books nothing more.
    again = _import_followers(setup, admin, f"social_account_id,followers\n{account['id']},1500\n")
    assert (again["processed"], again["failed"]) == (1, 0)
    assert len(admin.get(f"/social-accounts/{account['id']}").json["checks"]) == 1
    assert member.get("/me/points").json == ledger


def test_a_follower_import_is_for_admins_and_refuses_a_file_without_the_columns(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    refused = reviewer.client.post(
        "/api/v1/social-accounts/followers/import",
        data={"file": (io.BytesIO(b"handle,followers\nx,1\n"), "f.csv")},
        headers={"Authorization": f"Bearer {reviewer.token}"}, content_type="multipart/form-data")
    assert refused.status_code == 403
    job = _import_followers(setup, admin, "who,how_many\nx,1\n")
    assert job["failed"] == 1 and job["errors"][0]["line"] == 1
    assert "who" in job["errors"][0]["message"]


def test_members_cannot_declare_their_own_confirmation(setup) -> None:
    admin = _staff(setup, "admin")
    admin.put("/users/sly", json={})
    code = admin.post("/invitations", json={"external_id": "sly"}).json["code"]
    response = Api(setup.test_client()).post(f"/invitations/{code}/accept", json={
        "display_name": "sly", "accept_terms": True,
        "social_accounts": [{"platform": "xiaohongshu", "handle": "sly", "followers": 5,
                             "confirmed_followers": 5}]})
    assert response.status_code == 422
    assert "confirmed_followers" in str(response.json["errors"])


def test_a_self_reported_jump_counts_only_once_confirmed_with_one_adjustment(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    _, member = _join(setup, admin, "jumper", followers=5000)
    created = _post(member, f"https://www.xiaohongshu.com/explore/{NOTE}", likes=20)
    reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    _recalc(setup)
    before = member.get("/me").json
    assert before["tier"]["key"] == "certified"

    jumped = member.post(f"/submissions/{created['id']}/metrics", json={"likes": 100_000})
    assert jumped.status_code == 201, jumped.json
    assert jumped.json["metrics"]["likes"] == 20  # what counts
    assert jumped.json["reported_metrics"]["likes"] == 100_000  # what is shown
    assert jumped.json["held"] is True
    _recalc(setup)
    after = member.get("/me").json
    assert after["points"] == before["points"]
    assert after["tier"]["key"] == "certified"
    held = reviewer.get("/submissions?held=true").json
    assert [s["id"] for s in held] == [created["id"]]
    history = member.get(f"/submissions/{created['id']}/metrics").json
    assert [(s["source"], s["state"], s["counted"]) for s in history] == [
        ("member", "unconfirmed", False), ("member", "counted", True)]

    snapshot_id = history[0]["id"]
    waiting = reviewer.get("/submissions", query_string={"unconfirmed_metrics": "true"}).json
    assert [s["id"] for s in waiting] == [created["id"]]
    # Members cannot confirm their own figures.
    assert member.post(f"/submissions/{created['id']}/metrics/{snapshot_id}/decision",
                       json={"decision": "confirm"}).status_code == 403
    confirmed = reviewer.post(f"/submissions/{created['id']}/metrics/{snapshot_id}/decision",
                              json={"decision": "confirm", "note": "checked the note page"})
    assert confirmed.status_code == 200, confirmed.json
    assert confirmed.json["metrics"]["likes"] == 100_000
    assert confirmed.json["held"] is False
    assert reviewer.get("/submissions", query_string={"unconfirmed_metrics": "true"}).json == []
    ledger = member.get("/me/points").json
    adjustments = [e for e in ledger if e["source"] == "submission_adjustment"]
    assert len(adjustments) == 1
    assert "checked the note page" in adjustments[0]["description"]
    assert adjustments[0]["points"] == pytest.approx(
        confirmed.json["score"] - before["points"]["balance"])
    # Deciding again is refused and books nothing more.
    assert reviewer.post(f"/submissions/{created['id']}/metrics/{snapshot_id}/decision",
                         json={"decision": "confirm"}).status_code == 409
    assert len(member.get("/me/points").json) == 2
    _recalc(setup)
    assert _tier(member) == "senior"


def test_an_import_that_agrees_confirms_the_members_figures(setup) -> None:
    from koc.submissions.services.imports import import_metrics

    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    _, member = _join(setup, admin, "steady", followers=5000)
    created = _post(member, f"https://www.xiaohongshu.com/explore/{NOTE}", likes=20)
    reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    member.post(f"/submissions/{created['id']}/metrics", json={"likes": 30})
    with setup.app_context():
        import_metrics(f"submission_id,likes\n{created['id']},29\n", job_id=1, tolerance=0.1)
        db.session.commit()
    history = member.get(f"/submissions/{created['id']}/metrics").json
    assert [(s["source"], s["state"]) for s in history] == [
        ("import", "counted"), ("member", "confirmed"), ("member", "counted")]
    assert history[1]["confirmed_by_snapshot_id"] == history[0]["id"]
    assert member.get(f"/submissions/{created['id']}").json["metrics"]["likes"] == 29


def test_a_short_link_and_the_full_link_of_one_post_earn_once(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    _, alice = _join(setup, admin, "alice", followers=800)
    _, bob = _join(setup, admin, "bob", followers=800)
    short = _post(alice, SHARE_TEXT, likes=50)
    assert short["url_unresolved"] is True and short["post_id"] is None
    full = _post(bob, FULL, likes=50)
    assert full["post_id"] == NOTE and full["url_unresolved"] is False
    assert reviewer.post(f"/submissions/{full['id']}/review",
                         json={"decision": "approve"}).status_code == 200

    # A short link is approved only with the full URL, and that post has been rewarded.
    missing = reviewer.post(f"/submissions/{short['id']}/review", json={"decision": "approve"})
    assert missing.status_code == 422 and "post_url" in str(missing.json["errors"])
    still_short = reviewer.post(f"/submissions/{short['id']}/review",
                                json={"decision": "approve", "post_url": "https://xhslink.com/m/9"})
    assert still_short.status_code == 422 and "post_url" in str(still_short.json["errors"])
    duplicate = reviewer.post(f"/submissions/{short['id']}/review", json={
        "decision": "approve", "post_url": f"https://www.xiaohongshu.com/discovery/item/{NOTE}"})
    assert duplicate.status_code == 409, duplicate.json
    assert duplicate.json["errors"]["existing_submission_id"] == full["id"]
    bulk = reviewer.post("/submissions/bulk-review",
                         json={"ids": [short["id"]], "decision": "approve"})
    assert bulk.status_code == 422
    assert alice.get(f"/submissions/{short['id']}").json["status"] == "pending"
    assert alice.get("/me/points").json == []
    assert len(bob.get("/me/points").json) == 1


@pytest.mark.parametrize(("platform", "url"), [
    ("xiaohongshu", "https://www.douyin.com/video/7312345678901234567"),
    ("douyin", f"https://www.xiaohongshu.com/explore/{NOTE}"),
    ("weibo", "https://v.douyin.com/iRNBho6u/"),
    ("other", f"https://xhslink.com/o/{NOTE[:8]}"),
])
def test_a_post_url_on_another_platforms_host_is_422_naming_post_url(setup, platform,
                                                                     url) -> None:
    _, member = _join(setup, _staff(setup, "admin"), "mixed", followers=10)
    response = member.post("/submissions", json={
        "platform": platform, "post_url": url,
        "posted_at": (utcnow() - timedelta(days=1)).isoformat()})
    assert response.status_code == 422, response.json
    assert "post_url" in response.json["errors"]["json"]


def _resolve(app: Flask, submission_id: int) -> str:
    from koc.submissions.tasks import resolve_short_link_task

    with app.app_context():
        return resolve_short_link_task.run(submission_id)


def test_a_configured_resolver_keys_a_short_link_on_its_post_after_the_request(
        make_app, monkeypatch) -> None:
    app = make_app(KOC_RESOLVE_SHORT_LINKS="true")
    asked = []

    def fake_final_url(url: str, *, timeout: float) -> str | None:
        asked.append(url)
        return FULL

    monkeypatch.setattr(short_links, "final_url", fake_final_url)
    admin = _staff(app, "admin")
    _, alice = _join(app, admin, "alice", followers=800)
    _, bob = _join(app, admin, "bob", followers=800)
    shared = _post(bob, SHARE_TEXT, likes=5)
    # The member is answered at once; the platform is asked by the task after the commit.
    assert shared["url_unresolved"] is True and asked == []
    assert _resolve(app, shared["id"]) == "resolved"
    assert asked == ["http://xhslink.com/a/Zx81kQ"]
    resolved = bob.get(f"/submissions/{shared['id']}").json
    assert resolved["url_unresolved"] is False
    assert resolved["canonical_url"] == f"https://www.xiaohongshu.com/explore/{NOTE}"
    assert _resolve(app, shared["id"]) == "done" and len(asked) == 1  # safe to run twice

    # The full link of the same post is refused at once: one post earns once.
    again = alice.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": FULL,
        "posted_at": (utcnow() - timedelta(days=1)).isoformat()})
    assert again.status_code == 409
    assert again.json["errors"]["existing_submission_id"] == shared["id"]


def test_a_short_link_that_resolves_to_a_post_already_submitted_is_flagged_and_earns_nothing(
        make_app, monkeypatch) -> None:
    app = make_app(KOC_RESOLVE_SHORT_LINKS="true")
    monkeypatch.setattr(short_links, "final_url", lambda url, *, timeout: FULL)
    admin, reviewer = _staff(app, "admin"), _staff(app, "reviewer")
    _, alice = _join(app, admin, "alice", followers=800)
    _, bob = _join(app, admin, "bob", followers=800)
    first = _post(alice, FULL, likes=5)
    copy = _post(bob, SHARE_TEXT, likes=5)
    assert _resolve(app, copy["id"]) == "duplicate"
    assert _resolve(app, copy["id"]) == "duplicate"  # flagged once, however often it runs
    flags = reviewer.get(f"/submissions/{copy['id']}/flags").json
    assert [(f["kind"], f["related_submission_id"]) for f in flags] == [
        ("duplicate_post", first["id"])]
    refused = reviewer.post(f"/submissions/{copy['id']}/review",
                            json={"decision": "approve", "post_url": FULL})
    assert refused.status_code == 409
    assert bob.get("/me").json["points"]["balance"] == 0


def test_correcting_followers_demotes_only_through_the_grace_period(setup) -> None:
    admin, reviewer = _staff(setup, "admin"), _staff(setup, "reviewer")
    joined, member = _join(setup, admin, "small", followers=200)
    account_id = joined["social_accounts"][0]["id"]
    reviewer.post(f"/social-accounts/{account_id}/followers", json={"followers": 200})
    created = _post(member, f"https://www.xiaohongshu.com/explore/{NOTE}", likes=30)
    reviewer.post(f"/submissions/{created['id']}/review", json={"decision": "approve"})
    _recalc(setup)
    assert _tier(member) == "senior"  # 30 per 200 confirmed followers: 150 per 1,000

    corrected = reviewer.post(f"/social-accounts/{account_id}/followers",
                              json={"followers": 20_000, "note": "misread the profile"})
    assert [c["previous"] for c in corrected.json["checks"]] == [None, 200]
    _recalc(setup)
    me = member.get("/me").json
    assert me["tier"]["key"] == "senior"
    assert me["progress"]["current_tier"]["at_risk"] is True
    assert me["progress"]["current_tier"]["grace_days_left"] > 0


def test_a_short_link_that_lands_on_no_post_stays_unresolved(make_app, monkeypatch) -> None:
    app = make_app(KOC_RESOLVE_SHORT_LINKS="true")
    monkeypatch.setattr(short_links, "final_url", lambda url, *, timeout:
                        "https://www.xiaohongshu.com/website-login/error?redirectPath=x")
    _, alice = _join(app, _staff(app, "admin"), "alice", followers=800)
    first = _post(alice, "https://xhslink.com/a/one", likes=1)
    second = _post(alice, "https://xhslink.com/a/two", likes=1)
    assert _resolve(app, first["id"]) == _resolve(app, second["id"]) == "unresolved"
    first, second = (alice.get(f"/submissions/{s['id']}").json for s in (first, second))
    assert first["url_unresolved"] and second["url_unresolved"]
    assert first["canonical_url"] != second["canonical_url"]


@pytest.mark.parametrize(("name", "value"), [
    ("KOC_UNCONFIRMED_FOLLOWERS_FLOOR", "0"), ("KOC_UNCONFIRMED_FOLLOWERS_FLOOR", "many"),
    ("KOC_IMPORT_AGREEMENT_TOLERANCE", "2"), ("KOC_RESOLVE_SHORT_LINKS", "maybe"),
])
def test_integrity_settings_are_parsed_strictly(tmp_path, name, value) -> None:
    from koc.settings import SettingsError, load_settings

    with pytest.raises(SettingsError, match=name):
        load_settings(str(tmp_path), {name: value})
