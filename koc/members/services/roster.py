"""The roster: members, how staff find them, and their status."""

from __future__ import annotations

import sqlalchemy as sa

from koc.core.errors import DomainError
from koc.core.signals import member_status_changed
from koc.extensions import db
from koc.members.models import Member, MemberStatus, User


def members_query(*, tier: str | None = None, q: str | None = None,
                  status: str | None = None) -> sa.Select:
    stmt = sa.select(Member).join(User).order_by(Member.id)
    if tier is not None:
        stmt = stmt.where(Member.tier_key == (None if tier == "none" else tier))
    if status is not None:
        stmt = stmt.where(Member.status == status)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(sa.or_(Member.display_name.ilike(pattern, escape="\\"),
                                 User.external_id.ilike(pattern, escape="\\")))
    return stmt


def get_member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise DomainError(404, "No such member.")
    return member


def set_member_status(member: Member, status: str) -> None:
    member.status = MemberStatus(status).value
    db.session.flush()
    # The tiers package revokes a suspended member's badge and marks their group seat for
    # removal now, not at the next recalculation.
    member_status_changed.send(None, member_id=member.id)
