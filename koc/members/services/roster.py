"""The roster: members, how staff find them, and their status."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from koc.core.errors import DomainError
from koc.core.signals import member_status_changed, replies
from koc.extensions import db
from koc.members.models import Member, MemberStatus, SocialAccount, User

MEMBER_SORTS = {
    "id": (Member.id,),
    "joined": (Member.joined_at, Member.id),
    "-joined": (Member.joined_at.desc(), Member.id.desc()),
    "name": (Member.display_name, Member.id),
    "-name": (Member.display_name.desc(), Member.id.desc()),
}


def _has_tag(tag: str) -> sa.ColumnElement[bool]:
    if db.engine.dialect.name == "postgresql":
        return User.tags.op("@>")(sa.func.jsonb_build_array(tag))
    element = sa.func.json_each(User.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(element).where(element.c.value == tag))


def members_query(*, tier: str | None = None, q: str | None = None,
                  status: str | None = None, city: str | None = None,
                  store_code: str | None = None, tag: str | None = None,
                  at_risk: bool | None = None, sort: str = "id") -> sa.Select:
    """Members matching every filter given; `at_risk`: below their tier's low-water mark.

    Users are joined only for a filter on their columns: at tens of millions of users, the
    join costs a lookup in that table per member the page skips over (the roster's page 500
    read 25,000 users to show 50). Callers load the members' users for the page's rows."""
    stmt = sa.select(Member).order_by(*MEMBER_SORTS[sort])
    if city or store_code or tag:
        stmt = stmt.join(User)
    if tier is not None:
        stmt = stmt.where(Member.tier_key == (None if tier == "none" else tier))
    if status is not None:
        stmt = stmt.where(Member.status == status)
    if city:
        stmt = stmt.where(User.city == city)
    if store_code:
        stmt = stmt.where(User.store_code == store_code)
    if tag:
        stmt = stmt.where(_has_tag(tag))
    if at_risk is not None:
        stmt = stmt.where(Member.tier_below_since.is_not(None) if at_risk
                          else Member.tier_below_since.is_(None))
    if q and q.strip():
        stmt = stmt.where(Member.id.in_(_matching_members(q)))
    return stmt


def _matching_members(q: str) -> sa.CompoundSelect:
    """Ids of the members whose name or a social handle holds `q` (any case; "@name" finds the
    handle "name"), or whose CRM id is `q`. Each part is served by its own index (trigram
    indexes on PostgreSQL), so a search does not read every member row."""
    text = q.strip()
    handle = text.removeprefix("@") or text

    def contains(value: str) -> str:
        escaped = value.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        return f"%{escaped}%"

    return sa.union(
        sa.select(Member.id).where(Member.display_name.ilike(contains(text), escape="\\")),
        sa.select(SocialAccount.member_id).where(
            SocialAccount.handle.ilike(contains(handle), escape="\\")),
        sa.select(Member.id).join(User).where(User.external_id == text),
    )


def get_member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise DomainError(404, "No such member.")
    return member


def set_member_status(member: Member, status: str) -> dict[str, Any]:
    """Suspend or re-activate; returns what the domains above did about it, for the audit log."""
    if member.forgotten_at is not None and status != MemberStatus.suspended:
        raise DomainError(409, "This member was forgotten and cannot be re-activated.",
                          errors={"json": {"status": ["the member was forgotten"]}})
    member.status = MemberStatus(status).value
    db.session.flush()
    # The tiers package revokes a suspended member's badge, voids their pending drop claims and
    # marks their group seat for removal now, not at the next recalculation.
    return replies(member_status_changed, member_id=member.id)
