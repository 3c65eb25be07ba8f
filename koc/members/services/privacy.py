"""Personal data (PIPL): forgetting a person, and everything held about one, for export.

Forgetting anonymises instead of deleting: the user row stays as a tombstone keyed by the
brand's CRM id (so the person is never a candidate again and a later import cannot bring them
back to life), and the member row stays with an anonymous name, so the points ledger, the
statistics and the stock of drops keep adding up. The members package blanks its own rows and
sends `person_forgotten`; the domains above scrub theirs (captions, post URLs, stored media,
badges). Everything is idempotent: forgetting twice changes nothing the second time.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from koc.core.auth import revoke_member_tokens
from koc.core.signals import person_export_requested, person_forgotten, replies
from koc.extensions import db
from koc.members.models import Invitation, Member, MemberStatus, User
from koc.members.services.candidate_rules import EXCLUDED_SCORE
from koc.members.services.roster import set_member_status
from koc.members.services.users import get_user

FORGOTTEN_NAME = "forgotten member {id}"


def anonymous_name(member_id: int) -> str:
    return FORGOTTEN_NAME.format(id=member_id)


def forget_user(external_id: str, *, now: datetime) -> dict[str, Any]:
    """Anonymise the person everywhere; returns a summary without personal data (for the audit
    log). 404 for an unknown external id; a person already forgotten is forgotten again, which
    changes nothing but is safe (a crash between the commit and the media deletion is mended)."""
    user = get_user(external_id)
    again = user.forgotten_at is not None
    user.display_name = None
    user.city = None
    user.store_code = None
    user.tags = []
    user.orders_count = 0
    user.spend_cents = 0
    user.last_order_at = None
    user.shares_count = 0
    user.community_posts_count = 0
    # Out of the candidate index for good: the rescore keeps a forgotten person there too.
    user.candidate_score = EXCLUDED_SCORE
    user.forgotten_at = user.forgotten_at or now
    # Codes not yet used stop working; used ones stay, so campaign counts stay right.
    expired = db.session.execute(
        sa.update(Invitation).where(Invitation.user_id == user.id,
                                    Invitation.accepted_at.is_(None),
                                    Invitation.expires_at > now)
        .values(expires_at=now)).rowcount  # type: ignore[attr-defined]
    summary: dict[str, Any] = {"again": again, "invitations_expired": expired, "member_id": None}
    member = user.member
    if member is not None:
        summary["member_id"] = member.id
        member.display_name = anonymous_name(member.id)
        member.show_name_on_badge = False
        member.forgotten_at = member.forgotten_at or now
        for account in member.social_accounts:
            # (platform, handle) is unique: an anonymous handle of the row's own id.
            account.handle = f"forgotten-{account.id}"
            account.url = None
        summary["tokens_revoked"] = revoke_member_tokens(member.id, now=now, reason="forgotten")
        db.session.flush()
        person_forgotten.send(None, member_id=member.id, now=now)
        # Suspended: never scored into a tier again; the tiers package revokes the badge and
        # marks the group seat for removal.
        if member.status != MemberStatus.suspended:
            set_member_status(member, MemberStatus.suspended.value)
    db.session.flush()
    return summary


def is_forgotten(external_id: str) -> bool:
    return db.session.scalar(sa.select(User.forgotten_at.is_not(None))
                             .where(User.external_id == external_id)) or False


def _user_part(user: User) -> dict[str, Any]:
    return {"external_id": user.external_id, "display_name": user.display_name,
            "city": user.city, "store_code": user.store_code, "tags": list(user.tags or []),
            "orders_count": user.orders_count, "spend_cents": user.spend_cents,
            "last_order_at": user.last_order_at, "shares_count": user.shares_count,
            "community_posts_count": user.community_posts_count,
            "candidate_score": user.candidate_score, "created_at": user.created_at,
            "updated_at": user.updated_at, "forgotten_at": user.forgotten_at}


def _member_part(member: Member) -> dict[str, Any]:
    return {"id": member.id, "display_name": member.display_name, "status": member.status,
            "tier": member.tier_key, "tier_locked": member.tier_locked,
            "tier_since": member.tier_since, "joined_at": member.joined_at,
            "terms_accepted_at": member.terms_accepted_at,
            "show_name_on_badge": member.show_name_on_badge,
            "forgotten_at": member.forgotten_at}


def plain(value: Any) -> Any:
    """`value` as JSON takes it: ISO 8601 times, decimals as strings (points keep their cents)."""
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    return value


def export_person(member: Member, *, now: datetime) -> dict[str, Any]:
    """Everything held about the person behind `member`, JSON-ready. The domains above add
    their parts through `person_export_requested`."""
    user = member.user
    invitations = db.session.scalars(
        sa.select(Invitation).where(Invitation.user_id == user.id).order_by(Invitation.id)).all()
    return {"exported_at": now, **plain({
        "user": _user_part(user),
        "member": _member_part(member),
        "social_accounts": [
            {"id": a.id, "platform": a.platform, "handle": a.handle, "url": a.url,
             "followers": a.followers, "confirmed_followers": a.confirmed_followers,
             "followers_source": a.followers_source,
             "followers_confirmed_at": a.followers_confirmed_at}
            for a in member.social_accounts],
        "invitations": [
            {"id": i.id, "created_at": i.created_at, "expires_at": i.expires_at,
             "accepted_at": i.accepted_at} for i in invitations],
        **replies(person_export_requested, member=member),
    })}
