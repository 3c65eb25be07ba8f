from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from koc.core import fields as kf
from koc.tiers.services.metrics import METRICS


class ConditionSchema(Schema):
    metric = kf.OneOf(sorted(METRICS), required=True)
    min = kf.Float(required=True, maximum=1e15)
    window_days = kf.Integer(load_default=None, allow_none=True, minimum=1, maximum=3650)


class RulesSchema(Schema):
    all = kf.List(fields.Nested(ConditionSchema), min_items=1, max_items=20)
    any = kf.List(fields.Nested(ConditionSchema), min_items=1, max_items=20)

    @validates_schema
    def _one_combinator(self, data: dict, **_: object) -> None:
        if len(data) != 1:
            raise ValidationError("give exactly one of 'all' or 'any'", "_schema")


class DemotionSchema(Schema):
    low_water = kf.Float(load_default=0.9, maximum=1)
    min_days_at_tier = kf.Float(load_default=14, maximum=3650)
    days_below = kf.Float(load_default=7, maximum=3650)


class WeakPostsSchema(Schema):
    count = kf.Integer(required=True, minimum=1, maximum=50)
    below = kf.Integer(required=True, minimum=1)


class TierSchema(Schema):
    key = kf.String(required=True, min_length=1, max_length=32,
                    validate=validate.Regexp(r"^[a-z][a-z0-9_]*$"))
    name = kf.String(required=True, min_length=1, max_length=100)
    rank = kf.Integer(required=True, minimum=1, maximum=100)
    rules = fields.Nested(RulesSchema, required=True)
    demotion = fields.Nested(DemotionSchema, metadata={
        "description": "hysteresis: keep the tier while values stay above low_water x the "
                       "thresholds; drop after days_below days below and min_days_at_tier"})
    weak_posts = fields.Nested(WeakPostsSchema, allow_none=True, metadata={
        "description": "drop out of this tier after `count` consecutive approved posts with "
                       "fewer than `below` likes + comments + saves"})


class TiersInSchema(Schema):
    tiers = kf.List(fields.Nested(TierSchema), required=True, min_items=1, max_items=20)
    # GET returns the version; sending it back is harmless and ignored.
    version = kf.Integer(load_only=True)


class TiersOutSchema(Schema):
    version = fields.Integer()
    tiers = fields.List(fields.Nested(TierSchema))


class TierRulesVersionSchema(Schema):
    version = fields.Integer()
    tiers = fields.List(fields.Dict())
    created_at = fields.DateTime()
    created_by_staff_id = fields.Integer(allow_none=True)


class ChangeSchema(Schema):
    member_id = fields.Integer()
    from_ = fields.String(data_key="from", attribute="from", allow_none=True)
    to = fields.String(allow_none=True)
    reason = fields.String()


class PreviewSchema(Schema):
    promotions = fields.Integer()
    demotions = fields.Integer()
    entering_grace = fields.Integer(metadata={
        "description": "members who would fall below their tier and start the grace period"})
    changes = fields.List(fields.Nested(ChangeSchema), metadata={
        "description": "a sample of up to 50 promotions and 50 demotions"})


class TierCountSchema(Schema):
    tiers = fields.Dict(keys=fields.String(), values=fields.Integer())


class BadgeMemberSchema(Schema):
    id = fields.Integer()
    display_name = fields.String(allow_none=True, metadata={
        "description": "null unless the member chose to show it (PATCH /me show_name_on_badge)"})


class BadgeAssertionSchema(Schema):
    badge_id = fields.String()
    member = fields.Nested(BadgeMemberSchema)
    tier = fields.String()
    tier_name = fields.String()
    issued_at = fields.DateTime()
    revoked = fields.Boolean()
    revoked_at = fields.DateTime(allow_none=True)
    valid = fields.Boolean(metadata={"description": "the signature checks out and the badge "
                                                    "is not revoked"})
    payload = fields.String(metadata={"description": "the signed bytes (canonical JSON)"})
    signature = fields.String(metadata={"description": "Ed25519 signature, base64"})
    key_id = fields.String(allow_none=True, metadata={"description": "the signing key's id"})
    public_key = fields.String(allow_none=True,
                               metadata={"description": "Ed25519 public key, base64 (raw), of "
                                                        "the key that signed this badge"})


class SigningKeySchema(Schema):
    key_id = fields.String()
    algorithm = fields.String()
    public_key = fields.String()
    status = fields.String(metadata={"description": "`active` signs new badges; `retired` "
                                                    "keys still verify the badges they signed"})


class PublicKeySchema(Schema):
    algorithm = fields.String()
    public_key = fields.String()
    key_id = fields.String()
    keys = fields.List(fields.Nested(SigningKeySchema))


class DropInSchema(Schema):
    product_name = kf.String(required=True, min_length=1, max_length=200)
    sku = kf.String(required=True, min_length=1, max_length=64)
    quantity = kf.Integer(required=True, minimum=1)
    per_member_limit = kf.Integer(load_default=1, minimum=1)
    min_tier = kf.String(load_default=None, allow_none=True, max_length=32)
    opens_at = kf.DateTime(required=True)
    closes_at = kf.DateTime(required=True)
    allocation = kf.OneOf(["first_come", "lottery"], load_default="first_come")
    post_within_days = kf.Integer(load_default=14, minimum=1, maximum=365)

    @validates_schema
    def _window_ordered(self, data: dict, **_: object) -> None:
        if "opens_at" in data and "closes_at" in data and data["opens_at"] >= data["closes_at"]:
            raise ValidationError("must be after opens_at", "closes_at")


class DropSchema(Schema):
    id = fields.Integer()
    product_name = fields.String()
    sku = fields.String()
    quantity = fields.Integer()
    per_member_limit = fields.Integer()
    min_tier = fields.String(allow_none=True)
    opens_at = fields.DateTime()
    closes_at = fields.DateTime()
    allocation = fields.String()
    allocated = fields.Integer(metadata={"description": "units claimed or won so far"})
    post_within_days = fields.Integer()
    drawn_at = fields.DateTime(allow_none=True)


class ClaimSchema(Schema):
    id = fields.Integer()
    drop_id = fields.Integer()
    status = fields.String(metadata={"description": "claimed, entered, won or lost"})
    created_at = fields.DateTime()


class LotterySchema(Schema):
    drop_id = fields.Integer()
    seed = fields.String(allow_none=True)
    quantity = fields.Integer()
    entry_ids = fields.List(fields.Integer())
    winner_ids = fields.List(fields.Integer())
    drawn_at = fields.DateTime(allow_none=True)


class SeedingSchema(Schema):
    member_id = fields.Integer()
    display_name = fields.String()
    status = fields.String()
    claimed_at = fields.DateTime()
    posted = fields.Boolean()
    overdue = fields.Boolean()


class MembershipSchema(Schema):
    member_id = fields.Integer()
    invited_at = fields.DateTime()
    removal_due_at = fields.DateTime(allow_none=True)
    state = fields.String(metadata={
        "description": "invited, joined, to_be_removed, removed, or left (on their own)"})
    joined_at = fields.DateTime(allow_none=True)
    join_scene = fields.Integer(allow_none=True)
    left_at = fields.DateTime(allow_none=True)
    left_on_own = fields.Boolean()
    removed_at = fields.DateTime(allow_none=True)
    wecom_state = fields.String(allow_none=True)
    wecom_chat_id = fields.String(allow_none=True)


class RosterSchema(Schema):
    members = fields.List(fields.Nested(MembershipSchema),
                          metadata={"description": "invited or in the group"})
    to_remove = fields.List(fields.Nested(MembershipSchema))
    left = fields.List(fields.Nested(MembershipSchema),
                       metadata={"description": "left the group on their own, still qualifying"})
    removed = fields.List(fields.Nested(MembershipSchema),
                          metadata={"description": "the latest removals"})


class WeComSyncSchema(Schema):
    join_ways_created = fields.Integer()
    chats = fields.Dict(keys=fields.String(), values=fields.Dict())


class AnnouncementInSchema(Schema):
    text = kf.String(required=True, min_length=1, max_length=2000)
    chat_ids = kf.List(kf.String(min_length=1, max_length=64), max_items=200,
                       load_default=None, metadata={
                           "description": "KOC group chats; default KOC_WECOM_KOC_CHAT_IDS"})


class AnnouncementSchema(Schema):
    id = fields.Integer()
    kit_id = fields.Integer()
    text = fields.String()
    chat_ids = fields.List(fields.String())
    status = fields.String(metadata={"description": "draft, sent or failed"})
    created_at = fields.DateTime()
    confirmed_at = fields.DateTime(allow_none=True)
    tasks = fields.List(fields.Dict(), allow_none=True, metadata={
        "description": "one group-message task per group owner: sender, chat_ids, msgid"})
    skipped_chat_ids = fields.List(fields.String(), allow_none=True, metadata={
        "description": "groups that had their group message(s) for the day already"})
    error = fields.String(allow_none=True)


class MyGroupSchema(Schema):
    group = fields.String()
    invited_at = fields.DateTime()
    join_url = fields.String(allow_none=True)
    code = fields.String(allow_none=True)
    qr_code_url = fields.String(allow_none=True, metadata={
        "description": "the WeCom join method's QR code, when WeCom is configured"})
    state = fields.String()


class MyGroupsSchema(Schema):
    groups = fields.List(fields.Nested(MyGroupSchema))


class LeaderboardQuerySchema(Schema):
    window_days = kf.Integer(load_default=30, strict=False, minimum=1, maximum=3650)
    metric = kf.OneOf(["points", "engagement", "approved"], load_default="points",
                      metadata={"description": "what ranks the members, best first"})
    city = kf.String(max_length=64)
    store_code = kf.String(max_length=32)


class LeaderboardRowSchema(Schema):
    member_id = fields.Integer()
    display_name = fields.String()
    tier = fields.String(allow_none=True, metadata={"description": "the tier's key"})
    tier_name = fields.String(allow_none=True)
    points = fields.Float(metadata={"description": "points booked in the window"})
    approved = fields.Integer(metadata={"description": "approved posts posted in the window"})
    engagement = fields.Integer(metadata={
        "description": "likes + comments + saves of those posts (latest confirmed metrics)"})
