"""The audit log: who did what to which row, from where and when, for every staff write and every
sensitive read.

Handlers call `record(...)` with a named action, a target and a before/after summary; the row is
added to the request's own session, so it commits with the write it describes or rolls back with
it (a refused write leaves no "did it" row). A staff write whose handler recorded nothing still
gets a row, named after its endpoint, from the request hook `install` adds: a new route cannot
slip past the log. Operators' commands record with the actor they give (`cli`).

Append-only: nothing here updates a row; the retention task deletes rows older than
`KOC_AUDIT_RETENTION_DAYS` and nothing else does.
"""

from __future__ import annotations

import getpass
import logging
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, cast

import sqlalchemy as sa
from flask import Flask, Response, has_request_context, request
from sqlalchemy.engine import CursorResult
from sqlalchemy.orm import Mapped, mapped_column

from koc.core.auth import Staff, request_caller
from koc.core.db import BigIntPK, JSONType, UTCDateTime, utcnow
from koc.extensions import Model, db

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
_RECORDED = "koc.audit.recorded"
_PANEL_ACTOR = "koc.audit.panel_actor"
# Keys whose values never go into `details`, whatever a handler passes.
SECRET_KEYS = frozenset({"password", "secret", "token", "robot_key", "key", "signature",
                         "password_hash", "token_hash", "authorization"})
MAX_DETAIL_CHARS = 500


class AuditEvent(Model):
    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
    # Kept as text too: the row outlives the account, and CLI actions have no account.
    actor_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"), index=True)
    actor: Mapped[str] = mapped_column(sa.String(254))
    action: Mapped[str] = mapped_column(sa.String(64), index=True)
    # "kind:id", e.g. "member:12", "user:ext-9", "kit:3".
    target: Mapped[str | None] = mapped_column(sa.String(160), index=True)
    ip: Mapped[str | None] = mapped_column(sa.String(45))
    details: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)


def set_panel_actor(staff: Staff | None) -> None:
    """The admin panel says who is signed in, for the rows its pages' writes make."""
    if has_request_context():
        request.environ[_PANEL_ACTOR] = staff


def _request_actor() -> tuple[int | None, str] | None:
    panel = request.environ.get(_PANEL_ACTOR)
    if panel is not None:
        return panel.id, panel.email
    caller = request_caller()
    if caller is not None and caller.staff_id is not None:
        staff = db.session.get(Staff, caller.staff_id)
        return caller.staff_id, staff.email if staff is not None else f"staff:{caller.staff_id}"
    return None


def cli_actor() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (KeyError, OSError):
        return "cli"


def _scrub(value: Any, depth: int = 0) -> Any:
    if isinstance(value, Mapping):
        return {str(k): "[hidden]" if str(k).lower() in SECRET_KEYS else _scrub(v, depth + 1)
                for k, v in list(value.items())[:50]}
    if isinstance(value, list | tuple | set):
        return [_scrub(v, depth + 1) for v in list(value)[:50]]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | float):
        return value
    text = str(value)
    return text if len(text) <= MAX_DETAIL_CHARS else text[:MAX_DETAIL_CHARS] + "..."


def record(action: str, target: str | None = None, details: Mapping[str, Any] | None = None,
           *, actor: str | None = None, actor_staff_id: int | None = None,
           now: datetime | None = None) -> AuditEvent:
    """Add an audit row to the current transaction (it commits with the write it describes).

    In a request the actor and address come from the request: the signed-in panel user or the
    staff token. Elsewhere pass `actor` (and `actor_staff_id` when an account acts)."""
    ip = None
    if has_request_context():
        request.environ[_RECORDED] = True
        ip = request.remote_addr
        if actor is None:
            found = _request_actor()
            if found is not None:
                actor_staff_id, actor = found
    event = AuditEvent(created_at=now or utcnow(), actor_staff_id=actor_staff_id,
                       actor=actor or "anonymous", action=action, target=target, ip=ip,
                       details=_scrub(dict(details or {})))
    db.session.add(event)
    return event


def events_query(*, actor: str | None = None, action: str | None = None,
                 target: str | None = None, since: datetime | None = None,
                 until: datetime | None = None) -> sa.Select:
    """Audit rows, newest first. `actor` is a staff id or the actor text (an email, `cli:...`);
    `action` ending in `.` or `*` matches a family (`kit.` is every kit action)."""
    stmt = sa.select(AuditEvent).order_by(AuditEvent.created_at.desc(), AuditEvent.id.desc())
    if actor:
        if actor.isdigit():
            stmt = stmt.where(AuditEvent.actor_staff_id == int(actor))
        else:
            stmt = stmt.where(AuditEvent.actor == actor.strip().lower())
    if action:
        if action.endswith(("*", ".")):
            prefix = action.rstrip("*")
            escaped = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(AuditEvent.action.like(escaped + "%", escape="\\"))
        else:
            stmt = stmt.where(AuditEvent.action == action)
    if target:
        stmt = stmt.where(AuditEvent.target == target)
    if since is not None:
        stmt = stmt.where(AuditEvent.created_at >= since)
    if until is not None:
        stmt = stmt.where(AuditEvent.created_at < until)
    return stmt


def purge_expired(*, now: datetime, retention_days: int) -> int:
    """Delete rows past the retention window; the only deletion the log allows."""
    result = cast(CursorResult[Any], db.session.execute(
        sa.delete(AuditEvent).where(AuditEvent.created_at < now - timedelta(days=retention_days))))
    return result.rowcount


def _target_of(view_args: Mapping[str, Any] | None) -> str | None:
    if not view_args:
        return None
    return ",".join(f"{k.removesuffix('_id')}:{v}" for k, v in sorted(view_args.items()))[:160]


def _record_unrecorded_staff_write(response: Response) -> Response:
    if (request.method not in WRITE_METHODS or response.status_code >= 400
            or request.environ.get(_RECORDED)):
        return response
    found = _request_actor()
    if found is None:
        return response
    staff_id, email = found
    record(request.endpoint or "unknown", _target_of(request.view_args),
           {"method": request.method, "path": request.path},
           actor=email, actor_staff_id=staff_id)
    return response


def install(app: Flask) -> None:
    """Register the hook that logs staff writes no handler recorded.

    Call it after `koc.core.unit_of_work.install`: Flask runs after-request hooks in reverse
    order of registration, so this one adds its row before that one commits."""
    app.after_request(_record_unrecorded_staff_write)
