"""Media a member uploads straight to storage and attaches to a submission.

Each upload has its own cap by kind (images, videos) and counts against the member's quota over
the last 24 hours (count and bytes). When it is attached to a submission its stored object's
fingerprint (the store's ETag) is fixed; review checks it again, so bytes put later through the
still-valid presigned URL are caught instead of approved.
"""

from __future__ import annotations

import hashlib
import math
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa

from koc.core.errors import DomainError, field_error
from koc.core.media import SNIFF_BYTES, sniff, types_agree
from koc.core.storage import ObjectNotFound, PresignedRequest, Storage
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import (
    MediaUpload,
)

QUOTA_WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class UploadLimits:
    image_bytes: int
    video_bytes: int
    daily_count: int
    daily_bytes: int


def _cap(content_type: str, limits: UploadLimits) -> int:
    return limits.video_bytes if content_type.startswith("video/") else limits.image_bytes


def _check_quota(member_id: int, size: int, limits: UploadLimits, now: datetime) -> None:
    # The member row is locked (on PostgreSQL) so two uploads at once cannot both fit.
    db.session.execute(sa.select(Member.id).where(Member.id == member_id).with_for_update())
    since = now - QUOTA_WINDOW
    count, total, oldest = db.session.execute(
        sa.select(sa.func.count(), sa.func.coalesce(sa.func.sum(MediaUpload.size), 0),
                  sa.func.min(MediaUpload.created_at))
        .where(MediaUpload.member_id == member_id, MediaUpload.created_at > since)).one()

    def refuse(field: str, message: str) -> DomainError:
        # Retry once the oldest upload in the window leaves it.
        wait = max(1, math.ceil(((oldest + QUOTA_WINDOW) - now).total_seconds())) if oldest \
            else int(QUOTA_WINDOW.total_seconds())
        error = field_error(429, field, message)
        error.headers = {"Retry-After": str(wait)}
        return error

    if count + 1 > limits.daily_count:
        raise refuse("filename", f"at most {limits.daily_count} uploads in 24 hours")
    if int(total) + size > limits.daily_bytes:
        raise refuse("size", f"at most {limits.daily_bytes} bytes of uploads in 24 hours "
                             f"({int(total)} used)")


def create_media_upload(member_id: int, *, filename: str, content_type: str, size: int,
                        storage: Storage, limits: UploadLimits, url_ttl: int, now: datetime
                        ) -> tuple[MediaUpload, PresignedRequest]:
    cap = _cap(content_type, limits)
    if size > cap:
        kind = "a video" if content_type.startswith("video/") else "an image"
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"{kind} may be at most {cap} bytes"]}})
    _check_quota(member_id, size, limits, now)
    key = f"media/{member_id}/{uuid.uuid4().hex}/{filename}"
    upload = MediaUpload(member_id=member_id, filename=filename, content_type=content_type,
                         size=size, storage_key=key, created_at=now)
    db.session.add(upload)
    db.session.flush()
    return upload, storage.presign_put(key, content_type=content_type, size=size,
                                       expires_in=url_ttl)


def verify_media(media: Iterable[MediaUpload], storage: Storage,
                 now: datetime | None = None) -> None:
    """Each upload is in the store, no larger than declared, and is what it says it is; its
    fingerprint is fixed from here on."""
    for upload in media:
        info = storage.head(upload.storage_key)
        if info is None:
            raise field_error(422, "media_upload_ids", f"upload {upload.id} was not uploaded")
        if info.size != upload.size:
            raise field_error(422, "media_upload_ids",
                               f"upload {upload.id} is not the size declared")
        try:
            head = storage.read_prefix(upload.storage_key, SNIFF_BYTES)
        except ObjectNotFound as exc:
            raise field_error(422, "media_upload_ids",
                               f"upload {upload.id} was not uploaded") from exc
        if not types_agree(upload.content_type, sniff(head)):
            raise field_error(422, "media_upload_ids",
                               f"upload {upload.id} is not a {upload.content_type} file")
        upload.content_etag = info.etag
        upload.fixed_at = now


def changed_media(media: Iterable[MediaUpload], storage: Storage) -> list[int]:
    """The uploads whose stored object is no longer the one fixed at submission (replaced,
    resized or deleted)."""
    changed = []
    for upload in media:
        if upload.fixed_at is None:
            continue  # attached before fingerprints were kept
        info = storage.head(upload.storage_key)
        if info is None or info.size != upload.size or info.etag != upload.content_etag:
            changed.append(upload.id)
    return changed


def fingerprint_media(media_id: int, storage: Storage) -> str | None:
    """SHA-256 of an attached upload, streamed; recorded only if the object is still the one
    fixed at submission before and after the read. Safe to run twice."""
    upload = db.session.get(MediaUpload, media_id)
    if upload is None or upload.fixed_at is None or upload.sha256 is not None:
        return upload.sha256 if upload is not None else None
    if changed_media([upload], storage):
        return None
    digest = hashlib.sha256()
    for chunk in storage.iter_chunks(upload.storage_key):
        digest.update(chunk)
    if changed_media([upload], storage):
        return None
    upload.sha256 = digest.hexdigest()
    db.session.flush()
    return upload.sha256
