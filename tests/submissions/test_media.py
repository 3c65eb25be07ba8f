"""Media on real parts: presigned uploads to SeaweedFS, types checked on the first bytes, and
near-duplicate images across members flagged (PostgreSQL computes the hash distances)."""

from __future__ import annotations

import io
import random
from collections.abc import Callable

import pytest
import requests
from flask import Flask
from PIL import Image, ImageDraw

from tests.conftest import Api, new_member, staff_token_for


def _picture(seed: int, size: int = 480) -> Image.Image:
    """A photo-like picture: blocks of colour and shapes, different for every seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", (size, size), tuple(rng.randrange(256) for _ in range(3)))
    draw = ImageDraw.Draw(image)
    for _ in range(12):
        x, y = rng.randrange(size), rng.randrange(size)
        w, h = rng.randrange(40, size // 2), rng.randrange(40, size // 2)
        colour = tuple(rng.randrange(256) for _ in range(3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)((x, y, x + w, y + h),
                                                                 fill=colour)
    return image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _put(app: Flask, upload: dict, body: bytes) -> int:
    url = upload["url"]
    if url.startswith("http://localhost/"):
        return app.test_client().put(url.removeprefix("http://localhost"), data=body,
                                     headers=upload["headers"]).status_code
    return requests.put(url, data=body, headers=upload["headers"], timeout=30).status_code


@pytest.fixture
def s3_pg_app(make_app: Callable[..., Flask], postgres_url: str, seaweedfs, s3_bucket) -> Flask:
    return make_app(
        KOC_DATABASE_URL=postgres_url, KOC_STORAGE_URL=f"s3://{s3_bucket}",
        KOC_S3_ENDPOINT_URL=seaweedfs.endpoint_url, AWS_ACCESS_KEY_ID=seaweedfs.access_key,
        AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key, AWS_DEFAULT_REGION=seaweedfs.region,
    )


def _upload(app: Flask, member: Api, body: bytes, content_type: str, name: str,
            size: int | None = None) -> int:
    created = member.post("/uploads", json={"filename": name, "content_type": content_type,
                                            "size": size or len(body)})
    assert created.status_code == 201, created.json
    assert _put(app, created.json["upload"], body) in (200, 204)
    return created.json["upload_id"]


def _submit(member: Api, n: int, media: list[int]):
    return member.post("/submissions", json={
        "platform": "xiaohongshu", "post_url": f"https://www.xiaohongshu.com/explore/{n:024x}",
        "posted_at": "2026-11-01T10:00:00+00:00", "media_upload_ids": media,
        "metrics": {"likes": 10}})


def _hash_all(app: Flask, media_ids: list[int]) -> None:
    from koc.submissions.tasks import hash_media_task

    with app.app_context():
        for media_id in media_ids:
            hash_media_task.run(media_id)
            hash_media_task.run(media_id)  # a re-delivered task raises nothing twice


@pytest.mark.postgres
@pytest.mark.s3
def test_near_duplicate_image_of_another_member_is_flagged_with_the_matching_submission(
    s3_pg_app: Flask,
) -> None:
    app = s3_pg_app
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _, alice = new_member(app, admin, "alice")
    _, bob = new_member(app, admin, "bob")
    _, carol = new_member(app, admin, "carol")
    original = _picture(1)
    # Bob re-posts Alice's photo: smaller, re-compressed as JPEG.
    copy = original.resize((360, 360)).convert("RGB")
    a_media = _upload(app, alice, _encode(original, "PNG"), "image/png", "a.png")
    b_media = _upload(app, bob, _encode(copy, "JPEG", quality=70), "image/jpeg", "b.jpg")
    c_media = _upload(app, carol, _encode(_picture(2), "JPEG"), "image/jpeg", "c.jpg")
    a_own = _upload(app, alice, _encode(original, "JPEG"), "image/jpeg", "again.jpg")
    a_sub = _submit(alice, 1, [a_media])
    b_sub = _submit(bob, 2, [b_media])
    c_sub = _submit(carol, 3, [c_media])
    a_again = _submit(alice, 4, [a_own])
    assert {r.status_code for r in (a_sub, b_sub, c_sub, a_again)} == {201}
    assert b_sub.json["media"][0]["content_type"] == "image/jpeg"
    _hash_all(app, [a_media, b_media, c_media, a_own])

    def flags(submission_id: int) -> list[tuple[str, int | None]]:
        return [(f["kind"], f["related_submission_id"])
                for f in admin.get(f"/submissions/{submission_id}/flags").json]

    # Bob's copy matches both of Alice's posts; her own repeat is not held against her.
    assert sorted(flags(b_sub.json["id"])) == [("near_duplicate_media", a_sub.json["id"]),
                                               ("near_duplicate_media", a_again.json["id"])]
    assert flags(a_sub.json["id"]) == [("near_duplicate_media", b_sub.json["id"])]
    assert flags(a_again.json["id"]) == [("near_duplicate_media", b_sub.json["id"])]
    assert flags(c_sub.json["id"]) == []
    # Flagged, not rejected.
    assert admin.get(f"/submissions/{b_sub.json['id']}").json["status"] == "pending"
    assert {m["hashed"] for m in admin.get(f"/submissions/{b_sub.json['id']}").json["media"]} == {
        True}


@pytest.mark.s3
def test_media_whose_bytes_are_not_the_declared_type_is_422_and_nothing_is_written(
    make_app: Callable[..., Flask], seaweedfs, s3_bucket
) -> None:
    app = make_app(KOC_STORAGE_URL=f"s3://{s3_bucket}",
                   KOC_S3_ENDPOINT_URL=seaweedfs.endpoint_url,
                   AWS_ACCESS_KEY_ID=seaweedfs.access_key,
                   AWS_SECRET_ACCESS_KEY=seaweedfs.secret_key,
                   AWS_DEFAULT_REGION=seaweedfs.region)
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _, member = new_member(app, admin, "m")
    disguised = _upload(app, member, b"MZ\x90\x00 an executable, not a picture" * 4,
                        "image/png", "x.png")
    refused = _submit(member, 1, [disguised])
    assert refused.status_code == 422
    assert "media_upload_ids" in str(refused.json["errors"])
    assert "not a image/png" in str(refused.json["errors"])
    never_sent = member.post("/uploads", json={"filename": "y.jpg", "content_type": "image/jpeg",
                                              "size": 1000}).json["upload_id"]
    missing = _submit(member, 2, [never_sent])
    assert missing.status_code == 422 and "was not uploaded" in str(missing.json["errors"])
    assert admin.get("/submissions").json == []
    # The uploads stay unattached, so a corrected submission can use the good one.
    good = _upload(app, member, _encode(_picture(3), "PNG"), "image/png", "ok.png")
    assert _submit(member, 3, [good]).status_code == 201


def test_media_checks_work_on_the_local_store_too(app, member_api) -> None:
    _, member = member_api()
    mp4_head = b"\x00\x00\x00\x18ftypisom\x00\x00\x02\x00isomiso2" + bytes(64)
    video = _upload(app, member, mp4_head, "video/mp4", "clip.mp4")
    mislabelled = _upload(app, member, _encode(_picture(4), "PNG"), "image/jpeg", "p.jpg")
    assert _submit(member, 1, [video]).status_code == 201
    refused = _submit(member, 2, [mislabelled])
    assert refused.status_code == 422 and "image/jpeg" in str(refused.json["errors"])


def test_upload_larger_than_the_cap_is_422_naming_size(make_app) -> None:
    # Member media have their own caps (the kit-asset cap KOC_MAX_UPLOAD_BYTES is not theirs).
    app = make_app(KOC_MAX_IMAGE_UPLOAD_BYTES="2048")
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _, member = new_member(app, admin, "m")
    response = member.post("/uploads", json={"filename": "big.png", "content_type": "image/png",
                                             "size": 2049})
    assert response.status_code == 422 and "size" in response.json["errors"]["json"]
