"""The member portal's pages and its cookie session, through the test client."""

from __future__ import annotations

from flask import Flask

from koc.core.auth import MEMBER_COOKIE
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
