"""Members domain logic: plain functions over the session; they flush, the caller commits."""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, TextIO

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from koc.core.auth import issue_token
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.signals import member_status_changed
from koc.extensions import db
from koc.members.models import Invitation, Member, MemberStatus, SocialAccount, User
from koc.members.schemas import UserImportRowSchema

IMPORT_BATCH_SIZE = 1000
USER_FIELDS = (
    "display_name", "city", "store_code", "tags", "orders_count", "spend_cents",
    "last_order_at", "shares_count", "community_posts_count",
)


# --- candidate ranking -------------------------------------------------------------------------

# Weights of first-party behaviour; each part is on a log scale so one huge spender does not
# drown out a customer who orders, shares and posts steadily.
CANDIDATE_WEIGHTS = {
    "orders_count": 3.0,
    "spend_yuan": 2.0,
    "shares_count": 2.5,
    "community_posts_count": 2.5,
}


def candidate_score(values: dict[str, Any]) -> float:
    parts = {
        "orders_count": values.get("orders_count") or 0,
        "spend_yuan": (values.get("spend_cents") or 0) / 100,
        "shares_count": values.get("shares_count") or 0,
        "community_posts_count": values.get("community_posts_count") or 0,
    }
    score = sum(CANDIDATE_WEIGHTS[name] * math.log1p(v) for name, v in parts.items())
    return round(score, 4)


def candidate_reasons(user: User, *, now: datetime | None = None) -> list[str]:
    now = now or utcnow()
    reasons = []
    if user.orders_count:
        reasons.append(f"{user.orders_count} orders")
    if user.spend_cents:
        reasons.append(f"spent {user.spend_cents / 100:,.2f} yuan")
    if user.shares_count:
        reasons.append(f"shared {user.shares_count} times")
    if user.community_posts_count:
        reasons.append(f"{user.community_posts_count} community posts")
    if user.last_order_at and now - user.last_order_at <= timedelta(days=30):
        reasons.append("ordered in the last 30 days")
    return reasons


def list_candidates(limit: int) -> list[tuple[User, list[str]]]:
    """Users who are not members yet, best first (an index scan on candidate_score)."""
    users = db.session.scalars(
        sa.select(User)
        .where(~sa.exists().where(Member.user_id == User.id))
        .order_by(User.candidate_score.desc(), User.id)
        .limit(limit)
    ).all()
    now = utcnow()
    return [(user, candidate_reasons(user, now=now)) for user in users]


# --- the wider user base -----------------------------------------------------------------------

def get_user(external_id: str) -> User:
    user = db.session.scalar(sa.select(User).where(User.external_id == external_id))
    if user is None:
        raise DomainError(404, f"No user with external_id {external_id!r}.")
    return user


def upsert_user(external_id: str, values: dict[str, Any]) -> tuple[User, bool]:
    """Create or update one user; returns (user, created)."""
    fields = {name: values[name] for name in USER_FIELDS if name in values}
    user = db.session.scalar(sa.select(User).where(User.external_id == external_id))
    if user is not None:
        for name, value in fields.items():
            setattr(user, name, value)
        user.candidate_score = candidate_score(
            {name: getattr(user, name) for name in USER_FIELDS})
        db.session.flush()
        return user, False
    fields.setdefault("tags", [])
    user = User(external_id=external_id, candidate_score=candidate_score(fields), **fields)
    try:
        with db.session.begin_nested():
            db.session.add(user)
    except IntegrityError:
        # Another request created the same user a moment ago: this PUT becomes an update.
        return upsert_user(external_id, values)
    return user, True


def _upsert_statement(rows: list[dict[str, Any]]) -> sa.Insert:
    dialect = db.session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(User).values(rows)
    updated = {name: stmt.excluded[name] for name in (*USER_FIELDS, "candidate_score")}
    updated["updated_at"] = stmt.excluded.updated_at
    return stmt.on_conflict_do_update(index_elements=["external_id"], set_=updated)


def upsert_users_bulk(records: list[dict[str, Any]]) -> int:
    """One INSERT ... ON CONFLICT for a batch of validated records; safe to repeat."""
    if not records:
        return 0
    now = utcnow()
    # The last line wins when one file names the same user twice (ON CONFLICT refuses a batch
    # that touches the same row twice).
    by_id = {r["external_id"]: r for r in records}
    rows = [
        {
            "external_id": ext_id,
            **{name: record.get(name) for name in USER_FIELDS},
            "tags": record.get("tags") or [],
            "candidate_score": candidate_score(record),
            "created_at": now,
            "updated_at": now,
        }
        for ext_id, record in by_id.items()
    ]
    db.session.execute(_upsert_statement(rows))
    return len(rows)


@dataclass
class ImportReport:
    processed: int = 0
    failed: int = 0
    # The first bad lines, with reasons; a file of millions of bad lines keeps memory flat.
    errors: list[dict[str, Any]] = field(default_factory=list)
    max_errors: int = 1000

    def refuse(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < self.max_errors:
            self.errors.append({"line": line, "message": message})


def _parse_lines(stream: TextIO, fmt: str) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """Yield (line number, raw record) or (line number, error message)."""
    if fmt == "jsonl":
        for number, line in enumerate(stream, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                yield number, f"not valid JSON: {exc.msg}"
                continue
            yield number, record if isinstance(record, dict) else "a line must be a JSON object"
        return
    reader = csv.DictReader(stream)
    if reader.fieldnames is None or "external_id" not in reader.fieldnames:
        yield 1, "the header row must name an external_id column"
        return
    for row in reader:
        # DictReader counts physical lines; the header is line 1.
        record: dict[str, Any] = {k: v for k, v in row.items() if k is not None and v != ""}
        if None in row:
            yield reader.line_num, "more cells than header columns"
            continue
        if "tags" in record:
            record["tags"] = [t.strip() for t in record["tags"].split("|") if t.strip()]
        yield reader.line_num, record


def _describe(error: ValidationError) -> str:
    messages = error.messages if isinstance(error.messages, dict) else {"_": error.messages}
    return "; ".join(f"{field}: {' '.join(map(str, msgs))}" for field, msgs in messages.items())


def import_users(stream: TextIO, *, fmt: str = "csv",
                 on_progress: Any = None) -> ImportReport:
    """Validate every line, upsert the good ones in batches, report the bad ones by line.

    Batches are upserts keyed on external_id, so re-running an import (after fixing the bad
    lines, or after a crash half-way) converges to the same rows.
    """
    schema = UserImportRowSchema()
    report = ImportReport()
    batch: list[dict[str, Any]] = []

    def flush_batch() -> None:
        report.processed += upsert_users_bulk(batch)
        batch.clear()
        db.session.flush()
        if on_progress:
            on_progress(report)

    for number, raw in _parse_lines(stream, fmt):
        if isinstance(raw, str):
            report.refuse(number, raw)
            continue
        try:
            batch.append(schema.load(raw))
        except ValidationError as exc:
            report.refuse(number, _describe(exc))
            continue
        if len(batch) >= IMPORT_BATCH_SIZE:
            flush_batch()
    flush_batch()
    return report


def import_format(filename: str) -> str:
    return "jsonl" if filename.lower().endswith((".jsonl", ".ndjson", ".json")) else "csv"


def text_stream(data: bytes) -> TextIO:
    return io.StringIO(data.decode("utf-8-sig"))


# --- invitations and the roster ----------------------------------------------------------------

def create_invitation(external_id: str, *, expires_in_days: int, staff_id: int | None
                      ) -> Invitation:
    user = get_user(external_id)
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


def members_query(*, tier: str | None = None, q: str | None = None,
                  status: str | None = None) -> sa.Select:
    stmt = sa.select(Member).join(User).order_by(Member.id)
    if tier is not None:
        stmt = stmt.where(Member.tier_key == (None if tier == "none" else tier))
    if status is not None:
        stmt = stmt.where(Member.status == status)
    if q:
        escaped = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        pattern = f"%{escaped}%"
        stmt = stmt.where(sa.or_(Member.display_name.ilike(pattern, escape="\\"),
                                 User.external_id.ilike(pattern, escape="\\")))
    return stmt


def get_member(member_id: int) -> Member:
    member = db.session.get(Member, member_id)
    if member is None:
        raise DomainError(404, "No such member.")
    return member


def set_member_status(member: Member, status: str) -> None:
    member.status = MemberStatus(status).value
    db.session.flush()
    # The tiers package revokes a suspended member's badge and marks their group seat for
    # removal now, not at the next recalculation.
    member_status_changed.send(None, member_id=member.id)
