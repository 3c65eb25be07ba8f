"""Downloads: short-lived URLs for one asset or a kit's zip, each one issued to a member
recorded in `downloads`.

While an embargoed kit asks for watermarks, an image goes out as the member's marked copy; the
zip, which holds the unmarked originals, is then refused to members.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import cast

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Download, Kit
from koc.assets.services.bundles import bundle_is_current
from koc.assets.services.kits import get_asset, get_kit_for_member
from koc.assets.services.uploads import MARKABLE_TYPES
from koc.assets.services.watermarks import watermark_for
from koc.core.db import as_loaded, mapped_columns, utcnow
from koc.core.errors import DomainError
from koc.core.jobs import enqueue_after_commit
from koc.core.storage import Storage
from koc.extensions import db
from koc.members.models import Member


@dataclass(frozen=True)
class DownloadTicket:
    url: str | None
    expires_at: datetime | None
    # True while a watermarked copy is being made: ask again shortly.
    preparing: bool = False
    watermark_code: str | None = None


def issue_download(member: Member, kit_id: int, asset_id: int, *, storage: Storage,
                   tier_ranks: Mapping[str, int], ttl: int) -> DownloadTicket:
    """A URL for one asset. The hot path: the member came with the token lookup, the tier
    ranks from the process's cache, the kit and its asset come in one query, the URL is signed
    locally (no call to the store) and the download row goes out with the commit."""
    # Kit and asset in one round trip; both land in the identity map, so the lookups below
    # (which keep the one 404 for "none" and "not yours") cost nothing more.
    loaded = _load_kit_and_asset(kit_id, asset_id)
    kit = get_kit_for_member(kit_id, member, tier_ranks)
    asset = get_asset(kit, asset_id)
    del loaded
    if asset.status != AssetStatus.ready:
        raise DomainError(404, "No such asset in this kit.")
    now = utcnow()
    key, filename, mark = asset.storage_key, asset.filename, None
    if kit.watermark and kit.embargoed(now) and asset.content_type in MARKABLE_TYPES:
        mark = watermark_for(asset, member)
        if mark.ready_at is None:
            enqueue_after_commit("koc.assets.tasks.watermark_asset", mark.id)
            return DownloadTicket(url=None, expires_at=None, preparing=True)
        key = mark.storage_key
    expires_at = now + timedelta(seconds=ttl)
    url = storage.presign_get(key, expires_in=ttl, filename=filename)
    # One Core INSERT: the row needs nothing back, and the unit of work's bookkeeping for it at
    # the commit cost more than the statement.
    db.session.connection().execute(_statements()[1], {
        "member_id": member.id, "asset_id": asset.id, "kit_id": kit.id, "issued_at": now,
        "expires_at": expires_at, "watermark_id": mark.id if mark else None})
    return DownloadTicket(url=url, expires_at=expires_at,
                          watermark_code=mark.code if mark else None)


_STATEMENTS: list[tuple[sa.Select, sa.Insert]] = []


def _statements() -> tuple[sa.Select, sa.Insert]:
    """(the kit with one of its assets, a download row), built once: every link runs both."""
    if not _STATEMENTS:
        kit_and_asset = (
            sa.select(*mapped_columns(Kit)[1], *mapped_columns(Asset)[1]).select_from(Kit)
            .outerjoin(Asset, sa.and_(Asset.kit_id == Kit.id,
                                      Asset.id == sa.bindparam("asset_id")))
            .where(Kit.id == sa.bindparam("kit_id")))
        table = cast(sa.Table, Download.__table__)
        download = sa.insert(table).values(
            {key: sa.bindparam(key, type_=table.c[key].type)
             for key in ("member_id", "asset_id", "kit_id", "issued_at", "expires_at",
                         "watermark_id")})
        _STATEMENTS.append((kit_and_asset, download))
    return _STATEMENTS[0]


def _load_kit_and_asset(kit_id: int, asset_id: int) -> tuple[Kit | None, Asset | None]:
    """The kit and that asset of it (None for either that is not there), into the session as
    loaded rows, from plain columns: cheaper than the ORM loading two entities."""
    row = db.session.connection().execute(
        _statements()[0], {"kit_id": kit_id, "asset_id": asset_id}).first()
    if row is None:
        return None, None
    kit_keys, asset_keys = mapped_columns(Kit)[0], mapped_columns(Asset)[0]
    kit = as_loaded(db.session(), Kit, dict(zip(kit_keys, row[:len(kit_keys)], strict=True)))
    asset_values = dict(zip(asset_keys, row[len(kit_keys):], strict=True))
    asset = (as_loaded(db.session(), Asset, asset_values)
             if asset_values["id"] is not None else None)
    return kit, asset


def issue_bundle_download(kit: Kit, *, member: Member | None, storage: Storage,
                          ttl: int) -> tuple[str, datetime]:
    """A URL for the kit's zip; `member` None for staff, whose fetches are not recorded."""
    if member is not None and kit.watermark and kit.embargoed(utcnow()):
        # The zip holds the unmarked originals: during the embargo images go out one by one.
        raise DomainError(409, "During the embargo this kit's files are downloaded one by one.")
    if kit.bundle_key is None or not bundle_is_current(kit):
        raise DomainError(409, "The kit's zip is not built for its current files yet.")
    expires_at = utcnow() + timedelta(seconds=ttl)
    url = storage.presign_get(kit.bundle_key, expires_in=ttl,
                              filename=f"kit-{kit.id}.zip")
    if member is not None:
        db.session.add(Download(member_id=member.id, asset_id=None, kit_id=kit.id,
                                expires_at=expires_at))
        db.session.flush()
    return url, expires_at
