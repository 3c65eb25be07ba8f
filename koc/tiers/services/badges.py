"""Benefits that follow tiers, each granted and revoked exactly once: the verifiable badge,
early-access product drops, and the senior group.

Grants are keyed in the database (one live badge per member, one live group membership, drop
stock that a CHECK keeps within quantity), so a retried request or a second run of a job finds
the grant already there instead of making another.
"""

from __future__ import annotations

import base64
import json
import random
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from flask import current_app

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.events import emit_many
from koc.core.jobs import enqueue_after_commit
from koc.extensions import db
from koc.members.models import Member, MemberStatus
from koc.submissions.models import Submission
from koc.tiers.models import Badge, Drop, DropClaim, GroupMembership, TierChange

SENIOR_GROUP = "senior"


# --- badges ------------------------------------------------------------------------------------

def _signing_key() -> Ed25519PrivateKey:
    key = current_app.extensions.get("koc.badge_key")
    if key is None:
        settings = current_app.config["KOC_SETTINGS"]
        if settings.badge_signing_key:
            seed = base64.b64decode(settings.badge_signing_key)
        else:
            # Stable across processes and restarts without another secret to manage.
            seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None,
                        info=b"koc badge signing key").derive(settings.secret_key.encode())
        key = current_app.extensions.setdefault(
            "koc.badge_key", Ed25519PrivateKey.from_private_bytes(seed))
    return key


def public_key_b64() -> str:
    raw = _signing_key().public_key().public_bytes(serialization.Encoding.Raw,
                                                    serialization.PublicFormat.Raw)
    return base64.b64encode(raw).decode()


def badge_payload(badge: Badge) -> bytes:
    """The signed bytes: canonical JSON, so anyone can rebuild them from the public fields."""
    return _payload({"badge_id": badge.badge_id, "member_id": badge.member_id,
                     "tier_key": badge.tier_key, "issued_at": badge.issued_at})


def _payload(fields: dict[str, Any]) -> bytes:
    return json.dumps({"badge_id": fields["badge_id"], "member_id": fields["member_id"],
                       "tier": fields["tier_key"], "issued_at": fields["issued_at"].isoformat()},
                      sort_keys=True, separators=(",", ":")).encode()


def verify_badge(badge: Badge) -> bool:
    public: Ed25519PublicKey = _signing_key().public_key()
    try:
        public.verify(base64.b64decode(badge.signature), badge_payload(badge))
    except (InvalidSignature, ValueError):
        return False
    return True


def _badge_row(member_id: int, tier_key: str, issued_at: datetime, key: Ed25519PrivateKey
               ) -> dict[str, Any]:
    row = {"badge_id": secrets.token_urlsafe(18), "member_id": member_id, "tier_key": tier_key,
           "issued_at": issued_at}
    row["signature"] = base64.b64encode(key.sign(_payload(row))).decode()
    return row


def _scope(member_ids: list[int] | None, changed_in_run: int | None) -> list[Any]:
    """Which members a sync looks at: all, some ids, or those whose tier a run just changed."""
    if member_ids is not None:
        return [Member.id.in_(member_ids)]
    if changed_in_run is not None:
        return [Member.id.in_(sa.select(TierChange.member_id)
                              .where(TierChange.run_id == changed_in_run))]
    return []


def insert_in_chunks(model: type, rows: list[dict[str, Any]], chunk: int = 2000) -> None:
    """Multi-row INSERTs: one statement per `chunk` rows, not one per row."""
    for start in range(0, len(rows), chunk):
        db.session.execute(sa.insert(model).values(rows[start:start + chunk]))


# Signing costs about 100 µs a badge: a run that promotes tens of thousands at once (the first
# run, a rule change) issues the first ones itself and leaves the rest to a task after commit.
BADGES_INLINE = 1000


def sync_badges(*, now: datetime | None = None, member_ids: list[int] | None = None,
                changed_in_run: int | None = None, inline_limit: int | None = None,
                defer_rest: bool = True) -> tuple[int, int]:
    """Issue a badge to every active member with a tier who has none; revoke the badges of
    members who lost their tier or were suspended. Returns (issued, revoked).

    Revocation is always immediate. At most `inline_limit` badges are issued here; with
    `defer_rest`, `koc.tiers.tasks.issue_badges` issues the others once the caller commits."""
    now = now or utcnow()
    scope = _scope(member_ids, changed_in_run)
    lost = sa.select(Member.id).where(
        sa.or_(Member.tier_key.is_(None), Member.status != MemberStatus.active.value), *scope)
    revoked = db.session.execute(
        sa.update(Badge)
        .where(Badge.revoked_at.is_(None), Badge.member_id.in_(lost))
        .values(revoked_at=now, revoke_reason="tier lost or member suspended")
    ).rowcount
    stmt = sa.select(Member.id, Member.tier_key).where(
        Member.tier_key.is_not(None), Member.status == MemberStatus.active.value, *scope,
        ~sa.exists().where(Badge.member_id == Member.id, Badge.revoked_at.is_(None))
    ).order_by(Member.id)
    inline_limit = BADGES_INLINE if inline_limit is None else inline_limit
    missing = db.session.execute(stmt.limit(inline_limit + 1)).all()
    if len(missing) > inline_limit:
        missing = missing[:inline_limit]
        if defer_rest:
            enqueue_after_commit("koc.tiers.tasks.issue_badges")
    key, issued_at = _signing_key(), now.replace(microsecond=0)
    # A first run can issue tens of thousands: plain rows (no ORM objects), one executemany.
    if missing:
        db.session.execute(sa.insert(Badge), [_badge_row(member_id, tier, issued_at, key)
                                              for member_id, tier in missing])
    return len(missing), revoked


def get_badge(badge_id: str) -> Badge:
    badge = db.session.scalar(sa.select(Badge).where(Badge.badge_id == badge_id))
    if badge is None:
        raise DomainError(404, "No such badge.")
    return badge


def live_badges(member_id: int) -> list[Badge]:
    return list(db.session.scalars(
        sa.select(Badge).where(Badge.member_id == member_id, Badge.revoked_at.is_(None))))


# --- early-access drops ------------------------------------------------------------------------

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
    return tier_ranks.get(member.tier_key, 0) >= tier_ranks.get(drop.min_tier, 10**6)


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
        if db.session.execute(taken).rowcount == 0:
            raise DomainError(409, "The lottery has been drawn.")
        status = "entered"
        limit = 1
    else:
        taken = (sa.update(Drop).where(Drop.id == drop.id, Drop.allocated < Drop.quantity)
                 .values(allocated=Drop.allocated + 1))
        if db.session.execute(taken).rowcount == 0:
            raise DomainError(409, "Sold out.")
        status = "claimed"
        limit = drop.per_member_limit
    already = db.session.scalar(
        sa.select(sa.func.count()).select_from(DropClaim)
        .where(DropClaim.drop_id == drop.id, DropClaim.member_id == member.id))
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


def draw_lottery(drop: Drop, *, now: datetime | None = None) -> list[int]:
    """Draw a closed lottery once; drawing again returns the recorded result."""
    now = now or utcnow()
    if drop.allocation != "lottery":
        raise DomainError(409, "This drop is first come, first served.")
    if drop.closes_at > now:
        raise DomainError(409, "The lottery is drawn when the drop closes.")
    locked = db.session.execute(
        sa.update(Drop).where(Drop.id == drop.id, Drop.drawn_at.is_(None))
        .values(drawn_at=now, lottery_seed=secrets.token_hex(16))
    ).rowcount
    db.session.refresh(drop)
    entries = db.session.execute(
        sa.select(DropClaim.id, DropClaim.status).where(DropClaim.drop_id == drop.id)).all()
    if not locked:
        return sorted(entry_id for entry_id, status in entries if status == "won")
    winners = lottery_winners(drop.lottery_seed, [e for e, _ in entries], drop.quantity)
    db.session.execute(sa.update(DropClaim).where(DropClaim.drop_id == drop.id)
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


# --- the senior group --------------------------------------------------------------------------

def group_tier_key(tier_ranks: dict[str, int]) -> str | None:
    """The senior group follows the highest tier."""
    return max(tier_ranks, key=tier_ranks.get) if tier_ranks else None


def sync_group(tier_ranks: dict[str, int], *, now: datetime | None = None,
               member_ids: list[int] | None = None,
               changed_in_run: int | None = None) -> tuple[int, int]:
    """Invite members who reached the top tier; mark for removal those who left it.
    Returns (invited, due for removal)."""
    now = now or utcnow()
    top = group_tier_key(tier_ranks)
    scope = _scope(member_ids, changed_in_run)
    qualifies = sa.and_(Member.tier_key == top, Member.status == MemberStatus.active.value)
    live = sa.and_(GroupMembership.group_key == SENIOR_GROUP, GroupMembership.removed_at.is_(None))
    # Back before anyone removed them: the removal is called off.
    db.session.execute(
        sa.update(GroupMembership).where(
            live, GroupMembership.removal_due_at.is_not(None),
            GroupMembership.member_id.in_(sa.select(Member.id).where(qualifies, *scope)))
        .values(removal_due_at=None))
    leaving = db.session.scalars(
        sa.update(GroupMembership).where(
            live, GroupMembership.removal_due_at.is_(None),
            GroupMembership.member_id.in_(sa.select(Member.id).where(~qualifies, *scope)))
        .values(removal_due_at=now).returning(GroupMembership.member_id)).all()
    newcomers = db.session.scalars(
        sa.select(Member.id).where(qualifies, *scope, ~sa.exists().where(
            live, GroupMembership.member_id == Member.id))).all()
    insert_in_chunks(GroupMembership, [
        {"group_key": SENIOR_GROUP, "member_id": member_id, "code": secrets.token_urlsafe(12),
         "invited_at": now} for member_id in newcomers])
    # The group lives in WeCom: whoever runs it is told whom to add and whom to take out.
    emit_many("group.invite", [{"group": SENIOR_GROUP, "member_id": m} for m in newcomers])
    emit_many("group.remove", [{"group": SENIOR_GROUP, "member_id": m} for m in leaving])
    return len(newcomers), len(leaving)


def roster() -> dict[str, list[GroupMembership]]:
    rows = db.session.scalars(
        sa.select(GroupMembership).where(GroupMembership.group_key == SENIOR_GROUP,
                                         GroupMembership.removed_at.is_(None))
        .order_by(GroupMembership.invited_at)).all()
    return {"members": [r for r in rows if r.removal_due_at is None],
            "to_remove": [r for r in rows if r.removal_due_at is not None]}


def confirm_removed(member_id: int, *, staff_id: int) -> GroupMembership:
    row = db.session.scalar(sa.select(GroupMembership).where(
        GroupMembership.group_key == SENIOR_GROUP, GroupMembership.member_id == member_id,
        GroupMembership.removed_at.is_(None), GroupMembership.removal_due_at.is_not(None)))
    if row is None:
        raise DomainError(404, "This member is not on the removal list.")
    row.removed_at = utcnow()
    row.removed_by_staff_id = staff_id
    db.session.flush()
    return row


def my_group(member_id: int) -> GroupMembership | None:
    return db.session.scalar(sa.select(GroupMembership).where(
        GroupMembership.group_key == SENIOR_GROUP, GroupMembership.member_id == member_id,
        GroupMembership.removed_at.is_(None), GroupMembership.removal_due_at.is_(None)))
