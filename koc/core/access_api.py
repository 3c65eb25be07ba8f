"""`/api/v1/tokens` and `/api/v1/audit`: which tokens exist (and revoking them), and the audit log.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, fields

from koc.core import audit
from koc.core import fields as kf
from koc.core.auth import ApiToken, get_token, revoke_token, staff_required, tokens_query
from koc.core.db import utcnow
from koc.core.pagination import Blueprint, SelectPage

blp = Blueprint("access", __name__, description="API tokens and the audit log")


class TokenQuerySchema(Schema):
    kind = kf.OneOf(["staff", "member"], load_default=None)
    active = fields.Boolean(load_default=None, metadata={
        "description": "true: usable now; false: revoked or expired"})
    staff_id = kf.Id(load_default=None)
    member_id = kf.Id(load_default=None)


class TokenOwnerSchema(Schema):
    kind = fields.String()
    staff_id = fields.Integer(allow_none=True)
    email = fields.String(allow_none=True)
    role = fields.String(allow_none=True)
    member_id = fields.Integer(allow_none=True)


class TokenSchema(Schema):
    """A token as the list shows it: its shown prefix, never the secret nor its hash."""

    id = fields.Integer()
    prefix = fields.String()
    kind = fields.String()
    owner = fields.Nested(TokenOwnerSchema)
    created_at = fields.DateTime()
    last_used_at = fields.DateTime(allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    revoked_at = fields.DateTime(allow_none=True)
    revoke_reason = fields.String(allow_none=True)
    active = fields.Boolean()


def _token_view(token: ApiToken) -> dict[str, Any]:
    now = utcnow()
    staff = token.staff
    return {
        "id": token.id, "prefix": token.display_prefix, "kind": token.kind,
        "owner": {"kind": token.kind, "staff_id": token.staff_id,
                  "email": staff.email if staff else None, "role": staff.role if staff else None,
                  "member_id": token.member_id},
        "created_at": token.created_at, "last_used_at": token.last_used_at,
        "expires_at": token.expires_at, "revoked_at": token.revoked_at,
        "revoke_reason": token.revoke_reason,
        "active": token.revoked_at is None and (token.expires_at is None or token.expires_at > now),
    }


class _TokenPage(SelectPage):
    @property
    def items(self) -> list[Any]:
        return [_token_view(token) for token in super().items]


@blp.get("/tokens")
@blp.arguments(TokenQuerySchema, location="query")
@blp.response(200, TokenSchema(many=True))
@blp.paginate(_TokenPage)
@staff_required("admin")
def list_tokens(query: dict):
    return tokens_query(**query)


@blp.delete("/tokens/<id:token_id>")
@blp.response(204)
@staff_required("admin")
def delete_token(token_id: int):
    token = get_token(token_id)
    changed = revoke_token(token, reason="revoked by admin")
    audit.record("token.revoke", f"token:{token.id}",
                 {"prefix": token.display_prefix, "kind": token.kind, "changed": changed,
                  "owner": f"staff:{token.staff_id}" if token.staff_id
                  else f"member:{token.member_id}"})


class AuditQuerySchema(Schema):
    actor = kf.String(load_default=None, max_length=254, metadata={
        "description": "a staff id, an email, or `cli:<user>`"})
    action = kf.String(load_default=None, max_length=64, metadata={
        "description": "an action (`kit.publish`), or a family ending in `.` or `*` (`kit.`)"})
    target = kf.String(load_default=None, max_length=160, metadata={
        "description": "`kind:id`, e.g. `member:12`, `user:ext-9`"})
    since = kf.DateTime(load_default=None)
    until = kf.DateTime(load_default=None)


class AuditEventSchema(Schema):
    id = fields.Integer()
    created_at = fields.DateTime()
    actor = fields.String()
    actor_staff_id = fields.Integer(allow_none=True)
    action = fields.String()
    target = fields.String(allow_none=True)
    ip = fields.String(allow_none=True)
    details = fields.Dict()


@blp.get("/audit")
@blp.arguments(AuditQuerySchema, location="query")
@blp.response(200, AuditEventSchema(many=True))
@blp.paginate(SelectPage)
@staff_required("admin")
def list_audit(query: dict):
    return audit.events_query(**query)
