"""Admin pages for tiers and benefits: the rules editor with live preview, drops, the senior
roster and a member's tier timeline.

Thin handlers over the koc.tiers.services topics (rules, engine, drops, groups), with the same
validation as the API (TiersInSchema + validate_tiers, DropInSchema): the Flask-WTF forms here only
carry the posted text and the CSRF token, the API's schemas check it. CSRF is checked by
Flask-WTF's CSRFProtect on every form POST; the pages' scripts write through /api/v1 with the
session and the X-CSRFToken header.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import (
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    url_for,
)
from flask_babel import gettext as _
from flask_wtf import FlaskForm
from marshmallow import ValidationError
from werkzeug.wrappers import Response as BaseResponse
from wtforms import StringField, TextAreaField

from koc.admin.blueprint import (
    admin_blueprint,
    current_staff,
    found_or_404,
    is_admin,
    login_required,
    paginate,
    undo_if_refused,
)
from koc.admin.forms import ActionForm
from koc.admin.i18n import from_local, metric_display_name, tier_display_name, zone_label
from koc.assets.models import Asset, Download, Kit, KitStatus
from koc.core.audit import AuditEvent
from koc.core.auth import Staff
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.wecom.client import WeComError
from koc.extensions import db
from koc.members.models import Member
from koc.members.services.roster import get_member
from koc.submissions.models import FollowerCheck, PointsEntry, Submission
from koc.submissions.services import posts
from koc.tiers.models import Badge, Drop, DropClaim, KitAnnouncement, TierRuleSet
from koc.tiers.schemas import DropInSchema, TiersInSchema
from koc.tiers.services import drops as drop_service
from koc.tiers.services import engine, groups, wecom_groups
from koc.tiers.services import history as tier_history_service
from koc.tiers.services import progress as member_progress
from koc.tiers.services import rules as rule_service
from koc.tiers.services.metrics import METRICS
from koc.tiers.wecom import wecom_client

DROPS_PER_PAGE = 25
# Each list on the member page shows the newest this many rows.
MEMBER_LIST_LIMIT = 50
PREVIEW_SAMPLE = 20
# The rules pages list this many saved versions.
HISTORY_LIMIT = 50
# Drop form fields the schema wants as integers; the form posts strings.
_DROP_INT_FIELDS = ("quantity", "per_member_limit", "post_within_days")
_DROP_FIELDS = ("product_name", "sku", "quantity", "per_member_limit", "min_tier", "opens_at",
                "closes_at", "allocation", "post_within_days")


class RulesForm(FlaskForm):
    rules = TextAreaField()
    # Which button: "preview" (the no-JavaScript preview) or "save".
    action = StringField()


class DropForm(FlaskForm):
    """The drop form's fields as posted text; DropInSchema checks them."""

    product_name = StringField()
    sku = StringField()
    quantity = StringField()
    per_member_limit = StringField()
    min_tier = StringField()
    opens_at = StringField()
    closes_at = StringField()
    allocation = StringField()
    post_within_days = StringField()


class AnnouncementForm(FlaskForm):
    kit_id = StringField()
    text = TextAreaField()


# What the new-drop form shows before anything is typed.
_DROP_DEFAULTS = {"per_member_limit": "1", "post_within_days": "14", "allocation": "first_come"}


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
        rule_service.validate_tiers(tiers)
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
                  preview: dict[str, Any] | None = None, status: int = 200
                  ) -> tuple[str, int]:
    rules = rule_service.current_rules()
    saved = author = None
    if rules.version:
        saved = db.session.scalar(
            sa.select(TierRuleSet).where(TierRuleSet.version == rules.version))
    if saved is not None and saved.created_by_staff_id:
        author = db.session.get(Staff, saved.created_by_staff_id)
    versions = list(db.session.scalars(rule_service.rule_versions().limit(HISTORY_LIMIT)))
    authors = _emails({v.created_by_staff_id for v in versions if v.created_by_staff_id})
    raw_names = {t["key"]: t["name"] for t in rules.tiers}
    return render_template(
        "admin/tiers/rules.html",
        rules=rules,
        saved=saved,
        author=author,
        text=text if text is not None else _rules_text(rules.tiers),
        errors=errors or [],
        preview=preview,
        can_edit=is_admin(),
        demotions={t["key"]: {**rule_service.DEFAULT_DEMOTION, **(t.get("demotion") or {})}
                   for t in rules.tiers},
        tier_name=lambda key: tier_display_name(key, raw_names),
        metric_name=metric_display_name,
        versions=versions,
        authors=authors,
        editor_meta={
            "metrics": [[key, metric_display_name(key)] for key in METRICS],
            "default_demotion": rule_service.DEFAULT_DEMOTION,
            "tier_names": {key: tier_display_name(key, raw_names) for key in raw_names},
        },
    ), status


def _emails(staff_ids: set[int]) -> dict[int, str]:
    if not staff_ids:
        return {}
    return dict(db.session.execute(
        sa.select(Staff.id, Staff.email).where(Staff.id.in_(staff_ids))).all())


@admin_blueprint.get("/tiers")
@login_required("viewer")
def tier_rules() -> tuple[str, int]:
    return _render_rules()


@admin_blueprint.post("/tiers")
@login_required("admin")
def save_tier_rules() -> BaseResponse | tuple[str, int]:
    """The page without JavaScript: the JSON form's Preview and Save buttons post here. With
    JavaScript the page previews and saves through /api/v1/tiers/rules(/preview)."""
    form = RulesForm()
    if not form.validate_on_submit():
        abort(400)
    text = form.rules.data or ""
    tiers, errors = _load_rules(text)
    if tiers is None:
        flash(_("The rules were not saved: fix the fields named below."), "error")
        return _render_rules(text=text, errors=errors, status=422)
    if form.action.data == "preview":
        return _render_rules(text=text, preview=_preview(tiers))
    rules = rule_service.save_rules(tiers, staff_id=current_staff().id)
    flash(_("Tier rules saved as version %(version)d.", version=rules.version), "success")
    return redirect(url_for("admin.tier_rules"))


# --- early-access drops ------------------------------------------------------------------------

def _drop_input(form: DropForm) -> dict[str, Any]:
    """The form's strings in the shape DropInSchema loads; datetime-local inputs are in the
    programme's time zone (koc.admin.i18n.from_local)."""
    data: dict[str, Any] = {}
    for name in _DROP_FIELDS:
        value: Any = (form[name].data or "").strip()
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
    """A datetime-local value, typed in the programme's time zone, as an aware UTC time."""
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return value
    return from_local(parsed).isoformat()


@dataclass(frozen=True)
class LotteryProof:
    """What anyone needs to re-run a drawn lottery, and whether re-running gives its winners."""

    seed: str
    quantity: int
    entry_ids: list[int]
    winner_ids: list[int]
    winners: list[tuple[int, int, str]]  # (entry id, member id, name), for the page
    rerun_matches: bool


def _lottery_proof(drop: Drop) -> LotteryProof:
    entries = db.session.execute(
        sa.select(DropClaim.id, DropClaim.member_id, DropClaim.status, Member.display_name)
        .join(Member, Member.id == DropClaim.member_id)
        .where(DropClaim.drop_id == drop.id).order_by(DropClaim.id)).all()
    entry_ids = [e.id for e in entries]
    winner_ids = [e.id for e in entries if e.status == "won"]
    rerun = drop_service.lottery_winners(drop.lottery_seed or "", entry_ids, drop.quantity)
    return LotteryProof(
        seed=drop.lottery_seed or "", quantity=drop.quantity, entry_ids=entry_ids,
        winner_ids=winner_ids, rerun_matches=rerun == winner_ids,
        winners=[(e.id, e.member_id, e.display_name) for e in entries if e.status == "won"])


def _render_drops(*, form: DropForm | None = None,
                  errors: list[tuple[str, str]] | None = None, status: int = 200
                  ) -> tuple[str, int]:
    listed = paginate(sa.select(Drop).order_by(Drop.id.desc()), DROPS_PER_PAGE)
    drops: list[Drop] = listed.items
    claims: dict[int, dict[str, int]] = {}
    if drops:
        for drop_id, status_, count in db.session.execute(
            sa.select(DropClaim.drop_id, DropClaim.status, sa.func.count())
            .where(DropClaim.drop_id.in_([d.id for d in drops]))
            .group_by(DropClaim.drop_id, DropClaim.status)
        ):
            claims.setdefault(drop_id, {})[status_] = count
    rules = rule_service.current_rules()
    return render_template(
        "admin/tiers/drops.html",
        zone=zone_label(utcnow()),
        proofs={drop.id: _lottery_proof(drop) for drop in drops
                if drop.allocation == "lottery" and drop.drawn_at is not None},
        now=utcnow(),
        drops=drops,
        claims=claims,
        seeding={drop.id: drop_service.seeding_report(drop) for drop in drops},
        tiers=sorted(rules.tiers, key=lambda t: t["rank"]),
        tier_names={t["key"]: t["name"] for t in rules.tiers},
        form=form or DropForm(formdata=None, data=_DROP_DEFAULTS),
        errors=errors or [],
        can_edit=is_admin(),
        page=listed.page,
        pages=listed.pages,
        total=listed.total,
    ), status


@admin_blueprint.get("/drops")
@login_required("viewer")
def drops() -> tuple[str, int]:
    return _render_drops()


@admin_blueprint.post("/drops")
@login_required("admin")
def create_drop() -> BaseResponse | tuple[str, int]:
    form = DropForm()
    if not form.validate_on_submit():
        abort(400)
    try:
        values = DropInSchema().load(_drop_input(form))
        with undo_if_refused():
            drop = drop_service.create_drop(values, tier_ranks=rule_service.tier_ranks())
    except ValidationError as exc:
        return _render_drops(form=form, errors=_field_errors(exc.messages), status=422)
    except DomainError as exc:
        return _render_drops(form=form, errors=_field_errors(exc.errors or {"_": [exc.message]}),
                             status=422)
    flash(_("Drop %(id)d created: %(name)s.", id=drop.id, name=drop.product_name), "success")
    return redirect(url_for("admin.drops"))


# --- the senior group --------------------------------------------------------------------------

@admin_blueprint.get("/groups/senior")
@login_required("viewer")
def senior_roster() -> str:
    roster = groups.roster()
    ids = [row.member_id for rows in roster.values() for row in rows]
    names = dict(db.session.execute(
        sa.select(Member.id, Member.display_name).where(Member.id.in_(ids))).all()) if ids else {}
    return render_template("admin/tiers/roster.html", roster=roster, names=names,
                           can_edit=is_admin())


@admin_blueprint.post("/groups/senior/<int:member_id>/removed")
@login_required("admin")
def senior_removed(member_id: int) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    try:
        with undo_if_refused():
            groups.confirm_removed(member_id, staff_id=current_staff().id)
    except DomainError:
        flash(_("Member %(id)d is not on the removal list.", id=member_id), "error")
        return redirect(url_for("admin.senior_roster"))
    flash(_("Member %(id)d marked as removed from the senior group.", id=member_id), "success")
    return redirect(url_for("admin.senior_roster"))


# --- a member's page ---------------------------------------------------------------------------

def _latest(stmt: sa.Select, limit: int = MEMBER_LIST_LIMIT) -> list[Any]:
    return list(db.session.execute(stmt.limit(limit)).all())


def _member_activity(member: Member) -> dict[str, Any]:
    """Everything the member page lists besides the tier: each list newest first and bounded."""
    mid = member.id
    ledger = _latest(sa.select(PointsEntry).where(PointsEntry.member_id == mid)
                     .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc()))
    balance = db.session.scalar(sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0))
                                .where(PointsEntry.member_id == mid))
    submissions = _latest(
        sa.select(Submission, Kit.title).outerjoin(Kit, Kit.id == Submission.kit_id)
        .where(Submission.member_id == mid).order_by(Submission.id.desc()))
    downloads = _latest(
        sa.select(Download, Kit.title, Asset.filename).join(Kit, Kit.id == Download.kit_id)
        .outerjoin(Asset, Asset.id == Download.asset_id)
        .where(Download.member_id == mid).order_by(Download.id.desc()))
    badges = list(db.session.scalars(sa.select(Badge).where(Badge.member_id == mid)
                                     .order_by(Badge.id.desc()).limit(MEMBER_LIST_LIMIT)))
    claims = _latest(
        sa.select(DropClaim, Drop.product_name, Drop.sku).join(Drop, Drop.id == DropClaim.drop_id)
        .where(DropClaim.member_id == mid).order_by(DropClaim.id.desc()))
    checks = list(db.session.scalars(
        sa.select(FollowerCheck).where(FollowerCheck.member_id == mid)
        .order_by(FollowerCheck.id.desc()).limit(MEMBER_LIST_LIMIT)))
    targets = [f"member:{mid}"] + [f"submission:{row[0].id}" for row in submissions]
    actions = list(db.session.scalars(
        sa.select(AuditEvent).where(AuditEvent.target.in_(targets))
        .order_by(AuditEvent.id.desc()).limit(MEMBER_LIST_LIMIT)))
    return {"ledger": [row[0] for row in ledger], "balance": balance,
            "submissions": submissions, "downloads": downloads, "badges": badges,
            "claims": claims, "follower_checks": checks, "staff_actions": actions}


def _details_text(details: Any) -> str:
    """An audit row's details as readable JSON (Chinese reasons as written, not \\u escapes)."""
    return json.dumps(details, ensure_ascii=False, sort_keys=True, default=str)


@admin_blueprint.get("/members/<int:member_id>")
@login_required("viewer")
def member_page(member_id: int) -> str:
    member = found_or_404(get_member, member_id)
    history = tier_history_service.tier_history(member.id)
    # The numbers the tier rests on, each with where it came from and who confirmed it.
    best = [(post, posts.counted_snapshot(post)) for post in posts.best_posts(member.id)]
    activity = _member_activity(member)
    staff_ids = {c.changed_by_staff_id for c in history if c.changed_by_staff_id}
    staff_ids |= {a.followers_confirmed_by_staff_id for a in member.social_accounts
                  if a.followers_confirmed_by_staff_id}
    staff_ids |= {s.decided_by_staff_id for _post, s in best if s and s.decided_by_staff_id}
    staff_ids |= {c.staff_id for c in activity["follower_checks"] if c.staff_id}
    staff = dict(db.session.execute(
        sa.select(Staff.id, Staff.email).where(Staff.id.in_(staff_ids))).all()) if staff_ids else {}
    rules = rule_service.current_rules()
    raw_names = {t["key"]: t["name"] for t in rules.tiers}
    tier_names = {key: tier_display_name(key, raw_names) for key in raw_names}
    return render_template(
        "admin/tiers/member.html",
        member=member,
        progress=member_progress.progress(member),
        history=history,
        best_posts=best,
        staff=staff,
        tier_names=tier_names,
        tiers=[(t["key"], tier_names[t["key"]]) for t in sorted(rules.tiers,
                                                                key=lambda t: t["rank"])],
        can_edit=is_admin(),
        details_text=_details_text,
        **activity,
    )


# --- kit announcements to the KOC groups (WeCom group messages) --------------------------------

ANNOUNCEMENTS_SHOWN = 50


def _render_announcements(*, errors: list[tuple[str, str]] | None = None,
                          form: AnnouncementForm | None = None, status: int = 200
                          ) -> tuple[str, int]:
    settings = current_app.config["KOC_SETTINGS"]
    rows = db.session.scalars(sa.select(KitAnnouncement).order_by(KitAnnouncement.id.desc())
                              .limit(ANNOUNCEMENTS_SHOWN)).all()
    kits = db.session.scalars(sa.select(Kit).where(Kit.status == KitStatus.published.value)
                              .order_by(Kit.published_at.desc()).limit(200)).all()
    titles = dict(db.session.execute(sa.select(Kit.id, Kit.title).where(
        Kit.id.in_({r.kit_id for r in rows}))).all()) if rows else {}
    return render_template(
        "admin/tiers/announcements.html", announcements=rows, kits=kits, titles=titles,
        chat_ids=settings.wecom_koc_chat_ids, wecom_on=settings.wecom_enabled,
        daily_limit=settings.wecom_group_daily_limit, form=form or AnnouncementForm(
            formdata=None), errors=errors or [], can_edit=is_admin()), status


@admin_blueprint.get("/announcements")
@login_required("viewer")
def announcements() -> tuple[str, int]:
    return _render_announcements()


@admin_blueprint.post("/announcements")
@login_required("admin")
def draft_announcement() -> BaseResponse | tuple[str, int]:
    form = AnnouncementForm()
    if not form.validate_on_submit():
        abort(400)
    kit_id = (form.kit_id.data or "").strip()
    kit = db.session.get(Kit, int(kit_id)) if kit_id.isdigit() else None
    if kit is None:
        return _render_announcements(form=form, errors=[("kit_id", _("Choose a kit."))],
                                     status=422)
    try:
        with undo_if_refused():
            row = wecom_groups.draft_announcement(
                kit.id, text=form.text.data or "", staff_id=current_staff().id,
                chat_ids=list(current_app.config["KOC_SETTINGS"].wecom_koc_chat_ids))
    except DomainError as exc:
        return _render_announcements(form=form, errors=_field_errors(
            exc.errors or {"_": [exc.message]}), status=422)
    flash(_("Announcement %(id)d drafted: check it, then confirm to send.", id=row.id),
          "success")
    return redirect(url_for("admin.announcements"))


@admin_blueprint.post("/announcements/<int:announcement_id>/send")
@login_required("admin")
def send_announcement(announcement_id: int) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    settings = current_app.config["KOC_SETTINGS"]
    if not settings.wecom_enabled:
        flash(_("WeCom is not configured."), "error")
        return redirect(url_for("admin.announcements"))
    try:
        with undo_if_refused():
            row = wecom_groups.send_announcement(
                wecom_client(), wecom_groups.get_announcement(announcement_id),
                staff_id=current_staff().id, daily_limit=settings.wecom_group_daily_limit)
    except (DomainError, WeComError) as exc:
        flash(str(getattr(exc, "message", exc)), "error")
        return redirect(url_for("admin.announcements"))
    if row.status == "sent":
        flash(_("Sent to WeCom: each group owner now confirms the message in WeCom."),
              "success")
    else:
        flash(_("Nothing was sent: %(why)s", why=row.error or ""), "error")
    return redirect(url_for("admin.announcements"))
