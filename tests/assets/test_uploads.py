"""Uploading kit assets straight to storage: single and multipart, the checks on completion,
bad input, a store that is down, deletion, and the reconcile command."""

from __future__ import annotations

import hashlib
import os
import tracemalloc
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask.cli import ScriptInfo

from koc.assets.models import Asset
from koc.assets.tasks import checksum_asset
from koc.cli import main as koc_cli
from koc.core.storage import get_storage
from koc.extensions import db
from tests.assets.conftest import Kits, png_bytes, put, s3_env, status_of

MiB = 1024 * 1024
# Multipart from 5 MiB (S3's smallest part), so the tests need not move 64 MiB files.
SMALL_PARTS = {"KOC_MULTIPART_THRESHOLD": str(5 * MiB), "KOC_MULTIPART_PART_SIZE": str(5 * MiB)}


@pytest.fixture(params=["local", "s3"])
def any_app(request, make_app):
    if request.param == "local":
        return make_app()
    return make_app(**s3_env(request.getfixturevalue("seaweedfs"),
                             request.getfixturevalue("s3_bucket")))


def test_uploaded_asset_is_ready_and_its_sha256_is_recorded_by_the_task(any_app) -> None:
    kits = Kits(any_app)
    kit_id = kits.kit()
    body = png_bytes()
    asset_id = kits.upload(kit_id, body)
    asset = kits.admin.get(f"/kits/{kit_id}").json["assets"][0]
    assert asset["status"] == "ready" and asset["sha256"] is None
    with any_app.app_context():
        assert checksum_asset.run(asset_id) == hashlib.sha256(body).hexdigest()
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"][0]["sha256"] == \
        hashlib.sha256(body).hexdigest()


def test_completing_before_the_upload_is_409_and_after_it_200(any_app) -> None:
    kits = Kits(any_app)
    kit_id = kits.kit()
    asset_id = kits.upload(kit_id, png_bytes(), complete=False)
    other = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "never.png", "content_type": "image/png", "size": 100}).json["asset_id"]
    never = kits.admin.post(f"/kits/{kit_id}/assets/{other}/complete")
    assert never.status_code == 409
    assert "not been uploaded" in never.json["message"]
    assert kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete").status_code == 200
    # Completing again changes nothing.
    assert kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete").json["status"] == "ready"


@pytest.mark.parametrize(("content_type", "body"), [
    ("image/png", b"\xff\xd8\xff\xe0" + b"JFIF" + b"\x00" * 200),        # a JPEG sent as PNG
    ("application/pdf", b"MZ\x90\x00" + b"\x00" * 200),                  # an .exe sent as PDF
    ("text/plain", b"\x89PNG\r\n\x1a\n" + b"\x00" * 200),                # a PNG sent as text
    ("video/mp4", b"<html><script>alert(1)</script></html>" + b" " * 100),
])
def test_a_type_contradicted_by_the_first_bytes_is_refused_and_deleted(any_app, content_type,
                                                                       body) -> None:
    kits = Kits(any_app)
    kit_id = kits.kit()
    created = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "file.bin", "content_type": content_type, "size": len(body)}).json
    upload = created["upload"]
    assert status_of(put(kits.client, upload["url"], body, upload["headers"])) in (200, 204)
    refused = kits.admin.post(f"/kits/{kit_id}/assets/{created['asset_id']}/complete")
    assert refused.status_code == 422, refused.json
    assert "content_type" in refused.json["errors"]["json"]
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"] == []
    with any_app.app_context():
        assert list(get_storage().list_keys(f"kits/{kit_id}/")) == []


@pytest.mark.parametrize(("body", "field"), [
    ({"filename": "../../etc/passwd", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "a/b.png", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "..", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "x\\..\\y.png", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "a\x00.png", "content_type": "image/png", "size": 10}, "filename"),
    ({"filename": "a.exe", "content_type": "application/x-msdownload", "size": 10},
     "content_type"),
    ({"filename": "a.png", "content_type": "image/png", "size": 0}, "size"),
    ({"filename": "a.png", "content_type": "image/png", "size": 6 * 1024**3}, "size"),
])
def test_bad_asset_requests_are_422_naming_the_field_and_leave_no_row(kits, body,
                                                                      field) -> None:
    kit_id = kits.kit()
    response = kits.admin.post(f"/kits/{kit_id}/assets", json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"] == []


def test_upload_cap_is_configurable(make_app) -> None:
    kits = Kits(make_app(KOC_MAX_UPLOAD_BYTES="1000"))
    kit_id = kits.kit()
    response = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "a.png", "content_type": "image/png", "size": 1001})
    assert response.status_code == 422
    assert "at most 1000 bytes" in str(response.json["errors"]["json"]["size"])


def test_a_chinese_file_name_is_kept_and_downloaded_under_its_name(kits) -> None:
    kit_id = kits.kit()
    asset_id = kits.upload(kit_id, png_bytes(), filename="新品主图.png")
    kits.publish(kit_id)
    _, member = kits.member()
    url = member.get(f"/kits/{kit_id}/assets/{asset_id}/download").json["url"]
    response = kits.client.get(url.removeprefix("http://localhost"))
    assert response.status_code == 200
    assert "filename*=UTF-8''%E6%96%B0" in response.headers["Content-Disposition"]


def test_store_down_is_503_and_leaves_no_row(make_app, tmp_path: Path) -> None:
    app = make_app(KOC_STORAGE_URL="s3://nowhere", KOC_S3_ENDPOINT_URL="http://127.0.0.1:9",
                   AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="y")
    kits = Kits(app)
    kit_id = kits.kit()
    big = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "film.mp4", "content_type": "video/mp4", "size": 100 * MiB})
    assert big.status_code == 503, big.json
    assert big.headers["Retry-After"]
    # A small upload is signed locally, so it is handed out; completing it needs the store.
    small = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "a.png", "content_type": "image/png", "size": 10})
    assert small.status_code == 201
    done = kits.admin.post(f"/kits/{kit_id}/assets/{small.json['asset_id']}/complete")
    assert done.status_code == 503
    gone = kits.admin.delete(f"/kits/{kit_id}/assets/{small.json['asset_id']}")
    assert gone.status_code == 503
    assets = kits.admin.get(f"/kits/{kit_id}").json["assets"]
    assert [(a["filename"], a["status"]) for a in assets] == [("a.png", "pending")]


def test_deleting_an_asset_deletes_its_object_and_preview(s3_app) -> None:
    from koc.assets.tasks import preview_asset

    kits = Kits(s3_app)
    kit_id = kits.kit()
    asset_id = kits.upload(kit_id, png_bytes())
    with s3_app.app_context():
        preview_asset.run(asset_id)
        asset = db.session.get(Asset, asset_id)
        keys = {asset.storage_key, asset.preview_key}
        assert set(get_storage().list_keys("kits/")) == keys
    assert kits.admin.delete(f"/kits/{kit_id}/assets/{asset_id}").status_code == 204
    with s3_app.app_context():
        assert list(get_storage().list_keys("kits/")) == []
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"] == []
    assert kits.admin.delete(f"/kits/{kit_id}/assets/{asset_id}").status_code == 404


def test_multipart_upload_of_200_mib_through_part_urls_keeps_memory_flat(s3_app,
                                                                         tmp_path: Path) -> None:
    size = 200 * MiB
    source = tmp_path / "launch.mp4"
    digest = hashlib.sha256()
    block = os.urandom(MiB)
    with source.open("wb") as out:
        for i in range(size // MiB):
            chunk = (b"\x00\x00\x00\x18ftypisom" if i == 0 else i.to_bytes(4, "big")) + \
                block[12 if i == 0 else 4:]
            digest.update(chunk)
            out.write(chunk)
    kits = Kits(s3_app)
    kit_id = kits.kit()

    tracemalloc.start()
    try:
        created = kits.admin.post(f"/kits/{kit_id}/assets", json={
            "filename": "launch.mp4", "content_type": "video/mp4", "size": size})
        assert created.status_code == 201, created.json
        upload = created.json["upload"]
        assert upload["multipart"] is True and upload["url"] is None
        assert sum(p["size"] for p in upload["parts"]) == size
        etags = []
        with source.open("rb") as f:
            for part in upload["parts"]:
                response = requests.put(part["url"], data=f.read(part["size"]), timeout=120)
                assert response.status_code == 200, response.text
                etags.append({"part_number": part["part_number"],
                              "etag": response.headers["ETag"]})
        asset_id = created.json["asset_id"]
        done = kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete",
                               json={"parts": etags})
        assert done.status_code == 200, done.json
        assert done.json["size"] == size
        with s3_app.app_context():
            assert checksum_asset.run(asset_id) == digest.hexdigest()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # A 16 MiB part at a time in the client (http.client copies it once more to send it),
    # 1 MiB chunks in the checksum task: about 45 MiB whatever the file size.
    assert peak < 64 * MiB, f"peak {peak / MiB:.0f} MiB for a {size // MiB} MiB file"


def test_multipart_completion_without_etags_uses_the_stored_parts(make_app, seaweedfs,
                                                                  s3_bucket) -> None:
    kits = Kits(make_app(**s3_env(seaweedfs, s3_bucket), **SMALL_PARTS))
    kit_id = kits.kit()
    body = b"%PDF-1.7\n" + os.urandom(11 * MiB)
    created = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "guide.pdf", "content_type": "application/pdf", "size": len(body)}).json
    parts = created["upload"]["parts"]
    assert [p["size"] for p in parts] == [5 * MiB, 5 * MiB, len(body) - 10 * MiB]
    asset_id = created["asset_id"]
    # Two of three parts: the assembled object is short, so it is refused and removed.
    for part in parts[:2]:
        start = (part["part_number"] - 1) * 5 * MiB
        requests.put(part["url"], data=body[start:start + part["size"]], timeout=60)
    short = kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete")
    assert short.status_code == 409 and "not the" in short.json["message"]
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"] == []

    created = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "guide.pdf", "content_type": "application/pdf", "size": len(body)}).json
    for part in created["upload"]["parts"]:
        start = (part["part_number"] - 1) * 5 * MiB
        requests.put(part["url"], data=body[start:start + part["size"]], timeout=60)
    done = kits.admin.post(f"/kits/{kit_id}/assets/{created['asset_id']}/complete")
    assert done.status_code == 200, done.json
    assert done.json["status"] == "ready"


def test_reconcile_lists_objects_without_rows_and_rows_without_objects(s3_app) -> None:
    kits = Kits(s3_app)
    kit_id = kits.kit()
    kept = kits.upload(kit_id, png_bytes())
    lost = kits.upload(kit_id, png_bytes(color=(0, 0, 255)), filename="lost.png")
    with s3_app.app_context():
        storage = get_storage()
        storage.put_bytes(f"kits/{kit_id}/stray/leftover.png", b"x", content_type="image/png")
        lost_key = db.session.get(Asset, lost).storage_key
        storage.delete(lost_key)
        assert db.session.get(Asset, kept) is not None

    result = CliRunner().invoke(koc_cli, ["assets", "reconcile"],
                                obj=ScriptInfo(create_app=lambda: s3_app))
    assert result.exit_code == 1, result.output
    assert f"object without a row: kits/{kit_id}/stray/leftover.png" in result.output
    assert f"row without an object: assets {lost} {lost_key}" in result.output
    assert "1 objects without a row, 1 rows without an object" in result.output


def test_an_open_upload_gets_fresh_urls_until_it_is_completed(kits) -> None:
    kit_id = kits.kit()
    body = png_bytes()
    created = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "hero.png", "content_type": "image/png", "size": len(body)}).json
    asset_id = created["asset_id"]
    renewed = kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/upload")
    assert renewed.status_code == 200
    assert status_of(put(kits.client, renewed.json["url"], body, renewed.json["headers"])) \
        == 200
    assert kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete").status_code == 200
    assert kits.admin.post(f"/kits/{kit_id}/assets/{asset_id}/upload").status_code == 409


@pytest.mark.parametrize(("name", "value"), [
    ("KOC_MULTIPART_PART_SIZE", "1024"),
    ("KOC_MULTIPART_THRESHOLD", "lots"),
    ("KOC_WATERMARK_TEXT", "KOC {member_id}"),
    ("KOC_WATERMARK_TEXT", "{code} {who}"),
])
def test_a_bad_kits_setting_stops_the_app_naming_it(make_app, name, value) -> None:
    from koc.settings import SettingsError

    with pytest.raises(SettingsError, match=name):
        make_app(**{name: value})


def test_completion_retried_after_the_store_already_assembled_the_parts_succeeds(
    make_app, seaweedfs, s3_bucket
) -> None:
    app = make_app(**s3_env(seaweedfs, s3_bucket), **SMALL_PARTS)
    kits = Kits(app)
    kit_id = kits.kit()
    body = b"%PDF-1.7\n" + os.urandom(6 * MiB)
    created = kits.admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "guide.pdf", "content_type": "application/pdf", "size": len(body)}).json
    for part in created["upload"]["parts"]:
        start = (part["part_number"] - 1) * 5 * MiB
        requests.put(part["url"], data=body[start:start + part["size"]], timeout=60)
    # An earlier completion got as far as the store and died before its commit.
    with app.app_context():
        asset = db.session.get(Asset, created["asset_id"])
        storage = get_storage()
        storage.complete_multipart(asset.storage_key, upload_id=asset.upload_id,
                                   parts=storage.list_parts(asset.storage_key,
                                                            upload_id=asset.upload_id))
    done = kits.admin.post(f"/kits/{kit_id}/assets/{created['asset_id']}/complete")
    assert done.status_code == 200, done.json
    assert done.json["status"] == "ready"
