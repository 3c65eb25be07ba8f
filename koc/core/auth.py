"""Who is calling: staff accounts, API tokens and the request guards built on them.

Staff passwords are argon2 hashes. API tokens are long random strings shown once; only their
SHA-256 is stored (they carry 256 bits of entropy, so a slow hash adds nothing), which lets a
lookup be one indexed equality query. Admin-panel sign-ins are rows too (`StaffSession`, the
cookie holds only a random id), so signing out, a deactivation or a password change ends a
session on the server, not when a cookie happens to expire.

Lifetimes: a staff token expires `KOC_STAFF_TOKEN_DAYS` after it is made; a member token after
`KOC_MEMBER_TOKEN_IDLE_DAYS` without use (each use pushes its end back: a member has no other way
to get a new one); a panel session `KOC_STAFF_SESSION_HOURS` after sign-in.

Member portal sessions (`/m`): the cookie `koc_member` carries a member token, signed with the
app's secret key, HttpOnly and SameSite=Lax, apart from the staff panel's session. It is the same
token row as a bearer token, so revoking the member's tokens (suspension, forgetting, signing out)
ends the cookie session too, and idle expiry applies. Only `member_required` routes accept it,
and a write must carry `X-CSRF-Token`: an HMAC of the token under the secret key, which the
portal's pages embed and a cross-site page cannot read.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from flask import Flask, Response, current_app, g, has_request_context, request, session
from flask_smorest import abort
from flask_wtf.csrf import CSRFError, validate_csrf
from itsdangerous import BadSignature, URLSafeSerializer
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Mapped, mapped_column, relationship
from wtforms.validators import ValidationError as FormValidationError

from koc.core.db import BigIntPK, UTCDateTime, as_loaded, mapped_columns, utcnow
from koc.core.errors import DomainError
from koc.extensions import Model, db

# Whether a member may use their tokens is the members package's rule (a suspended member may
# not); create_app puts its SQL condition here, so core never imports a domain.
MEMBER_ACCESS_RULE = "koc.member_access_rule"
# What else the one token lookup of a request loads, so the hot paths need no round trip of their
# own for it (create_app fills both; core knows neither a Member nor a rules table):
# - MEMBER_LOADER: `(select, member_id column) -> (select, classes)` adding outer joins and, for
#   each mapped class, its `mapped_columns` (the member, its user); the lookup builds those
#   instances from the row into the session's identity map;
# - VERSION_PROBES: name -> a factory of a scalar subquery (the highest rules version, ...), read
#   with the token and kept for the request by `request_version(name)`, so per-process caches
#   keyed on a version are checked at no cost of their own.
MEMBER_LOADER = "koc.member_loader"
VERSION_PROBES = "koc.version_probes"
_VERSIONS_ENVIRON = "koc.versions"
_LOADED_ENVIRON = "koc.loaded_with_token"
_TOKEN_QUERY = "koc.token_query"  # noqa: S105 - an extensions key, no secret
TOKEN_PREFIX = "koc_"  # noqa: S105 - a marker that makes leaked tokens easy to scan for
# The admin panel's cookie session: the staff id and the random id of its StaffSession row.
SESSION_STAFF_KEY = "staff_id"
SESSION_SECRET_KEY = "staff_session"  # noqa: S105 - a session key's name
# The header the admin panel's scripts send the session's CSRF token in.
CSRF_HEADER = "X-CSRFToken"
# How stale `last_used_at` may get: writing it on every request would make every read a write.
LAST_USED_PRECISION = timedelta(minutes=5)
_password_hasher = PasswordHasher()


class StaffRole(enum.StrEnum):
    viewer = "viewer"
    reviewer = "reviewer"
    admin = "admin"

    @property
    def rank(self) -> int:
        return list(StaffRole).index(self)

    def covers(self, needed: StaffRole) -> bool:
        return self.rank >= needed.rank


class Staff(Model):
    __tablename__ = "staff"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    email: Mapped[str] = mapped_column(sa.String(254), unique=True)
    password_hash: Mapped[str] = mapped_column(sa.String(255))
    role: Mapped[str] = mapped_column(sa.String(16))
    locale: Mapped[str] = mapped_column(sa.String(8), default="zh_CN")
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)

    __table_args__ = (
        sa.CheckConstraint(
            "role IN ('admin', 'reviewer', 'viewer')", name="role_known"
        ),
    )

    def set_password(self, password: str) -> None:
        self.password_hash = _password_hasher.hash(password)

    def check_password(self, password: str) -> bool:
        try:
            return _password_hasher.verify(self.password_hash, password)
        except (VerificationError, InvalidHashError):
            return False


class ApiToken(Model):
    """A bearer token belonging to exactly one staff account or one member."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    # The first characters, kept so an operator can tell tokens apart without the secret.
    display_prefix: Mapped[str] = mapped_column(sa.String(16))
    staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="CASCADE"), index=True
    )
    member_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Null only on tokens made before expiry existed and on none since.
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoke_reason: Mapped[str | None] = mapped_column(sa.String(64))

    staff: Mapped[Staff | None] = relationship()

    @property
    def kind(self) -> str:
        return "staff" if self.staff_id is not None else "member"

    __table_args__ = (
        sa.CheckConstraint(
            "(staff_id IS NULL) <> (member_id IS NULL)", name="exactly_one_owner"
        ),
    )


class StaffSession(Model):
    """One admin-panel sign-in; the session cookie carries only its random id."""

    __tablename__ = "staff_sessions"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    session_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    staff_id: Mapped[int] = mapped_column(sa.ForeignKey("staff.id", ondelete="CASCADE"),
                                          index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    end_reason: Mapped[str | None] = mapped_column(sa.String(64))
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    user_agent: Mapped[str | None] = mapped_column(sa.String(200))


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _lifetimes() -> tuple[timedelta, timedelta]:
    settings = current_app.config["KOC_SETTINGS"]
    return timedelta(days=settings.staff_token_days), timedelta(
        days=settings.member_token_idle_days)


def issue_token(*, staff_id: int | None = None, member_id: int | None = None,
                now: datetime | None = None, expires_at: datetime | None = None) -> str:
    """Create a token row and return the secret, which is never stored and never shown again.

    Without `expires_at` the token gets its kind's lifetime from the settings."""
    now = now or utcnow()
    if expires_at is None:
        staff_life, member_idle = _lifetimes()
        expires_at = now + (staff_life if staff_id is not None else member_idle)
    secret = TOKEN_PREFIX + secrets.token_urlsafe(32)
    db.session.add(
        ApiToken(
            token_hash=hash_token(secret),
            display_prefix=secret[:12],
            staff_id=staff_id,
            member_id=member_id,
            created_at=now,
            expires_at=expires_at,
        )
    )
    db.session.flush()
    return secret


def tokens_query(*, kind: str | None = None, active: bool | None = None,
                 staff_id: int | None = None, member_id: int | None = None,
                 now: datetime | None = None) -> sa.Select:
    """Tokens, newest first, for the tokens list; `active` means usable at `now`."""
    now = now or utcnow()
    stmt = sa.select(ApiToken).order_by(ApiToken.id.desc())
    if kind == "staff":
        stmt = stmt.where(ApiToken.staff_id.is_not(None))
    elif kind == "member":
        stmt = stmt.where(ApiToken.member_id.is_not(None))
    if staff_id is not None:
        stmt = stmt.where(ApiToken.staff_id == staff_id)
    if member_id is not None:
        stmt = stmt.where(ApiToken.member_id == member_id)
    usable = sa.and_(ApiToken.revoked_at.is_(None),
                     sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
    if active is True:
        stmt = stmt.where(usable)
    elif active is False:
        stmt = stmt.where(~usable)
    return stmt


def get_token(token_id: int) -> ApiToken:
    token = db.session.get(ApiToken, token_id)
    if token is None:
        raise DomainError(404, "No such token.")
    return token


def find_tokens_by_prefix(prefix: str) -> list[ApiToken]:
    return list(db.session.scalars(
        sa.select(ApiToken).where(ApiToken.display_prefix == prefix.strip())))


def revoke_token(token: ApiToken, *, now: datetime | None = None,
                 reason: str = "revoked") -> bool:
    """Revoke one token at once; False when it was revoked already (a retry changes nothing)."""
    if token.revoked_at is not None:
        return False
    token.revoked_at = now or utcnow()
    token.revoke_reason = reason
    db.session.flush()
    return True


def revoke_member_tokens(member_id: int, *, now: datetime | None = None,
                         reason: str = "revoked") -> int:
    return _revoke_where(ApiToken.member_id == member_id, now or utcnow(), reason)


def _revoke_where(condition: sa.ColumnElement[bool], now: datetime, reason: str) -> int:
    result = cast(CursorResult[Any], db.session.execute(
        sa.update(ApiToken).where(condition, ApiToken.revoked_at.is_(None))
        .values(revoked_at=now, revoke_reason=reason)))
    return result.rowcount


# --- panel sessions ----------------------------------------------------------------------------

def start_session(staff: Staff, *, now: datetime | None = None, ip: str | None = None,
                  user_agent: str | None = None) -> str:
    """Record a sign-in and return the secret the cookie carries."""
    now = now or utcnow()
    hours = current_app.config["KOC_SETTINGS"].staff_session_hours
    secret = secrets.token_urlsafe(32)
    db.session.add(StaffSession(
        session_hash=hash_token(secret), staff_id=staff.id, created_at=now,
        expires_at=now + timedelta(hours=hours), ip=ip,
        user_agent=(user_agent or "")[:200] or None))
    db.session.flush()
    return secret


def staff_of_session(secret: str, *, now: datetime | None = None) -> Staff | None:
    """The active staff account whose live session `secret` names, else None."""
    now = now or utcnow()
    return db.session.scalar(
        sa.select(Staff).join(StaffSession, StaffSession.staff_id == Staff.id).where(
            StaffSession.session_hash == hash_token(secret), StaffSession.ended_at.is_(None),
            StaffSession.expires_at > now, Staff.active.is_(True)))


def end_session(secret: str, *, now: datetime | None = None, reason: str = "signed out") -> None:
    db.session.execute(
        sa.update(StaffSession).where(StaffSession.session_hash == hash_token(secret),
                                      StaffSession.ended_at.is_(None))
        .values(ended_at=now or utcnow(), end_reason=reason))


def end_staff_access(staff: Staff, *, now: datetime | None = None,
                     reason: str) -> tuple[int, int]:
    """End every session and revoke every token of `staff`: (sessions ended, tokens revoked)."""
    now = now or utcnow()
    sessions = cast(CursorResult[Any], db.session.execute(
        sa.update(StaffSession).where(StaffSession.staff_id == staff.id,
                                      StaffSession.ended_at.is_(None))
        .values(ended_at=now, end_reason=reason))).rowcount
    tokens = _revoke_where(ApiToken.staff_id == staff.id, now, reason)
    return sessions, tokens


# --- staff lifecycle ---------------------------------------------------------------------------

def _refuse_losing_the_last_admin(staff: Staff) -> None:
    if staff.role != StaffRole.admin.value or not staff.active:
        return
    others = db.session.scalar(
        sa.select(sa.func.count()).select_from(Staff).where(
            Staff.role == StaffRole.admin.value, Staff.active.is_(True), Staff.id != staff.id))
    if not others:
        raise DomainError(409, "This is the last active admin; make another admin first.")


def deactivate_staff(staff: Staff, *, now: datetime | None = None) -> tuple[int, int]:
    """Deactivate an account: its sessions and tokens stop working at once."""
    _refuse_losing_the_last_admin(staff)
    staff.active = False
    db.session.flush()
    return end_staff_access(staff, now=now, reason="staff deactivated")


def reactivate_staff(staff: Staff) -> None:
    """Let the account sign in again; old sessions and tokens stay ended."""
    staff.active = True
    db.session.flush()


def set_staff_role(staff: Staff, role: str) -> str:
    """Change the role (read on every request, so it applies at once); returns the old one."""
    new = StaffRole(role).value
    if new != StaffRole.admin.value:
        _refuse_losing_the_last_admin(staff)
    old, staff.role = staff.role, new
    db.session.flush()
    return old


def set_staff_password(staff: Staff, password: str, *,
                       now: datetime | None = None) -> tuple[int, int]:
    """Set a new password; every session and token of the account ends with the old one."""
    if len(password) < 8:
        raise DomainError(422, "password: must be at least 8 characters",
                          errors={"json": {"password": ["must be at least 8 characters"]}})
    staff.set_password(password)
    db.session.flush()
    return end_staff_access(staff, now=now, reason="password changed")


def create_staff(*, email: str, role: str, password: str) -> Staff:
    staff = Staff(email=email.strip().lower(), role=StaffRole(role).value)
    staff.set_password(password)
    db.session.add(staff)
    db.session.flush()
    return staff


# --- staff invitations -------------------------------------------------------------------------
# An admin invites a colleague from the panel: the account is made at once with a password
# nobody knows, and a link lets the invitee choose theirs. The link is a signed value, not a
# stored row: it names the account, an expiry and a fingerprint of the password hash in force
# when it was made, so setting the password (through the link or any other way) spends it, and
# deactivating the account refuses it.

STAFF_INVITATION_TTL = timedelta(hours=72)


def _invitation_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="koc.staff-invitation")


def _password_fingerprint(staff: Staff) -> str:
    return hashlib.sha256(staff.password_hash.encode()).hexdigest()[:24]


def invite_staff(*, email: str, role: str, now: datetime) -> tuple[Staff, str, datetime]:
    """A new account that cannot sign in until its invitation is accepted: (the account, the
    invitation value for `staff_invitation_url`, its expiry). 409 if the email has an account."""
    if find_staff(email) is not None:
        raise DomainError(409, "email: an account with this email exists",
                          errors={"json": {"email": ["an account with this email exists"]}})
    staff = create_staff(email=email, role=role, password=secrets.token_urlsafe(32))
    expires_at = now + STAFF_INVITATION_TTL
    value = _invitation_serializer().dumps({
        "staff": staff.id, "password": _password_fingerprint(staff),
        "until": int(expires_at.timestamp())})
    return staff, value, expires_at


def staff_of_invitation(value: str, *, now: datetime) -> Staff | None:
    """The account an invitation is for, while it can still be accepted; None once it has
    expired, been used (the password changed since), or the account was deactivated."""
    try:
        data = _invitation_serializer().loads(value)
    except BadSignature:
        return None
    if not isinstance(data, dict) or int(data.get("until", 0)) <= now.timestamp():
        return None
    staff = db.session.get(Staff, data.get("staff"))
    if staff is None or not staff.active:
        return None
    if not hmac.compare_digest(str(data.get("password", "")), _password_fingerprint(staff)):
        return None
    return staff


def find_staff(email: str) -> Staff | None:
    return db.session.scalar(sa.select(Staff).where(Staff.email == email.strip().lower()))


@dataclass(frozen=True)
class Principal:
    """The authenticated caller of one request."""

    staff_id: int | None = None
    role: StaffRole | None = None
    member_id: int | None = None
    # True when the member came with the portal's session cookie, not a bearer token.
    via_cookie: bool = False

    @property
    def is_staff(self) -> bool:
        return self.staff_id is not None

    @property
    def is_member(self) -> bool:
        return self.member_id is not None


def _principal_from_header() -> Principal | None:
    header = request.headers.get("Authorization", "")
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        return None
    return _principal_of_token(secret)


def _token_query() -> tuple[sa.Select, tuple[type, ...]]:
    """The one statement of a token lookup, built once per app (every request runs it), and
    the mapped classes whose columns follow the token's in its rows."""
    extensions = current_app.extensions
    found = extensions.get(_TOKEN_QUERY)
    if found is None:
        probes: dict[str, Callable[[], sa.ScalarSelect[Any]]] = extensions.get(VERSION_PROBES, {})
        member_may_use = extensions[MEMBER_ACCESS_RULE](ApiToken.member_id)
        # Plain columns, not ORM entities: the instances are built from the row (as_loaded),
        # which costs a fraction of the ORM's loading of three entities per request.
        stmt = (
            sa.select(Staff.role, Staff.active, member_may_use,
                      *(probe().label(f"version_{name}") for name, probe in probes.items()),
                      *mapped_columns(ApiToken)[1])
            .select_from(ApiToken)
            .outerjoin(Staff, Staff.id == ApiToken.staff_id)
            .where(ApiToken.token_hash == sa.bindparam("token_hash"),
                   ApiToken.revoked_at.is_(None),
                   sa.or_(ApiToken.expires_at.is_(None),
                          ApiToken.expires_at > sa.bindparam("now", type_=UTCDateTime)))
        )
        loaded: tuple[type, ...] = (ApiToken,)
        loader = extensions.get(MEMBER_LOADER)
        if loader is not None:
            stmt, more = loader(stmt, ApiToken.member_id)
            loaded += tuple(more)
        found = extensions.setdefault(_TOKEN_QUERY, (stmt, loaded))
    return found


def _principal_of_token(secret: str) -> Principal | None:
    probes = current_app.extensions.get(VERSION_PROBES, {})
    stmt, loaded = _token_query()
    now = utcnow()
    row = db.session.connection().execute(
        stmt, {"token_hash": hash_token(secret.strip()), "now": now}).first()
    if row is None:
        return None
    role, staff_active, member_active = row[:3]
    request.environ[_VERSIONS_ENVIRON] = dict(zip(probes, row[3:3 + len(probes)], strict=True))
    # The token, then what MEMBER_LOADER added (the member and its user), each as the columns
    # of `mapped_columns`; a missing one (a staff token has no member) is all NULLs.
    instances = []
    position = 3 + len(probes)
    for cls in loaded:
        keys = mapped_columns(cls)[0]
        values = dict(zip(keys, row[position:position + len(keys)], strict=True))
        position += len(keys)
        instances.append(None if values.get("id") is None
                         else as_loaded(db.session(), cls, values))
    token = cast(ApiToken, instances[0])
    # The session's identity map holds objects weakly: keep the loaded ones for the request.
    request.environ[_LOADED_ENVIRON] = tuple(instances)
    _note_use(token, now)
    if token.staff_id is not None:
        return Principal(staff_id=token.staff_id, role=StaffRole(role)) if staff_active else None
    if not member_active:
        return None
    return Principal(member_id=token.member_id)


# --- member portal sessions --------------------------------------------------------------------

MEMBER_COOKIE = "koc_member"
# The header the portal's scripts send their page's CSRF value in (the panel's is CSRF_HEADER).
MEMBER_CSRF_HEADER = "X-CSRF-Token"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def _cookie_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="koc.member-session")


def set_member_session(response: Response, token: str) -> None:
    """Put the member token into the portal's session cookie on `response`."""
    settings = current_app.config["KOC_SETTINGS"]
    response.set_cookie(
        MEMBER_COOKIE, _cookie_serializer().dumps(token),
        max_age=int(timedelta(days=settings.member_token_idle_days).total_seconds()),
        httponly=True, samesite="Lax", secure=settings.env == "production", path="/")


def clear_member_session(response: Response) -> None:
    response.delete_cookie(MEMBER_COOKIE, path="/", httponly=True, samesite="Lax")


def member_session_token() -> str | None:
    """The member token inside this request's portal cookie, when the signature holds."""
    raw = request.cookies.get(MEMBER_COOKIE)
    if not raw:
        return None
    try:
        token = _cookie_serializer().loads(raw)
    except BadSignature:
        return None
    return token if isinstance(token, str) and token.startswith(TOKEN_PREFIX) else None


def member_csrf_token(token: str) -> str:
    """The CSRF value that goes with one portal session: bound to its token, never stored."""
    key = current_app.config["SECRET_KEY"].encode()
    return hmac.new(key, b"koc.member-csrf:" + hash_token(token).encode(),
                    hashlib.sha256).hexdigest()


def session_member() -> Principal | None:
    """The member signed in to the portal by cookie in this request, else None."""
    environ = request.environ
    if "koc.session_member" not in environ:
        token = member_session_token()
        principal = _principal_of_token(token) if token else None
        environ["koc.session_member"] = (
            Principal(member_id=principal.member_id, via_cookie=True)
            if principal is not None and principal.is_member else None)
    return environ["koc.session_member"]


def member_of_token(token: str) -> int | None:
    """The member a live member token belongs to, else None (staff tokens included)."""
    principal = _principal_of_token(token)
    return principal.member_id if principal is not None else None


def end_member_session(token: str, *, now: datetime | None = None) -> None:
    """Signing out of the portal revokes the token the cookie carried."""
    _revoke_where(sa.and_(ApiToken.token_hash == hash_token(token),
                          ApiToken.member_id.is_not(None)), now or utcnow(), "signed out")


def _csrf_ok() -> bool:
    if request.method in _SAFE_METHODS:
        return True
    token = member_session_token()
    sent = request.headers.get(MEMBER_CSRF_HEADER, "")
    return token is not None and bool(sent) and hmac.compare_digest(
        sent, member_csrf_token(token))


def _note_use(token: ApiToken, now: datetime) -> None:
    if token.last_used_at is not None and now - token.last_used_at < LAST_USED_PRECISION:
        return
    token.last_used_at = now
    if token.member_id is not None:
        token.expires_at = now + _lifetimes()[1]


def request_version(name: str) -> tuple[bool, int | None]:
    """(known, value) of a version probe read with this request's token; (False, None) outside
    a request or before its token was looked up, when the caller must read the version itself."""
    if not has_request_context():
        return False, None
    versions = request.environ.get(_VERSIONS_ENVIRON)
    if versions is None or name not in versions:
        return False, None
    return True, versions[name]


def forget_request_version(name: str) -> None:
    """A write in this request changed what the probe `name` reads: stop answering from it."""
    if has_request_context():
        request.environ.get(_VERSIONS_ENVIRON, {}).pop(name, None)


def request_caller() -> Principal | None:
    """The bearer token's owner in this request (else the portal session's member), or None."""
    if not has_request_context():
        return None
    caller = _caller()
    if caller is None and "Authorization" not in request.headers:
        caller = session_member()
    return caller


def current_principal() -> Principal:
    return g.principal


def current_member_id() -> int:
    """The calling member's id, in a route whose guard admits only members."""
    member_id = current_principal().member_id
    if member_id is None:
        raise RuntimeError("current_member_id() in a route that admits staff tokens")
    return member_id


def current_staff_id() -> int:
    """The calling staff account's id, in a route whose guard admits only staff."""
    staff_id = current_principal().staff_id
    if staff_id is None:
        raise RuntimeError("current_staff_id() in a route that admits member tokens")
    return staff_id


def _principal_from_session() -> Principal | None:
    """The admin panel's signed-in staff, when the request also carries the session's CSRF token.

    The panel's scripts call the API with the cookie session and the `X-CSRFToken` header; a
    cookie alone is what a forged cross-site request would carry, so without the token the
    session counts for nothing (and `_authorize` says why).
    """
    secret = session.get(SESSION_SECRET_KEY)
    if not isinstance(secret, str):
        return None
    staff = staff_of_session(secret)
    if staff is None or staff.id != session.get(SESSION_STAFF_KEY):
        return None
    try:
        validate_csrf(request.headers.get(CSRF_HEADER))
    except (CSRFError, FormValidationError):
        request.environ["koc.caller_refused"] = "csrf"
        return None
    return Principal(staff_id=staff.id, role=StaffRole(staff.role))


def _caller() -> Principal | None:
    # Looked up once per request: the before-request check and the route's guard share it.
    # Kept in the WSGI environ, not `g`: a request made inside an app context already pushed
    # (a test, a shell) shares that context's `g` with every other request made there.
    # A bearer token, when sent, is the only credential looked at: a request with a bad token
    # is refused even if it also carries a panel session.
    environ = request.environ
    if "koc.caller" not in environ:
        if request.headers.get("Authorization"):
            environ["koc.caller"] = _principal_from_header()
        else:
            environ["koc.caller"] = _principal_from_session()
    return environ["koc.caller"]


def _authorize(check: Callable[[Principal], bool], *, cookie: bool = False) -> None:
    principal = _caller()
    if principal is None and cookie and "Authorization" not in request.headers:
        principal = session_member()
        if principal is not None and not _csrf_ok():
            abort(403, message=f"A write with the portal session needs the "
                               f"{MEMBER_CSRF_HEADER} header of its page.")
    if principal is None and request.environ.get("koc.caller_refused") == "csrf":
        abort(403, message=f"A signed-in panel session must send its CSRF token in the "
                           f"{CSRF_HEADER} header.")
    if principal is None:
        abort(401, message="A valid bearer token is required.")
    elif not check(principal):
        abort(403, message="This token may not do that.")
    g.principal = principal


# The served OpenAPI document says who may call each operation under this key, and the
# authorization matrix test (tests/security) holds every route to what it says.
ACCESS_DOC_KEY = "x-koc-access"


def _guard(check: Callable[[Principal], bool], access: str, *, cookie: bool = False
           ) -> Callable:
    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _authorize(check, cookie=cookie)
            return view(*args, **kwargs)

        # functools.wraps copies this onto every decorator stacked above, so the view function
        # Flask holds tells `install_api_guards` what the route needs.
        wrapper.koc_access = check  # type: ignore[attr-defined]
        wrapper.koc_cookie = cookie  # type: ignore[attr-defined]
        apidoc = dict(getattr(wrapper, "_apidoc", {}))
        apidoc["manual_doc"] = {**apidoc.get("manual_doc", {}), ACCESS_DOC_KEY: access}
        wrapper._apidoc = apidoc  # type: ignore[attr-defined]
        return wrapper

    return decorator


def _documented_public(view: Callable) -> bool:
    # `@blp.doc(security=[])` is how a route says, in the served OpenAPI document, that it takes
    # no token; reading the same declaration keeps the document and the behaviour in step.
    return getattr(view, "_apidoc", {}).get("manual_doc", {}).get("security") == []


def install_api_guards(app: Flask, blueprints: Iterable[str]) -> None:
    """Authenticate every API request before anything reads its body.

    `@blp.arguments` parses the body in a wrapper outside the route's guard, so left alone a
    caller without a token would have a large body read and validated before the 401. Here
    each route's guard runs first, in a before-request hook. A route of these blueprints that
    declares neither a guard nor `@blp.doc(security=[])` stops the app at start-up.
    """
    names = set(blueprints)
    checks: dict[str, tuple[Callable[[Principal], bool], bool]] = {}
    undeclared, contradictory = [], []
    for endpoint, view in app.view_functions.items():
        if endpoint.partition(".")[0] not in names:
            continue
        check = getattr(view, "koc_access", None)
        public = _documented_public(view)
        if check is None and not public:
            undeclared.append(endpoint)
        elif check is not None and public:
            contradictory.append(endpoint)
        elif check is not None:
            checks[endpoint] = (check, getattr(view, "koc_cookie", False))
    if undeclared or contradictory:
        raise RuntimeError(
            f"API routes must declare who may call them: no guard and no "
            f"@blp.doc(security=[]) on {sorted(undeclared)}; a guard but documented as "
            f"public on {sorted(contradictory)}"
        )

    @app.before_request
    def _authorize_before_the_body() -> None:
        found = checks.get(request.endpoint or "")
        if found is None:
            return
        check, cookie = found
        rule = request.url_rule
        # Flask's automatic OPTIONS answer reads no body and runs no view.
        if request.method == "OPTIONS" and getattr(rule, "provide_automatic_options", False):
            return
        _authorize(check, cookie=cookie)


def staff_required(role: str = "viewer") -> Callable:
    needed = StaffRole(role)
    return _guard(lambda p: p.role is not None and p.role.covers(needed), f"staff:{role}")


# The only guard that also takes the portal's session cookie (with CSRF on writes).
member_required = _guard(lambda p: p.is_member, "member", cookie=True)
any_token_required = _guard(lambda p: True, "any")


def staff_or_member(role: str = "viewer") -> Callable:
    """Members, or staff with at least `role`; the view decides what each one sees."""
    needed = StaffRole(role)
    return _guard(lambda p: p.is_member or (p.role is not None and p.role.covers(needed)),
                  f"member|staff:{role}")
