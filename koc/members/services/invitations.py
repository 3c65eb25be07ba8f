"""Invitations: a code for one user of the base, turned into a member when accepted."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.auth import issue_token
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import Invitation, Member, MemberStatus, SocialAccount
from koc.members.services.users import get_user


def create_invitation(external_id: str, *, expires_in_days: int, staff_id: int | None
                      ) -> Invitation:
    user = get_user(external_id)
    if user.forgotten_at is not None:
        raise DomainError(410, f"User {external_id!r} was forgotten.",
                          errors={"json": {"external_id": ["was forgotten"]}})
    if user.member is not None:
        raise DomainError(409, f"User {external_id!r} is already a member.",
                          errors={"json": {"external_id": ["already a member"]}})
    invitation = Invitation(
        code=secrets.token_urlsafe(18),
        user=user,
        created_by_staff_id=staff_id,
        expires_at=utcnow() + timedelta(days=expires_in_days),
    )
    db.session.add(invitation)
    db.session.flush()
    return invitation


def accept_invitation(code: str, *, display_name: str,
                      social_accounts: Iterable[dict[str, Any]]) -> tuple[Member, str]:
    """Turn an invitation into a member and a member token. Locks the invitation row."""
    invitation = db.session.scalar(
        sa.select(Invitation).where(Invitation.code == code).with_for_update()
    )
    if invitation is None:
        raise DomainError(404, "No such invitation.")
    if invitation.accepted_at is not None:
        raise DomainError(409, "This invitation has already been used.")
    if invitation.expires_at <= utcnow():
        raise DomainError(410, "This invitation has expired.")
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
    invitation.accepted_at = utcnow()
    invitation.member_id = member.id
    token = issue_token(member_id=member.id)
    return member, token



def invitation_state(code: str, *, now: datetime | None = None) -> str:
    """What the landing page says about a code: 'open', 'used', 'expired' or 'unknown'."""
    invitation = db.session.scalar(sa.select(Invitation).where(Invitation.code == code))
    if invitation is None:
        return "unknown"
    if invitation.accepted_at is not None or invitation.user.member is not None:
        return "used"
    if invitation.expires_at <= (now or utcnow()):
        return "expired"
    return "open"
