"""Kits domain logic: plain functions over the session; they flush, the caller commits."""

from __future__ import annotations

import math
import secrets
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Download, Kit, KitStatus, Watermark
from koc.core import media
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.events import emit
from koc.core.jobs import enqueue_after_commit
from koc.core.storage import PresignedRequest, StorageError, StorageUnavailable
from koc.extensions import db
from koc.members.models import Member, MemberStatus, User

# Images Pillow reads and writes, so they can get a preview and a watermark.
MARKABLE_TYPES = {"image/jpeg": "jpg", "image/png": "png", "image/webp": "webp",
                  "image/gif": "gif"}
_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"  # no 0/O or 1/I to misread on a photo
MAX_PARTS = 10_000


class UploadRefused(DomainError):
    """A finished upload that is refused: its object and row are already deleted.

    The request commits before answering, so the deletion is kept although this is an error.
    """

    keeps_changes = True


@dataclass(frozen=True)
class Audience:
    """What decides which kits a member sees: their tier's rank and their user attributes."""

    tier_rank: int  # -1 for a member without a tier
    tags: frozenset[str]
    city: str | None
    store_code: str | None


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
        single = self.single
        return {"method": single.method, "url": single.url, "headers": single.headers,
                "multipart": False, "part_size": None, "parts": []}


@dataclass(frozen=True)
class DownloadTicket:
    url: str | None
    expires_at: datetime | None
    # True while a watermarked copy is being made: ask again shortly.
    preparing: bool = False
    watermark_code: str | None = None


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


def _required_rank(kit: Kit, tier_ranks: Mapping[str, int], now: datetime) -> int | None:
    """The lowest tier rank that sees the kit now; None when any member's tier will do."""
    # A tier that the rules no longer know is out of reach, not open to all.
    ranks = []
    if kit.min_tier is not None:
        ranks.append(tier_ranks.get(kit.min_tier, 10**6))
    if kit.embargoed(now):
        ranks.append(tier_ranks.get(kit.embargo_tier, 10**6))
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


# --- kits --------------------------------------------------------------------------------------

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


def create_kit(values: dict[str, Any], *, staff_id: int | None,
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


def update_kit(kit: Kit, values: dict[str, Any], *, tier_ranks: Mapping[str, int]) -> Kit:
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
    kit.status = KitStatus.published.value
    kit.published_at = utcnow()
    db.session.flush()
    emit("kit.published", {
        "kit_id": kit.id, "title": kit.title, "product_name": kit.product_name,
        "launch_at": kit.launch_at.isoformat() if kit.launch_at else None,
        "min_tier": kit.min_tier, "segments": kit.segments or [],
        "published_at": kit.published_at.isoformat(),
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


# --- uploads -----------------------------------------------------------------------------------

def _part_size_for(size: int, preferred: int) -> int:
    # S3 allows 10,000 parts: a file too big for the preferred size gets bigger parts.
    return max(preferred, math.ceil(size / MAX_PARTS))


def _part_urls(storage: Any, asset: Asset, *, url_ttl: int) -> MultipartUpload:
    part_size = asset.part_size or 0
    count = math.ceil(asset.size / part_size)
    parts = []
    for number in range(1, count + 1):
        length = min(part_size, asset.size - (number - 1) * part_size)
        url = storage.presign_upload_part(asset.storage_key, upload_id=asset.upload_id,
                                          part_number=number, expires_in=url_ttl)
        parts.append((number, length, url))
    return MultipartUpload(part_size=part_size, parts=parts)


def add_asset(kit: Kit, *, filename: str, content_type: str, size: int, storage: Any,
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
    multipart = size > multipart_threshold and hasattr(storage, "create_multipart")
    if multipart:
        # The store is asked first: if it is down the request fails before any row exists.
        asset.upload_id = storage.create_multipart(key, content_type=content_type)
        asset.part_size = _part_size_for(size, part_size)
    db.session.add(asset)
    db.session.flush()
    if multipart:
        return asset, UploadInstructions(multipart=_part_urls(storage, asset, url_ttl=url_ttl))
    upload = storage.presign_put(key, content_type=content_type, size=size, expires_in=url_ttl)
    return asset, UploadInstructions(single=upload)


def renew_upload(asset: Asset, *, storage: Any, url_ttl: int) -> UploadInstructions:
    """Fresh URLs for an upload still open (a long upload can outlive the first ones)."""
    if asset.status != AssetStatus.pending:
        raise DomainError(409, "This asset is already uploaded.")
    if asset.upload_id:
        return UploadInstructions(multipart=_part_urls(storage, asset, url_ttl=url_ttl))
    return UploadInstructions(single=storage.presign_put(
        asset.storage_key, content_type=asset.content_type, size=asset.size,
        expires_in=url_ttl))


def _forget_upload(asset: Asset, storage: Any) -> None:
    storage.delete(asset.storage_key)
    db.session.delete(asset)
    db.session.flush()


def complete_asset(asset: Asset, *, storage: Any,
                   parts: Sequence[tuple[int, str]] | None = None) -> Asset:
    """Mark an asset ready once its object is stored with the declared size; safe to repeat.

    A multipart upload is assembled first, from `parts` (number, ETag) or, when the client
    gives none, from the parts the store holds. The SHA-256 and the preview are made by tasks
    after the commit, so the request never reads the whole object.
    """
    if asset.status == AssetStatus.ready:
        return asset
    if asset.upload_id:
        try:
            stored = storage.list_parts(asset.storage_key, upload_id=asset.upload_id)
        except StorageUnavailable:
            raise
        except StorageError:
            # The store no longer knows the upload: an earlier attempt assembled it and failed
            # before its commit. The object, if there, is checked below like any other.
            stored = None
        if stored == []:
            raise DomainError(409, "The file has not been uploaded yet.")
        if stored:
            try:
                storage.complete_multipart(asset.storage_key, upload_id=asset.upload_id,
                                           parts=list(parts) if parts else stored)
            except StorageUnavailable:
                raise
            except StorageError as exc:
                raise DomainError(409, "The store could not assemble the uploaded parts; "
                                  "upload the missing parts or send their ETags.",
                                  errors={"json": {"parts": [str(exc)[:300]]}}) from exc
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


def delete_asset(asset: Asset, *, storage: Any) -> None:
    """Delete the asset's objects (original, preview, marked copies), then its row.

    Objects first: a failure in between leaves a row whose object is gone, which deleting
    again finishes, never an object that no row points to.
    """
    if asset.upload_id:
        storage.abort_multipart(asset.storage_key, upload_id=asset.upload_id)
    for key in asset_object_keys(asset):
        storage.delete(key)
    db.session.delete(asset)
    db.session.flush()


# --- downloads, watermarks and the bundle ------------------------------------------------------

def _new_code() -> str:
    return "".join(secrets.choice(_CODE_ALPHABET) for _ in range(10))


def _watermark_for(asset: Asset, member: Member) -> Watermark:
    existing = db.session.scalar(sa.select(Watermark).where(
        Watermark.asset_id == asset.id, Watermark.member_id == member.id))
    if existing is not None:
        return existing
    code = _new_code()
    mark = Watermark(asset_id=asset.id, member_id=member.id, code=code,
                     storage_key=f"kits/{asset.kit_id}/marked/{asset.id}/{code}."
                                 f"{MARKABLE_TYPES[asset.content_type]}")
    try:
        with db.session.begin_nested():
            db.session.add(mark)
    except sa.exc.IntegrityError:
        # A parallel request made it first; use theirs.
        return db.session.scalar(sa.select(Watermark).where(
            Watermark.asset_id == asset.id, Watermark.member_id == member.id))
    return mark


def issue_download(member: Member, kit_id: int, asset_id: int, *, storage: Any,
                   tier_ranks: Mapping[str, int], ttl: int) -> DownloadTicket:
    kit = get_kit_for_member(kit_id, member, tier_ranks)
    asset = get_asset(kit, asset_id)
    if asset.status != AssetStatus.ready:
        raise DomainError(404, "No such asset in this kit.")
    now = utcnow()
    key, filename, mark = asset.storage_key, asset.filename, None
    if kit.watermark and kit.embargoed(now) and asset.content_type in MARKABLE_TYPES:
        mark = _watermark_for(asset, member)
        if mark.ready_at is None:
            enqueue_after_commit("koc.assets.tasks.watermark_asset", mark.id)
            return DownloadTicket(url=None, expires_at=None, preparing=True)
        key = mark.storage_key
    expires_at = now + timedelta(seconds=ttl)
    url = storage.presign_get(key, expires_in=ttl, filename=filename)
    db.session.add(Download(member_id=member.id, asset_id=asset.id, kit_id=kit.id,
                            expires_at=expires_at, watermark_id=mark.id if mark else None))
    db.session.flush()
    return DownloadTicket(url=url, expires_at=expires_at,
                          watermark_code=mark.code if mark else None)


def ready_asset_ids(kit: Kit) -> list[int]:
    return sorted(asset.id for asset in kit.assets if asset.status == AssetStatus.ready)


def bundle_is_current(kit: Kit) -> bool:
    return kit.bundle_key is not None and kit.bundle_assets == ready_asset_ids(kit)


def issue_bundle_download(kit: Kit, *, member: Member | None, storage: Any,
                          ttl: int) -> tuple[str, datetime]:
    """A URL for the kit's zip; `member` None for staff, whose fetches are not recorded."""
    if member is not None and kit.watermark and kit.embargoed(utcnow()):
        # The zip holds the unmarked originals: during the embargo images go out one by one.
        raise DomainError(409, "During the embargo this kit's files are downloaded one by one.")
    if not bundle_is_current(kit):
        raise DomainError(409, "The kit's zip is not built for its current files yet.")
    expires_at = utcnow() + timedelta(seconds=ttl)
    url = storage.presign_get(kit.bundle_key, expires_in=ttl,
                              filename=f"kit-{kit.id}.zip")
    if member is not None:
        db.session.add(Download(member_id=member.id, asset_id=None, kit_id=kit.id,
                                expires_at=expires_at))
        db.session.flush()
    return url, expires_at


def find_leak(*, code: str | None = None, sha256: str | None = None) -> Watermark:
    if code:
        query = sa.select(Watermark).where(Watermark.code == code.strip().upper())
    elif sha256:
        query = sa.select(Watermark).where(Watermark.sha256 == sha256.strip().lower())
    else:
        raise DomainError(422, "Give the code printed on the copy or its SHA-256.",
                          errors={"query": {"code": ["code or sha256 is required"]}})
    mark = db.session.scalar(query.limit(1))
    if mark is None:
        raise DomainError(404, "No copy was issued with that mark.")
    return mark


# --- the funnel --------------------------------------------------------------------------------

def _segment_condition(selector: dict[str, str], dialect: str) -> sa.ColumnElement[bool]:
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
    query = (sa.select(Member.id).join(User, User.id == Member.user_id)
             .where(Member.status == MemberStatus.active.value))
    needed = _required_rank(kit, tier_ranks, now)
    if needed is not None:
        query = query.where(Member.tier_key.in_(
            [key for key, rank in tier_ranks.items() if rank >= needed]))
    if kit.segments:
        dialect = db.engine.dialect.name
        query = query.where(sa.or_(*(_segment_condition(s, dialect) for s in kit.segments)))
    return query


# --- reconcile ---------------------------------------------------------------------------------

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
    for kit_id, key in db.session.execute(
            sa.select(Kit.id, Kit.bundle_key).where(Kit.bundle_key.is_not(None))):
        yield "kits.bundle", kit_id, key, True


def reconcile(storage: Any, *, prefix: str = "kits/") -> Reconciliation:
    stored = set(storage.list_keys(prefix))
    result = Reconciliation()
    known: set[str] = set()
    for table, row_id, key, must_exist in _known_keys():
        known.add(key)
        if must_exist and key not in stored:
            result.missing.append((table, row_id, key))
    result.orphans = sorted(stored - known)
    return result
