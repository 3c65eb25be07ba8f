"""Media a member uploads straight to storage and attaches to a submission."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from koc.core.errors import DomainError, field_error
from koc.core.media import SNIFF_BYTES, sniff, types_agree
from koc.core.storage import ObjectNotFound, PresignedRequest, Storage
from koc.extensions import db
from koc.submissions.models import (
    MediaUpload,
)


def create_media_upload(member_id: int, *, filename: str, content_type: str, size: int,
                        storage: Storage, max_bytes: int, url_ttl: int
                        ) -> tuple[MediaUpload, PresignedRequest]:
    if size > max_bytes:
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"must be at most {max_bytes} bytes"]}})
    key = f"media/{member_id}/{uuid.uuid4().hex}/{filename}"
    upload = MediaUpload(member_id=member_id, filename=filename, content_type=content_type,
                         size=size, storage_key=key)
    db.session.add(upload)
    db.session.flush()
    return upload, storage.presign_put(key, content_type=content_type, size=size,
                                       expires_in=url_ttl)


def verify_media(media: Iterable[MediaUpload], storage: Storage) -> None:
    """Each upload is in the store, no larger than declared, and is what it says it is."""
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
