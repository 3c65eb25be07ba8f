"""Invitations: a code for one user of the base, turned into a member when accepted."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.auth import issue_token
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import Invitation, InvitationCampaign, Member, MemberStatus, SocialAccount
from koc.members.services import codes
from koc.members.services.candidate_rules import EXCLUDED_SCORE
from koc.members.services.users import get_user


def create_invitation(external_id: str, *, expires_in_days: int, staff_id: int | None
                      ) -> tuple[Invitation, str]:
    """(the invitation, its code): the code is derived from the id, never stored."""
    user = get_user(external_id)
    if user.forgotten_at is not None:
        raise DomainError(410, f"User {external_id!r} was forgotten.",
                          errors={"json": {"external_id": ["was forgotten"]}})
    if user.member is not None:
        raise DomainError(409, f"User {external_id!r} is already a member.",
                          errors={"json": {"external_id": ["already a member"]}})
    invitation = Invitation(
        user=user,
        created_by_staff_id=staff_id,
        expires_at=utcnow() + timedelta(days=expires_in_days),
    )
    db.session.add(invitation)
    db.session.flush()
    return invitation, codes.code_for(invitation.id)


def find_invitation(code: str, *, lock: bool = False) -> Invitation | None:
    """The invitation a code names (a derived code, or an old one kept as its hash)."""
    invitation_id = codes.invitation_id_of(code)
    if invitation_id is not None:
        where = Invitation.id == invitation_id
    else:
        where = Invitation.code_hash == codes.legacy_hash(code)
    stmt = sa.select(Invitation).where(where)
    return db.session.scalar(stmt.with_for_update() if lock else stmt)


def check_open(invitation: Invitation | None, now: datetime) -> Invitation:
    """The invitation if it can still be accepted; else the error the caller answers with."""
    if invitation is None:
        raise DomainError(404, "No such invitation.")
    if invitation.accepted_at is not None:
        raise DomainError(409, "This invitation has already been used.")
    if invitation.revoked_at is not None:
        raise DomainError(410, "This invitation has been withdrawn.")
    if invitation.expires_at <= now:
        raise DomainError(410, "This invitation has expired.")
    return invitation


def open_invitation(code: str, *, now: datetime) -> tuple[Invitation,
                                                            InvitationCampaign | None]:
    """The join link was opened: the first time is recorded (the campaign funnel's "opened").

    Raises like accept_invitation for a code that cannot be used (nothing is recorded then)."""
    invitation = check_open(find_invitation(code), now)
    if invitation.opened_at is None:
        # One guarded UPDATE: two openings at once record the first.
        db.session.execute(sa.update(Invitation).where(
            Invitation.id == invitation.id, Invitation.opened_at.is_(None)
        ).values(opened_at=now).execution_options(synchronize_session=False))
        db.session.refresh(invitation, attribute_names=["opened_at"])
    campaign = (db.session.get(InvitationCampaign, invitation.campaign_id)
                if invitation.campaign_id else None)
    return invitation, campaign


def accept_invitation(code: str, *, display_name: str,
                      social_accounts: Iterable[dict[str, Any]]) -> tuple[Member, str]:
    """Turn an invitation into a member and a member token. Locks the invitation row."""
    now = utcnow()
    invitation = check_open(find_invitation(code, lock=True), now)
    if invitation.user.member is not None:
        raise DomainError(409, "This user is already a member.")
    if invitation.user.forgotten_at is not None:
        raise DomainError(410, "This invitation has expired.")

    member = Member(user_id=invitation.user_id, display_name=display_name,
                    status=MemberStatus.active.value)
    for account in social_accounts:
        member.social_accounts.append(SocialAccount(**account))
    db.session.add(member)
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        if "social_accounts" in str(exc.orig):
            raise DomainError(409, "A social account given is already registered to a member.",
                              errors={"json": {"social_accounts": ["already registered"]}}
                              ) from exc
        raise DomainError(409, "This invitation has already been used.") from exc
    invitation.accepted_at = now
    # Accepting without the landing page (a mini-program calling the API) still opened it.
    invitation.opened_at = invitation.opened_at or now
    invitation.member_id = member.id
    # A member is no candidate any more: out of the candidate index at once.
    invitation.user.candidate_score = EXCLUDED_SCORE
    token = issue_token(member_id=member.id)
    return member, token


def invitation_state(code: str, *, now: datetime | None = None) -> str:
    """What the landing page says about a code: 'open', 'used', 'expired' (withdrawn codes
    included) or 'unknown'."""
    invitation = find_invitation(code)
    if invitation is None:
        return "unknown"
    if invitation.accepted_at is not None or invitation.user.member is not None:
        return "used"
    if invitation.revoked_at is not None or invitation.expires_at <= (now or utcnow()):
        return "expired"
    return "open"


def revoke_invitation(code: str, *, now: datetime) -> Invitation:
    """Withdraw one code; an accepted invitation stays accepted (409)."""
    invitation = find_invitation(code, lock=True)
    if invitation is None:
        raise DomainError(404, "No such invitation.")
    if invitation.accepted_at is not None:
        raise DomainError(409, "This invitation has already been used.")
    if invitation.revoked_at is None:
        invitation.revoked_at = now
    db.session.flush()
    return invitation
