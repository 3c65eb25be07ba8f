"""Choosing the backend the settings name and keeping one per app; deleting objects with rows."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from flask import current_app

from koc.core.storage.base import EXTENSION_KEY, Storage
from koc.core.storage.local import LocalStorage
from koc.core.storage.s3 import S3Storage
from koc.extensions import db

if TYPE_CHECKING:
    from koc.settings import Settings


def build_storage(settings: Settings) -> Storage:
    """The backend `settings.storage_url` names; no I/O happens here."""
    scheme = urlsplit(settings.storage_url).scheme
    if scheme == "s3":
        return S3Storage(settings)
    if scheme == "file":
        return LocalStorage.from_settings(settings)
    raise ValueError(f"unsupported storage URL: {settings.storage_url!r}")


def delete_objects_then_rows(rows: Sequence[Any]) -> int:
    """Delete each row's stored object (`row.storage_key`), then the rows; the caller commits.

    Objects go first: a crash in between leaves rows whose objects are gone, which the next run
    deletes again, and never an object that no row points to.
    """
    storage = get_storage()
    for row in rows:
        storage.delete(row.storage_key)
    for row in rows:
        db.session.delete(row)
    db.session.flush()
    return len(rows)


def get_storage() -> Storage:
    """The current app's storage, built on first use and kept for the app's lifetime."""
    storage = current_app.extensions.get(EXTENSION_KEY)
    if storage is None:
        storage = build_storage(current_app.config["KOC_SETTINGS"])
        # setdefault: two threads racing here both end up with the same instance.
        storage = current_app.extensions.setdefault(EXTENSION_KEY, storage)
    return storage
