"""Image previews and dimensions, per-member watermarks with the leak lookup, and the kit's zip
streamed into storage."""

from __future__ import annotations

import hashlib
import io
import os
import tracemalloc
import zipfile
from datetime import timedelta
from pathlib import Path

import pytest
import requests
from PIL import Image

from koc.assets.models import Download, Watermark
from koc.assets.tasks import build_bundle_job, preview_asset, watermark_asset
from koc.core.db import utcnow
from koc.core.jobs import Job
from koc.extensions import db
from tests.assets.conftest import Kits, fetch, png_bytes, s3_env
from tests.conftest import Api, staff_token_for

MiB = 1024 * 1024


def test_image_gets_a_preview_and_its_dimensions_and_a_pdf_gets_neither(kits, app) -> None:
    kit_id = kits.kit()
    image_id = kits.upload(kit_id, png_bytes(1600, 900))
    pdf_id = kits.upload(kit_id, b"%PDF-1.4\n" + b"0" * 500, filename="notes.pdf",
                         content_type="application/pdf")
    with app.app_context():
        assert preview_asset.run(image_id) is not None
        assert preview_asset.run(pdf_id) is None
    assets = {a["id"]: a for a in kits.admin.get(f"/kits/{kit_id}").json["assets"]}
    assert (assets[image_id]["width"], assets[image_id]["height"]) == (1600, 900)
    preview = Image.open(io.BytesIO(fetch(kits.client, assets[image_id]["preview_url"])))
    assert preview.format == "JPEG" and preview.size == (640, 360)
    assert (assets[pdf_id]["width"], assets[pdf_id]["preview_url"]) == (None, None)


def test_a_file_that_is_not_really_an_image_gets_no_preview(kits, app) -> None:
    kit_id = kits.kit()
    # PNG signature, then garbage: it passes the first-bytes check, Pillow cannot decode it.
    asset_id = kits.upload(kit_id, b"\x89PNG\r\n\x1a\n" + os.urandom(2000))
    with app.app_context():
        assert preview_asset.run(asset_id) is None
    assert kits.admin.get(f"/kits/{kit_id}").json["assets"][0]["preview_url"] is None


@pytest.fixture
def embargoed_kit(kits):
    launch = (utcnow() + timedelta(days=3)).isoformat()
    kit_id = kits.kit(product_name="Blind box S3", launch_at=launch, watermark=True)
    original = png_bytes(800, 600, color=(240, 240, 240))
    image_id = kits.upload(kit_id, original)
    notes_id = kits.upload(kit_id, b"Shoot at eye level\n", filename="notes.txt",
                           content_type="text/plain")
    kits.publish(kit_id)
    return kit_id, image_id, notes_id, original


def _marked_download(kits: Kits, app, member, kit_id: int, asset_id: int) -> bytes:
    path = f"/kits/{kit_id}/assets/{asset_id}/download"
    first = member.get(path)
    if first.status_code == 202:
        assert first.headers["Retry-After"]
        with app.app_context():
            pending = db.session.query(Watermark).filter_by(
                asset_id=asset_id, ready_at=None).all()
            for mark in pending:
                watermark_asset.run(mark.id)
        first = member.get(path)
    assert first.status_code == 200, first.json
    return fetch(kits.client, first.json["url"])


def test_embargoed_images_go_out_marked_per_member_and_a_leak_names_its_member(
    kits, app, embargoed_kit
) -> None:
    kit_id, image_id, notes_id, original = embargoed_kit
    alice_id, alice = kits.member(tier="early_access")
    bob_id, bob = kits.member(tier="senior")

    alice_copy = _marked_download(kits, app, alice, kit_id, image_id)
    bob_copy = _marked_download(kits, app, bob, kit_id, image_id)
    assert len({original, alice_copy, bob_copy}) == 3
    marked = Image.open(io.BytesIO(alice_copy)).convert("RGB")
    assert marked.size == (800, 600)
    # The mark sits in the bottom-right corner; the rest of the picture is untouched.
    assert marked.getpixel((795, 595)) != (240, 240, 240)
    assert marked.getpixel((100, 100)) == (240, 240, 240)
    # Made once: the next download hands out the same copy.
    assert _marked_download(kits, app, alice, kit_id, image_id) == alice_copy
    # Only images are marked: the notes go out as they are.
    notes = alice.get(f"/kits/{kit_id}/assets/{notes_id}/download")
    assert fetch(kits.client, notes.json["url"]) == b"Shoot at eye level\n"
    # Members get no unmarked preview of an embargoed image.
    assert alice.get(f"/kits/{kit_id}").json["assets"][0]["preview_url"] is None

    with app.app_context():
        codes = dict(db.session.query(Watermark.member_id, Watermark.code).all())
    by_code = kits.admin.get(f"/leaks?code={codes[alice_id].lower()}")
    assert by_code.status_code == 200, by_code.json
    assert (by_code.json["member_id"], by_code.json["asset_id"], by_code.json["downloads"]) \
        == (alice_id, image_id, 2)
    by_hash = kits.admin.get(f"/leaks?sha256={hashlib.sha256(bob_copy).hexdigest()}")
    assert by_hash.json["member_id"] == bob_id
    assert kits.admin.get(f"/leaks?sha256={hashlib.sha256(original).hexdigest()}") \
        .status_code == 404
    assert kits.admin.get("/leaks").status_code == 422
    viewer = Api(kits.client, staff_token_for(app, "viewer"))
    assert viewer.get(f"/leaks?code={codes[alice_id]}").status_code == 403


def test_after_launch_the_original_image_is_delivered(kits, app, embargoed_kit) -> None:
    kit_id, image_id, _, original = embargoed_kit
    _, member = kits.member(tier="early_access")
    assert _marked_download(kits, app, member, kit_id, image_id) != original
    past = (utcnow() - timedelta(minutes=1)).isoformat()
    assert kits.admin.patch(f"/kits/{kit_id}", json={"launch_at": past}).status_code == 200
    _, newcomer = kits.member()
    for someone in (member, newcomer):
        response = someone.get(f"/kits/{kit_id}/assets/{image_id}/download")
        assert fetch(kits.client, response.json["url"]) == original


def test_kit_zip_is_streamed_into_storage_with_flat_memory(make_app, seaweedfs, s3_bucket,
                                                          tmp_path: Path) -> None:
    app = make_app(**s3_env(seaweedfs, s3_bucket), KOC_MULTIPART_PART_SIZE=str(5 * MiB))
    kits = Kits(app)
    kit_id = kits.kit()
    files = {"guide.pdf": b"%PDF-1.7\n" + os.urandom(16 * MiB),
             "b-roll.pdf": b"%PDF-1.7\n" + os.urandom(16 * MiB),
             "hero.png": png_bytes(300, 200)}
    ids = {name: kits.upload(kit_id, body, filename=name,
                             content_type="image/png" if name.endswith("png")
                             else "application/pdf")
           for name, body in files.items()}
    kits.upload(kit_id, b"%PDF-1.4\n", filename="guide.pdf", content_type="application/pdf")
    files["guide (1).pdf"] = b"%PDF-1.4\n"
    kits.publish(kit_id)
    _, member = kits.member()
    assert member.get(f"/kits/{kit_id}/bundle/download").status_code == 409   # not built yet

    started = kits.admin.post(f"/kits/{kit_id}/bundle")
    assert started.status_code == 202
    job_id = started.json["job_id"]
    del files  # the test itself must not hold the kit while the task runs
    tracemalloc.start()
    try:
        with app.app_context():
            assert build_bundle_job.run(job_id) is True
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 24 * MiB, f"peak {peak / MiB:.1f} MiB for a 32 MiB kit"
    job = kits.admin.get(f"/jobs/{job_id}").json
    assert job["status"] == "succeeded" and job["processed"] == 4

    issued = member.get(f"/kits/{kit_id}/bundle/download")
    assert issued.status_code == 200, issued.json
    target = tmp_path / "kit.zip"
    with requests.get(issued.json["url"], stream=True, timeout=60) as response:
        response.raise_for_status()
        with target.open("wb") as out:
            for chunk in response.iter_content(MiB):
                out.write(chunk)
    with zipfile.ZipFile(target) as archive:
        assert archive.testzip() is None
        names = sorted(archive.namelist())
        hero = archive.read("hero.png")
        first_bytes = archive.read("guide.pdf")[:9]
    assert names == ["b-roll.pdf", "guide (1).pdf", "guide.pdf", "hero.png"]
    assert hero == png_bytes(300, 200) and first_bytes == b"%PDF-1.7\n"
    with app.app_context():
        assert db.session.query(Download).filter_by(kit_id=kit_id, asset_id=None).count() == 1
        assert db.session.get(Job, job_id).result["files"] == 4

    # Deleting a file makes the zip stale until it is built again.
    assert kits.admin.delete(f"/kits/{kit_id}/assets/{ids['hero.png']}").status_code == 204
    assert member.get(f"/kits/{kit_id}/bundle/download").status_code == 409
