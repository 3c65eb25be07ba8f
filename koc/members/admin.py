"""成员: the member roster (filters, search, sort, pages) and its CSV export, over
members_query, the same query GET /api/v1/members pages through."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from flask import (
    Response,
    flash,
    redirect,
    render_template,
    request,
    stream_with_context,
    url_for,
)
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields
from sqlalchemy.orm import contains_eager
from werkzeug.wrappers import Response as BaseResponse

from koc.admin.blueprint import (
    admin_blueprint,
    found_or_404,
    is_admin,
    login_required,
    paginate,
)
from koc.admin.i18n import tier_display_name
from koc.core import audit
from koc.core import fields as kf
from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from koc.members.services import privacy
from koc.members.services.roster import MEMBER_SORTS, get_member, members_query
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
    # members_query joins users already; load each member's user from that join.
    return members_query(**query).options(contains_eager(Member.user))


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
