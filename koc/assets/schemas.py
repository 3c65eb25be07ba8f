from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

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


class KitInSchema(Schema):
    title = fields.String(required=True, validate=validate.Length(min=1, max=200))
    notes = fields.String(load_default="", validate=validate.Length(max=100_000))
    min_tier = fields.String(load_default=None, allow_none=True, validate=validate.Length(max=32))
    segments = fields.List(fields.Dict(keys=fields.String(), values=fields.String()),
                           load_default=list, validate=validate.Length(max=100))
    available_from = fields.AwareDateTime(load_default=None, allow_none=True)
    available_until = fields.AwareDateTime(load_default=None, allow_none=True)

    @validates("segments")
    def _segments_are_selectors(self, segments: list[dict], **_: object) -> None:
        for selector in segments:
            if len(selector) != 1 or next(iter(selector)) not in SEGMENT_KEYS:
                raise ValidationError(
                    f"each selector has exactly one of {', '.join(SEGMENT_KEYS)}")
            if not next(iter(selector.values())).strip():
                raise ValidationError("a selector needs a value")

    @validates_schema
    def _window_ordered(self, data: dict, **_: object) -> None:
        start, end = data.get("available_from"), data.get("available_until")
        if start and end and start >= end:
            raise ValidationError("must be after available_from", "available_until")


class AssetOutSchema(Schema):
    id = fields.Integer()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    status = fields.String()
    created_at = fields.DateTime()


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
    assets = fields.List(fields.Nested(AssetOutSchema))


class AssetInSchema(Schema):
    filename = fields.String(required=True, validate=[validate.Length(min=1, max=200),
                                                      validate_filename])
    content_type = fields.String(required=True, validate=validate.OneOf(ALLOWED_CONTENT_TYPES))
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class UploadSchema(Schema):
    method = fields.String()
    url = fields.String()
    headers = fields.Dict(keys=fields.String(), values=fields.String())


class AssetCreatedSchema(Schema):
    asset_id = fields.Integer()
    upload = fields.Nested(UploadSchema)


class DownloadSchema(Schema):
    url = fields.String()
    expires_at = fields.DateTime()
