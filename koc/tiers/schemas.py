from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from koc.tiers.metrics import METRICS


class ConditionSchema(Schema):
    metric = fields.String(required=True, validate=validate.OneOf(sorted(METRICS)))
    min = fields.Float(required=True, validate=validate.Range(min=0))
    window_days = fields.Integer(load_default=None, allow_none=True,
                                 validate=validate.Range(min=1, max=3650))


class RulesSchema(Schema):
    all = fields.List(fields.Nested(ConditionSchema), validate=validate.Length(min=1, max=20))
    any = fields.List(fields.Nested(ConditionSchema), validate=validate.Length(min=1, max=20))

    @validates_schema
    def _one_combinator(self, data: dict, **_: object) -> None:
        if len(data) != 1:
            raise ValidationError("give exactly one of 'all' or 'any'", "_schema")


class DemotionSchema(Schema):
    low_water = fields.Float(load_default=0.9, validate=validate.Range(min=0, max=1))
    min_days_at_tier = fields.Float(load_default=14, validate=validate.Range(min=0, max=3650))
    days_below = fields.Float(load_default=7, validate=validate.Range(min=0, max=3650))


class WeakPostsSchema(Schema):
    count = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=50))
    below = fields.Integer(required=True, strict=True, validate=validate.Range(min=1))


class TierSchema(Schema):
    key = fields.String(required=True, validate=[validate.Length(min=1, max=32),
                                                 validate.Regexp(r"^[a-z][a-z0-9_]*$")])
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    rank = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    rules = fields.Nested(RulesSchema, required=True)
    demotion = fields.Nested(DemotionSchema, metadata={
        "description": "hysteresis: keep the tier while values stay above low_water x the "
                       "thresholds; drop after days_below days below and min_days_at_tier"})
    weak_posts = fields.Nested(WeakPostsSchema, allow_none=True, metadata={
        "description": "drop out of this tier after `count` consecutive approved posts with "
                       "fewer than `below` likes + comments + saves"})


class TiersInSchema(Schema):
    tiers = fields.List(fields.Nested(TierSchema), required=True,
                        validate=validate.Length(min=1, max=20))
    # GET returns the version; sending it back is harmless and ignored.
    version = fields.Integer(load_only=True)


class TiersOutSchema(Schema):
    version = fields.Integer()
    tiers = fields.List(fields.Nested(TierSchema))


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
