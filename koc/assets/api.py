"""Kits HTTP API: thin handlers over assets.services."""

from __future__ import annotations

from types import SimpleNamespace

from flask import current_app
from flask_smorest import Page

from koc.assets import services
from koc.assets.schemas import (
    AssetCreatedSchema,
    AssetInSchema,
    AssetOutSchema,
    DownloadSchema,
    KitInSchema,
    KitSchema,
)
from koc.core.auth import current_principal, member_required, staff_or_member, staff_required
from koc.core.pagination import Blueprint, SelectPage
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.services import get_member
from koc.tiers.services import tier_ranks

blp = Blueprint("kits", __name__, description="Creative kits and their assets")


def _member_view(kit) -> SimpleNamespace:
    # Only what a member may see; the schema leaves out attributes that are not there.
    return SimpleNamespace(
        id=kit.id, title=kit.title, notes=kit.notes, available_from=kit.available_from,
        available_until=kit.available_until, published_at=kit.published_at,
        assets=[asset for asset in kit.assets if asset.status == "ready"],
    )


def _settings():
    return current_app.config["KOC_SETTINGS"]


@blp.post("/kits")
@blp.arguments(KitInSchema)
@blp.response(201, KitSchema)
@staff_required("admin")
def create_kit(data: dict):
    kit = services.create_kit(data, staff_id=current_principal().staff_id,
                              tier_ranks=tier_ranks())
    db.session.commit()
    return kit


@blp.get("/kits")
@blp.response(200, KitSchema(many=True),
              description="Staff see every kit; members see the kits open to them.")
@blp.paginate()
@staff_or_member("viewer")
def list_kits(pagination_parameters):
    principal = current_principal()
    if principal.is_staff:
        page = SelectPage(services.kits_query_for_staff(), pagination_parameters)
        return page.items
    kits = services.kits_visible_to(get_member(principal.member_id), tier_ranks())
    return [_member_view(kit) for kit in Page(kits, pagination_parameters).items]


@blp.get("/kits/<int:kit_id>")
@blp.response(200, KitSchema)
@staff_or_member("viewer")
def get_kit(kit_id: int):
    principal = current_principal()
    if principal.is_staff:
        return services.get_kit(kit_id)
    kit = services.get_kit_for_member(kit_id, get_member(principal.member_id), tier_ranks())
    return _member_view(kit)


@blp.post("/kits/<int:kit_id>/assets")
@blp.arguments(AssetInSchema)
@blp.response(201, AssetCreatedSchema)
@staff_required("admin")
def add_asset(data: dict, kit_id: int):
    settings = _settings()
    asset, upload = services.add_asset(
        services.get_kit(kit_id), **data, storage=get_storage(),
        max_bytes=settings.max_upload_bytes, url_ttl=settings.upload_url_ttl,
    )
    db.session.commit()
    return {"asset_id": asset.id,
            "upload": {"method": upload.method, "url": upload.url, "headers": upload.headers}}


@blp.post("/kits/<int:kit_id>/assets/<int:asset_id>/complete")
@blp.response(200, AssetOutSchema)
@staff_required("admin")
def complete_asset(kit_id: int, asset_id: int):
    asset = services.complete_asset(
        services.get_asset(services.get_kit(kit_id), asset_id), storage=get_storage()
    )
    db.session.commit()
    return asset


@blp.post("/kits/<int:kit_id>/publish")
@blp.response(200, KitSchema)
@staff_required("admin")
def publish_kit(kit_id: int):
    kit = services.publish_kit(services.get_kit(kit_id))
    db.session.commit()
    return kit


@blp.get("/kits/<int:kit_id>/assets/<int:asset_id>/download")
@blp.response(200, DownloadSchema)
@member_required
def download_asset(kit_id: int, asset_id: int):
    url, expires_at = services.issue_download(
        get_member(current_principal().member_id), kit_id, asset_id, storage=get_storage(),
        tier_ranks=tier_ranks(), ttl=_settings().download_url_ttl,
    )
    db.session.commit()
    return {"url": url, "expires_at": expires_at}
