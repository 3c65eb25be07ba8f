"""Early-access product drops: who may claim, one claim at a time within stock, lotteries anyone
can re-draw, and who posted after receiving the product.

Drop stock is kept within quantity by a CHECK in the database, so a retried claim cannot take
more than there is.
"""

from __future__ import annotations

import random
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.signals import member_status_changed
from koc.extensions import db
from koc.members.models import Member, MemberStatus
from koc.submissions.models import Submission
from koc.tiers.models import Drop, DropClaim


def _rows_changed(statement: sa.Update) -> int:
    # SQLAlchemy types execute() as returning a Result; an UPDATE's is a CursorResult.
    return cast(CursorResult[Any], db.session.execute(statement)).rowcount


def create_drop(values: dict[str, Any], *, tier_ranks: dict[str, int]) -> Drop:
    if values.get("min_tier") is not None and values["min_tier"] not in tier_ranks:
        raise DomainError(422, "Unknown tier.", errors={"json": {
            "min_tier": [f"must be one of {sorted(tier_ranks)}"]}})
    drop = Drop(**values)
    db.session.add(drop)
    db.session.flush()
    return drop


def get_drop(drop_id: int) -> Drop:
    drop = db.session.get(Drop, drop_id)
    if drop is None:
        raise DomainError(404, "No such drop.")
    return drop


def _eligible(drop: Drop, member: Member, tier_ranks: dict[str, int], now: datetime) -> bool:
    if member.status != MemberStatus.active.value or not drop.opens_at <= now < drop.closes_at:
        return False
    if drop.min_tier is None:
        return True
    held = tier_ranks.get(member.tier_key, 0) if member.tier_key is not None else 0
    return held >= tier_ranks.get(drop.min_tier, 10**6)


def open_drops_for(member: Member, tier_ranks: dict[str, int]) -> list[Drop]:
    now = utcnow()
    drops = db.session.scalars(
        sa.select(Drop).where(Drop.opens_at <= now, Drop.closes_at > now).order_by(Drop.closes_at)
    ).all()
    return [d for d in drops if _eligible(d, member, tier_ranks, now)]


def claim(drop_id: int, member: Member, tier_ranks: dict[str, int]) -> DropClaim:
    """One claim (first come) or one lottery entry; never more claims than quantity.

    The stock counter is taken with a conditional UPDATE, which also locks the drop row until
    commit (the whole database on SQLite): concurrent claims queue there, and the per-member
    count read after it is current.
    """
    drop = get_drop(drop_id)
    now = utcnow()
    if not _eligible(drop, member, tier_ranks, now):
        raise DomainError(403, "This drop is not open to you.")
    if drop.allocation == "lottery":
        taken = sa.update(Drop).where(Drop.id == drop.id, Drop.drawn_at.is_(None)).values(
            allocated=Drop.allocated)
        if _rows_changed(taken) == 0:
            raise DomainError(409, "The lottery has been drawn.")
        status = "entered"
        limit = 1
    else:
        taken = (sa.update(Drop).where(Drop.id == drop.id, Drop.allocated < Drop.quantity)
                 .values(allocated=Drop.allocated + 1))
        if _rows_changed(taken) == 0:
            raise DomainError(409, "Sold out.")
        status = "claimed"
        limit = drop.per_member_limit
    already = db.session.execute(
        sa.select(sa.func.count()).select_from(DropClaim)
        .where(DropClaim.drop_id == drop.id, DropClaim.member_id == member.id,
               DropClaim.status != "voided")).scalar_one()
    if already >= limit:
        # Raising rolls the request back, the stock taken above included.
        raise DomainError(409, "You have reached this drop's limit per member.")
    entry = DropClaim(drop_id=drop.id, member_id=member.id, status=status, created_at=now)
    db.session.add(entry)
    db.session.flush()
    return entry


def lottery_winners(seed: str, entry_ids: list[int], quantity: int) -> list[int]:
    """Anyone can re-run a draw: the same seed and entries give the same winners."""
    ordered = sorted(entry_ids)
    return sorted(random.Random(seed).sample(ordered, min(quantity, len(ordered))))  # noqa: S311 - reproducibility is the point; the seed is secret until drawn


def lottery_entries(drop_id: int) -> list[tuple[int, str]]:
    """The entries a draw is made from, and its proof re-run over: voided ones take no part."""
    return [(entry_id, status) for entry_id, status in db.session.execute(
        sa.select(DropClaim.id, DropClaim.status)
        .where(DropClaim.drop_id == drop_id, DropClaim.status != "voided")).all()]


def void_pending_claims(member_id: int, *, now: datetime | None = None) -> int:
    """A member suspended for fraud loses what they have not received yet: entries in lotteries
    not drawn, and first-come claims on drops still open (their units go back into stock).
    Claims on closed drops and lottery wins are left: the goods may already be on their way, and
    staff decide about those. Returns the number of claims voided; a second call voids none."""
    now = now or utcnow()
    pending = sa.or_(
        sa.and_(DropClaim.status == "entered",
                DropClaim.drop_id.in_(sa.select(Drop.id).where(Drop.drawn_at.is_(None)))),
        sa.and_(DropClaim.status == "claimed",
                DropClaim.drop_id.in_(sa.select(Drop.id).where(Drop.closes_at > now))))
    voided = db.session.scalars(
        sa.update(DropClaim).where(DropClaim.member_id == member_id, pending)
        .values(status="voided", voided_at=now).returning(DropClaim.drop_id)).all()
    for drop_id, units in Counter(voided).items():
        # Entries never took stock; first-come claims did, one unit each.
        db.session.execute(
            sa.update(Drop).where(Drop.id == drop_id, Drop.allocation == "first_come")
            .values(allocated=Drop.allocated - units))
    return len(voided)


def draw_lottery(drop: Drop, *, now: datetime | None = None) -> list[int]:
    """Draw a closed lottery once; drawing again returns the recorded result."""
    now = now or utcnow()
    if drop.allocation != "lottery":
        raise DomainError(409, "This drop is first come, first served.")
    if drop.closes_at > now:
        raise DomainError(409, "The lottery is drawn when the drop closes.")
    locked = _rows_changed(
        sa.update(Drop).where(Drop.id == drop.id, Drop.drawn_at.is_(None))
        .values(drawn_at=now, lottery_seed=secrets.token_hex(16)))
    db.session.refresh(drop)
    entries = lottery_entries(drop.id)
    if not locked:
        return sorted(entry_id for entry_id, status in entries if status == "won")
    assert drop.lottery_seed is not None  # set by the update that took the draw
    winners = lottery_winners(drop.lottery_seed, [e for e, _ in entries], drop.quantity)
    db.session.execute(sa.update(DropClaim).where(DropClaim.drop_id == drop.id,
                                                  DropClaim.status == "entered")
                       .values(status=sa.case((DropClaim.id.in_(winners), "won"), else_="lost")))
    drop.allocated = len(winners)
    db.session.flush()
    return winners


def draw_closed_lotteries() -> int:
    due = db.session.scalars(sa.select(Drop).where(
        Drop.allocation == "lottery", Drop.drawn_at.is_(None), Drop.closes_at <= utcnow())).all()
    for drop in due:
        draw_lottery(drop)
    return len(due)


@dataclass(frozen=True)
class SeedingRow:
    member_id: int
    display_name: str
    status: str
    claimed_at: datetime
    posted: bool
    overdue: bool


def seeding_report(drop: Drop) -> list[SeedingRow]:
    """Who got the product, and whether they posted within the drop's days (one query)."""
    posted = sa.exists().where(Submission.member_id == DropClaim.member_id,
                               Submission.created_at >= DropClaim.created_at)
    rows = db.session.execute(
        sa.select(DropClaim.member_id, Member.display_name, DropClaim.status,
                  DropClaim.created_at, posted.label("posted"))
        .join(Member, Member.id == DropClaim.member_id)
        .where(DropClaim.drop_id == drop.id, DropClaim.status.in_(("claimed", "won")))
        .order_by(DropClaim.created_at)
    ).all()
    deadline = timedelta(days=drop.post_within_days)
    now = utcnow()
    return [SeedingRow(member_id=m, display_name=name, status=status, claimed_at=at,
                       posted=bool(did_post), overdue=not did_post and now - at > deadline)
            for m, name, status, at, did_post in rows]



@member_status_changed.connect
def _void_claims_of(_sender: object, *, member_id: int, **_: object) -> dict[str, int]:
    """A suspension voids the member's pending claims at once, not at the next run."""
    member = db.session.get(Member, member_id)
    if member is None or member.status != MemberStatus.suspended.value:
        return {}
    return {"claims_voided": void_pending_claims(member_id)}
