"""Admin pages for the service's own security: staff accounts (role, deactivation, a new
password), API tokens (revoke) and the audit log. Admins only; every change is audited.

The same services as `koc staff ...`, `koc token revoke` and `/api/v1/tokens`, in koc.core.auth.
"""

from __future__ import annotations

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as BaseResponse
from wtforms import PasswordField, SelectField
from wtforms.validators import AnyOf, DataRequired, Length

from koc.admin.blueprint import (
    admin_blueprint,
    current_staff,
    login_required,
    paginate,
    undo_if_refused,
)
from koc.admin.forms import ActionForm
from koc.core import audit
from koc.core.auth import (
    ApiToken,
    Staff,
    StaffRole,
    StaffSession,
    deactivate_staff,
    get_token,
    reactivate_staff,
    revoke_token,
    set_staff_password,
    set_staff_role,
    tokens_query,
)
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.extensions import db

TOKENS_PER_PAGE = 50
AUDIT_PER_PAGE = 50
ROLES = [role.value for role in StaffRole]


class RoleForm(FlaskForm):
    role = SelectField(choices=ROLES, validators=[AnyOf(ROLES)])


class PasswordForm(FlaskForm):
    password = PasswordField(_l("New password"),
                             validators=[DataRequired(), Length(min=8, max=1024)])


def _staff_or_404(staff_id: int) -> Staff:
    staff = db.session.get(Staff, staff_id)
    if staff is None:
        abort(404)
    return staff


@admin_blueprint.get("/staff")
@login_required("admin")
def staff_accounts() -> str:
    now = utcnow()
    accounts = db.session.scalars(sa.select(Staff).order_by(Staff.email)).all()
    sessions = dict(db.session.execute(
        sa.select(StaffSession.staff_id, sa.func.count()).where(
            StaffSession.ended_at.is_(None), StaffSession.expires_at > now)
        .group_by(StaffSession.staff_id)).all())
    tokens = dict(db.session.execute(
        sa.select(ApiToken.staff_id, sa.func.count()).where(
            ApiToken.staff_id.is_not(None), ApiToken.revoked_at.is_(None),
            sa.or_(ApiToken.expires_at.is_(None), ApiToken.expires_at > now))
        .group_by(ApiToken.staff_id)).all())
    return render_template("admin/security/staff.html", accounts=accounts, sessions=sessions,
                           tokens=tokens, roles=ROLES, me=current_staff())


def _refused(exc: DomainError) -> BaseResponse:
    flash(exc.message, "error")
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.post("/staff/<id:staff_id>/role")
@login_required("admin")
def change_staff_role(staff_id: int) -> BaseResponse:
    form = RoleForm()
    if not form.validate_on_submit():
        abort(400)
    staff = _staff_or_404(staff_id)
    try:
        with undo_if_refused():
            old = set_staff_role(staff, form.role.data)
    except DomainError as exc:
        return _refused(exc)
    audit.record("staff.role", f"staff:{staff.id}", {"before": old, "after": staff.role})
    flash(_("%(email)s is now %(role)s.", email=staff.email, role=staff.role), "success")
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.post("/staff/<id:staff_id>/deactivate")
@login_required("admin")
def deactivate_staff_account(staff_id: int) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    staff = _staff_or_404(staff_id)
    try:
        with undo_if_refused():
            sessions, tokens = deactivate_staff(staff)
    except DomainError as exc:
        return _refused(exc)
    audit.record("staff.deactivate", f"staff:{staff.id}",
                 {"sessions_ended": sessions, "tokens_revoked": tokens})
    flash(_("%(email)s is deactivated; their sessions and tokens have ended.",
            email=staff.email), "success")
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.post("/staff/<id:staff_id>/activate")
@login_required("admin")
def activate_staff_account(staff_id: int) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    staff = _staff_or_404(staff_id)
    reactivate_staff(staff)
    audit.record("staff.activate", f"staff:{staff.id}")
    flash(_("%(email)s can sign in again.", email=staff.email), "success")
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.post("/staff/<id:staff_id>/password")
@login_required("admin")
def reset_staff_password(staff_id: int) -> BaseResponse:
    form = PasswordForm()
    staff = _staff_or_404(staff_id)
    if not form.validate_on_submit():
        flash(_("A new password needs at least 8 characters."), "error")
        return redirect(url_for("admin.staff_accounts"))
    sessions, tokens = set_staff_password(staff, form.password.data)
    audit.record("staff.password", f"staff:{staff.id}",
                 {"sessions_ended": sessions, "tokens_revoked": tokens})
    flash(_("New password set for %(email)s; their sessions and tokens have ended.",
            email=staff.email), "success")
    # Resetting one's own password ends one's own session too: sign in again.
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.get("/tokens")
@login_required("admin")
def tokens() -> str:
    kind = request.args.get("kind") if request.args.get("kind") in ("staff", "member") else None
    page = paginate(tokens_query(kind=kind), TOKENS_PER_PAGE)
    return render_template("admin/security/tokens.html", page=page, kind=kind, now=utcnow())


@admin_blueprint.post("/tokens/<id:token_id>/revoke")
@login_required("admin")
def revoke_api_token(token_id: int) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        token = get_token(token_id)
    except DomainError:
        abort(404)
    changed = revoke_token(token, reason="revoked by admin")
    audit.record("token.revoke", f"token:{token.id}",
                 {"prefix": token.display_prefix, "kind": token.kind, "changed": changed})
    flash(_("Token %(prefix)s is revoked.", prefix=token.display_prefix), "success")
    return redirect(url_for("admin.tokens"))


@admin_blueprint.get("/audit")
@login_required("admin")
def audit_log() -> str:
    filters = {name: (request.args.get(name) or "").strip()[:160] or None
               for name in ("actor", "action", "target")}
    page = paginate(audit.events_query(actor=filters["actor"], action=filters["action"],
                                       target=filters["target"]), AUDIT_PER_PAGE)
    return render_template("admin/security/audit.html", page=page, filters=filters)
