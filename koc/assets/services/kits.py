"""Kits: creating, editing, publishing and archiving them; who sees a kit and whom it targets.

A member sees a published kit inside its window when their tier reaches the kit's minimum (and,
before launch, its embargo tier) and, if the kit names segments, they match one of them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Kit, KitStatus
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.events import emit
from koc.extensions import db
from koc.members.models import Member, MemberStatus, User

# The rank of a tier that the rules no longer know: out of reach, not open to all.
_UNREACHABLE = 10**6


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


def segments_match(segments: Sequence[Mapping[str, str]], audience: Audience) -> bool:
    if not segments:
        return True
    for selector in segments:
        (kind, value), = selector.items()
        if (kind == "tag" and value in audience.tags) or (
            kind == "city" and value == audience.city
        ) or (kind == "store_code" and value == audience.store_code):
            return True
    return False


def _rank_of(tier: str | None, tier_ranks: Mapping[str, int]) -> int:
    return tier_ranks.get(tier, _UNREACHABLE) if tier is not None else _UNREACHABLE


def _required_rank(kit: Kit, tier_ranks: Mapping[str, int], now: datetime) -> int | None:
    """The lowest tier rank that sees the kit now; None when any member's tier will do."""
    ranks = []
    if kit.min_tier is not None:
        ranks.append(_rank_of(kit.min_tier, tier_ranks))
    if kit.embargoed(now):
        ranks.append(_rank_of(kit.embargo_tier, tier_ranks))
    return max(ranks) if ranks else None


def kit_visible_to(kit: Kit, audience: Audience, tier_ranks: Mapping[str, int],
                   now: datetime) -> bool:
    if kit.status != KitStatus.published:
        return False
    if kit.available_from and now < kit.available_from:
        return False
    if kit.available_until and now >= kit.available_until:
        return False
    needed = _required_rank(kit, tier_ranks, now)
    if needed is not None and audience.tier_rank < needed:
        return False
    return segments_match(kit.segments or [], audience)


def _validate_tiers(values: Mapping[str, Any], tier_ranks: Mapping[str, int]) -> None:
    errors = {}
    for name in ("min_tier", "embargo_tier"):
        value = values.get(name)
        if value is not None and value not in tier_ranks:
            errors[name] = [f"must be one of {sorted(tier_ranks)}"]
    if errors:
        raise DomainError(422, "Unknown tier.", errors={"json": errors})


def _check_kit_rules(kit: Kit) -> None:
    errors = {}
    if kit.available_from and kit.available_until and kit.available_from >= kit.available_until:
        errors["available_until"] = ["must be after available_from"]
    if kit.launch_at is not None and kit.embargo_tier is None:
        errors["embargo_tier"] = ["required with launch_at"]
    if errors:
        raise DomainError(422, "The kit is not valid.", errors={"json": errors})


def create_kit(values: Mapping[str, Any], *, staff_id: int | None,
               tier_ranks: Mapping[str, int]) -> Kit:
    values = dict(values)
    if values.get("launch_at") and not values.get("embargo_tier"):
        # Unreleased products go to the early-access tier unless the manager names another.
        values["embargo_tier"] = "early_access" if "early_access" in tier_ranks else None
    _validate_tiers(values, tier_ranks)
    kit = Kit(**values, status=KitStatus.draft.value, created_by_staff_id=staff_id)
    _check_kit_rules(kit)
    db.session.add(kit)
    db.session.flush()
    return kit


def update_kit(kit: Kit, values: Mapping[str, Any], *, tier_ranks: Mapping[str, int]) -> Kit:
    if kit.status == KitStatus.archived:
        raise DomainError(409, "This kit is archived.")
    _validate_tiers(values, tier_ranks)
    for name, value in values.items():
        setattr(kit, name, value)
    _check_kit_rules(kit)
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


def publish_kit(kit: Kit) -> Kit:
    """Publish, and record `kit.published` in the same transaction."""
    if kit.status == KitStatus.published:
        return kit
    if kit.status == KitStatus.archived:
        raise DomainError(409, "An archived kit cannot be published.")
    if not any(asset.status == AssetStatus.ready for asset in kit.assets):
        raise DomainError(409, "A kit needs at least one uploaded asset before publishing.")
    published_at = utcnow()
    kit.status = KitStatus.published.value
    kit.published_at = published_at
    db.session.flush()
    emit("kit.published", {
        "kit_id": kit.id, "title": kit.title, "product_name": kit.product_name,
        "launch_at": kit.launch_at.isoformat() if kit.launch_at else None,
        "min_tier": kit.min_tier, "segments": kit.segments or [],
        "published_at": published_at.isoformat(),
    })
    return kit


def archive_kit(kit: Kit) -> Kit:
    """Hide the kit from members for good; its objects stay for the record."""
    if kit.status != KitStatus.archived:
        kit.status = KitStatus.archived.value
        kit.archived_at = utcnow()
        db.session.flush()
    return kit


def kits_query_for_staff(status: str | None = None) -> sa.Select:
    query = sa.select(Kit).order_by(Kit.id.desc())
    if status:
        query = query.where(Kit.status == status)
    return query


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


def _segment_condition(selector: Mapping[str, str], dialect: str) -> sa.ColumnElement[bool]:
    (kind, value), = selector.items()
    if kind == "city":
        return User.city == value
    if kind == "store_code":
        return User.store_code == value
    if dialect == "postgresql":
        return User.tags.op("@>")(sa.func.jsonb_build_array(value))
    element = sa.func.json_each(User.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(element).where(element.c.value == value))


def eligible_members(kit: Kit, tier_ranks: Mapping[str, int], now: datetime) -> sa.Select:
    """Ids of the active members whose tier and segments the kit targets (embargo included)."""
    query = sa.select(Member.id).where(Member.status == MemberStatus.active.value)
    needed = _required_rank(kit, tier_ranks, now)
    if needed is not None:
        query = query.where(Member.tier_key.in_(
            [key for key, rank in tier_ranks.items() if rank >= needed]))
    if kit.segments:
        # The user base is tens of millions of rows: joined only when segments need it.
        query = query.join(User, User.id == Member.user_id)
        dialect = db.engine.dialect.name
        query = query.where(sa.or_(*(_segment_condition(s, dialect) for s in kit.segments)))
    return query
