"""A member with everything the service can hold about a person: user fields, a social account,
a submission with media approved into points, a badge, a download, a drop claim."""

from __future__ import annotations

import io
from dataclasses import dataclass
from datetime import timedelta

import pytest
from flask import Flask
from PIL import Image

from koc.core.db import utcnow
from koc.extensions import db
from tests.assets.conftest import put, status_of
from tests.conftest import Api, staff_token_for

USER = {"display_name": "王小明", "city": "Guangzhou", "store_code": "GZ01",
        "tags": ["mother-baby"], "orders_count": 12, "spend_cents": 99_900,
        "last_order_at": "2026-10-01T10:00:00+08:00", "shares_count": 3,
        "community_posts_count": 4}


def png(colour: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (64, 64), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def put_upload(app: Flask, upload: dict, body: bytes) -> int:
    """PUT where the presigned URL points: the app's local store, or SeaweedFS."""
    return status_of(put(app.test_client(), upload["url"], body, upload["headers"]))


def upload_media(app: Flask, member: Api, body: bytes, name: str = "me.png",
                 content_type: str = "image/png") -> int:
    created = member.post("/uploads", json={"filename": name, "content_type": content_type,
                                            "size": len(body)})
    assert created.status_code == 201, created.json
    assert put_upload(app, created.json["upload"], body) in (200, 201, 204)
    return created.json["upload_id"]


@dataclass
class Person:
    external_id: str
    member_id: int
    member: Api
    admin: Api
    reviewer: Api
    submission_id: int
    media_id: int
    badge_id: str


def _recalc(app: Flask) -> None:
    from koc.tiers.services.engine import recalculate

    with app.app_context():
        recalculate(trigger="test")
        db.session.commit()


def make_person(app: Flask, external_id: str = "crm-42") -> Person:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    assert admin.put(f"/users/{external_id}", json=USER).status_code == 201
    code = admin.post("/invitations", json={"external_id": external_id}).json["code"]
    accepted = Api(app.test_client()).post(f"/invitations/{code}/accept", json={
        "display_name": "小明爱分享", "accept_terms": True,
        "social_accounts": [{"platform": "xiaohongshu", "handle": "xiaoming_shares",
                             "url": "https://www.xiaohongshu.com/user/profile/abc123",
                             "followers": 1500}]})
    assert accepted.status_code == 201, accepted.json
    member = Api(app.test_client(), accepted.json["token"])
    media_id = upload_media(app, member, png())
    created = member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": "https://www.xiaohongshu.com/explore/"
                                               "6650a1b2c3d4e5f6a7b8c9d0",
        "caption": "我家宝宝最爱这款 @小明",
        # Recent, so the tier window counts it whatever day the test runs (tests are `clock`).
        "posted_at": (utcnow() - timedelta(days=1)).isoformat(),
        "media_upload_ids": [media_id], "metrics": {"views": 900, "likes": 80}})
    assert created.status_code == 201, created.json
    reviewed = reviewer.post(f"/submissions/{created.json['id']}/review",
                             json={"decision": "approve", "rating": 4})
    assert reviewed.status_code == 200, reviewed.json
    _recalc(app)
    badges = member.get("/me").json["badges"]
    assert badges, "the approved post gives a tier and its badge"
    return Person(external_id, accepted.json["member"]["id"], member, admin, reviewer,
                  created.json["id"], media_id, badges[0]["badge_id"])


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def any_app(request) -> Flask:
    """The embedded set-up and PostgreSQL, for the tests that must hold on both."""
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")
