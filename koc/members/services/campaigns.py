"""Invitation campaigns: the top N of a candidate filter invited in one INSERT ... SELECT, each
batch announced by one event, reminded before it expires, revocable, and followed from invited
to opened and accepted (the posts that follow are counted by the submissions domain)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa

from koc.core.db import UTCDateTime
from koc.core.errors import DomainError
from koc.core.events import emit
from koc.extensions import db
from koc.members.models import Invitation, InvitationCampaign, User
from koc.members.services import codes
from koc.members.services.candidate_rules import current_rules
from koc.members.services.candidates import candidates_query

# Reminders go out this long before a campaign's invitations expire.
REMIND_BEFORE = timedelta(days=2)
LINKS_BATCH = 5000


def _live_invitation(now: datetime) -> sa.ColumnElement[bool]:
    """The user already holds an invitation that can still be accepted."""
    return sa.exists().where(Invitation.user_id == User.id, Invitation.accepted_at.is_(None),
                             Invitation.revoked_at.is_(None), Invitation.expires_at > now)


def create_campaign(*, name: str, filter: dict[str, Any], limit: int, expires_in_days: int,
                    message: str, staff_id: int | None, now: datetime) -> InvitationCampaign:
    """Invite the best `limit` candidates of `filter` who hold no open invitation: one
    INSERT ... SELECT over the candidate index, whatever the size; one `invitation.created`
    event for the batch.

    The invitations name their campaign, not the staff member (the campaign does): on
    PostgreSQL the foreign-key checks are most of the statement's time, one fewer per row."""
    expires_at = now + timedelta(days=expires_in_days)
    campaign = InvitationCampaign(name=name, filter=filter, limit=limit, message=message,
                                  expires_at=expires_at, rules_version=current_rules().version,
                                  created_by_staff_id=staff_id, created_at=now)
    db.session.add(campaign)
    db.session.flush()
    ranked = (candidates_query(**filter, now=now).where(~_live_invitation(now))
              .with_only_columns(
                  sa.literal(campaign.id).label("campaign_id"), User.id.label("user_id"),
                  sa.literal(now, type_=UTCDateTime).label("created_at"),
                  sa.literal(expires_at, type_=UTCDateTime).label("expires_at"),
                  maintain_column_froms=True)
              .limit(limit))
    insert = sa.insert(Invitation).from_select(
        ["campaign_id", "user_id", "created_at", "expires_at"], ranked)
    db.session.execute(insert)
    # Counted on the campaign's index (the driver's rowcount of an INSERT ... SELECT through
    # the ORM session is not always known).
    campaign.invited = int(db.session.scalar(
        sa.select(sa.func.count()).where(Invitation.campaign_id == campaign.id)) or 0)
    db.session.flush()
    emit("invitation.created", {"campaign_id": campaign.id, "name": name,
                                "invited": campaign.invited,
                                "expires_at": expires_at.isoformat()})
    return campaign


def get_campaign(campaign_id: int) -> InvitationCampaign:
    campaign = db.session.get(InvitationCampaign, campaign_id)
    if campaign is None:
        raise DomainError(404, "No such invitation campaign.")
    return campaign


def campaigns_query() -> sa.Select:
    return sa.select(InvitationCampaign).order_by(InvitationCampaign.id.desc())


def funnels(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """invited, opened and accepted of each campaign: one grouped query."""
    rows = db.session.execute(
        sa.select(Invitation.campaign_id, sa.func.count(),
                  sa.func.count(Invitation.opened_at), sa.func.count(Invitation.accepted_at),
                  sa.func.count(Invitation.revoked_at))
        .where(Invitation.campaign_id.in_(campaign_ids))
        .group_by(Invitation.campaign_id)).all()
    found = {row[0]: {"invited": row[1], "opened": row[2], "accepted": row[3],
                      "revoked": row[4]} for row in rows}
    empty = {"invited": 0, "opened": 0, "accepted": 0, "revoked": 0}
    return {cid: found.get(cid, dict(empty)) for cid in campaign_ids}


def accepted_members(campaign_id: int) -> sa.Select:
    """The members a campaign brought in (for the funnel's later steps)."""
    return sa.select(Invitation.member_id).where(Invitation.campaign_id == campaign_id,
                                                 Invitation.member_id.is_not(None))


def revoke_campaign(campaign: InvitationCampaign, *, now: datetime) -> int:
    """Withdraw every invitation of the campaign not yet accepted: one UPDATE. Returns how
    many were withdrawn now."""
    if campaign.revoked_at is None:
        campaign.revoked_at = now
    result = cast(sa.CursorResult, db.session.execute(
        sa.update(Invitation).where(Invitation.campaign_id == campaign.id,
                                    Invitation.accepted_at.is_(None),
                                    Invitation.revoked_at.is_(None))
        .values(revoked_at=now).execution_options(synchronize_session=False)))
    db.session.flush()
    return int(result.rowcount or 0)


def send_reminders(now: datetime) -> int:
    """One `invitation.expiring` event per campaign whose invitations expire within
    REMIND_BEFORE, with how many are still open; each campaign is reminded once. Returns the
    campaigns reminded."""
    due = db.session.scalars(
        sa.select(InvitationCampaign).where(
            InvitationCampaign.reminded_at.is_(None), InvitationCampaign.revoked_at.is_(None),
            InvitationCampaign.expires_at > now,
            InvitationCampaign.expires_at <= now + REMIND_BEFORE)
        .with_for_update(skip_locked=True)).all()
    if not due:
        return 0
    open_counts: dict[int, int] = dict(db.session.execute(  # type: ignore[arg-type]
        sa.select(Invitation.campaign_id, sa.func.count())
        .where(Invitation.campaign_id.in_([c.id for c in due]),
               Invitation.accepted_at.is_(None), Invitation.revoked_at.is_(None))
        .group_by(Invitation.campaign_id)).all())
    for campaign in due:
        campaign.reminded_at = now
        pending = int(open_counts.get(campaign.id, 0))
        if pending:
            emit("invitation.expiring", {"campaign_id": campaign.id, "name": campaign.name,
                                         "pending": pending,
                                         "expires_at": campaign.expires_at.isoformat()})
    db.session.flush()
    return len(due)


def campaign_links(campaign_id: int) -> Iterator[tuple[str, str | None, str, str, str]]:
    """(external_id, display_name, code, join link, status) of each invitation, in batches
    (100,000 links never sit in memory); codes are derived again, never read from storage."""
    stmt = (sa.select(Invitation.id, User.external_id, User.display_name, Invitation.accepted_at,
                      Invitation.revoked_at)
            .join(User, User.id == Invitation.user_id)
            .where(Invitation.campaign_id == campaign_id).order_by(Invitation.id)
            .execution_options(yield_per=LINKS_BATCH))
    for row in db.session.execute(stmt):
        code = codes.code_for(row.id)
        status = ("accepted" if row.accepted_at else "revoked" if row.revoked_at else "open")
        yield row.external_id, row.display_name, code, codes.join_url(code), status
