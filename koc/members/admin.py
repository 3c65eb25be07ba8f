"""Members' admin pages: 成员 (the roster, filters, CSV export, over members_query, the same
query GET /api/v1/members pages through); 用户库 (import a CRM file straight to the object store,
its job followed live, the refused lines as CSV; look a user up); 候选人 (ranked candidates with
reasons in the reader's language, filters, the rules as a form with a preview); invitation
campaigns (invite the top N of a filter, each campaign's funnel, links as CSV, withdraw)."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from flask import (
    Response,
    abort,
    current_app,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import format_datetime, format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from marshmallow import Schema, ValidationError, fields
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse
from wtforms import IntegerField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, NumberRange, Optional

from koc.admin.blueprint import (
    Paged,
    admin_blueprint,
    allow_store_origins,
    current_staff,
    found_or_404,
    is_admin,
    login_required,
    paginate,
)
from koc.admin.i18n import tier_display_name
from koc.core import audit
from koc.core import fields as kf
from koc.core.db import StatementTooSlow, time_limited, utcnow
from koc.core.errors import DomainError
from koc.core.jobs import Job
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import InvitationCampaign, Member, User
from koc.members.schemas import (
    MAX_PICKED,
    CampaignFilterSchema,
    CandidateQuerySchema,
)
from koc.members.services import (
    campaigns,
    candidate_rules,
    candidates,
    import_files,
    imports,
    privacy,
    users,
)
from koc.members.services.roster import MEMBER_SORTS, get_member, members_query
from koc.submissions.services.funnel import campaign_posts
from koc.tiers.services import rules

PER_PAGE = 50
EXPORT_BATCH = 1000
STATUS_NAMES = {"active": _l("Active"), "suspended": _l("Suspended")}
SORT_NAMES = {
    "id": _l("Member number"),
    "-joined": _l("Newest first"),
    "joined": _l("Oldest first"),
    "name": _l("Name (A to Z)"),
    "-name": _l("Name (Z to A)"),
}
FILTERS = ("tier", "status", "city", "store_code", "tag", "at_risk", "q", "sort")
# Spreadsheet programs run a cell starting with one of these as a formula.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


class RosterQuerySchema(Schema):
    tier = kf.String(max_length=32)
    status = kf.OneOf(list(STATUS_NAMES))
    city = kf.String(max_length=64)
    store_code = kf.String(max_length=32)
    tag = kf.String(max_length=64)
    at_risk = fields.Boolean()
    q = kf.String(min_length=1, max_length=100)
    sort = kf.OneOf(list(MEMBER_SORTS), load_default="-joined")


def _roster_query() -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    """The filters from the query string: (loaded, as typed, problems by field)."""
    raw = {name: value for name in FILTERS if (value := request.args.get(name, "").strip())}
    try:
        return RosterQuerySchema().load(raw), raw, {}
    except ValidationError as exc:
        # The form keeps what was typed; the list shows everyone until it is fixed.
        bad = exc.messages if isinstance(exc.messages, dict) else {}
        return RosterQuerySchema().load({}), raw, {name: _("Not a valid value.") for name in bad}


def _roster_select(query: dict[str, Any]) -> sa.Select:
    # The users of the rows shown (or of each exported batch), in one query by key.
    return members_query(**query).options(selectinload(Member.user))


@admin_blueprint.get("/members")
@login_required("viewer")
def members() -> tuple[str, int]:
    query, raw, problems = _roster_query()
    ruleset = rules.current_rules()
    names = {t["key"]: t["name"] for t in ruleset.tiers}
    paged = paginate(_roster_select(query), PER_PAGE)
    return render_template(
        "admin/members/roster.html",
        paged=paged,
        query=query,
        raw=raw,
        problems=problems,
        tiers=[(t["key"], tier_display_name(t["key"], names)) for t in ruleset.tiers],
        tier_name=lambda key: tier_display_name(key, names),
        status_names=STATUS_NAMES,
        sort_names=SORT_NAMES,
        can_export=is_admin(),
    ), 200 if not problems else 422


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


@admin_blueprint.get("/members.csv")
@login_required("admin")
def members_csv() -> Response | tuple[str, int]:
    """The filtered roster as CSV, streamed in batches so 50,000 rows never sit in memory."""
    query, _raw, problems = _roster_query()
    if problems:
        return members()
    names = {t["key"]: t["name"] for t in rules.current_rules().tiers}
    header = [_("Member number"), _("Name"), _("Customer ID"), _("City"), _("Store code"),
              _("Tags"), _("Tier"), _("Status"), _("At risk"), _("Joined")]
    stmt = _roster_select(query).execution_options(yield_per=EXPORT_BATCH)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        # The byte-order mark makes Excel read the file as UTF-8 (Chinese names stay readable).
        buffer.write("\ufeff")
        writer.writerow(header)
        for count, member in enumerate(db.session.scalars(stmt), start=1):
            user = member.user
            writer.writerow([_cell(v) for v in (
                member.id, member.display_name, user.external_id, user.city, user.store_code,
                " ".join(user.tags or ()), tier_display_name(member.tier_key, names),
                STATUS_NAMES.get(member.status, member.status),
                _("Yes") if member.tier_below_since else _("No"),
                format_datetime(member.joined_at, "yyyy-MM-dd HH:mm"))])
            if count % EXPORT_BATCH == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv",
                    headers={"Content-Disposition": 'attachment; filename="members.csv"'})


# --- personal data (PIPL): the same services as GET /members/{id}/export and
# DELETE /users/{external_id} --------------------------------------------------------------------

@admin_blueprint.get("/members/<int:member_id>/export.json")
@login_required("admin")
def member_export(member_id: int) -> Response:
    member = found_or_404(get_member, member_id)
    audit.record("member.export", f"member:{member_id}")
    data = privacy.export_person(member, now=utcnow())
    data["exported_at"] = data["exported_at"].isoformat()
    return Response(json.dumps(data, ensure_ascii=False, indent=2),
                    mimetype="application/json", headers={
                        "Content-Disposition": f'attachment; filename="member-{member_id}.json"',
                        "Cache-Control": "no-store"})


@admin_blueprint.post("/members/<int:member_id>/forget")
@login_required("admin")
def forget_member(member_id: int) -> BaseResponse:
    member = found_or_404(get_member, member_id)
    external_id = member.user.external_id
    if (request.form.get("confirm") or "").strip() != external_id:
        flash(_("Type the customer ID exactly to confirm."), "error")
        return redirect(url_for("admin.member_page", member_id=member_id))
    summary = privacy.forget_user(external_id, now=utcnow())
    audit.record("user.forget", f"user:{external_id}", summary)
    flash(_("The person is forgotten."), "success")
    return redirect(url_for("admin.member_page", member_id=member_id))


# --- 用户库: the user base (import a CRM file, follow its job, look a user up) -------------------

IMPORT_REPORT_HEADER = ("line", "message")


@admin_blueprint.get("/users")
@login_required("viewer")
def user_base() -> tuple[BaseResponse, int]:
    external_id = request.args.get("external_id", "").strip()
    user = None
    problem = None
    if external_id:
        try:
            user = users.get_user(external_id[:64])
        except DomainError:
            problem = _("No user with this customer ID.")
    # Tens of millions of rows: the planner's estimate above 100,000, as the
    # candidates list does (an exact COUNT(*) over 40M users takes seconds).
    total, estimated = candidates.count_candidates(sa.select(User.id))
    response = current_app.make_response(render_template(
        "admin/members/users.html", user=user, external_id=external_id, problem=problem,
        total=total, estimated=estimated, can_import=is_admin(), reason_text=reason_text,
        max_import_bytes=import_files.MAX_IMPORT_BYTES))
    # The file goes straight to the object store, maybe another origin.
    probe = get_storage().presign_get("imports/origin-probe", expires_in=60)
    return allow_store_origins(response, [probe], connect=True), 200 if not problem else 404


_IMPORTS_FOR_ADMINS = _l("Only admins can import users.")


def _import_job(job_id: int) -> Job:
    job = db.session.get(Job, job_id)
    if job is None or job.kind != "users.import":
        abort(404)
    return job


@admin_blueprint.get("/users/imports/jobs/<int:job_id>/report.csv")
@login_required("admin")
def user_import_report(job_id: int) -> Response:
    """Every refused line of the job (line, reason) as CSV, streamed from the report the job
    wrote beside it chunk by chunk; a job from before that has only its first 1,000."""
    job = _import_job(job_id)
    audit.record("users.import_report", f"job:{job_id}", None)
    storage = get_storage()
    stored = imports.iter_refusals(storage, job_id)
    first = next(stored, None)

    def body() -> Iterator[bytes]:
        header = io.StringIO()
        csv.writer(header).writerow([_("Line"), _("Reason")])
        yield ("\ufeff" + header.getvalue()).encode("utf-8")
        if first is not None:
            yield first
            yield from stored
            return
        yield imports.refusals_csv([(e.get("line") or 0, str(e.get("message") or ""))
                                    for e in job.errors or ()])

    return Response(stream_with_context(body()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="import-{job_id}-refused.csv"'})


# --- 候选人: ranked candidates, the rules as a form with preview, invite as a campaign ------------

CANDIDATE_FILTERS = ("city", "store_code", "tag", "ordered_within_days", "min_score")
REASON_TEXTS = {
    "orders": _l("%(value)s orders"),
    "spend_cents": _l("spent ¥%(value)s"),
    "shares": _l("shared %(value)s times"),
    "community_posts": _l("%(value)s community posts"),
    "ordered_within_days": _l("ordered in the last %(value)s days"),
}


def reason_text(reason: dict[str, Any]) -> str:
    """A reason ({"code", "value"}) in the reader's language."""
    value = reason.get("value")
    if reason.get("code") == "spend_cents" and isinstance(value, int):
        value = format_decimal(value / 100, format="#,##0.##")
    elif isinstance(value, int):
        value = format_decimal(value)
    text = REASON_TEXTS.get(reason.get("code") or "")
    return str(text) % {"value": value} if text else f"{reason.get('code')}: {value}"


def _candidate_query() -> tuple[dict[str, Any], dict[str, str], dict[str, str]]:
    raw = {name: value for name in CANDIDATE_FILTERS
           if (value := request.args.get(name, "").strip())}
    try:
        # The query string's schema (digits as text are numbers), as GET /api/v1/candidates.
        return CandidateQuerySchema(exclude=("limit",)).load(raw), raw, {}
    except ValidationError as exc:
        bad = exc.messages if isinstance(exc.messages, dict) else {}
        return {}, raw, {name: _("Not a valid value.") for name in bad}


_TOO_SLOW = _l("these filters together match too few customers to rank in time; narrow them "
               "differently (one city or store, or a tag on its own)")


@admin_blueprint.get("/candidates")
@login_required("viewer")
def candidate_list() -> tuple[str, int]:
    query, raw, problems = _candidate_query()
    now = utcnow()
    too_slow = False
    try:
        # Tens of millions of users: the total is the planner's estimate, as in the API, and a
        # ranking that would walk a whole segment gives up (candidates.TIME_LIMIT_MS).
        with time_limited(db.session(), candidates.TIME_LIMIT_MS):
            paged = paginate(candidates.candidates_query(**query, now=now), PER_PAGE,
                             estimate=candidates.count_candidates)
    except StatementTooSlow:
        # One message for the filters together; no list, which would say "nobody matches".
        paged = Paged(items=[], page=1, pages=1, total=0)
        problems, too_slow = {"filter": _TOO_SLOW}, True
    ruleset = candidate_rules.current_rules()
    # The rules form saves through PUT /api/v1/candidates/rules, then comes back here naming
    # the version and the rescoring job.
    saved = request.args.get("rules_saved", type=int)
    rescore_job = request.args.get("rescore_job", type=int)
    return render_template(
        "admin/members/candidates.html", paged=paged, raw=raw, problems=problems,
        too_slow=too_slow,
        saved=saved if saved is not None and saved == ruleset.version else None,
        rescore_job=rescore_job,
        reasons=lambda user: [reason_text(r) for r in candidates.candidate_reasons(user, now=now)],
        ruleset=ruleset, rules_json=json.dumps(ruleset.rules, ensure_ascii=False),
        can_edit=is_admin(),
        invitation_days=current_app.config["KOC_SETTINGS"].invitation_days,
    ), 200 if not problems else 422


# --- invitation campaigns ------------------------------------------------------------------------

class CampaignForm(FlaskForm):
    name = StringField(_l("Campaign name"), validators=[DataRequired(), Length(max=100)])
    limit = IntegerField(_l("How many to invite"),
                         validators=[DataRequired(), NumberRange(min=1, max=200_000)])
    expires_in_days = IntegerField(_l("Valid for (days)"),
                                   validators=[DataRequired(), NumberRange(min=1, max=365)])
    message = TextAreaField(_l("Message shown on the join page"),
                            validators=[Optional(), Length(max=1000)])


@admin_blueprint.post("/campaigns")
@login_required("admin")
def campaign_create() -> BaseResponse:
    form = CampaignForm()
    query, _raw, problems = _candidate_query()
    if problems or not form.validate_on_submit():
        for field, errors in form.errors.items():
            label = getattr(form, field).label.text if hasattr(form, field) else field
            flash(f"{label}: {'; '.join(str(e) for e in errors)}", "error")
        if problems:
            flash(_("The candidate filter is not valid."), "error")
        args: dict[str, Any] = request.args.to_dict()
        return redirect(url_for("admin.candidate_list", **args))
    limit = form.limit.data or 1
    # Customers ticked on the list: those, whatever the filter and the number asked for.
    picked = [value.strip() for value in request.form.getlist("external_id") if value.strip()]
    if picked:
        try:
            query = CampaignFilterSchema().load({"external_ids": picked})
        except ValidationError:
            # Too many ticked, or a value no list could have sent (a forged form).
            flash(_("Pick at most %(count)s customers for one campaign.",
                    count=format_decimal(MAX_PICKED)) if len(picked) > MAX_PICKED
                  else _("A ticked customer ID is not valid."), "error")
            back: dict[str, Any] = request.args.to_dict()
            return redirect(url_for("admin.candidate_list", **back))
        limit = len(query["external_ids"])
    campaign = campaigns.create_campaign(
        name=form.name.data or "", filter=query, limit=limit,
        expires_in_days=form.expires_in_days.data or 14, message=form.message.data or "",
        staff_id=current_staff().id, now=utcnow())
    audit.record("invitation_campaign.create", f"invitation_campaign:{campaign.id}",
                 {"filter": query, "limit": campaign.limit, "invited": campaign.invited})
    flash(_("%(count)s invitations created. Download the codes and join links below.",
            count=format_decimal(campaign.invited)), "success")
    return redirect(url_for("admin.campaign_list", created=campaign.id))


def _funnel_rows(items: list[InvitationCampaign]) -> list[dict[str, Any]]:
    ids = [c.id for c in items]
    counts = campaigns.funnels(ids)
    posts = campaign_posts(ids)
    rows = []
    for campaign in items:
        steps = {**counts[campaign.id], **posts[campaign.id]}
        invited = steps["invited"] or 0
        rows.append({"campaign": campaign, **steps, "rate": {
            name: (steps[name] / invited if invited else 0.0)
            for name in ("opened", "accepted", "first_submission", "first_approval")}})
    return rows


@admin_blueprint.get("/campaigns")
@login_required("viewer")
def campaign_list() -> str:
    paged = paginate(campaigns.campaigns_query(), PER_PAGE)
    created = request.args.get("created", type=int)
    return render_template("admin/members/campaigns.html", paged=paged,
                           rows=_funnel_rows(paged.items), created=created,
                           can_edit=is_admin(), now=utcnow(), action_form=FlaskForm())


@admin_blueprint.get("/campaigns/<int:campaign_id>/links.csv")
@login_required("admin")
def campaign_links_csv(campaign_id: int) -> Response:
    """The campaign's codes and join links (derived again, never stored), streamed as CSV."""
    found_or_404(campaigns.get_campaign, campaign_id)
    audit.record("invitation_campaign.links", f"invitation_campaign:{campaign_id}", None)
    statuses = {"open": _("Open"), "accepted": _("Accepted"), "revoked": _("Withdrawn")}
    rows = campaigns.campaign_links(campaign_id)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow([_("Customer ID"), _("Name"), _("Invitation code"), _("Join link"),
                         _("Status")])
        for count, (external_id, name, code, link, status) in enumerate(rows, start=1):
            writer.writerow([_cell(external_id), _cell(name), code, link,
                             statuses.get(status, status)])
            if count % EXPORT_BATCH == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-links.csv"'})


@admin_blueprint.post("/campaigns/<int:campaign_id>/revoke")
@login_required("admin")
def campaign_revoke(campaign_id: int) -> BaseResponse:
    if not FlaskForm().validate_on_submit():
        abort(400)
    campaign = found_or_404(campaigns.get_campaign, campaign_id)
    revoked = campaigns.revoke_campaign(campaign, now=utcnow())
    audit.record("invitation_campaign.revoke", f"invitation_campaign:{campaign_id}",
                 {"revoked": revoked})
    flash(_("%(count)s invitations withdrawn.", count=format_decimal(revoked)), "success")
    return redirect(url_for("admin.campaign_list"))
