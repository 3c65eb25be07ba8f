from __future__ import annotations

from datetime import timedelta
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates, validates_schema

from koc.assets.schemas import ALLOWED_CONTENT_TYPES, UploadSchema, validate_filename
from koc.core import fields as kf
from koc.core.db import utcnow
from koc.members.models import PLATFORMS
from koc.submissions.models import (
    COUNTED_STATES,
    FLAG_KINDS,
    METRICS,
    REJECT_REASONS,
    REVIEW_ACTIONS,
    SNAPSHOT_SOURCES,
    SNAPSHOT_STATES,
)

MEDIA_CONTENT_TYPES = tuple(t for t in ALLOWED_CONTENT_TYPES if t.startswith(("image/", "video/")))
# Clocks on phones drift; a post "from the future" by more than this is a typo.
POSTED_AT_SKEW = timedelta(hours=1)
MAX_BULK_REVIEW = 200
# Engagement counts: far above any real post, far enough below 2^63 that the scores and sums
# made from them stay in their columns.
MAX_COUNT = 10**12


class MetricsSchema(Schema):
    views = kf.BigInteger(load_default=0, maximum=MAX_COUNT)
    likes = kf.BigInteger(load_default=0, maximum=MAX_COUNT)
    comments = kf.BigInteger(load_default=0, maximum=MAX_COUNT)
    saves = kf.BigInteger(load_default=0, maximum=MAX_COUNT)
    shares = kf.BigInteger(load_default=0, maximum=MAX_COUNT)


class MediaUploadInSchema(Schema):
    filename = kf.String(required=True, min_length=1, max_length=200, validate=validate_filename)
    content_type = kf.OneOf(MEDIA_CONTENT_TYPES, required=True)
    size = kf.BigInteger(required=True, minimum=1)


class MediaUploadCreatedSchema(Schema):
    upload_id = fields.Integer()
    upload = fields.Nested(UploadSchema)


class SubmissionInSchema(Schema):
    kit_id = kf.Id(load_default=None, allow_none=True)
    platform = kf.OneOf(PLATFORMS, required=True)
    post_url = kf.String(required=True, min_length=8, max_length=1000)
    caption = kf.String(load_default="", max_length=5000, multiline=True)
    posted_at = kf.DateTime(required=True)
    media_upload_ids = kf.List(kf.Id(), load_default=list, max_items=20)
    metrics = fields.Nested(MetricsSchema, load_default=lambda: dict.fromkeys(METRICS, 0))

    @validates("posted_at")
    def _not_in_the_future(self, value: Any, **_: Any) -> None:
        if value > utcnow() + POSTED_AT_SKEW:
            raise ValidationError("must not be in the future")


class MediaOutSchema(Schema):
    id = fields.Integer()
    filename = fields.String()
    content_type = fields.String()
    size = fields.Integer()
    hashed = fields.Function(lambda media: media.phash is not None)


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
    reason = fields.String(attribute="reject_reason", allow_none=True)
    note = fields.String(attribute="review_reason", allow_none=True)
    reviewed_at = fields.DateTime(allow_none=True)
    score = fields.Float(allow_none=True)
    score_breakdown = fields.Dict(allow_none=True)
    # What counts (trusted or confirmed figures), and the latest anyone reported.
    metrics = fields.Nested(MetricsSchema, attribute="latest_metrics")
    reported_metrics = fields.Nested(MetricsSchema)
    post_id = fields.String(allow_none=True)
    url_unresolved = fields.Boolean()
    held = fields.Function(lambda s: s.held_at is not None)
    held_at = fields.DateTime(allow_none=True)
    media = fields.List(fields.Nested(MediaOutSchema))
    created_at = fields.DateTime()


class SubmissionQuerySchema(Schema):
    status = kf.OneOf(["pending", "approved", "rejected"])
    member_id = kf.Id(strict=False)
    kit_id = kf.Id(strict=False)
    flagged = fields.Boolean()
    held = fields.Boolean()
    unconfirmed_metrics = fields.Boolean(metadata={
        "description": "Only submissions holding a member's own figures that wait for staff or "
                       "an agreeing import (recorded and shown, not yet scored)."})


class _DecisionFields(Schema):
    decision = kf.OneOf(["approve", "reject"], required=True)
    rating = kf.Integer(load_default=None, allow_none=True, minimum=1, maximum=5)
    reason = kf.OneOf(REJECT_REASONS, load_default=None, allow_none=True)
    note = kf.String(load_default=None, allow_none=True, max_length=1000, multiline=True)

    @validates_schema
    def _reason_goes_with_reject(self, data: dict[str, Any], **_: Any) -> None:
        if data.get("decision") == "reject" and not data.get("reason"):
            raise ValidationError(f"required to reject: one of {', '.join(REJECT_REASONS)}",
                                  "reason")
        if data.get("decision") == "approve" and data.get("reason"):
            raise ValidationError("only a rejection has a reason; use note", "reason")
        if data.get("reason") == "other" and not (data.get("note") or "").strip():
            raise ValidationError("say what the other reason is", "note")


class ReviewInSchema(_DecisionFields):
    # The post's full URL, required to approve a submission that came in as a short link.
    post_url = kf.String(load_default=None, allow_none=True, min_length=8, max_length=1000)


class BulkReviewInSchema(_DecisionFields):
    ids = kf.List(kf.Id(), required=True, min_items=1, max_items=MAX_BULK_REVIEW, unique=True)


class BulkReviewOutSchema(Schema):
    reviewed = fields.Integer()
    submissions = fields.List(fields.Nested(SubmissionOutSchema))


class ReopenInSchema(Schema):
    note = kf.String(required=True, min_length=1, max_length=1000, multiline=True)


class SnapshotOutSchema(MetricsSchema):
    id = fields.Integer()
    source = fields.String(validate=validate.OneOf(SNAPSHOT_SOURCES))
    state = fields.String(validate=validate.OneOf(SNAPSHOT_STATES))
    counted = fields.Function(lambda s: s.state in COUNTED_STATES)
    recorded_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
    decided_by_staff_id = fields.Integer(allow_none=True)
    confirmed_by_snapshot_id = fields.Integer(allow_none=True)


class MetricsDecisionInSchema(Schema):
    decision = kf.OneOf(["confirm", "dismiss"], required=True)
    # Goes into the review log and, for a confirmation, the ledger adjustment's description.
    note = kf.String(load_default=None, allow_none=True, max_length=150)


class FollowersInSchema(Schema):
    followers = kf.Integer(required=True)
    note = kf.String(load_default=None, allow_none=True, max_length=1000, multiline=True)
    submission_id = kf.Id(load_default=None, allow_none=True)


class FollowerCheckOutSchema(Schema):
    id = fields.Integer()
    source = fields.String()
    declared = fields.Integer()
    previous = fields.Integer(allow_none=True)
    confirmed = fields.Integer()
    staff_id = fields.Integer(allow_none=True)
    submission_id = fields.Integer(allow_none=True)
    note = fields.String(allow_none=True)
    created_at = fields.DateTime()


class SocialAccountAudienceSchema(Schema):
    id = fields.Integer()
    member_id = fields.Integer()
    platform = fields.String()
    handle = fields.String()
    url = fields.String(allow_none=True)
    followers = fields.Integer()
    confirmed_followers = fields.Integer(allow_none=True)
    followers_source = fields.String()
    followers_confirmed_at = fields.DateTime(allow_none=True)
    followers_confirmed_by_staff_id = fields.Integer(allow_none=True)
    checks = fields.List(fields.Nested(FollowerCheckOutSchema))


class FlagOutSchema(Schema):
    id = fields.Integer()
    submission_id = fields.Integer()
    kind = fields.String(validate=validate.OneOf(FLAG_KINDS))
    detail = fields.Dict()
    related_submission_id = fields.Integer(allow_none=True)
    created_at = fields.DateTime()


class ReviewEventOutSchema(Schema):
    id = fields.Integer()
    action = fields.String(validate=validate.OneOf(REVIEW_ACTIONS))
    staff_id = fields.Integer(allow_none=True)
    rating = fields.Integer(allow_none=True)
    reason = fields.String(allow_none=True)
    note = fields.String(allow_none=True)
    score = fields.Float(allow_none=True)
    created_at = fields.DateTime()


class MetricsImportFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class MetricsImportRowSchema(MetricsSchema):
    submission_id = kf.Id(load_default=None, allow_none=True)
    post_url = kf.String(load_default=None, allow_none=True, max_length=1000)

    @validates_schema
    def _one_way_to_find_the_post(self, data: dict[str, Any], **_: Any) -> None:
        if (data.get("submission_id") is None) == (not data.get("post_url")):
            raise ValidationError("give submission_id or post_url", "submission_id")


class FollowersImportRowSchema(Schema):
    """One line of a trusted follower-count import: the account by id, or by platform and handle."""

    social_account_id = kf.Id(load_default=None, allow_none=True)
    platform = kf.String(load_default=None, allow_none=True, max_length=32)
    handle = kf.String(load_default=None, allow_none=True, max_length=100)
    followers = kf.Integer(required=True)
    note = kf.String(load_default=None, allow_none=True, max_length=1000)

    @validates_schema
    def _one_way_to_find_the_account(self, data: dict[str, Any], **_: Any) -> None:
        by_handle = bool(data.get("platform")) and bool(data.get("handle"))
        if (data.get("social_account_id") is None) == (not by_handle):
            raise ValidationError("give social_account_id, or platform and handle",
                                  "social_account_id")


# --- scoring rules -----------------------------------------------------------------------------

def _points(**kw: Any) -> fields.Float:
    return kf.Float(maximum=10_000, **kw)


class _WeightsSchema(Schema):
    views = _points(required=True)
    likes = _points(required=True)
    comments = _points(required=True)
    saves = _points(required=True)
    shares = _points(required=True)


class _EngagementSchema(Schema):
    points_per_log = _points(required=True)
    weights = fields.Nested(_WeightsSchema, required=True)
    cap = _points(required=True, allow_none=True)


class _AudienceSchema(Schema):
    reference_followers = kf.Integer(required=True, minimum=1, maximum=10**9)
    min_followers = kf.Integer(required=True, minimum=1, maximum=10**9)


class _AnomaliesSchema(Schema):
    likes_above_views = fields.Boolean(required=True)
    jump_factor = kf.Float(required=True, minimum=1, maximum=10_000,
                           validate=validate.Range(min=1, min_inclusive=False))
    jump_min_daily = kf.Integer(required=True, maximum=10**9)
    rate_factor = kf.Float(required=True, minimum=1, maximum=10_000,
                           validate=validate.Range(min=1, min_inclusive=False))
    rate_min_history = kf.Integer(required=True, minimum=1, maximum=1000)
    media_max_distance = kf.Integer(required=True, maximum=32)


class ScoringRulesSchema(Schema):
    base = _points(required=True)
    engagement = fields.Nested(_EngagementSchema, required=True)
    audience = fields.Nested(_AudienceSchema, required=True)
    rating_multipliers = fields.Dict(
        keys=fields.String(validate=validate.OneOf(["1", "2", "3", "4", "5"])),
        values=kf.Float(maximum=10),
        required=True,
    )
    in_window_bonus = _points(required=True)
    total_cap = _points(required=True, allow_none=True)
    points_expire_after_days = kf.Integer(required=True, allow_none=True, minimum=1,
                                          maximum=3650)
    anomalies = fields.Nested(_AnomaliesSchema, required=True)

    @validates("rating_multipliers")
    def _every_rating(self, value: dict[str, float], **_: Any) -> None:
        if set(value) != {"1", "2", "3", "4", "5"}:
            raise ValidationError("needs a multiplier for each rating 1 to 5")


class ScoringRulesInSchema(Schema):
    rules = fields.Nested(ScoringRulesSchema, required=True)


class ScoringRulesOutSchema(Schema):
    version = fields.Integer()
    rules = fields.Dict()
    created_at = fields.DateTime(allow_none=True)


class ScoringVersionOutSchema(ScoringRulesOutSchema):
    created_by_staff_id = fields.Integer(allow_none=True)


class SamplePostSchema(Schema):
    """A made-up post for the scoring preview."""

    metrics = fields.Nested(MetricsSchema, load_default=dict)
    rating = kf.Integer(load_default=None, allow_none=True, minimum=1, maximum=5)
    followers = kf.BigInteger(load_default=None, allow_none=True)
    followers_confirmed = fields.Boolean(load_default=False)
    in_window = fields.Boolean(load_default=False)


class ScoringPreviewInSchema(ScoringRulesInSchema):
    sample = fields.Nested(SamplePostSchema, load_default=dict)


class ScoringPreviewOutSchema(Schema):
    score = fields.Float()
    score_breakdown = fields.Dict(metadata={"description": "the parts that add up to `score`"})


class PointsEntrySchema(Schema):
    id = fields.Integer()
    source = fields.String()
    reference = fields.String()
    submission_id = fields.Integer(allow_none=True)
    points = fields.Float()
    description = fields.String()
    created_at = fields.DateTime()
