"""Rate limits through HTTP, on the in-memory counters and on a real Redis."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest
from flask import Flask

from koc.core.db import utcnow
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.conftest import Api, new_member, staff_token_for
from tests.security.conftest import audit_rows


@pytest.fixture(params=["memory", "redis"])
def storage_env(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "memory":
        return {}
    redis_url = request.getfixturevalue("redis_url")
    request.applymarker(pytest.mark.redis)
    # Through the broker setting, as production sets it: the limiter follows a Redis broker.
    return {"KOC_BROKER_URL": redis_url}


def _invite(admin: Api, external_id: str) -> str:
    assert admin.put(f"/users/{external_id}", json={}).status_code in (200, 201)
    response = admin.post("/invitations", json={"external_id": external_id})
    assert response.status_code == 201
    return response.json["code"]


def test_invitation_guessing_from_one_address_gets_429_with_retry_after(
        limited_app: Callable[..., Flask], storage_env: dict[str, str]):
    app = limited_app(KOC_RATELIMIT_INVITATIONS="3/minute", **storage_env)
    assert app.config["KOC_SETTINGS"].ratelimit_storage_url.startswith(
        "redis" if storage_env else "memory")
    stranger = Api(app.test_client())
    body = {"display_name": "guesser", "accept_terms": True}

    answers = [stranger.post(f"/invitations/guess-{n}/accept", json=body) for n in range(3)]
    refused = stranger.post("/invitations/guess-3/accept", json=body)

    assert [a.status_code for a in answers] == [404, 404, 404]
    assert refused.status_code == 429
    assert refused.json["code"] == 429 and refused.json["status"] == "Too Many Requests"
    assert "3 per 1 minute" in refused.json["message"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    # A real code from the same address is refused too while the window lasts.
    admin = Api(app.test_client(), staff_token_for(app))
    real = stranger.post(f"/invitations/{_invite(admin, 'u-1')}/accept", json=body)
    assert real.status_code == 429
    # Another address is not held up by this one's guesses.
    other = app.test_client().post(f"/api/v1/invitations/{_invite(admin, 'u-2')}/accept",
                                   json=body, environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert other.status_code == 201
    if storage_env:  # the counters are in Redis, where every web host sees them
        import redis

        prefix = app.config["KOC_SETTINGS"].ratelimit_key_prefix
        client = redis.Redis.from_url(storage_env["KOC_BROKER_URL"])
        assert client.keys(f"*{prefix}:ip:*"), "no counter in Redis"
        client.close()


def test_token_writes_are_limited_per_token_owner_and_reads_are_not(
        limited_app: Callable[..., Flask], storage_env: dict[str, str]):
    app = limited_app(KOC_RATELIMIT_MEMBER_WRITES="5/minute",
                      KOC_RATELIMIT_STAFF_WRITES="5/minute", **storage_env)
    admin = Api(app.test_client(), staff_token_for(app))
    # The admin's own set-up writes count against the admin, not the members.
    _id_a, member_a = new_member(app, admin, "a")
    _id_b, member_b = new_member(app, admin, "b")

    def upload(member: Api):
        return member.post("/uploads", json={"filename": "p.jpg", "content_type": "image/jpeg",
                                             "size": 1000})

    results = [upload(member_a).status_code for _ in range(6)]

    assert results[:5] == [201] * 5
    assert results[5] == 429
    assert member_a.get("/me").status_code == 200
    assert upload(member_b).status_code == 201
    # The admin has made 4 writes (2 upserts, 2 invitations); the sixth is refused.
    assert admin.put("/users/c", json={}).status_code == 201
    assert admin.put("/users/d", json={}).status_code == 429


def test_drop_claims_have_their_own_per_member_limit(limited_app: Callable[..., Flask]):
    app = limited_app(KOC_RATELIMIT_CLAIMS="2/minute")
    admin = Api(app.test_client(), staff_token_for(app))
    _id, member = new_member(app, admin, "claimer")
    now = utcnow()
    drop = admin.post("/drops", json={
        "product_name": "Sample", "sku": "S-1", "quantity": 10, "per_member_limit": 1,
        "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(days=1)).isoformat()})
    assert drop.status_code == 201, drop.json

    answers = [member.post(f"/drops/{drop.json['id']}/claims").status_code for _ in range(3)]

    # The second claim is refused by the per-member limit of the drop (409), the third by the
    # rate limit: claiming in a loop costs the caller, not the database.
    assert answers == [201, 409, 429]


def test_admin_login_locks_the_account_after_repeated_failures_even_for_the_right_password(
        limited_app: Callable[..., Flask], storage_env: dict[str, str],
        make_staff_in: Callable[..., tuple[int, str]]):
    app = limited_app(KOC_RATELIMIT_LOGIN_FAILURES_ACCOUNT="3/15 minutes;10/day",
                      **storage_env)
    _id, email = make_staff_in(app)
    client = app.test_client()

    failures = [login(client, email, "wrong password").status_code for _ in range(3)]
    locked = login(client, email, PASSWORD, **{"Accept-Language": "en"})

    assert failures == [200, 200, 200]
    assert locked.status_code == 429
    assert "Too many failed sign-ins" in locked.text
    assert 60 <= int(locked.headers["Retry-After"]) <= 15 * 60
    assert client.get("/admin/").status_code == 302  # not signed in
    # Another account from the same address still signs in.
    _other, other_email = make_staff_in(app)
    assert login(app.test_client(), other_email).status_code == 302
    # Every failure is in the audit log, and the refusal while locked too.
    actions = [row.action for row in audit_rows(app, actor=email)]
    assert actions == ["staff.login_failed"] * 3 + ["staff.login_locked"]


def test_one_address_trying_many_accounts_is_locked_out(
        limited_app: Callable[..., Flask], make_staff_in: Callable[..., tuple[int, str]]):
    app = limited_app(KOC_RATELIMIT_LOGIN_FAILURES_ADDRESS="4/15 minutes")
    _id, email = make_staff_in(app)
    client = app.test_client()
    for n in range(4):
        assert login(client, f"guess{n}@example.com", "x").status_code == 200

    assert login(client, email, PASSWORD).status_code == 429
    other_address = app.test_client()
    page = other_address.get("/admin/login")
    response = other_address.post(
        "/admin/login", data={"csrf_token": csrf_token(page.text), "email": email,
                              "password": PASSWORD},
        environ_base={"REMOTE_ADDR": "10.1.2.3"})
    assert response.status_code == 302


def test_login_posts_are_limited_per_address(limited_app: Callable[..., Flask]):
    app = limited_app(KOC_RATELIMIT_LOGIN_ATTEMPTS="3/minute")
    client = app.test_client()
    token = csrf_token(client.get("/admin/login").text)
    form = {"csrf_token": token, "email": "someone@example.com", "password": "x"}
    answers = [client.post("/admin/login", data=form).status_code for _ in range(4)]

    assert answers == [200, 200, 200, 429]
    assert int(client.post("/admin/login", data=form).headers["Retry-After"]) >= 1
    assert client.get("/admin/login").status_code == 200  # only sign-in posts count


def test_limits_are_off_when_the_setting_says_so(make_app: Callable[..., Flask]):
    app = make_app(KOC_RATELIMIT_INVITATIONS="1/minute")  # the shared fixtures turn limits off
    stranger = Api(app.test_client())
    answers = [stranger.post(f"/invitations/x{n}/accept",
                             json={"display_name": "x", "accept_terms": True}).status_code
               for n in range(3)]
    assert answers == [404, 404, 404]


@pytest.fixture
def make_staff_in() -> Callable[..., tuple[int, str]]:
    counter = iter(range(1, 1000))

    def factory(app: Flask, role: str = "admin") -> tuple[int, str]:
        from koc.core.auth import create_staff
        from koc.extensions import db

        with app.app_context():
            staff = create_staff(email=f"staff{next(counter)}@example.com", role=role,
                                 password=PASSWORD)
            db.session.commit()
            return staff.id, staff.email

    return factory


def test_staff_integrations_get_a_far_higher_write_limit_than_members(
        limited_app: Callable[..., Flask]):
    app = limited_app(KOC_RATELIMIT_MEMBER_WRITES="2/minute")
    admin = Api(app.test_client(), staff_token_for(app))

    # A CRM sync upserting users one by one is not held to the members' limit.
    assert [admin.put(f"/users/crm-{n}", json={}).status_code for n in range(10)] == [201] * 10
