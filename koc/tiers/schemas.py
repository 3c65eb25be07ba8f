from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from koc.tiers.services import METRICS


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


class TierSchema(Schema):
    key = fields.String(required=True, validate=[validate.Length(min=1, max=32),
                                                 validate.Regexp(r"^[a-z][a-z0-9_]*$")])
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))
    rank = fields.Integer(required=True, strict=True, validate=validate.Range(min=1, max=100))
    rules = fields.Nested(RulesSchema, required=True)


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


class PreviewSchema(Schema):
    promotions = fields.Integer()
    demotions = fields.Integer()
    changes = fields.List(fields.Nested(ChangeSchema))


class TierCountSchema(Schema):
    tiers = fields.Dict(keys=fields.String(), values=fields.Integer())
