"""Admin pages for tiers and benefits: the rules editor with live preview, drops, the senior
roster and a member's tier timeline.

Thin handlers over the koc.tiers.services modules, with the same validation as the API
(TiersInSchema + validate_tiers, DropInSchema). CSRF is checked by Flask-WTF's CSRFProtect on
every POST, including the JSON preview (token in the X-CSRFToken header).
"""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from flask import abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _
from marshmallow import ValidationError

from koc.admin.views import _signed_in_staff, admin_blueprint, login_required
from koc.core.auth import Staff, StaffRole
from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import Member
from koc.members.services import get_member
from koc.tiers.models import Drop, DropClaim, TierRuleSet
from koc.tiers.schemas import DropInSchema, TiersInSchema
from koc.tiers.services import drops as drop_services
from koc.tiers.services import engine, groups
from koc.tiers.services.history import tier_history
from koc.tiers.services.progress import progress
from koc.tiers.services.rules import (
    DEFAULT_DEMOTION,
    current_rules,
    save_rules,
    tier_ranks,
    validate_tiers,
)

DROPS_PER_PAGE = 25
PREVIEW_SAMPLE = 20
# Drop form fields the schema wants as integers; the form posts strings.
_DROP_INT_FIELDS = ("quantity", "per_member_limit", "post_within_days")
_DROP_FIELDS = ("product_name", "sku", "quantity", "per_member_limit", "min_tier", "opens_at",
                "closes_at", "allocation", "post_within_days")


def _is_admin() -> bool:
    staff = _signed_in_staff()
    return staff is not None and StaffRole(staff.role).covers(StaffRole.admin)


def _field_errors(messages: Any, path: str = "") -> list[tuple[str, str]]:
    """Marshmallow's nested messages as (field path, message) pairs: tiers.0.rules.any.0.metric."""
    if isinstance(messages, dict):
        pairs = []
        for key, value in messages.items():
            # "_schema" is a check over the whole object: name the object itself.
            name = path if key in ("_schema", "json") else (f"{path}.{key}" if path else str(key))
            pairs.extend(_field_errors(value, name))
        return pairs
    if isinstance(messages, list | tuple):
        pairs = []
        for item in messages:
            pairs.extend(_field_errors(item, path))
        return pairs
    return [(path or "_", str(messages))]


def _load_rules(text: str) -> tuple[list[dict[str, Any]] | None, list[tuple[str, str]]]:
    """Parse and validate the editor's JSON; returns (tiers, errors naming the field)."""
    try:
        data = json.loads(text)
    except ValueError as exc:
        return None, [("json", _("Not valid JSON: %(error)s", error=str(exc)))]
    if isinstance(data, list):
        data = {"tiers": data}
    try:
        tiers = TiersInSchema().load(data)["tiers"]
        validate_tiers(tiers)
    except ValidationError as exc:
        return None, _field_errors(exc.messages)
    except DomainError as exc:
        return None, _field_errors(exc.errors or {"_": [exc.message]})
    return tiers, []


def _rules_text(tiers: list[dict[str, Any]]) -> str:
    return json.dumps({"tiers": tiers}, ensure_ascii=False, indent=2)


def _preview(tiers: list[dict[str, Any]]) -> dict[str, Any]:
    result = engine.preview(tiers)
    result["changes"] = result["changes"][:PREVIEW_SAMPLE]
    return result


# --- tier rules editor -------------------------------------------------------------------------

def _render_rules(*, text: str | None = None, errors: list[tuple[str, str]] | None = None,
                  preview: dict[str, Any] | None = None, status: int = 200):
    rules = current_rules()
    saved = author = None
    if rules.version:
        saved = db.session.scalar(
            sa.select(TierRuleSet).where(TierRuleSet.version == rules.version))
    if saved is not None and saved.created_by_staff_id:
        author = db.session.get(Staff, saved.created_by_staff_id)
    return render_template(
        "admin/tiers/rules.html",
        rules=rules,
        saved=saved,
        author=author,
        text=text if text is not None else _rules_text(rules.tiers),
        errors=errors or [],
        preview=preview,
        can_edit=_is_admin(),
        demotions={t["key"]: {**DEFAULT_DEMOTION, **(t.get("demotion") or {})}
                   for t in rules.tiers},
    ), status


@admin_blueprint.get("/tiers")
@login_required("viewer")
def tier_rules():
    return _render_rules()


@admin_blueprint.post("/tiers")
@login_required("admin")
def save_tier_rules():
    text = request.form.get("rules", "")
    tiers, errors = _load_rules(text)
    if errors:
        flash(_("The rules were not saved: fix the fields named below."), "error")
        return _render_rules(text=text, errors=errors, status=422)
    if request.form.get("action") == "preview":
        # Without JavaScript, the Preview button posts the form here.
        return _render_rules(text=text, preview=_preview(tiers))
    rules = save_rules(tiers, staff_id=_signed_in_staff().id)
    flash(_("Tier rules saved as version %(version)d.", version=rules.version), "success")
    return redirect(url_for("admin.tier_rules"))


@admin_blueprint.post("/tiers/preview")
@login_required("admin")
def preview_tier_rules():
    """JSON for the live preview: {"rules": "<the editor's text>"} in, counts and a sample out
    (or the errors naming each field); computed by engine.preview, writing nothing."""
    payload = request.get_json(silent=True)
    text = payload.get("rules") if isinstance(payload, dict) else None
    if not isinstance(text, str):
        return jsonify(errors=[{"field": "rules", "message": _("Send the rules as text.")}]), 400
    tiers, errors = _load_rules(text)
    if errors:
        return jsonify(errors=[{"field": f, "message": m} for f, m in errors]), 422
    return jsonify(_preview(tiers))


# --- early-access drops ------------------------------------------------------------------------

def _drop_input(form) -> dict[str, Any]:
    """The form's strings in the shape DropInSchema loads; datetime-local inputs are UTC."""
    data: dict[str, Any] = {}
    for name in _DROP_FIELDS:
        value = (form.get(name) or "").strip()
        if value == "":
            continue
        if name in _DROP_INT_FIELDS:
            # Not a number: left as text, and the schema reports "Not a valid integer."
            value = int(value) if value.lstrip("-").isdigit() else value
        elif name in ("opens_at", "closes_at"):
            value = _as_utc(value)
        data[name] = value
    return data


def _as_utc(value: str) -> str:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.isoformat()


def _render_drops(*, form: dict[str, str] | None = None,
                  errors: list[tuple[str, str]] | None = None, status: int = 200):
    page = max(request.args.get("page", 1, type=int), 1)
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Drop))
    pages = max(math.ceil(total / DROPS_PER_PAGE), 1)
    drops = db.session.scalars(sa.select(Drop).order_by(Drop.id.desc())
                               .offset((page - 1) * DROPS_PER_PAGE).limit(DROPS_PER_PAGE)).all()
    claims: dict[int, dict[str, int]] = {}
    if drops:
        for drop_id, status_, count in db.session.execute(
            sa.select(DropClaim.drop_id, DropClaim.status, sa.func.count())
            .where(DropClaim.drop_id.in_([d.id for d in drops]))
            .group_by(DropClaim.drop_id, DropClaim.status)
        ):
            claims.setdefault(drop_id, {})[status_] = count
    rules = current_rules()
    return render_template(
        "admin/tiers/drops.html",
        drops=drops,
        claims=claims,
        seeding={drop.id: drop_services.seeding_report(drop) for drop in drops},
        tiers=sorted(rules.tiers, key=lambda t: t["rank"]),
        tier_names={t["key"]: t["name"] for t in rules.tiers},
        form=form or {"per_member_limit": "1", "post_within_days": "14",
                      "allocation": "first_come"},
        errors=errors or [],
        can_edit=_is_admin(),
        page=page,
        pages=pages,
        total=total,
    ), status


@admin_blueprint.get("/drops")
@login_required("viewer")
def drops():
    return _render_drops()


@admin_blueprint.post("/drops")
@login_required("admin")
def create_drop():
    raw = {name: request.form.get(name, "") for name in _DROP_FIELDS}
    try:
        values = DropInSchema().load(_drop_input(request.form))
        drop = drop_services.create_drop(values, tier_ranks=tier_ranks())
    except ValidationError as exc:
        db.session.rollback()
        return _render_drops(form=raw, errors=_field_errors(exc.messages), status=422)
    except DomainError as exc:
        db.session.rollback()
        return _render_drops(form=raw, errors=_field_errors(exc.errors or {"_": [exc.message]}),
                             status=422)
    flash(_("Drop %(id)d created: %(name)s.", id=drop.id, name=drop.product_name), "success")
    return redirect(url_for("admin.drops"))


# --- the senior group --------------------------------------------------------------------------

@admin_blueprint.get("/groups/senior")
@login_required("viewer")
def senior_roster():
    roster = groups.roster()
    ids = [row.member_id for rows in roster.values() for row in rows]
    names = dict(db.session.execute(
        sa.select(Member.id, Member.display_name).where(Member.id.in_(ids))).all()) if ids else {}
    return render_template("admin/tiers/roster.html", roster=roster, names=names,
                           can_edit=_is_admin())


@admin_blueprint.post("/groups/senior/<int:member_id>/removed")
@login_required("admin")
def senior_removed(member_id: int):
    try:
        groups.confirm_removed(member_id, staff_id=_signed_in_staff().id)
    except DomainError:
        db.session.rollback()
        flash(_("Member %(id)d is not on the removal list.", id=member_id), "error")
        return redirect(url_for("admin.senior_roster"))
    flash(_("Member %(id)d marked as removed from the senior group.", id=member_id), "success")
    return redirect(url_for("admin.senior_roster"))


# --- a member's page ---------------------------------------------------------------------------

@admin_blueprint.get("/members/<int:member_id>")
@login_required("viewer")
def member_page(member_id: int):
    try:
        member = get_member(member_id)
    except DomainError:
        abort(404)
    history = tier_history(member.id)
    staff_ids = {c.changed_by_staff_id for c in history if c.changed_by_staff_id}
    staff = dict(db.session.execute(
        sa.select(Staff.id, Staff.email).where(Staff.id.in_(staff_ids))).all()) if staff_ids else {}
    rules = current_rules()
    return render_template(
        "admin/tiers/member.html",
        member=member,
        progress=progress(member),
        history=history,
        staff=staff,
        tier_names={t["key"]: t["name"] for t in rules.tiers},
    )
