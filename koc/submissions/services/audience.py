"""Audience numbers that are checked: a member's declared follower count counts only through a
floor until a reviewer (or a trusted import) confirms it.

Score normalisation and tier reach both divide by an audience; both read it from here, so one
floor (the `KOC_UNCONFIRMED_FOLLOWERS_FLOOR` setting) holds for both: a member who declares one
follower is treated as having at least the floor until someone checks.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import current_app

from koc.extensions import db
from koc.members.models import SocialAccount


def followers_floor() -> int:
    return int(current_app.config["KOC_SETTINGS"].unconfirmed_followers_floor)


def effective_followers(floor: int) -> sa.ColumnElement[int]:
    """SQL over SocialAccount: the confirmed count, else the declared one raised to the floor."""
    return sa.case(
        (SocialAccount.confirmed_followers.is_not(None), SocialAccount.confirmed_followers),
        (SocialAccount.followers > floor, SocialAccount.followers),
        else_=floor,
    )


def audience_of(member_id: int, platform: str) -> tuple[int | None, bool | None]:
    """(followers scoring may use, whether every account behind it is confirmed).

    (None, None) when the member has no account on the platform.
    """
    row = db.session.execute(
        sa.select(sa.func.max(effective_followers(followers_floor())),
                  sa.func.min(sa.case((SocialAccount.confirmed_followers.is_not(None), 1),
                                      else_=0)))
        .where(SocialAccount.member_id == member_id, SocialAccount.platform == platform)
    ).one()
    if row[0] is None:
        return None, None
    return int(row[0]), bool(row[1])
