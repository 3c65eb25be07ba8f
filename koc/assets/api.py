"""Kits HTTP API: thin handlers over koc.assets.services."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import current_app
from flask_smorest import Page

from koc.assets.models import Asset, AssetStatus, Download, Kit
from koc.assets.schemas import (
    AssetCreatedSchema,
    AssetInSchema,
    AssetOutSchema,
    CompleteInSchema,
    DownloadSchema,
    FunnelQuerySchema,
    FunnelSchema,
    KitInSchema,
    KitListQuerySchema,
    KitPatchSchema,
    KitSchema,
    LeakQuerySchema,
    LeakSchema,
    UploadSchema,
)
from koc.assets.services import (  # privacy connects the person_export_requested receiver
    bundles,
    downloads,
    kits,
    privacy,  # noqa: F401
    uploads,
    watermarks,
)
from koc.core import audit
from koc.core.auth import (
    Principal,
    current_principal,
    member_required,
    staff_or_member,
    staff_required,
)
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.jobs import start_job
from koc.core.pagination import Blueprint, SelectPage
from koc.core.sqlite import writes
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import Member
from koc.members.services.roster import get_member
from koc.submissions.services.funnel import funnel
from koc.tiers.services.rules import tier_ranks

blp = Blueprint("kits", __name__, description="Creative kits and their assets")


def _settings():
    return current_app.config["KOC_SETTINGS"]


def _member_of(principal: Principal) -> Member:
    # The guards admit staff or a member; past a staff check the principal is a member.
    if principal.member_id is None:
        raise DomainError(403, "This token may not do that.")
    return get_member(principal.member_id)


def _asset_view(asset: Asset, *, with_preview: bool) -> dict[str, Any]:
    preview_url = None
    if with_preview and asset.preview_key:
        preview_url = get_storage().presign_get(asset.preview_key,
                                                expires_in=_settings().download_url_ttl)
    return {"id": asset.id, "filename": asset.filename, "content_type": asset.content_type,
            "size": asset.size, "status": asset.status, "created_at": asset.created_at,
            "sha256": asset.sha256, "width": asset.width, "height": asset.height,
            "preview_url": preview_url}


def _staff_view(kit: Kit) -> dict[str, Any]:
    fields = ("id", "title", "notes", "min_tier", "segments", "available_from",
              "available_until", "status", "created_at", "published_at", "archived_at",
              "product_name", "launch_at", "embargo_tier", "watermark")
    view = {name: getattr(kit, name) for name in fields}
    view["bundle_ready"] = bundles.bundle_is_current(kit)
    view["assets"] = [_asset_view(a, with_preview=True) for a in kit.assets]
    return view


def _member_view(kit: Kit) -> dict[str, Any]:
    # Only what a member may see: targeting and status are left out.
    # During a watermarked embargo even the small previews would be unmarked copies.
    previews = not (kit.watermark and kit.embargoed(utcnow()))
    return {
        "id": kit.id, "title": kit.title, "notes": kit.notes, "product_name": kit.product_name,
        "launch_at": kit.launch_at, "available_from": kit.available_from,
        "available_until": kit.available_until, "published_at": kit.published_at,
        "bundle_ready": bundles.bundle_is_current(kit) and previews,
        "assets": [_asset_view(a, with_preview=previews) for a in kit.assets
                   if a.status == AssetStatus.ready],
    }


# --- kits --------------------------------------------------------------------------------------

@blp.post("/kits")
@blp.arguments(KitInSchema)
@blp.response(201, KitSchema)
@staff_required("admin")
def create_kit(data: dict):
    kit = kits.create_kit(data, staff_id=current_principal().staff_id,
                          tier_ranks=tier_ranks())
    audit.record("kit.create", f"kit:{kit.id}", {"after": data})
    return _staff_view(kit)


@blp.get("/kits")
@blp.arguments(KitListQuerySchema, location="query")
@blp.response(200, KitSchema(many=True),
              description="Staff see every kit (filter `status`); members see the kits open "
                          "to them.")
@blp.paginate()
@staff_or_member("viewer")
def list_kits(query: dict, pagination_parameters):
    principal = current_principal()
    if principal.is_staff:
        page = SelectPage(kits.kits_query_for_staff(query.get("status")),
                          pagination_parameters)
        return [_staff_view(kit) for kit in page.items]
    visible = kits.kits_visible_to(_member_of(principal), tier_ranks())
    return [_member_view(kit) for kit in Page(visible, pagination_parameters).items]


@blp.get("/kits/<id:kit_id>")
@blp.response(200, KitSchema)
@staff_or_member("viewer")
def get_kit(kit_id: int):
    principal = current_principal()
    if principal.is_staff:
        return _staff_view(kits.get_kit(kit_id))
    kit = kits.get_kit_for_member(kit_id, _member_of(principal), tier_ranks())
    return _member_view(kit)


@blp.patch("/kits/<id:kit_id>")
@blp.arguments(KitPatchSchema)
@blp.response(200, KitSchema)
@staff_required("admin")
def update_kit(data: dict, kit_id: int):
    kit = kits.update_kit(kits.get_kit(kit_id), data, tier_ranks=tier_ranks())
    audit.record("kit.update", f"kit:{kit.id}", {"after": data})
    return _staff_view(kit)


@blp.post("/kits/<id:kit_id>/publish")
@blp.response(200, KitSchema)
@staff_required("admin")
def publish_kit(kit_id: int):
    kit = kits.publish_kit(kits.get_kit(kit_id))
    audit.record("kit.publish", f"kit:{kit.id}", {"status": kit.status})
    return _staff_view(kit)


@blp.post("/kits/<id:kit_id>/archive")
@blp.response(200, KitSchema, description="Members no longer see the kit.")
@staff_required("admin")
def archive_kit(kit_id: int):
    kit = kits.archive_kit(kits.get_kit(kit_id))
    audit.record("kit.archive", f"kit:{kit.id}", {"status": kit.status})
    return _staff_view(kit)


# --- assets ------------------------------------------------------------------------------------

@blp.post("/kits/<id:kit_id>/assets")
@blp.arguments(AssetInSchema)
@blp.response(201, AssetCreatedSchema)
@staff_required("admin")
def add_asset(data: dict, kit_id: int):
    settings = _settings()
    asset, upload = uploads.add_asset(
        kits.get_kit(kit_id), **data, storage=get_storage(),
        max_bytes=settings.max_upload_bytes, url_ttl=settings.upload_url_ttl,
        multipart_threshold=settings.multipart_threshold, part_size=settings.multipart_part_size,
    )
    return {"asset_id": asset.id, "upload": upload.as_dict()}


@blp.post("/kits/<id:kit_id>/assets/<id:asset_id>/upload")
@blp.response(200, UploadSchema, description="Fresh upload URLs for an upload still open.")
@staff_required("admin")
def renew_upload(kit_id: int, asset_id: int):
    asset = kits.get_asset(kits.get_kit(kit_id), asset_id)
    return uploads.renew_upload(asset, storage=get_storage(),
                                url_ttl=_settings().upload_url_ttl).as_dict()


@blp.post("/kits/<id:kit_id>/assets/<id:asset_id>/complete")
@blp.arguments(CompleteInSchema)
@blp.response(200, AssetOutSchema)
@staff_required("admin")
def complete_asset(data: dict, kit_id: int, asset_id: int):
    parts = [(p["part_number"], p["etag"]) for p in data.get("parts") or ()]
    asset = kits.get_asset(kits.get_kit(kit_id), asset_id)
    asset = uploads.complete_asset(asset, storage=get_storage(), parts=parts or None)
    return _asset_view(asset, with_preview=True)


@blp.delete("/kits/<id:kit_id>/assets/<id:asset_id>")
@blp.response(204)
@staff_required("admin")
def delete_asset(kit_id: int, asset_id: int):
    asset = kits.get_asset(kits.get_kit(kit_id), asset_id)
    audit.record("asset.delete", f"asset:{asset_id}", {"kit": kit_id, "filename": asset.filename})
    uploads.delete_asset(asset, storage=get_storage())


@blp.get("/kits/<id:kit_id>/assets/<id:asset_id>/download")
@writes  # records the download
@blp.response(200, DownloadSchema)
@blp.alt_response(202, description="A watermarked copy is being made: ask again after "
                                   "Retry-After seconds.")
@member_required
def download_asset(kit_id: int, asset_id: int):
    ticket = downloads.issue_download(
        _member_of(current_principal()), kit_id, asset_id, storage=get_storage(),
        tier_ranks=tier_ranks(), ttl=_settings().download_url_ttl,
    )
    if ticket.preparing:
        return ({"code": 202, "status": "Accepted",
                 "message": "Your copy is being prepared; ask again shortly."},
                202, {"Retry-After": "2"})
    return {"url": ticket.url, "expires_at": ticket.expires_at}


# --- the kit's zip -----------------------------------------------------------------------------

@blp.post("/kits/<id:kit_id>/bundle")
@blp.response(202, description="`{\"job_id\"}`: the zip is built in the background.")
@staff_required("admin")
def build_bundle(kit_id: int):
    kit = kits.get_kit(kit_id)
    if not bundles.ready_asset_ids(kit):
        raise DomainError(409, "The kit has no uploaded files to pack.")
    job = start_job("koc.assets.tasks.build_bundle_job", kind="kit_bundle",
                    payload={"kit_id": kit.id}, staff_id=current_principal().staff_id)
    return {"job_id": job.id}, 202


@blp.get("/kits/<id:kit_id>/bundle/download")
@writes  # records the download
@blp.response(200, DownloadSchema)
@staff_or_member("viewer")
def download_bundle(kit_id: int):
    principal = current_principal()
    member = None if principal.is_staff else _member_of(principal)
    kit = (kits.get_kit(kit_id) if member is None
           else kits.get_kit_for_member(kit_id, member, tier_ranks()))
    url, expires_at = downloads.issue_bundle_download(
        kit, member=member, storage=get_storage(), ttl=_settings().download_url_ttl)
    return {"url": url, "expires_at": expires_at}


# --- insight -----------------------------------------------------------------------------------

@blp.get("/stats/funnel")
@blp.arguments(FunnelQuerySchema, location="query")
@blp.response(200, FunnelSchema)
@staff_required("viewer")
def kit_funnel(query: dict):
    kit = kits.get_kit(query["kit_id"])
    result = funnel(kit, tier_ranks())
    return {"kit_id": kit.id, "eligible": result.eligible, "downloaded": result.downloaded,
            "submitted": result.submitted, "approved": result.approved,
            "engagement": result.engagement}


@blp.get("/leaks")
@blp.arguments(LeakQuerySchema, location="query")
@blp.response(200, LeakSchema, description="Which member a watermarked copy was issued to.")
@staff_required("admin")
def find_leak(query: dict):
    mark = watermarks.find_leak(code=query.get("code"), sha256=query.get("sha256"))
    audit.record("leak.lookup", f"member:{mark.member_id}", {**query, "asset": mark.asset_id})
    member = db.session.get(Member, mark.member_id)
    issued = db.session.scalar(sa.select(sa.func.count()).select_from(Download)
                               .where(Download.watermark_id == mark.id))
    return {"code": mark.code, "member_id": mark.member_id,
            "member_display_name": member.display_name if member else None,
            "kit_id": mark.asset.kit_id, "asset_id": mark.asset_id,
            "filename": mark.asset.filename, "issued_at": mark.created_at,
            "downloads": issued}
