"""The badge a tier gives: one live badge per active member with a tier, signed with Ed25519 so
anyone can verify it from its public fields, revoked when the tier is lost or the member
suspended.

One live badge per member is keyed in the database (a unique index), so a retried request or a
second run of a job finds the badge already there instead of issuing another.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from flask import current_app
from sqlalchemy.engine import CursorResult

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.jobs import enqueue_after_commit
from koc.core.signals import member_status_changed
from koc.extensions import db
from koc.members.models import Member, MemberStatus
from koc.tiers.models import Badge
from koc.tiers.services.history import members_scope
from koc.tiers.services.metrics import in_scope


def key_id(public: Ed25519PublicKey) -> str:
    """A short name for a public key: the start of its SHA-256, the same wherever computed."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def _signing_key() -> Ed25519PrivateKey:
    key = current_app.extensions.get("koc.badge_key")
    if key is None:
        seed = base64.b64decode(current_app.config["KOC_SETTINGS"].badge_signing_key)
        key = current_app.extensions.setdefault(
            "koc.badge_key", Ed25519PrivateKey.from_private_bytes(seed))
    return key


def _b64(public: Ed25519PublicKey) -> str:
    return base64.b64encode(public.public_bytes(serialization.Encoding.Raw,
                                                serialization.PublicFormat.Raw)).decode()


def public_keys() -> list[dict[str, str]]:
    """The signing key in use, then the retired ones (KOC_BADGE_RETIRED_KEYS), still honoured."""
    active = _signing_key().public_key()
    keys = [{"key_id": key_id(active), "algorithm": "Ed25519", "public_key": _b64(active),
             "status": "active"}]
    for b64 in current_app.config["KOC_SETTINGS"].badge_retired_keys:
        retired = Ed25519PublicKey.from_public_bytes(base64.b64decode(b64))
        if key_id(retired) != keys[0]["key_id"]:
            keys.append({"key_id": key_id(retired), "algorithm": "Ed25519", "public_key": b64,
                         "status": "retired"})
    return keys


def public_key_b64() -> str:
    return _b64(_signing_key().public_key())


def public_key_of(badge: Badge) -> str | None:
    """The public key that verifies `badge`, or None when no key known has its key id."""
    for key in public_keys():
        if (badge.key_id is None and key["status"] == "active") or key["key_id"] == badge.key_id:
            return key["public_key"]
    return None


def badge_payload(badge: Badge) -> bytes:
    """The signed bytes: canonical JSON, so anyone can rebuild them from the public fields."""
    return _payload({"badge_id": badge.badge_id, "member_id": badge.member_id,
                     "tier_key": badge.tier_key, "issued_at": badge.issued_at,
                     "key_id": badge.key_id})


def _payload(fields: dict[str, Any]) -> bytes:
    signed = {"badge_id": fields["badge_id"], "member_id": fields["member_id"],
              "tier": fields["tier_key"], "issued_at": fields["issued_at"].isoformat()}
    if fields.get("key_id") is not None:
        signed["kid"] = fields["key_id"]
    return json.dumps(signed, sort_keys=True, separators=(",", ":")).encode()


def verify_badge(badge: Badge) -> bool:
    public_b64 = public_key_of(badge)
    if public_b64 is None:
        return False
    public = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_b64))
    try:
        public.verify(base64.b64decode(badge.signature), badge_payload(badge))
    except (InvalidSignature, ValueError):
        return False
    return True


def _badge_row(member_id: int, tier_key: str, issued_at: datetime, key: Ed25519PrivateKey
               ) -> dict[str, Any]:
    row = {"badge_id": secrets.token_urlsafe(18), "member_id": member_id, "tier_key": tier_key,
           "issued_at": issued_at, "key_id": key_id(key.public_key())}
    row["signature"] = base64.b64encode(key.sign(_payload(row))).decode()
    return row


# Signing costs about 100 µs a badge: a run that promotes tens of thousands at once (the first
# run, a rule change) issues the first ones itself and leaves the rest to a task after commit.
BADGES_INLINE = 1000


def sync_badges(*, now: datetime | None = None, member_ids: list[int] | None = None,
                inline_limit: int | None = None,
                defer_rest: bool = True,
                member_range: tuple[int, int] | None = None) -> tuple[int, int]:
    """Issue a badge to every active member with a tier who has none; revoke the badges of
    members who lost their tier or were suspended. Returns (issued, revoked).

    Revocation is always immediate. At most `inline_limit` badges are issued here; with
    `defer_rest`, `koc.tiers.tasks.issue_badges` issues the others once the caller commits."""
    now = now or utcnow()
    inline_limit = BADGES_INLINE if inline_limit is None else inline_limit
    if member_ids is not None:
        revoked, missing = _lost_and_missing_of(member_ids, member_range, now, inline_limit + 1)
    else:
        revoked, missing = _lost_and_missing(members_scope(None, member_range), now,
                                             inline_limit + 1)
    if len(missing) > inline_limit:
        missing = missing[:inline_limit]
        if defer_rest:
            enqueue_after_commit("koc.tiers.tasks.issue_badges")
    key, issued_at = _signing_key(), now.replace(microsecond=0)
    # A first run can issue tens of thousands: plain rows (no ORM objects), one executemany.
    if missing:
        # The query picked members with a tier only.
        db.session.execute(sa.insert(Badge), [_badge_row(member_id, tier, issued_at, key)
                                              for member_id, tier in missing])
    return len(missing), revoked


REVOKE_REASON = "tier lost or member suspended"


def _lost_and_missing_of(member_ids: list[int], member_range: tuple[int, int] | None,
                         now: datetime, limit: int) -> tuple[int, list[tuple[int, str]]]:
    """Some members (a run's changes, one member): their live badges by member id, each
    checked against its own member row; then the holders among them, a slice of the ids at a
    time, with their live badges. With the members as a subquery of `id = ANY(ids)`,
    PostgreSQL walked every live badge (or every member with a tier) and probed the id array
    for each: the live badges x the ids, growing with the whole programme, not the run."""
    gone = sa.exists().where(
        Member.id == Badge.member_id,
        sa.or_(Member.tier_key.is_(None), Member.status != MemberStatus.active.value))
    revoked = cast(CursorResult[Any], db.session.execute(
        sa.update(Badge)
        .where(Badge.revoked_at.is_(None), *in_scope(Badge.member_id, member_ids, member_range),
               gone)
        .values(revoked_at=now, revoke_reason=REVOKE_REASON))).rowcount
    # Through coalesce, the tier cannot lead the plan to the tier_key index (every member with
    # a tier, filtered by the ids), which statistics taken before a run promoted anyone favour.
    holds = [sa.func.coalesce(Member.tier_key, "") != "",
             Member.status == MemberStatus.active.value]
    # A slice of the ids, then the live badges of its holders, until `limit` are found without
    # one: a first run promoting 300,000 stops after the first slice.
    missing: list[tuple[int, str]] = []
    ordered = sorted(set(member_ids))
    step = max(limit, 10_000)
    for start in range(0, len(ordered), step):
        page = db.session.execute(
            sa.select(Member.id, Member.tier_key)
            .where(*holds, *in_scope(Member.id, ordered[start:start + step], member_range))
            .order_by(Member.id)).all()
        if not page:
            continue
        badged = set(db.session.scalars(sa.select(Badge.member_id).where(
            Badge.revoked_at.is_(None), *in_scope(Badge.member_id, [m for m, _ in page], None))))
        missing += [(m, cast(str, tier)) for m, tier in page if m not in badged]
        if len(missing) >= limit:
            break
    return revoked, missing[:limit]


def _lost_and_missing(scope: list[Any], now: datetime, limit: int
                      ) -> tuple[int, list[tuple[int, str]]]:
    """Every member (or an id range): set-based statements over the members."""
    lost = sa.select(Member.id).where(
        sa.or_(Member.tier_key.is_(None), Member.status != MemberStatus.active.value), *scope)
    revoked = cast(CursorResult[Any], db.session.execute(
        sa.update(Badge)
        .where(Badge.revoked_at.is_(None), Badge.member_id.in_(lost))
        .values(revoked_at=now, revoke_reason=REVOKE_REASON)
    )).rowcount
    stmt = sa.select(Member.id, Member.tier_key).where(
        Member.tier_key.is_not(None), Member.status == MemberStatus.active.value, *scope,
        ~sa.exists().where(Badge.member_id == Member.id, Badge.revoked_at.is_(None))
    ).order_by(Member.id)
    # The query picked members with a tier only.
    return revoked, [(m, cast(str, tier)) for m, tier in db.session.execute(stmt.limit(limit))]


def get_badge(badge_id: str) -> Badge:
    badge = db.session.scalar(sa.select(Badge).where(Badge.badge_id == badge_id))
    if badge is None:
        raise DomainError(404, "No such badge.")
    return badge


def live_badges(member_id: int) -> list[Badge]:
    return list(db.session.scalars(
        sa.select(Badge).where(Badge.member_id == member_id, Badge.revoked_at.is_(None))))


@member_status_changed.connect
def _sync_badge_of(_sender: object, *, member_id: int, **_: object) -> dict[str, int]:
    """A suspension revokes the badge at once; re-activation restores the one the tier gives."""
    issued, revoked = sync_badges(member_ids=[member_id])
    return {"badges_issued": issued, "badges_revoked": revoked}
