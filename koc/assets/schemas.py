from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from koc.core import fields as kf

SEGMENT_KEYS = ("tag", "city", "store_code")
ALLOWED_CONTENT_TYPES = (
    "image/jpeg", "image/png", "image/webp", "image/gif", "image/heic",
    "video/mp4", "video/quicktime",
    "application/pdf", "application/zip", "text/plain", "text/markdown",
)


def validate_filename(value: str) -> None:
    """A plain file name: no folders, no parent references, no control characters."""
    if value in {".", ".."} or any(ch in value for ch in "/\\\x00") or value.startswith("."):
        raise ValidationError("must be a plain file name, without folders")
    if any(ord(ch) < 32 for ch in value):
        raise ValidationError("must not contain control characters")


class SegmentSchema(Schema):
    """One selector: members with this tag, in this city or at this store."""

    tag = kf.String(min_length=1, max_length=64)
    city = kf.String(min_length=1, max_length=64)
    store_code = kf.String(min_length=1, max_length=32)

    @validates_schema
    def _one_selector(self, data: dict, **_: object) -> None:
        if len(data) != 1:
            raise ValidationError(f"each selector has exactly one of {', '.join(SEGMENT_KEYS)}")
        if not next(iter(data.values())).strip():
            raise ValidationError("a selector needs a value")


class KitInSchema(Schema):
    title = kf.String(required=True, min_length=1, max_length=200)
    notes = kf.String(load_default="", max_length=100_000, multiline=True)
    min_tier = kf.String(load_default=None, allow_none=True, max_length=32)
    segments = kf.List(fields.Nested(SegmentSchema), load_default=list, max_items=100)
    available_from = kf.DateTime(load_default=None, allow_none=True)
    available_until = kf.DateTime(load_default=None, allow_none=True)
    product_name = kf.String(load_default=None, allow_none=True, min_length=1, max_length=200)
    launch_at = kf.DateTime(load_default=None, allow_none=True, metadata={
        "description": "Until then only `embargo_tier` and above see the kit."})
    embargo_tier = kf.String(load_default=None, allow_none=True, max_length=32, metadata={
        "description": "Default early_access when launch_at is set."})
    watermark = fields.Boolean(load_default=False, metadata={
        "description": "During the embargo, images go to each member with a visible mark."})

    @validates_schema
    def _window_ordered(self, data: dict, **_: object) -> None:
        start, end = data.get("available_from"), data.get("available_until")
        if start and end and start >= end:
            raise ValidationError("must be after available_from", "available_until")


class KitPatchSchema(KitInSchema):
    """Any of the kit's fields; the ones not named are kept (partial: no defaults apply)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("partial", True)
        super().__init__(*args, **kwargs)


class AssetOutSchema(Schema):
    id = fields.Integer()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    status = fields.String()
    created_at = fields.DateTime()
    sha256 = fields.String(allow_none=True, metadata={"description": "Set by a task after "
                                                                     "completion."})
    width = fields.Integer(allow_none=True)
    height = fields.Integer(allow_none=True)
    preview_url = fields.String(allow_none=True)


class KitSchema(Schema):
    """A kit. Members get the material only: targeting and status are left out for them."""

    id = fields.Integer()
    title = fields.String()
    notes = fields.String()
    min_tier = fields.String(allow_none=True)
    segments = fields.List(fields.Dict())
    available_from = fields.DateTime(allow_none=True)
    available_until = fields.DateTime(allow_none=True)
    status = fields.String()
    created_at = fields.DateTime()
    published_at = fields.DateTime(allow_none=True)
    archived_at = fields.DateTime(allow_none=True)
    product_name = fields.String(allow_none=True)
    launch_at = fields.DateTime(allow_none=True)
    embargo_tier = fields.String(allow_none=True)
    watermark = fields.Boolean()
    bundle_ready = fields.Boolean()
    assets = fields.List(fields.Nested(AssetOutSchema))


class AssetInSchema(Schema):
    filename = kf.String(required=True, min_length=1, max_length=200, validate=validate_filename)
    content_type = kf.OneOf(ALLOWED_CONTENT_TYPES, required=True)
    size = kf.BigInteger(required=True, minimum=1)


class UploadPartSchema(Schema):
    part_number = fields.Integer()
    size = fields.Integer()
    url = fields.String()


class UploadSchema(Schema):
    method = fields.String()
    url = fields.String(allow_none=True, metadata={"description": "null for a multipart upload"})
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    multipart = fields.Boolean()
    part_size = fields.Integer(allow_none=True)
    parts = fields.List(fields.Nested(UploadPartSchema), metadata={
        "description": "Multipart only: PUT each part's bytes to its URL, keep each ETag."})


class AssetCreatedSchema(Schema):
    asset_id = fields.Integer()
    upload = fields.Nested(UploadSchema)


class CompletedPartSchema(Schema):
    part_number = kf.Integer(required=True, minimum=1, maximum=10_000)
    etag = kf.String(required=True, min_length=1, max_length=200)


class CompleteInSchema(Schema):
    parts = kf.List(fields.Nested(CompletedPartSchema), load_default=None, allow_none=True,
                    min_items=1, max_items=10_000, metadata={
                            "description": "Multipart: the parts' ETags. Without them the "
                                           "parts the store holds are used."})


class DownloadSchema(Schema):
    url = fields.String()
    expires_at = fields.DateTime()


class FunnelQuerySchema(Schema):
    kit_id = kf.Id(required=True, strict=False)


class EngagementSchema(Schema):
    views = fields.Integer()
    likes = fields.Integer()
    comments = fields.Integer()
    saves = fields.Integer()
    shares = fields.Integer()


class FunnelSchema(Schema):
    kit_id = fields.Integer()
    eligible = fields.Integer()
    downloaded = fields.Integer()
    submitted = fields.Integer()
    approved = fields.Integer()
    engagement = fields.Nested(EngagementSchema)


class KitListQuerySchema(Schema):
    status = kf.OneOf(["draft", "published", "archived"])


class LeakQuerySchema(Schema):
    code = kf.String(min_length=1, max_length=16)
    sha256 = fields.String(validate=validate.Regexp(r"^[0-9a-fA-F]{64}$"))


class LeakSchema(Schema):
    code = fields.String()
    member_id = fields.Integer()
    member_display_name = fields.String()
    kit_id = fields.Integer()
    asset_id = fields.Integer()
    filename = fields.String()
    issued_at = fields.DateTime()
    downloads = fields.Integer()
