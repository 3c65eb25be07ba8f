"""The tiers' part of forgetting and exporting a person (see koc.members.services.privacy).

Forgetting revokes the live badge at once (its page then says revoked, and never shows a name);
the group seat is marked for removal by the suspension that forgetting makes. Claims, tier
history and badges stay as anonymous rows, so stock and statistics stay right.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa

from koc.core.signals import person_export_requested, person_forgotten
from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import Badge, DropClaim, GroupMembership
from koc.tiers.services.history import tier_history


@person_forgotten.connect
def _revoke_badges(_sender: object, *, member_id: int, now: datetime, **_: object) -> None:
    db.session.execute(sa.update(Badge).where(Badge.member_id == member_id,
                                              Badge.revoked_at.is_(None))
                       .values(revoked_at=now, revoke_reason="forgotten"))
    # The person's WeCom id is theirs; the seat keeps its join-method state (which names only
    # the anonymous member row), so the removal the suspension asks for can still be matched.
    db.session.execute(sa.update(GroupMembership).where(GroupMembership.member_id == member_id)
                       .values(wecom_userid=None))


@person_export_requested.connect
def _export_benefits(_sender: object, *, member: Member, **_: object) -> dict[str, Any]:
    badges = db.session.scalars(sa.select(Badge).where(Badge.member_id == member.id)
                                .order_by(Badge.id)).all()
    claims = db.session.scalars(sa.select(DropClaim).where(DropClaim.member_id == member.id)
                                .order_by(DropClaim.id)).all()
    seats = db.session.scalars(sa.select(GroupMembership).where(
        GroupMembership.member_id == member.id).order_by(GroupMembership.id)).all()
    return {
        "badges": [{"badge_id": b.badge_id, "tier": b.tier_key, "issued_at": b.issued_at,
                    "revoked_at": b.revoked_at, "revoke_reason": b.revoke_reason}
                   for b in badges],
        "tier_history": [{"from": c.from_tier, "to": c.to_tier, "reason": c.reason,
                          "changed_at": c.changed_at} for c in tier_history(member.id)],
        "claims": [{"id": c.id, "drop_id": c.drop_id, "status": c.status,
                    "created_at": c.created_at} for c in claims],
        "group_memberships": [{"group": g.group_key, "invited_at": g.invited_at,
                               "removal_due_at": g.removal_due_at, "removed_at": g.removed_at}
                              for g in seats],
    }
