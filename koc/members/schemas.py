from __future__ import annotations

from marshmallow import Schema, fields, missing, validate

from koc.core import fields as kf
from koc.core.db import utcnow
from koc.members.models import PLATFORMS
from koc.members.services.candidates import candidate_reasons

_external_id = kf.String(
    required=True, min_length=1, max_length=64,
    validate=validate.Regexp(r"^[A-Za-z0-9_.:\-]+$",
                             error="may hold only letters, digits and _ . : -"),
)


class UserInSchema(Schema):
    """The fields of one user of the wider base, as upserted one by one or imported in bulk."""

    external_id = _external_id
    display_name = kf.String(load_default=None, allow_none=True, max_length=100)
    city = kf.String(load_default=None, allow_none=True, max_length=64)
    store_code = kf.String(load_default=None, allow_none=True, max_length=32)
    tags = kf.List(kf.String(min_length=1, max_length=64), load_default=list, max_items=50)
    orders_count = kf.Integer(load_default=0)
    spend_cents = kf.BigInteger(load_default=0)
    last_order_at = kf.DateTime(load_default=None, allow_none=True)
    shares_count = kf.Integer(load_default=0)
    community_posts_count = kf.Integer(load_default=0)


class UserPutSchema(UserInSchema):
    """PUT merges: fields left out keep their value, an explicit null clears one."""

    # The path names the user; the body may repeat it but not contradict it.
    external_id = kf.String(load_default=None, max_length=64)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name != "external_id":
                field.load_default = missing


class UserOutSchema(Schema):
    id = fields.Integer()
    external_id = fields.String()
    display_name = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    store_code = fields.String(allow_none=True)
    tags = fields.List(fields.String())
    orders_count = fields.Integer()
    spend_cents = fields.Integer()
    last_order_at = fields.DateTime(allow_none=True)
    shares_count = fields.Integer()
    community_posts_count = fields.Integer()
    candidate_score = fields.Float()
    member_id = fields.Method("_member_id", allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()
    forgotten_at = fields.DateTime(allow_none=True, metadata={
        "description": "set once the person was forgotten (DELETE /users/{external_id})"})

    def _member_id(self, user):
        return user.member.id if user.member else None


class ImportFileSchema(Schema):
    file = fields.Raw(required=True, metadata={"type": "string", "format": "binary"})


class CandidateQuerySchema(Schema):
    limit = kf.Integer(load_default=None, strict=False, minimum=1, maximum=100_000, metadata={
        "description": "how far down the ranking pages may go"})
    city = kf.String(min_length=1, max_length=64)
    store_code = kf.String(min_length=1, max_length=32)
    tag = kf.String(min_length=1, max_length=64)
    ordered_within_days = kf.Integer(strict=False, minimum=1, maximum=3650)
    min_score = kf.Float(minimum=0, maximum=1e6)


class ReasonSchema(Schema):
    code = fields.String(metadata={"description": "orders, spend_cents, shares, community_posts, "
                                                  "ordered_within_days"})
    value = fields.Raw()


class CandidateSchema(Schema):
    external_id = fields.String()
    display_name = fields.String(allow_none=True)
    city = fields.String(allow_none=True)
    store_code = fields.String(allow_none=True)
    score = fields.Float(attribute="candidate_score")
    reasons = fields.Method("_reasons", metadata={"type": "array", "items": {
        "type": "object", "properties": {"code": {"type": "string"}, "value": {}}}})

    def _reasons(self, user):
        # Data, not sentences: "ordered recently" is judged at the moment of the answer.
        return candidate_reasons(user, now=utcnow())


class InvitationInSchema(Schema):
    external_id = _external_id
    expires_in_days = kf.Integer(load_default=None, minimum=1, maximum=365)


class InvitationOutSchema(Schema):
    code = fields.String()
    external_id = fields.String()
    expires_at = fields.DateTime()
    url = fields.String(metadata={"description": "the join link, KOC_PUBLIC_URL/join/<code>"})
    qr_url = fields.String(metadata={"description": "the join link as a QR code (SVG)"})


# --- candidate rules ---------------------------------------------------------------------------

def _weight(**kw):
    return kf.Float(required=True, minimum=0, maximum=1000, **kw)


class _CandidateWeightsSchema(Schema):
    orders_count = _weight()
    spend_yuan = _weight()
    shares_count = _weight()
    community_posts_count = _weight()


class _CandidateRecencySchema(Schema):
    weight = _weight(metadata={"description": "bonus for an order today; halves each half-life"})
    half_life_days = kf.Integer(required=True, minimum=1, maximum=3650)


def _segment_values(max_length: int):
    return kf.List(kf.String(min_length=1, max_length=max_length), load_default=list,
                   max_items=200)


class _CandidateSegmentSchema(Schema):
    city = _segment_values(64)
    store_code = _segment_values(32)
    tags = _segment_values(64)


class _CandidateExclusionsSchema(Schema):
    members = fields.Boolean(load_default=True, validate=validate.Equal(
        True, error="members are never candidates"))
    opted_out_tags = kf.List(kf.String(min_length=1, max_length=64),
                             load_default=lambda: ["opted_out"], max_items=20)
    staff_tags = kf.List(kf.String(min_length=1, max_length=64),
                         load_default=lambda: ["staff"], max_items=20)


def _no_segment() -> dict:
    return {"city": [], "store_code": [], "tags": []}


def _default_exclusions() -> dict:
    return {"members": True, "opted_out_tags": ["opted_out"], "staff_tags": ["staff"]}


class CandidateRulesSchema(Schema):
    weights = fields.Nested(_CandidateWeightsSchema, required=True)
    recency = fields.Nested(_CandidateRecencySchema, required=True)
    required = fields.Nested(_CandidateSegmentSchema, load_default=_no_segment,
                             metadata={"description": "a user must match every kind named"})
    excluded = fields.Nested(_CandidateSegmentSchema, load_default=_no_segment,
                             metadata={"description": "a user matching any is left out"})
    exclusions = fields.Nested(_CandidateExclusionsSchema, load_default=_default_exclusions)


class CandidateRulesInSchema(Schema):
    rules = fields.Nested(CandidateRulesSchema, required=True)


class CandidateRulesOutSchema(Schema):
    version = fields.Integer()
    rules = fields.Dict()
    created_at = fields.DateTime(allow_none=True)
    job_id = fields.Integer(metadata={
        "description": "PUT only: the job rescoring every user under the saved version "
                       "(GET /api/v1/jobs/{id})"})


class CandidatePreviewInSchema(CandidateRulesInSchema):
    top = kf.Integer(load_default=20, minimum=1, maximum=200)


class _RankedCandidateSchema(Schema):
    rank = fields.Integer()
    external_id = fields.String()
    display_name = fields.String(allow_none=True)
    score = fields.Float()
    previous_score = fields.Float()
    previous_rank = fields.Integer(allow_none=True)


class CandidatePreviewSchema(Schema):
    current = fields.List(fields.Nested(_RankedCandidateSchema))
    proposed = fields.List(fields.Nested(_RankedCandidateSchema))
    entered = fields.List(fields.String(), metadata={"description": "new in the top"})
    left = fields.List(fields.String(), metadata={"description": "out of the top"})


# --- invitation campaigns ----------------------------------------------------------------------

# How many customers a manager can tick on the candidate list for one campaign.
MAX_PICKED = 1000


class CampaignFilterSchema(Schema):
    city = kf.String(min_length=1, max_length=64)
    store_code = kf.String(min_length=1, max_length=32)
    tag = kf.String(min_length=1, max_length=64)
    ordered_within_days = kf.Integer(minimum=1, maximum=3650)
    min_score = kf.Float(minimum=0, maximum=1e6)
    external_ids = fields.List(
        kf.String(min_length=1, max_length=64), validate=validate.Length(min=1, max=MAX_PICKED),
        metadata={"description": "customers picked by id (those still candidates are invited)"})


class CampaignInSchema(Schema):
    name = kf.String(required=True, min_length=1, max_length=100)
    filter = fields.Nested(CampaignFilterSchema, load_default=dict)
    limit = kf.Integer(required=True, minimum=1, maximum=200_000)
    expires_in_days = kf.Integer(load_default=None, minimum=1, maximum=365)
    message = kf.String(load_default="", max_length=1000)


class CampaignCreatedSchema(Schema):
    id = fields.Integer()
    invited = fields.Integer()
    links_url = fields.String(metadata={"description": "CSV of every code and join link"})


class CampaignSchema(Schema):
    id = fields.Integer()
    name = fields.String()
    filter = fields.Dict()
    limit = fields.Integer()
    message = fields.String()
    rules_version = fields.Integer()
    created_at = fields.DateTime()
    expires_at = fields.DateTime()
    revoked_at = fields.DateTime(allow_none=True)
    reminded_at = fields.DateTime(allow_none=True)
    invited = fields.Integer()
    opened = fields.Integer()
    accepted = fields.Integer()
    first_submission = fields.Integer()
    first_approval = fields.Integer()
    revoked = fields.Integer(metadata={"description": "invitations withdrawn"})
    rates = fields.Dict(keys=fields.String(), values=fields.Float(), metadata={
        "description": "opened, accepted, first_submission, first_approval as shares of invited"})


class RevokedSchema(Schema):
    revoked = fields.Integer()


class SocialAccountSchema(Schema):
    platform = kf.OneOf(PLATFORMS, required=True)
    handle = kf.String(required=True, min_length=1, max_length=100)
    url = fields.Url(load_default=None, allow_none=True, schemes={"http", "https"},
                     validate=[validate.Length(max=500), kf.printable()])
    followers = kf.Integer(load_default=0)
    # Set by reviewers or a trusted import only; a member who sends them gets a 422.
    id = fields.Integer(dump_only=True)
    confirmed_followers = fields.Integer(dump_only=True, allow_none=True)
    followers_source = fields.String(dump_only=True)
    followers_confirmed_at = fields.DateTime(dump_only=True, allow_none=True)


class AcceptInSchema(Schema):
    display_name = kf.String(required=True, min_length=1, max_length=100)
    accept_terms = fields.Boolean(required=True, validate=validate.Equal(
        True, error="The terms must be accepted."))
    social_accounts = kf.List(fields.Nested(SocialAccountSchema), load_default=list,
                              max_items=10)


class TierRefSchema(Schema):
    key = fields.String()
    name = fields.String()


class MemberStaffSchema(Schema):
    """What staff see of a member."""

    id = fields.Integer()
    external_id = fields.Function(lambda m: m.user.external_id)
    display_name = fields.String()
    status = fields.String()
    tier = fields.String(attribute="tier_key", allow_none=True)
    tier_locked = fields.Boolean()
    tier_since = fields.DateTime(allow_none=True)
    joined_at = fields.DateTime()
    social_accounts = fields.List(fields.Nested(SocialAccountSchema))


class MemberOwnSchema(Schema):
    """What a member sees of themselves right after accepting."""

    id = fields.Integer()
    display_name = fields.String()
    status = fields.String()
    social_accounts = fields.List(fields.Nested(SocialAccountSchema))


class AcceptOutSchema(Schema):
    member = fields.Nested(MemberOwnSchema)
    token = fields.String()


class TierChangeSchema(Schema):
    from_tier = fields.String(allow_none=True)
    to_tier = fields.String(allow_none=True)
    reason = fields.String()
    rules_version = fields.Integer(allow_none=True)
    changed_by_staff_id = fields.Integer(allow_none=True)
    changed_at = fields.DateTime()


class MemberDetailSchema(MemberStaffSchema):
    tier_history = fields.List(fields.Nested(TierChangeSchema))


class MemberQuerySchema(Schema):
    tier = kf.String(max_length=32)
    q = kf.String(min_length=1, max_length=100, metadata={
        "description": "part of the display name or of a social handle (any case, an @ "
                       "before a handle allowed), or a whole CRM external id"})
    status = kf.OneOf(["active", "suspended"])


class MemberPatchSchema(Schema):
    tier = kf.String(allow_none=True, max_length=32)
    tier_locked = fields.Boolean()
    status = kf.OneOf(["active", "suspended"])
    reason = kf.String(max_length=500)


class UserImportRowSchema(UserInSchema):
    """One CSV or JSONL line of a bulk import: CSV cells are text, tags are `|`-separated."""

    orders_count = kf.Integer(load_default=0, strict=False)
    spend_cents = kf.BigInteger(load_default=0, strict=False)
    shares_count = kf.Integer(load_default=0, strict=False)
    community_posts_count = kf.Integer(load_default=0, strict=False)


class RequirementSchema(Schema):
    name = fields.String()
    metric = fields.String()
    window_days = fields.Integer(allow_none=True)
    current = fields.Float()
    required = fields.Float()
    met = fields.Boolean()


class CurrentTierSchema(Schema):
    key = fields.String()
    name = fields.String()
    locked = fields.Boolean()
    at_risk = fields.Boolean(metadata={"description": "below the tier's low-water mark"})
    below_since = fields.DateTime(allow_none=True)
    grace_days_left = fields.Float(allow_none=True,
                                   metadata={"description": "days before the member drops"})
    hold_requirements = fields.List(fields.Nested(RequirementSchema), metadata={
        "description": "what keeps the tier: the thresholds at the low-water mark"})


class ProgressSchema(Schema):
    next_tier = fields.Nested(TierRefSchema, allow_none=True)
    mode = fields.String(allow_none=True, metadata={"description": "all or any requirement"})
    requirements = fields.List(fields.Nested(RequirementSchema))
    current_tier = fields.Nested(CurrentTierSchema, allow_none=True)


class PointsSchema(Schema):
    balance = fields.Float()
    lifetime = fields.Float()


class BadgeSchema(Schema):
    badge_id = fields.String()
    tier = fields.String()
    name = fields.String()
    issued_at = fields.DateTime()
    url = fields.String(metadata={"description": "the public page that verifies the badge"})


class MeSchema(Schema):
    id = fields.Integer()
    display_name = fields.String()
    status = fields.String()
    tier = fields.Nested(TierRefSchema, allow_none=True)
    points = fields.Nested(PointsSchema)
    badges = fields.List(fields.Nested(BadgeSchema))
    progress = fields.Nested(ProgressSchema)
    social_accounts = fields.List(fields.Nested(SocialAccountSchema))
    show_name_on_badge = fields.Boolean(metadata={
        "description": "the public badge page shows display_name (default: hidden)"})


class MePatchSchema(Schema):
    show_name_on_badge = fields.Boolean(required=True, metadata={
        "description": "show display_name on the public badge page"})


class PersonExportSchema(Schema):
    """Everything held about one person (PIPL), JSON-ready; each part as stored."""

    exported_at = fields.DateTime()
    user = fields.Dict(metadata={"description": "the user row of the wider base"})
    member = fields.Dict()
    social_accounts = fields.List(fields.Dict(), metadata={
        "description": "with the follower counts' sources and their confirmations"})
    invitations = fields.List(fields.Dict())
    submissions = fields.List(fields.Dict(), metadata={
        "description": "with their engagement snapshots and media"})
    media = fields.List(fields.Dict(), metadata={
        "description": "uploads not attached to a submission"})
    follower_checks = fields.List(fields.Dict())
    ledger = fields.List(fields.Dict(), metadata={"description": "points entries, oldest first"})
    downloads = fields.List(fields.Dict())
    watermarks = fields.List(fields.Dict(), metadata={
        "description": "codes marked on the person's copies of embargoed images"})
    badges = fields.List(fields.Dict())
    tier_history = fields.List(fields.Dict())
    claims = fields.List(fields.Dict())
    group_memberships = fields.List(fields.Dict())


class ImportCreateSchema(Schema):
    filename = kf.String(required=True, min_length=1, max_length=255)
    content_type = kf.String(load_default="text/csv", min_length=1, max_length=100)
    size = kf.BigInteger(required=True, minimum=1, metadata={"description": "bytes"})
    format = kf.OneOf(["csv", "jsonl"], load_default=None, allow_none=True, metadata={
        "description": "default: from the file name (.jsonl, .ndjson: JSONL; else CSV)"})
    encoding = kf.OneOf(["utf-8", "gb18030"], load_default="utf-8")


class ImportUploadPartSchema(Schema):
    part_number = fields.Integer()
    size = fields.Integer()
    url = fields.String()


class ImportUploadSchema(Schema):
    method = fields.String()
    url = fields.String(allow_none=True, metadata={"description": "null for a multipart upload"})
    headers = fields.Dict(keys=fields.String(), values=fields.String())
    multipart = fields.Boolean()
    part_size = fields.Integer(allow_none=True)
    parts = fields.List(fields.Nested(ImportUploadPartSchema), metadata={
        "description": "Multipart only: PUT each part's bytes to its URL, keep each ETag."})


class ImportCreatedSchema(Schema):
    import_id = fields.Integer()
    upload = fields.Nested(ImportUploadSchema)


class ImportPartSchema(Schema):
    part_number = kf.Integer(required=True, minimum=1, maximum=10_000)
    etag = kf.String(required=True, min_length=1, max_length=200)


class ImportStartSchema(Schema):
    parts = kf.List(fields.Nested(ImportPartSchema), load_default=None, allow_none=True,
                    min_items=1, max_items=10_000, metadata={
                        "description": "Multipart: the parts' ETags. Without them the parts "
                                       "the store holds are used."})
