"""Bundles: one zip of a kit's ready assets, built by a task, current while those assets are
exactly the ones inside it.
"""

from __future__ import annotations

import uuid
import zipfile
from dataclasses import dataclass

from koc.assets.models import AssetStatus, Kit
from koc.core.db import utcnow
from koc.core.storage import Storage
from koc.extensions import db


@dataclass(frozen=True)
class BuiltBundle:
    files: int
    # The zip it replaces: delete it only once the kit's row points at the new one.
    replaced_key: str | None


def ready_asset_ids(kit: Kit) -> list[int]:
    return sorted(asset.id for asset in kit.assets if asset.status == AssetStatus.ready)


def bundle_is_current(kit: Kit) -> bool:
    return kit.bundle_key is not None and kit.bundle_assets == ready_asset_ids(kit)


def _unique_name(filename: str, taken: set[str]) -> str:
    name, n = filename, 1
    while name in taken:
        stem, dot, ext = filename.rpartition(".")
        name = f"{stem} ({n}).{ext}" if dot else f"{filename} ({n})"
        n += 1
    taken.add(name)
    return name


def build_bundle(kit: Kit, *, storage: Storage, part_size: int) -> BuiltBundle:
    """Store a new zip of the kit's ready assets and point the kit at it."""
    assets = [a for a in kit.assets if a.status == AssetStatus.ready]
    key = f"kits/{kit.id}/bundles/{uuid.uuid4().hex}.zip"
    names: set[str] = set()
    written = 0
    # The archive goes straight into a multipart upload: memory holds one part, whatever the
    # kit's size. Media is already compressed, so files are stored, not deflated again.
    with storage.open_writer(key, content_type="application/zip", part_size=part_size) as out, \
            zipfile.ZipFile(out, "w", compression=zipfile.ZIP_STORED) as archive:
        for asset in assets:
            name = _unique_name(asset.filename, names)
            entry_info = zipfile.ZipInfo(name, date_time=asset.created_at.timetuple()[:6])
            entry_info.compress_type = zipfile.ZIP_STORED
            entry_info.file_size = asset.size
            with archive.open(entry_info, "w", force_zip64=asset.size >= 2**31) as entry:
                for chunk in storage.iter_chunks(asset.storage_key):
                    entry.write(chunk)
            written += 1
    stored = storage.head(key)
    old = kit.bundle_key
    kit.bundle_key, kit.bundle_size = key, stored.size if stored else None
    kit.bundle_assets = sorted(a.id for a in assets)
    kit.bundle_built_at = utcnow()
    db.session.flush()
    return BuiltBundle(files=written, replaced_key=old if old and old != key else None)
