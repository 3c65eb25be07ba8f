"""Reconciliation: the objects under a prefix in storage against the rows that point to them.

Orphans (objects no row points to) and missing objects (rows whose object must exist and does
not) are reported, never repaired here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Kit, Watermark
from koc.core.storage import Storage
from koc.extensions import db


@dataclass
class Reconciliation:
    orphans: list[str] = field(default_factory=list)  # objects no row points to
    missing: list[tuple[str, int, str]] = field(default_factory=list)  # (table, id, key)


def _known_keys() -> Iterator[tuple[str, int, str, bool]]:
    """(table, id, key, must exist) of every object a row points to."""
    for asset_id, key, status, preview in db.session.execute(
            sa.select(Asset.id, Asset.storage_key, Asset.status, Asset.preview_key)
            .execution_options(yield_per=2000)):
        # A pending asset's object is an upload in progress: it may or may not be there.
        yield "assets", asset_id, key, status == AssetStatus.ready
        if preview:
            yield "assets.preview", asset_id, preview, True
    for mark_id, key, ready in db.session.execute(
            sa.select(Watermark.id, Watermark.storage_key, Watermark.ready_at.is_not(None))
            .execution_options(yield_per=2000)):
        yield "watermarks", mark_id, key, bool(ready)
    for kit_id, bundle_key in db.session.execute(
            sa.select(Kit.id, Kit.bundle_key).where(Kit.bundle_key.is_not(None))):
        if bundle_key is not None:  # always, by the query: this tells the type checker
            yield "kits.bundle", kit_id, bundle_key, True


def reconcile(storage: Storage, *, prefix: str = "kits/") -> Reconciliation:
    stored = set(storage.list_keys(prefix))
    result = Reconciliation()
    known: set[str] = set()
    for table, row_id, key, must_exist in _known_keys():
        known.add(key)
        if must_exist and key not in stored:
            result.missing.append((table, row_id, key))
    result.orphans = sorted(stored - known)
    return result
