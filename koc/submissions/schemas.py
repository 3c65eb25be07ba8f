from __future__ import annotations

from marshmallow import Schema, fields, validate

from koc.assets.schemas import ALLOWED_CONTENT_TYPES, UploadSchema, validate_filename
from koc.members.models import PLATFORMS
from koc.submissions.models import METRICS

MEDIA_CONTENT_TYPES = tuple(t for t in ALLOWED_CONTENT_TYPES if t.startswith(("image/", "video/")))
REJECT_REASONS = ("invalid_proof", "duplicate", "outside_window", "off_brief", "other")


class MetricsSchema(Schema):
    views = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0))
    likes = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0))
    comments = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0))
    saves = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0))
    shares = fields.Integer(load_default=0, strict=True, validate=validate.Range(min=0))


class MediaUploadInSchema(Schema):
    filename = fields.String(required=True, validate=[validate.Length(min=1, max=200),
                                                      validate_filename])
    content_type = fields.String(required=True, validate=validate.OneOf(MEDIA_CONTENT_TYPES))
    size = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class MediaUploadCreatedSchema(Schema):
    upload_id = fields.Integer()
    upload = fields.Nested(UploadSchema)


class SubmissionInSchema(Schema):
    kit_id = fields.Integer(load_default=None, allow_none=True, strict=True)
    platform = fields.String(required=True, validate=validate.OneOf(PLATFORMS))
    post_url = fields.String(required=True, validate=validate.Length(min=8, max=1000))
    caption = fields.String(load_default="", validate=validate.Length(max=5000))
    posted_at = fields.AwareDateTime(required=True)
    media_upload_ids = fields.List(fields.Integer(strict=True), load_default=list,
                                   validate=validate.Length(max=20))
    metrics = fields.Nested(MetricsSchema, load_default=lambda: dict.fromkeys(METRICS, 0))


class MediaOutSchema(Schema):
    id = fields.Integer()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()


class SubmissionOutSchema(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    kit_id = fields.Integer(allow_none=True)
    platform = fields.String()
    post_url = fields.String()
    canonical_url = fields.String()
    caption = fields.String()
    posted_at = fields.DateTime()
    status = fields.String()
    rating = fields.Integer(allow_none=True)
    reason = fields.String(attribute="review_reason", allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    score = fields.Float(allow_none=True)
    score_breakdown = fields.Dict(allow_none=True)
    metrics = fields.Nested(MetricsSchema, attribute="latest_metrics")
    media = fields.List(fields.Nested(MediaOutSchema))
    created_at = fields.DateTime()


class SubmissionQuerySchema(Schema):
    status = fields.String(validate=validate.OneOf(["pending", "approved", "rejected"]))
    member_id = fields.Integer()
    kit_id = fields.Integer()


class ReviewInSchema(Schema):
    decision = fields.String(required=True, validate=validate.OneOf(["approve", "reject"]))
    rating = fields.Integer(load_default=None, allow_none=True, strict=True,
                            validate=validate.Range(min=1, max=5))
    reason = fields.String(load_default=None, allow_none=True,
                           validate=validate.Length(max=1000))


class PointsEntrySchema(Schema):
    id = fields.Integer()
    source = fields.String()
    reference = fields.String()
    points = fields.Float()
    description = fields.String()
    created_at = fields.DateTime()
