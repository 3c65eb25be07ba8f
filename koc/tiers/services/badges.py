"""The badge a tier gives: one live badge per active member with a tier, signed with Ed25519 so
anyone can verify it from its public fields, revoked when the tier is lost or the member
suspended.

One live badge per member is keyed in the database (a unique index), so a retried request or a
second run of a job finds the badge already there instead of issuing another.
"""

from __future__ import annotations

import base64
import json
import secrets
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
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
    scope = members_scope(member_ids, changed_in_run)
    lost = sa.select(Member.id).where(
        sa.or_(Member.tier_key.is_(None), Member.status != MemberStatus.active.value), *scope)
    revoked = cast(CursorResult[Any], db.session.execute(
        sa.update(Badge)
        .where(Badge.revoked_at.is_(None), Badge.member_id.in_(lost))
        .values(revoked_at=now, revoke_reason="tier lost or member suspended")
    )).rowcount
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
        # The query picked members with a tier only.
        db.session.execute(sa.insert(Badge), [_badge_row(member_id, cast(str, tier), issued_at, key)
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


@member_status_changed.connect
def _sync_badge_of(_sender: object, *, member_id: int, **_: object) -> None:
    """A suspension revokes the badge at once; re-activation restores the one the tier gives."""
    sync_badges(member_ids=[member_id])
