"""Admin pages for the service's own security: staff accounts (invitation, role, deactivation, a
new password), API tokens (revoke) and the audit log. Admins only, except the page where an
invited colleague chooses their password; every change is audited.

The same services as `koc staff ...`, `koc token revoke` and `/api/v1/tokens`, in koc.core.auth.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from flask import abort, flash, redirect, render_template, request, url_for
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from werkzeug.wrappers import Response as BaseResponse
from wtforms import EmailField, PasswordField, SelectField
from wtforms.validators import AnyOf, DataRequired, EqualTo, Length, Regexp

from koc.admin.blueprint import (
    admin_blueprint,
    current_staff,
    login_required,
    paginate,
    undo_if_refused,
)
from koc.admin.forms import ActionForm, strip
from koc.admin.i18n import metric_display_name, tier_display_name
from koc.core import audit
from koc.core.auth import (
    ApiToken,
    Staff,
    StaffRole,
    StaffSession,
    deactivate_staff,
    get_token,
    invite_staff,
    reactivate_staff,
    revoke_token,
    set_staff_password,
    set_staff_role,
    staff_of_invitation,
    tokens_query,
)
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.extensions import db
from koc.tiers.services.rules import current_rules

TOKENS_PER_PAGE = 50
AUDIT_PER_PAGE = 50
ROLES = [role.value for role in StaffRole]


class RoleForm(FlaskForm):
    role = SelectField(choices=ROLES, validators=[AnyOf(ROLES)])


class InviteForm(FlaskForm):
    email = EmailField(_l("Email"), filters=[strip],
                       validators=[DataRequired(), Length(max=254),
                                   Regexp(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")])
    role = SelectField(_l("Role"), choices=ROLES, default="reviewer", validators=[AnyOf(ROLES)])


class ChoosePasswordForm(FlaskForm):
    password = PasswordField(_l("New password"),
                             validators=[DataRequired(), Length(min=8, max=1024)])
    confirm = PasswordField(_l("The same password again"),
                            validators=[DataRequired(), EqualTo("password")])


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
                           tokens=tokens, roles=ROLES, role_names=ROLE_NAMES, me=current_staff(),
                           invite=InviteForm())


@admin_blueprint.post("/staff")
@login_required("admin")
def invite_staff_account() -> BaseResponse:
    """A colleague's account and the link where they choose their password (shown once here;
    the panel sends no email)."""
    form = InviteForm()
    if not form.validate_on_submit():
        flash(_("Enter a valid email address and a role."), "error")
        return redirect(url_for("admin.staff_accounts"))
    try:
        with undo_if_refused():
            staff, value, expires_at = invite_staff(email=form.email.data, role=form.role.data,
                                                    now=utcnow())
    except DomainError:
        flash(_("%(email)s already has an account.", email=form.email.data), "error")
        return redirect(url_for("admin.staff_accounts"))
    audit.record("staff.invite", f"staff:{staff.id}", {"email": staff.email, "role": staff.role})
    link = url_for("admin.accept_staff_invitation", value=value, _external=True)
    flash(_("%(email)s is invited as %(role)s. Send them this link to choose a password (valid "
            "until %(until)s, once): %(link)s", email=staff.email,
            role=ROLE_NAMES[staff.role], until=format_datetime(expires_at, "short"), link=link),
          "success")
    return redirect(url_for("admin.staff_accounts"))


@admin_blueprint.route("/invitation/<value>", methods=["GET", "POST"])
def accept_staff_invitation(value: str) -> BaseResponse | tuple[str, int]:
    """Where an invited colleague chooses their password; the link then stops working."""
    now = utcnow()
    staff = staff_of_invitation(value, now=now)
    if staff is None:
        return render_template("admin/security/invitation.html", staff=None, form=None), 410
    form = ChoosePasswordForm()
    if form.validate_on_submit():
        set_staff_password(staff, form.password.data, now=now)
        audit.record("staff.invitation_accepted", f"staff:{staff.id}", actor=staff.email,
                     actor_staff_id=staff.id)
        flash(_("Your password is set. Sign in with %(email)s.", email=staff.email), "success")
        return redirect(url_for("admin.login"))
    status = 422 if form.errors else 200
    return render_template("admin/security/invitation.html", staff=staff, form=form), status


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
    flash(_("%(email)s is now %(role)s.", email=staff.email, role=ROLE_NAMES[staff.role]),
          "success")
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
    return render_template("admin/security/tokens.html", page=page, kind=kind, now=utcnow(),
                           role_names=ROLE_NAMES)


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


# The audit details' keys in the reader's language; a key not named here is shown as recorded.
DETAIL_NAMES = {
    "before": _l("Before"), "after": _l("After"), "effects": _l("Effects"),
    "status": _l("Status"), "tier": _l("Tier"), "tier_locked": _l("Tier locked"),
    "min_tier": _l("Lowest tier"), "reason": _l("Reason"), "role": _l("Role"),
    "email": _l("Email"), "prefix": _l("Token prefix"), "kind": _l("Kind"),
    "changed": _l("Changed"), "limit": _l("Limit"), "created": _l("Created"),
    "fields": _l("Fields"), "retry_after": _l("Retry after (seconds)"),
    "delivery": _l("Delivery"), "url": _l("URL"), "filename": _l("File"), "kit": _l("Kit"),
    "asset": _l("Asset"), "metric": _l("Metric"), "version": _l("Version"),
    "title": _l("Title"), "name": _l("Name"), "filter": _l("Filter"),
    "invited": _l("Invitations sent"), "city": _l("City"), "store_code": _l("Store"),
    "tag": _l("Tag"), "segments": _l("Segments"),
}
ROLE_NAMES = {"admin": _l("Admin"), "reviewer": _l("Reviewer"), "viewer": _l("Viewer")}
STATUS_NAMES = {"active": _l("Active"), "suspended": _l("Suspended")}
TIER_KEYS = frozenset({"tier", "min_tier", "from", "to", "tier_key"})


def _named(key: str, value: str, tier_names: dict[str, str]) -> str:
    """A recorded key (a tier, a metric, a role) by its display name; other text as it is."""
    if key in TIER_KEYS:
        return tier_display_name(value, tier_names)
    if key == "metric":
        return metric_display_name(value)
    if value in ROLE_NAMES and key in ("role", "before", "after"):
        return str(ROLE_NAMES[value])
    if value in STATUS_NAMES and key == "status":
        return str(STATUS_NAMES[value])
    return value


def _detail_value(key: str, value: Any, tier_names: dict[str, str]) -> str:
    if isinstance(value, bool):
        text = _("yes") if value else _("no")
    elif isinstance(value, list):
        text = ", ".join(_detail_value(key, item, tier_names) for item in value)
    elif isinstance(value, dict):
        text = "; ".join(f"{label}: {line}" for label, line in audit_details(value, tier_names))
    elif isinstance(value, str):
        text = _named(key, value, tier_names)
    else:
        text = "" if value is None else str(value)
    return text or "—"


def audit_details(details: Any, tier_names: dict[str, str], prefix: str = ""
                  ) -> list[tuple[str, str]]:
    """An entry's details as (label, value) lines: nested objects flattened into
    "After · Tier" labels, tiers and metrics by their display names, yes / no for flags."""
    if not isinstance(details, dict):
        return [] if details in (None, "") else [(prefix or str(_("Details")),
                                                 _detail_value("", details, tier_names))]
    lines: list[tuple[str, str]] = []
    for key, value in details.items():
        label = str(DETAIL_NAMES.get(key, key))
        label = f"{prefix} · {label}" if prefix else label
        if isinstance(value, dict) and value:
            lines.extend(audit_details(value, tier_names, label))
        else:
            lines.append((label, _detail_value(key, value, tier_names)))
    return lines


@admin_blueprint.get("/audit")
@login_required("admin")
def audit_log() -> str:
    filters = {name: (request.args.get(name) or "").strip()[:160] or None
               for name in ("actor", "action", "target")}
    page = paginate(audit.events_query(actor=filters["actor"], action=filters["action"],
                                       target=filters["target"]), AUDIT_PER_PAGE)
    tier_names = {t["key"]: t["name"] for t in current_rules().tiers}
    return render_template("admin/security/audit.html", page=page, filters=filters,
                           details=lambda event: audit_details(event.details, tier_names))
