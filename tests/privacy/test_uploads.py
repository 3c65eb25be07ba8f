"""Member uploads: caps by kind, a daily quota per member, and bytes fixed at submission."""

from __future__ import annotations

import hashlib

import pytest
from flask import Flask

from koc.extensions import db
from koc.submissions.models import MediaUpload
from tests.assets.conftest import s3_env
from tests.conftest import Api, new_member, staff_token_for
from tests.privacy.conftest import png, put_upload, upload_media

MiB = 1024 * 1024


def _ask(member: Api, content_type: str, size: int, name: str = "a.png"):
    return member.post("/uploads", json={"filename": name, "content_type": content_type,
                                         "size": size})


def test_images_and_videos_have_their_own_caps(make_app) -> None:
    app = make_app(KOC_MAX_IMAGE_UPLOAD_BYTES=str(2 * MiB),
                   KOC_MAX_VIDEO_UPLOAD_BYTES=str(50 * MiB))
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _, member = new_member(app, admin, "caps")
    too_big = _ask(member, "image/png", 2 * MiB + 1)
    assert too_big.status_code == 422 and "size" in too_big.json["errors"]["json"]
    assert _ask(member, "image/png", 2 * MiB).status_code == 201
    assert _ask(member, "video/mp4", 40 * MiB, "v.mp4").status_code == 201
    assert _ask(member, "video/mp4", 50 * MiB + 1, "v.mp4").status_code == 422
    # The kit-asset cap (KOC_MAX_UPLOAD_BYTES, 5 GiB) is not the member's.
    assert _ask(member, "video/mp4", 3 * 1024 * MiB, "v.mp4").status_code == 422


def test_daily_quota_per_member_answers_429_naming_the_field(make_app) -> None:
    app = make_app(KOC_UPLOAD_DAILY_COUNT="3", KOC_UPLOAD_DAILY_BYTES=str(10 * MiB))
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _, alice = new_member(app, admin, "alice")
    _, bob = new_member(app, admin, "bob")
    for _ in range(3):
        assert _ask(alice, "image/png", 1000).status_code == 201
    fourth = _ask(alice, "image/png", 1000)
    assert fourth.status_code == 429, fourth.json
    assert "filename" in fourth.json["errors"]["json"]
    assert 0 < int(fourth.headers["Retry-After"]) <= 24 * 3600
    # Another member's quota is their own; bytes count too.
    assert _ask(bob, "image/png", 9 * MiB).status_code == 201
    over = _ask(bob, "image/png", 2 * MiB)
    assert over.status_code == 429 and "size" in over.json["errors"]["json"]
    assert "Retry-After" in over.headers


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def stored_app(request, make_app) -> Flask:
    """The local storage folder, and S3 (SeaweedFS), whose ETags differ in kind."""
    if request.param == "local":
        return request.getfixturevalue("app")
    return make_app(**s3_env(request.getfixturevalue("seaweedfs"),
                             request.getfixturevalue("s3_bucket")))


def test_bytes_swapped_after_submission_are_refused_at_review(stored_app: Flask) -> None:
    app = stored_app
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    _, member = new_member(app, admin, "swapper")
    original = png((10, 200, 10))
    created = member.post("/uploads", json={"filename": "p.png", "content_type": "image/png",
                                            "size": len(original)})
    upload = created.json["upload"]
    assert put_upload(app, upload, original) in (200, 201, 204)
    media_id = created.json["upload_id"]

    def submit(n: int, media: list[int]) -> int:
        response = member.post("/submissions", json={
            "platform": "weibo", "post_url": f"https://weibo.com/1/{n}", "media_upload_ids":
            media, "posted_at": "2026-11-01T10:00:00+00:00", "metrics": {"likes": 5}})
        assert response.status_code == 201, response.json
        return response.json["id"]

    swapped_id = submit(1, [media_id])
    from koc.submissions.tasks import fingerprint_media_task

    with app.app_context():
        assert fingerprint_media_task.run(media_id) == hashlib.sha256(original).hexdigest()
        assert db.session.get_one(MediaUpload, media_id).content_etag
    # The presigned URL is still valid: other bytes of the same size go in through it.
    other = png((200, 10, 10))
    assert len(other) == len(original)
    assert put_upload(app, upload, other) in (200, 201, 204)
    refused = reviewer.post(f"/submissions/{swapped_id}/review",
                            json={"decision": "approve", "rating": 5})
    assert refused.status_code == 409, refused.json
    assert refused.json["errors"]["media_upload_ids"]
    assert reviewer.get(f"/submissions/{swapped_id}").json["status"] == "pending"
    # Rejecting it is still possible.
    assert reviewer.post(f"/submissions/{swapped_id}/review", json={
        "decision": "reject", "reason": "invalid_proof"}).status_code == 200

    # Untouched media are approved as before.
    kept_id = submit(2, [upload_media(app, member, png((1, 2, 3)))])
    assert reviewer.post(f"/submissions/{kept_id}/review",
                         json={"decision": "approve", "rating": 4}).status_code == 200


def test_bulk_approval_checks_media_too(app: Flask) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    reviewer = Api(app.test_client(), staff_token_for(app, "reviewer"))
    _, member = new_member(app, admin, "bulk")
    created = member.post("/uploads", json={"filename": "p.png", "content_type": "image/png",
                                            "size": len(png())})
    assert put_upload(app, created.json["upload"], png()) in (200, 201, 204)
    sub = member.post("/submissions", json={
        "platform": "weibo", "post_url": "https://weibo.com/1/77", "posted_at":
        "2026-11-01T10:00:00+00:00", "media_upload_ids": [created.json["upload_id"]],
        "metrics": {"likes": 5}}).json["id"]
    assert put_upload(app, created.json["upload"], png((0, 0, 255))) in (200, 201, 204)
    response = reviewer.post("/submissions/bulk-review", json={
        "ids": [sub], "decision": "approve", "rating": 3})
    assert response.status_code == 409
