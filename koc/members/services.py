"""Members domain logic: plain functions over the session; they flush, the caller commits."""

from __future__ import annotations

import codecs
import csv
import gzip
import io
import json
import math
import re
import secrets
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import IO, Any, cast

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


# One physical line of an import file: far above any real user's line (50 tags of 64 characters
# take 13 KiB), small enough that a file without newlines cannot fill the worker's memory.
MAX_LINE_BYTES = 64 * 1024
MAX_MESSAGE_CHARS = 500
_GZIP_MAGIC = b"\x1f\x8b"
# Characters no column should hold: C0 and C1 controls (PostgreSQL refuses NUL outright) and lone
# surrogates, which JSON escapes can produce and which neither database driver can encode.
_UNSTORABLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
# JSON may give these as 3.5; the schema would truncate that to 3 rather than refuse it.
_COUNT_FIELDS = frozenset({"orders_count", "spend_cents", "shares_count", "community_posts_count"})


def _printable(text: str, limit: int = 40) -> str:
    """A name taken from the file, safe to store and print: escapes, and cut short."""
    text = _UNSTORABLE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)
    return text if len(text) <= limit else text[:limit] + "..."


def _binary_lines(stream: IO[bytes]) -> Iterator[tuple[int, bytes, str | None]]:
    """(number, bytes, why the line cannot be used, or None) per physical line."""
    buffered = (stream if isinstance(stream, io.BufferedReader)
                else io.BufferedReader(cast(io.RawIOBase, stream)))
    source: io.BufferedIOBase = buffered
    if buffered.peek(len(_GZIP_MAGIC))[:len(_GZIP_MAGIC)] == _GZIP_MAGIC:
        source = gzip.GzipFile(fileobj=buffered, mode="rb")
    number = 0
    try:
        while raw := source.readline(MAX_LINE_BYTES + 1):
            number += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while (rest := source.readline(MAX_LINE_BYTES)) and not rest.endswith(b"\n"):
                    pass
                # The head stands in for the line, so a CSV record it belongs to is refused
                # with it rather than read without it.
                yield number, raw[:MAX_LINE_BYTES] + b"\n", f"longer than {MAX_LINE_BYTES} bytes"
                continue
            yield number, raw, None
    except (OSError, EOFError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
        yield number + 1, b"\n", f"the compressed data is damaged from here on ({exc})"


def _text_lines(stream: IO[bytes]) -> Iterator[tuple[int, str, str | None]]:
    """Decode each line on its own, so one bad byte costs one line, not the file.

    A line that cannot be used is still yielded (with U+FFFD for bad bytes) with the reason,
    so a CSV reader keeps its place and the caller refuses the line.
    """
    for number, line, unusable in _binary_lines(stream):
        raw = line.removeprefix(codecs.BOM_UTF8) if number == 1 else line
        try:
            yield number, raw.decode("utf-8"), unusable
        except UnicodeDecodeError as exc:
            yield number, raw.decode("utf-8", "replace"), unusable or (
                f"not valid UTF-8 (byte 0x{raw[exc.start]:02x} at byte {exc.start + 1})")


ParsedLine = tuple[int, dict[str, Any] | str]


def _parse_jsonl(stream: IO[bytes]) -> Iterator[ParsedLine]:
    for number, line, problem in _text_lines(stream):
        if problem is not None:
            yield number, problem
            continue
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            yield number, f"not valid JSON: {exc.msg}"
            continue
        except ValueError:  # Python refuses to convert integers of more than 4,300 digits
            yield number, "a number has too many digits"
            continue
        except RecursionError:
            yield number, "nested too deeply"
            continue
        yield number, record if isinstance(record, dict) else "a line must be a JSON object"


def _parse_csv(stream: IO[bytes]) -> Iterator[ParsedLine]:
    problems: dict[int, str] = {}

    def lines() -> Iterator[str]:
        for number, line, problem in _text_lines(stream):
            if problem is not None:
                problems[number] = problem
            yield line

    reader = csv.DictReader(lines())
    try:
        fieldnames = reader.fieldnames
    except csv.Error as exc:
        yield 1, f"the header row is not valid CSV: {exc}"
        return
    if 1 in problems:
        yield 1, f"the header row is {problems[1]}; nothing was read"
        return
    if fieldnames is None or "external_id" not in fieldnames:
        yield 1, "the header row must name an external_id column"
        return
    last_line = reader.line_num
    while True:
        row: dict[str | None, Any] | str
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            row = f"not valid CSV: {exc}"
        first_line, last_line = last_line + 1, reader.line_num
        # A record refused for its own reasons is reported once, at its last line (where the
        # reader is); lines that could not be read are reported each at its own number.
        unreadable = [n for n in range(first_line, last_line + 1) if n in problems]
        for number in unreadable:
            yield number, problems.pop(number)
        if unreadable:
            continue
        if isinstance(row, str):
            yield last_line, row
            continue
        if None in row:
            yield last_line, "more cells than header columns"
            continue
        record: dict[str, Any] = {k: v for k, v in row.items()
                                  if k is not None and v not in ("", None)}
        if "tags" in record:
            record["tags"] = [t.strip() for t in record["tags"].split("|") if t.strip()]
        yield last_line, record
    # The damaged end of a gzipped file reaches the reader as a blank line, which it skips.
    yield from sorted(problems.items())


def _flatten(messages: Any, prefix: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(messages, dict):
        for key, inner in messages.items():
            name = _printable(str(key))
            yield from _flatten(inner, f"{prefix}.{name}" if prefix else name)
    elif isinstance(messages, list):
        for message in messages:
            yield from _flatten(message, prefix)
    else:
        yield prefix or "_", str(messages)


def _describe(problems: dict[str, Any]) -> str:
    by_field: dict[str, list[str]] = {}
    for name, message in _flatten(problems):
        by_field.setdefault(name, []).append(message)
    text = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in by_field.items())
    return text if len(text) <= MAX_MESSAGE_CHARS else text[:MAX_MESSAGE_CHARS] + "..."


def _raw_problems(raw: dict[str, Any]) -> dict[str, list[str]]:
    """What the schema would let through but no column can store, or would silently change."""
    problems: dict[str, list[str]] = {}
    for name, value in raw.items():
        texts = value if isinstance(value, list) else [value]
        for text in texts:
            if isinstance(text, str) and (found := _UNSTORABLE.search(text)):
                kind = ("a lone surrogate" if "\ud800" <= found.group() <= "\udfff"
                        else "a control character")
                problems[str(name)] = [f"holds {kind} (U+{ord(found.group()):04X})"]
                break
        if name in _COUNT_FIELDS and isinstance(value, float) and not value.is_integer():
            problems[name] = ["must be a whole number"]
    return problems


def _check_line(schema: UserImportRowSchema, raw: dict[str, Any]
                ) -> tuple[dict[str, Any], dict[str, Any]]:
    """(record, problems): every field's problem at once, so one pass fixes the line.

    The schema's fields bound numbers and dates to what their columns hold (koc.core.fields).
    """
    problems: dict[str, Any] = _raw_problems(raw)
    try:
        record = schema.load(raw)
    except ValidationError as exc:
        record = exc.valid_data if isinstance(exc.valid_data, dict) else {}
        messages = exc.messages if isinstance(exc.messages, dict) else {"_": exc.messages}
        for name, message in messages.items():
            problems.setdefault(str(name), message)
    return record, problems


def import_users(stream: IO[bytes], *, fmt: str = "csv",
                 on_progress: Any = None) -> ImportReport:
    """Validate every line, upsert the good ones in batches, report the bad ones by line.

    The file is bytes (CSV or JSONL, gzipped or not), read line by line: a line with a bad
    byte, a value its column cannot hold or a JSON error is refused on its own. Batches are
    upserts keyed on external_id, so re-running an import (after fixing the bad lines, or
    after a crash half-way) converges to the same rows.
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

    parse = _parse_jsonl if fmt == "jsonl" else _parse_csv
    for number, raw in parse(stream):
        if isinstance(raw, str):
            report.refuse(number, raw)
            continue
        record, problems = _check_line(schema, raw)
        if problems:
            report.refuse(number, _describe(problems))
            continue
        batch.append(record)
        if len(batch) >= IMPORT_BATCH_SIZE:
            flush_batch()
    flush_batch()
    return report


def import_format(filename: str) -> str:
    """csv or jsonl, from the file name; a .gz file is recognised by its content."""
    name = filename.lower().removesuffix(".gz")
    return "jsonl" if name.endswith((".jsonl", ".ndjson", ".json")) else "csv"


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


MEMBER_SORTS = {
    "id": (Member.id,),
    "joined": (Member.joined_at, Member.id),
    "-joined": (Member.joined_at.desc(), Member.id.desc()),
    "name": (Member.display_name, Member.id),
    "-name": (Member.display_name.desc(), Member.id.desc()),
}


def _has_tag(tag: str) -> sa.ColumnElement[bool]:
    if db.engine.dialect.name == "postgresql":
        return User.tags.op("@>")(sa.func.jsonb_build_array(tag))
    element = sa.func.json_each(User.tags).table_valued("value")
    return sa.exists(sa.select(1).select_from(element).where(element.c.value == tag))


def members_query(*, tier: str | None = None, q: str | None = None,
                  status: str | None = None, city: str | None = None,
                  store_code: str | None = None, tag: str | None = None,
                  at_risk: bool | None = None, sort: str = "id") -> sa.Select:
    """Members matching every filter given; `at_risk`: below their tier's low-water mark."""
    stmt = sa.select(Member).join(User).order_by(*MEMBER_SORTS[sort])
    if tier is not None:
        stmt = stmt.where(Member.tier_key == (None if tier == "none" else tier))
    if status is not None:
        stmt = stmt.where(Member.status == status)
    if city:
        stmt = stmt.where(User.city == city)
    if store_code:
        stmt = stmt.where(User.store_code == store_code)
    if tag:
        stmt = stmt.where(_has_tag(tag))
    if at_risk is not None:
        stmt = stmt.where(Member.tier_below_since.is_not(None) if at_risk
                          else Member.tier_below_since.is_(None))
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
