"""The member portal's pages and its cookie session, through the test client."""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from flask import Flask

from koc.core.auth import MEMBER_COOKIE
from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from tests.portal.conftest import Programme, api_csrf, form_csrf, join_with_client

SHARE_TEXT = ("82 小红发布了一篇小红书笔记，快来看吧！ 😆 Ab3x 😆 "  # noqa: RUF001 - full-width punctuation, as the apps write it
              "http://xhslink.com/a/Qz3Kp9LmN2，复制本条信息，打开【小红书】App查看精彩内容！")  # noqa: RUF001 - full-width punctuation, as the apps write it


def test_join_page_tells_used_expired_and_unknown_codes_apart(app: Flask, programme: Programme):
    client = app.test_client()
    code = programme.invitation("u-1")
    assert client.get(f"/join/{code}").status_code == 200
    assert client.get("/join/no-such-code").status_code == 404
    join_with_client(client, code)
    assert app.test_client().get(f"/join/{code}").status_code == 409


def test_join_sets_an_httponly_lax_member_cookie_and_the_home_page_shows_progress(
        app: Flask, programme: Programme):
    client = app.test_client()
    code = programme.invitation("u-2")
    page = client.get(f"/join/{code}")
    accepted = client.post(f"/api/v1/invitations/{code}/accept", json={
        "display_name": "小红", "accept_terms": True})
    started = client.post("/m/session", json={"token": accepted.json["token"]},
                          headers={"X-CSRFToken": form_csrf(page.text)})
    cookie = next(h for h in started.headers.getlist("Set-Cookie")
                  if h.startswith(MEMBER_COOKIE + "="))
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
    home = client.get("/m/", headers={"Accept-Language": "zh-CN"})
    assert "暂无等级" in home.text
    assert "data-progress" in home.text
    assert len(home.data) < 100_000


def test_a_session_needs_a_real_member_token(app: Flask, programme: Programme):
    client = app.test_client()
    page = client.get(f"/join/{programme.invitation('u-3')}")
    refused = client.post("/m/session", json={"token": "koc_made-up"},
                          headers={"X-CSRFToken": form_csrf(page.text)})
    assert refused.status_code == 422
    staff_token = programme.admin.token
    assert client.post("/m/session", json={"token": staff_token},
                       headers={"X-CSRFToken": form_csrf(page.text)}).status_code == 422
    # Without the form's CSRF token the exchange is refused outright.
    assert client.post("/m/session", json={"token": staff_token}).status_code == 400


def test_api_writes_with_the_cookie_need_the_pages_csrf_header(app: Flask,
                                                               programme: Programme):
    client = app.test_client()
    home = join_with_client(client, programme.invitation("u-4"))
    url = f"/api/v1/drops/{programme.drop_id}/claims"
    refused = client.post(url, headers={"Idempotency-Key": "k1"})
    assert refused.status_code == 403 and "X-CSRF-Token" in refused.json["message"]
    wrong = client.post(url, headers={"Idempotency-Key": "k1", "X-CSRF-Token": "0" * 64})
    assert wrong.status_code == 403
    claimed = client.post(url, headers={"Idempotency-Key": "k1",
                                        "X-CSRF-Token": api_csrf(home)})
    assert claimed.status_code == 201, claimed.json
    again = client.post(url, headers={"Idempotency-Key": "k1", "X-CSRF-Token": api_csrf(home)})
    assert again.status_code in (200, 201) and again.json["id"] == claimed.json["id"]
    # A read needs no header.
    download = client.get(
        f"/api/v1/kits/{programme.kit_id}/assets/{programme.asset_id}/download")
    assert download.status_code == 200 and download.json["url"]


def test_the_cookie_is_not_a_staff_or_general_credential(app: Flask, programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-5"))
    # Only member_required routes take the cookie; the rest answer as without a token.
    assert client.get("/api/v1/kits").status_code == 401
    assert client.get("/api/v1/tiers").status_code == 401
    assert client.get("/api/v1/members").status_code == 401
    assert client.get("/api/v1/me").status_code == 200


def test_signing_out_revokes_the_session_token(app: Flask, programme: Programme):
    client = app.test_client()
    home = join_with_client(client, programme.invitation("u-6"))
    cookie = client.get_cookie(MEMBER_COOKIE)
    assert cookie is not None
    out = client.post("/m/sign-out", data={"csrf_token": form_csrf(home)})
    assert out.status_code == 302
    assert client.get("/m/").status_code == 401
    # A copy of the old cookie is worthless now.
    other = app.test_client()
    other.set_cookie(MEMBER_COOKIE, cookie.value)
    assert other.get("/api/v1/me").status_code == 401


def test_a_tampered_cookie_signs_nobody_in(app: Flask, programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-7"))
    cookie = client.get_cookie(MEMBER_COOKIE)
    forged = app.test_client()
    forged.set_cookie(MEMBER_COOKIE, cookie.value[:-2] + "xx")
    assert forged.get("/m/").status_code == 401


def test_submitting_share_text_through_the_api_shows_in_my_submissions(
        app: Flask, programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-8"))
    page = client.get("/m/submit")
    created = client.post("/api/v1/submissions", headers={
        "X-CSRF-Token": api_csrf(page.text), "Idempotency-Key": "s1"}, json={
        "platform": "xiaohongshu", "post_url": SHARE_TEXT, "caption": "开箱",
        "posted_at": "2026-11-01T10:00:00+00:00", "media_upload_ids": [],
        "metrics": {"likes": 120, "comments": 8, "saves": 30}})
    assert created.status_code == 201, created.json
    listed = client.get("/m/submit")
    assert "xhslink.com/a/Qz3Kp9LmN2" in listed.text


def test_members_see_only_their_own_submissions(app: Flask, programme: Programme):
    first, second = app.test_client(), app.test_client()
    join_with_client(first, programme.invitation("u-9"), name="甲")
    join_with_client(second, programme.invitation("u-10"), name="乙")
    page = first.get("/m/submit")
    created = first.post("/api/v1/submissions", headers={
        "X-CSRF-Token": api_csrf(page.text), "Idempotency-Key": "s1"}, json={
        "platform": "douyin", "post_url": "https://v.douyin.com/iRNBho6u/ 复制此链接",
        "posted_at": "2026-11-01T10:00:00+00:00", "media_upload_ids": [], "metrics": {}})
    assert created.status_code == 201, created.json
    assert "v.douyin.com" not in second.get("/m/submit").text
    assert second.get(f"/api/v1/submissions/{created.json['id']}").status_code == 401


def test_pages_speak_english_when_chosen(app: Flask, programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-11"))
    client.get("/m/lang/en?next=/m/kits")
    kits = client.get("/m/kits")
    assert "How to shoot it" in kits.text and "Download" in kits.text
    # Only paths of the portal are redirect targets.
    assert client.get("/m/lang/en?next=https://evil.example").headers["Location"] == "/m/"


def test_home_warns_of_a_tier_at_risk_with_the_days_of_grace_left(app: Flask,
                                                                   programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-12"))
    with app.app_context():
        member_id = db.session.query(Member).filter_by(display_name="小红").one().id
    # Certified by staff with no approved post: below what the tier needs to keep.
    assert programme.admin.patch(f"/members/{member_id}", json={
        "tier": "certified", "reason": "test"}).status_code == 200
    home = client.get("/m/")
    assert "data-at-risk" in home.text
    assert "你的等级有降级风险" in home.text and "宽限期还剩" in home.text
    assert "认证 KOC" in home.text


def test_an_embargoed_kit_shows_its_launch_date_to_early_access_members(
        app: Flask, programme: Programme):
    launch = utcnow() + timedelta(days=10)
    kit_id = programme.kits.kit(title="未发布新品", product_name="秋季限定",
                                launch_at=launch.isoformat(), embargo_tier="early_access")
    programme.kits.upload(kit_id, b"notes", filename="notes.txt", content_type="text/plain")
    programme.kits.publish(kit_id)
    client = app.test_client()
    join_with_client(client, programme.invitation("u-13"))
    assert "未发布新品" not in client.get("/m/kits").text  # no tier: not even its title
    with app.app_context():
        member_id = db.session.query(Member).filter_by(display_name="小红").one().id
    programme.admin.patch(f"/members/{member_id}", json={"tier": "early_access"})
    kits = client.get("/m/kits").text
    assert "未发布新品" in kits and "data-embargo" in kits
    # The date in the programme's time zone (KOC_TIMEZONE, Asia/Shanghai by default).
    assert launch.astimezone(ZoneInfo("Asia/Shanghai")).strftime("%Y-%m-%d") in kits


def test_every_page_with_its_script_and_stylesheet_stays_under_100_kb(
        app: Flask, programme: Programme):
    client = app.test_client()
    code = programme.invitation("u-14")
    join_page = len(client.get(f"/join/{code}").data)
    join_with_client(client, code)
    assets = sum(len(client.get(f"/m/static/{name}").data)
                 for name in ("portal.js", "portal.css"))
    for path in ("/m/", "/m/kits", "/m/submit", "/m/drops", "/m/group"):
        page = client.get(path)
        assert page.status_code == 200, path
        assert len(page.data) + assets < 100_000, path
        assert "script-src 'self'" in page.headers["Content-Security-Policy"]
    assert join_page + assets < 100_000


def test_a_reviewed_submission_shows_its_score_breakdown_and_the_reviewers_reason(
        app: Flask, programme: Programme):
    client = app.test_client()
    join_with_client(client, programme.invitation("u-15"))
    page = client.get("/m/submit")
    created = client.post("/api/v1/submissions", headers={
        "X-CSRF-Token": api_csrf(page.text), "Idempotency-Key": "s1"}, json={
        "platform": "xiaohongshu",
        "post_url": "https://www.xiaohongshu.com/explore/65a1b2c3d4e5f60718293a4c",
        "posted_at": "2026-11-01T10:00:00+00:00", "media_upload_ids": [],
        "metrics": {"likes": 300, "comments": 20, "saves": 50}})
    assert created.status_code == 201, created.json
    reviewed = programme.admin.post(f"/submissions/{created.json['id']}/review", json={
        "decision": "approve", "rating": 4, "note": "构图很好，光线自然"})  # noqa: RUF001
    assert reviewed.status_code == 200, reviewed.json
    html = client.get("/m/submit").text
    assert "已通过" in html or "通过" in html
    assert "审核意见：构图很好" in html  # noqa: RUF001
    assert "基础分" in html and "审核评分" in html
    home = client.get("/m/").text
    assert "一篇帖子已通过审核" in home
