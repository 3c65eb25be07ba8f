"""Uploads: an asset's bytes go straight from the client to the store through presigned URLs,
in one PUT or, above a threshold on a store that has them, in parts.

Completing checks the stored object against what was declared; its SHA-256 and its preview are
made afterwards by tasks, so a request never reads a whole object. Uploads left pending long
after their URLs expired are cleared.
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import sqlalchemy as sa
from PIL import ImageOps

from koc.assets.models import Asset, AssetStatus, Kit, KitStatus, Watermark
from koc.core import media
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.jobs import enqueue_after_commit
from koc.core.storage import PresignedRequest, Storage, StorageError, StorageUnavailable
from koc.core.storage.base import MultipartStorage, as_multipart, supports_multipart
from koc.extensions import db

log = logging.getLogger(__name__)

# Images Pillow reads and writes, so they can get a preview and a watermark.
MARKABLE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp",
                  "image/gif": "gif"}
MAX_PARTS = 10_000
PREVIEW_BOX = (640, 640)
ABANDONED_AFTER = timedelta(days=2)


class UploadRefused(DomainError):
    """A finished upload that is refused: its object and row are already deleted.

    The request commits before answering, so the deletion is kept although this is an error.
    """

    keeps_changes = True


@dataclass(frozen=True)
class MultipartUpload:
    part_size: int
    parts: list[tuple[int, int, str]]  # (part number, size, presigned URL)


@dataclass(frozen=True)
class UploadInstructions:
    single: PresignedRequest | None = None
    multipart: MultipartUpload | None = None

    def as_dict(self) -> dict[str, Any]:
        """The `upload` object of the API and the admin page's upload script."""
        if self.multipart is not None:
            return {"method": "PUT", "url": None, "headers": {}, "multipart": True,
                    "part_size": self.multipart.part_size,
                    "parts": [{"part_number": n, "size": size, "url": url}
                              for n, size, url in self.multipart.parts]}
        if self.single is None:
            raise ValueError("upload instructions hold neither a single PUT nor parts")
        single = self.single
        return {"method": single.method, "url": single.url, "headers": single.headers,
                "multipart": False, "part_size": None, "parts": []}


def _part_size_for(size: int, preferred: int) -> int:
    # S3 allows 10,000 parts: a file too big for the preferred size gets bigger parts.
    return max(preferred, math.ceil(size / MAX_PARTS))


def _part_urls(storage: MultipartStorage, asset: Asset, upload_id: str, *,
               url_ttl: int) -> MultipartUpload:
    part_size = asset.part_size or 0
    count = math.ceil(asset.size / part_size)
    parts = []
    for number in range(1, count + 1):
        length = min(part_size, asset.size - (number - 1) * part_size)
        url = storage.presign_upload_part(asset.storage_key, upload_id=upload_id,
                                          part_number=number, expires_in=url_ttl)
        parts.append((number, length, url))
    return MultipartUpload(part_size=part_size, parts=parts)


def add_asset(kit: Kit, *, filename: str, content_type: str, size: int, storage: Storage,
              max_bytes: int, url_ttl: int, multipart_threshold: int,
              part_size: int) -> tuple[Asset, UploadInstructions]:
    if kit.status == KitStatus.archived:
        raise DomainError(409, "This kit is archived.")
    if size > max_bytes:
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"must be at most {max_bytes} bytes"]}})
    key = f"kits/{kit.id}/{uuid.uuid4().hex}/{filename}"
    asset = Asset(kit=kit, filename=filename, content_type=content_type, size=size,
                  storage_key=key, status=AssetStatus.pending.value)
    if size > multipart_threshold and supports_multipart(storage):
        # The store is asked first: if it is down the request fails before any row exists.
        upload_id = storage.create_multipart(key, content_type=content_type)
        asset.upload_id = upload_id
        asset.part_size = _part_size_for(size, part_size)
        db.session.add(asset)
        db.session.flush()
        return asset, UploadInstructions(
            multipart=_part_urls(storage, asset, upload_id, url_ttl=url_ttl))
    db.session.add(asset)
    db.session.flush()
    upload = storage.presign_put(key, content_type=content_type, size=size, expires_in=url_ttl)
    return asset, UploadInstructions(single=upload)


def renew_upload(asset: Asset, *, storage: Storage, url_ttl: int) -> UploadInstructions:
    """Fresh URLs for an upload still open (a long upload can outlive the first ones)."""
    if asset.status != AssetStatus.pending:
        raise DomainError(409, "This asset is already uploaded.")
    if asset.upload_id:
        return UploadInstructions(multipart=_part_urls(
            as_multipart(storage), asset, asset.upload_id, url_ttl=url_ttl))
    return UploadInstructions(single=storage.presign_put(
        asset.storage_key, content_type=asset.content_type, size=asset.size,
        expires_in=url_ttl))


def _forget_upload(asset: Asset, storage: Storage) -> None:
    storage.delete(asset.storage_key)
    db.session.delete(asset)
    db.session.flush()


def _assemble_parts(asset: Asset, upload_id: str, storage: MultipartStorage,
                    parts: Sequence[tuple[int, str]] | None) -> None:
    """Assemble a multipart upload from `parts` (number, ETag), or from the parts stored."""
    try:
        stored = storage.list_parts(asset.storage_key, upload_id=upload_id)
    except StorageUnavailable:
        raise
    except StorageError:
        # The store no longer knows the upload: an earlier attempt assembled it and failed
        # before its commit. The object, if there, is checked like any other.
        return
    if not stored:
        raise DomainError(409, "The file has not been uploaded yet.")
    try:
        storage.complete_multipart(asset.storage_key, upload_id=upload_id,
                                   parts=list(parts) if parts else stored)
    except StorageUnavailable:
        raise
    except StorageError as exc:
        raise DomainError(409, "The store could not assemble the uploaded parts; "
                          "upload the missing parts or send their ETags.",
                          errors={"json": {"parts": [str(exc)[:300]]}}) from exc


def complete_asset(asset: Asset, *, storage: Storage,
                   parts: Sequence[tuple[int, str]] | None = None) -> Asset:
    """Mark an asset ready once its object is stored with the declared size; safe to repeat.

    A multipart upload is assembled first, from `parts` (number, ETag) or, when the client
    gives none, from the parts the store holds. The SHA-256 and the preview are made by tasks
    after the commit, so the request never reads the whole object.
    """
    if asset.status == AssetStatus.ready:
        return asset
    if asset.upload_id:
        _assemble_parts(asset, asset.upload_id, as_multipart(storage), parts)
        asset.upload_id = None
    info = storage.head(asset.storage_key)
    if info is None:
        raise DomainError(409, "The file has not been uploaded yet.")
    if info.size != asset.size:
        _forget_upload(asset, storage)
        raise UploadRefused(
            409, f"The stored file has {info.size} bytes, not the {asset.size} declared; "
            "it was deleted: add the asset again.",
            errors={"json": {"size": ["does not match the uploaded file"]}})
    problem = media.contradiction(asset.content_type,
                                  storage.get_range(asset.storage_key, 0, media.SNIFF_BYTES))
    if problem is not None:
        _forget_upload(asset, storage)
        raise UploadRefused(422, f"Refused: {problem}; it was deleted.",
                            errors={"json": {"content_type": [problem]}})
    asset.status = AssetStatus.ready.value
    asset.etag = info.etag
    asset.completed_at = utcnow()
    db.session.flush()
    enqueue_after_commit("koc.assets.tasks.checksum_asset", asset.id)
    if asset.content_type in MARKABLE_TYPES:
        enqueue_after_commit("koc.assets.tasks.preview_asset", asset.id)
    return asset


def asset_object_keys(asset: Asset) -> list[str]:
    keys = [asset.storage_key]
    if asset.preview_key:
        keys.append(asset.preview_key)
    keys += db.session.scalars(
        sa.select(Watermark.storage_key).where(Watermark.asset_id == asset.id)).all()
    return keys


def delete_asset(asset: Asset, *, storage: Storage) -> None:
    """Delete the asset's objects (original, preview, marked copies), then its row.

    Objects first: a failure in between leaves a row whose object is gone, which deleting
    again finishes, never an object that no row points to.
    """
    if asset.upload_id:
        as_multipart(storage).abort_multipart(asset.storage_key, upload_id=asset.upload_id)
    for key in asset_object_keys(asset):
        storage.delete(key)
    db.session.delete(asset)
    db.session.flush()


def clear_abandoned_uploads(*, storage: Storage) -> int:
    """Delete assets still pending long after their upload URL expired, and any partial object."""
    stale = db.session.scalars(
        sa.select(Asset).where(Asset.status == AssetStatus.pending.value,
                               Asset.created_at < utcnow() - ABANDONED_AFTER).limit(1000)
    ).all()
    for asset in stale:
        delete_asset(asset, storage=storage)
    return len(stale)


# --- after completion: checksum and preview ----------------------------------------------------

def current_asset(asset_id: int, *, storage: Storage) -> Asset | None:
    """The asset if it is ready and its object is the version that was completed."""
    asset = db.session.get(Asset, asset_id)
    if asset is None or asset.status != AssetStatus.ready:
        return None
    info = storage.head(asset.storage_key)
    if info is None or (asset.etag and info.etag != asset.etag):
        log.warning("asset %s: the stored object is gone or changed; skipped", asset_id)
        return None
    return asset


def record_checksum(asset_id: int, *, storage: Storage) -> str | None:
    """Record the SHA-256 of the stored object, reading it as a stream."""
    asset = current_asset(asset_id, storage=storage)
    if asset is None:
        return None
    if asset.sha256:
        return asset.sha256
    digest = hashlib.sha256()
    for chunk in storage.iter_chunks(asset.storage_key):
        digest.update(chunk)
    asset.sha256 = digest.hexdigest()
    db.session.flush()
    return asset.sha256


def make_preview(asset_id: int, *, storage: Storage) -> str | None:
    """Read an image's dimensions and store a JPEG preview next to it; its key, or None."""
    asset = current_asset(asset_id, storage=storage)
    if asset is None:
        return None
    if asset.preview_key and storage.head(asset.preview_key) is not None:
        return asset.preview_key
    with media.spool(storage, asset.storage_key) as source:
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
    storage.put_bytes(key, out.getvalue(), content_type="image/jpeg")
    asset.width, asset.height, asset.preview_key = width, height, key
    db.session.flush()
    return key
