"""Kits domain logic: plain functions over the session; they flush, the caller commits."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Download, Kit, KitStatus
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import PresignedRequest, Storage
from koc.extensions import db
from koc.members.models import Member, MemberStatus


@dataclass(frozen=True)
class Audience:
    """What decides which kits a member sees: their tier's rank and their user attributes."""

    tier_rank: int  # -1 for a member without a tier
    tags: frozenset[str]
    city: str | None
    store_code: str | None


def audience_of(member: Member, tier_ranks: Mapping[str, int]) -> Audience:
    user = member.user
    return Audience(
        tier_rank=tier_ranks.get(member.tier_key, -1) if member.tier_key else -1,
        tags=frozenset(user.tags or ()),
        city=user.city,
        store_code=user.store_code,
    )


def segments_match(segments: list[dict[str, str]], audience: Audience) -> bool:
    if not segments:
        return True
    for selector in segments:
        (kind, value), = selector.items()
        if (kind == "tag" and value in audience.tags) or (
            kind == "city" and value == audience.city
        ) or (kind == "store_code" and value == audience.store_code):
            return True
    return False


def kit_visible_to(kit: Kit, audience: Audience, tier_ranks: Mapping[str, int],
                   now: datetime) -> bool:
    if kit.status != KitStatus.published:
        return False
    if kit.available_from and now < kit.available_from:
        return False
    if kit.available_until and now >= kit.available_until:
        return False
    if kit.min_tier is not None and audience.tier_rank < tier_ranks.get(kit.min_tier, 10**6):
        return False
    return segments_match(kit.segments or [], audience)


def _validate_min_tier(min_tier: str | None, tier_ranks: Mapping[str, int]) -> None:
    if min_tier is not None and min_tier not in tier_ranks:
        raise DomainError(422, f"Unknown tier {min_tier!r}.",
                          errors={"json": {"min_tier": [f"must be one of {sorted(tier_ranks)}"]}})


def create_kit(values: dict[str, Any], *, staff_id: int | None,
               tier_ranks: Mapping[str, int]) -> Kit:
    _validate_min_tier(values.get("min_tier"), tier_ranks)
    kit = Kit(**values, status=KitStatus.draft.value, created_by_staff_id=staff_id)
    db.session.add(kit)
    db.session.flush()
    return kit


def get_kit(kit_id: int) -> Kit:
    kit = db.session.get(Kit, kit_id)
    if kit is None:
        raise DomainError(404, "No such kit.")
    return kit


def get_asset(kit: Kit, asset_id: int) -> Asset:
    asset = db.session.get(Asset, asset_id)
    if asset is None or asset.kit_id != kit.id:
        raise DomainError(404, "No such asset in this kit.")
    return asset


def add_asset(kit: Kit, *, filename: str, content_type: str, size: int, storage: Storage,
              max_bytes: int, url_ttl: int) -> tuple[Asset, PresignedRequest]:
    if kit.status == KitStatus.archived:
        raise DomainError(409, "This kit is archived.")
    if size > max_bytes:
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"must be at most {max_bytes} bytes"]}})
    key = f"kits/{kit.id}/{uuid.uuid4().hex}/{filename}"
    asset = Asset(kit=kit, filename=filename, content_type=content_type, size=size,
                  storage_key=key, status=AssetStatus.pending.value)
    db.session.add(asset)
    db.session.flush()
    # Signing is local computation; if the store is down the upload itself fails and the
    # asset stays pending, which complete_asset reports.
    upload = storage.presign_put(key, content_type=content_type, size=size, expires_in=url_ttl)
    return asset, upload


def complete_asset(asset: Asset, *, storage: Storage) -> Asset:
    """Mark an asset ready once the object is stored with the declared size; safe to repeat."""
    if asset.status == AssetStatus.ready:
        return asset
    info = storage.head(asset.storage_key)
    if info is None:
        raise DomainError(409, "The file has not been uploaded yet.")
    if info.size != asset.size:
        raise DomainError(
            409, f"The stored file has {info.size} bytes, not the {asset.size} declared.",
            errors={"json": {"size": ["does not match the uploaded file"]}},
        )
    asset.status = AssetStatus.ready.value
    asset.completed_at = utcnow()
    db.session.flush()
    return asset


def publish_kit(kit: Kit) -> Kit:
    if kit.status == KitStatus.published:
        return kit
    if kit.status == KitStatus.archived:
        raise DomainError(409, "An archived kit cannot be published.")
    if not any(asset.status == AssetStatus.ready for asset in kit.assets):
        raise DomainError(409, "A kit needs at least one uploaded asset before publishing.")
    kit.status = KitStatus.published.value
    kit.published_at = utcnow()
    db.session.flush()
    return kit


def kits_query_for_staff() -> sa.Select:
    return sa.select(Kit).order_by(Kit.id.desc())


def kits_visible_to(member: Member, tier_ranks: Mapping[str, int]) -> list[Kit]:
    """Published kits in their window that the member's tier and segments allow."""
    now = utcnow()
    candidates = db.session.scalars(
        sa.select(Kit)
        .where(Kit.status == KitStatus.published.value)
        .where(sa.or_(Kit.available_from.is_(None), Kit.available_from <= now))
        .where(sa.or_(Kit.available_until.is_(None), Kit.available_until > now))
        .order_by(Kit.published_at.desc(), Kit.id.desc())
    ).all()
    audience = audience_of(member, tier_ranks)
    return [kit for kit in candidates if kit_visible_to(kit, audience, tier_ranks, now)]


def get_kit_for_member(kit_id: int, member: Member, tier_ranks: Mapping[str, int]) -> Kit:
    kit = db.session.get(Kit, kit_id)
    # One answer for "no such kit" and "not yours to see", so nothing leaks.
    if kit is None or member.status != MemberStatus.active or not kit_visible_to(
        kit, audience_of(member, tier_ranks), tier_ranks, utcnow()
    ):
        raise DomainError(404, "No such kit.")
    return kit


def issue_download(member: Member, kit_id: int, asset_id: int, *, storage: Storage,
                   tier_ranks: Mapping[str, int], ttl: int) -> tuple[str, datetime]:
    kit = get_kit_for_member(kit_id, member, tier_ranks)
    asset = get_asset(kit, asset_id)
    if asset.status != AssetStatus.ready:
        raise DomainError(404, "No such asset in this kit.")
    expires_at = utcnow() + timedelta(seconds=ttl)
    url = storage.presign_get(asset.storage_key, expires_in=ttl, filename=asset.filename)
    db.session.add(Download(member_id=member.id, asset_id=asset.id, kit_id=kit.id,
                            expires_at=expires_at))
    db.session.flush()
    return url, expires_at
