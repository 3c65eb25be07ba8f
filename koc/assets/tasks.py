"""Kits background work: checksums, previews, watermarks, the zip bundle, abandoned uploads.

Every task takes ids, reads the object as a stream and is safe to run twice: a finished result
is recognised and left alone, a half-finished one is redone.
"""

from __future__ import annotations

import hashlib
import io
import logging
import uuid
import zipfile
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from celery import shared_task
from flask import current_app
from PIL import Image, ImageDraw, ImageFont, ImageOps

from koc.assets.models import Asset, AssetStatus, Kit, Watermark
from koc.core import media
from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, run_job
from koc.core.storage import get_storage
from koc.extensions import db

log = logging.getLogger(__name__)
ABANDONED_AFTER = timedelta(days=2)
PREVIEW_BOX = (640, 640)


@periodic_task("koc.assets.tasks.clear_abandoned_uploads", Every(timedelta(hours=6)))
def clear_abandoned_uploads() -> int:
    """Delete assets still pending long after their upload URL expired, and any partial object."""
    from koc.assets.services import delete_asset

    cutoff = utcnow() - ABANDONED_AFTER
    stale = db.session.scalars(
        sa.select(Asset).where(Asset.status == AssetStatus.pending.value,
                               Asset.created_at < cutoff).limit(1000)
    ).all()
    storage = get_storage()
    for asset in stale:
        delete_asset(asset, storage=storage)
    db.session.commit()
    if stale:
        log.info("cleared %d abandoned uploads", len(stale))
    return len(stale)


def _current(asset_id: int) -> Asset | None:
    """The asset if it is ready and its object is the version that was completed."""
    asset = db.session.get(Asset, asset_id)
    if asset is None or asset.status != AssetStatus.ready:
        return None
    info = get_storage().head(asset.storage_key)
    if info is None or (asset.etag and info.etag != asset.etag):
        log.warning("asset %s: the stored object is gone or changed; skipped", asset_id)
        return None
    return asset


@shared_task(name="koc.assets.tasks.checksum_asset")
def checksum_asset(asset_id: int) -> str | None:
    """Record the SHA-256 of the stored object, reading it as a stream."""
    asset = _current(asset_id)
    if asset is None:
        return None
    if asset.sha256:
        return asset.sha256
    digest = hashlib.sha256()
    for chunk in get_storage().iter_chunks(asset.storage_key):
        digest.update(chunk)
    asset.sha256 = digest.hexdigest()
    db.session.commit()
    return asset.sha256


@shared_task(name="koc.assets.tasks.preview_asset")
def preview_asset(asset_id: int) -> str | None:
    """Read an image's dimensions and store a JPEG preview next to it."""
    asset = _current(asset_id)
    if asset is None:
        return None
    if asset.preview_key and get_storage().head(asset.preview_key) is not None:
        return asset.preview_key
    with media.spool(get_storage(), asset.storage_key) as source:
        try:
            width, height = media.image_size(source)
            image = media.open_image(source, draft_box=PREVIEW_BOX)
        except media.NotAnImage as exc:
            log.warning("asset %s: no preview (%s)", asset_id, exc)
            return None
    with image:
        preview = ImageOps.exif_transpose(image).convert("RGB")
        preview.thumbnail(PREVIEW_BOX)
        out = io.BytesIO()
        preview.save(out, "JPEG", quality=82)
    key = f"kits/{asset.kit_id}/previews/{asset.id}.jpg"
    get_storage().put_bytes(key, out.getvalue(), content_type="image/jpeg")
    asset.width, asset.height, asset.preview_key = width, height, key
    db.session.commit()
    return key


def mark_image(image: Any, text: str) -> Any:
    """The image with `text` on a dark band in its bottom-right corner, legible at any size."""
    base = image.convert("RGBA")
    size = max(14, base.width // 28)
    try:
        font = ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the small bitmap font
        font = ImageFont.load_default()
    overlay = Image.new("RGBA", base.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(overlay)
    left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
    pad = max(4, size // 3)
    x = base.width - (right - left) - 2 * pad
    y = base.height - (bottom - top) - 2 * pad
    draw.rectangle((x, y, base.width, base.height), fill=(0, 0, 0, 150))
    draw.text((x + pad - left, y + pad - top), text, font=font, fill=(255, 255, 255, 235))
    return Image.alpha_composite(base, overlay)


@shared_task(name="koc.assets.tasks.watermark_asset")
def watermark_asset(watermark_id: int) -> str | None:
    """Make one member's marked copy of an image, once; later downloads reuse it."""
    mark = db.session.get(Watermark, watermark_id)
    if mark is None:
        return None
    if mark.ready_at is not None:
        return mark.storage_key
    asset = _current(mark.asset_id)
    if asset is None:
        return None
    template = current_app.config["KOC_SETTINGS"].watermark_text
    text = template.format(code=mark.code, member_id=mark.member_id)
    with media.spool(get_storage(), asset.storage_key) as source, \
            media.open_image(source) as image:
        fmt = image.format or "PNG"
        marked = mark_image(image, text)
    out = io.BytesIO()
    if fmt in ("JPEG", "WEBP"):
        marked.convert("RGB").save(out, fmt, quality=92)
    elif fmt == "GIF":
        marked.convert("RGB").save(out, "GIF")
    else:
        marked.save(out, "PNG")
    data = out.getvalue()
    get_storage().put_bytes(mark.storage_key, data, content_type=asset.content_type)
    mark.sha256 = hashlib.sha256(data).hexdigest()
    mark.ready_at = utcnow()
    db.session.commit()
    return mark.storage_key


def _bundle_work(job: Job) -> None:
    kit = db.session.get(Kit, job.payload["kit_id"])
    if kit is None:
        job.errors = [{"line": None, "message": "the kit no longer exists"}]
        job.failed = 1
        return
    assets = [a for a in kit.assets if a.status == AssetStatus.ready]
    storage = get_storage()
    key = f"kits/{kit.id}/bundles/{uuid.uuid4().hex}.zip"
    names: set[str] = set()
    written = 0
    # The archive goes straight into a multipart upload: memory holds one part, whatever the
    # kit's size. Media is already compressed, so files are stored, not deflated again.
    part_size = current_app.config["KOC_SETTINGS"].multipart_part_size
    with storage.open_writer(key, content_type="application/zip", part_size=part_size) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for asset in assets:
            name = _unique_name(asset.filename, names)
            info = zipfile.ZipInfo(name, date_time=asset.created_at.timetuple()[:6])
            info.compress_type = zipfile.ZIP_STORED
            info.file_size = asset.size
            with archive.open(info, "w", force_zip64=asset.size >= 2**31) as entry:
                for chunk in storage.iter_chunks(asset.storage_key):
                    entry.write(chunk)
            written += 1
    info = storage.head(key)
    old = kit.bundle_key
    kit.bundle_key, kit.bundle_size = key, info.size if info else None
    kit.bundle_assets = sorted(a.id for a in assets)
    kit.bundle_built_at = utcnow()
    job.processed = written
    job.result = {"kit_id": kit.id, "files": written, "size": kit.bundle_size}
    db.session.commit()
    if old and old != key:
        storage.delete(old)


def _unique_name(filename: str, taken: set[str]) -> str:
    name, n = filename, 1
    while name in taken:
        stem, dot, ext = filename.rpartition(".")
        name = f"{stem} ({n}).{ext}" if dot else f"{filename} ({n})"
        n += 1
    taken.add(name)
    return name


@shared_task(name="koc.assets.tasks.build_bundle_job")
def build_bundle_job(job_id: int) -> bool:
    return run_job(job_id, _bundle_work)
