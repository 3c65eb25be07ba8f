"""Admin pages for submissions: the review queue (its script approves, rejects, bulk-reviews
and re-opens through /api/v1/submissions/...), and the scoring rules as a form (its script
previews and saves through /api/v1/scoring/rules).

Thin over koc.submissions.services (posts for reading and locking), as the API's handlers are.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from flask import abort, make_response, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import Schema, ValidationError, fields
from sqlalchemy.orm import selectinload
from werkzeug.wrappers import Response as BaseResponse
from wtforms import Form, SelectField, StringField, TextAreaField

from koc.admin.blueprint import (
    admin_blueprint,
    allow_store_origins,
    found_or_404,
    is_admin,
    login_required,
    paginate,
)
from koc.admin.i18n import tier_display_name
from koc.assets.models import Download, Kit
from koc.assets.services import kits as kit_services
from koc.core import fields as kf
from koc.core.auth import Staff
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import PLATFORMS, Member, SocialAccount
from koc.submissions.models import (
    REJECT_REASONS,
    Submission,
    SubmissionFlag,
    SubmissionStatus,
)
from koc.submissions.schemas import MAX_BULK_REVIEW
from koc.submissions.services import followers, posts
from koc.submissions.services import funnel as funnel_service
from koc.submissions.services import rules as scoring_rules_service
from koc.tiers.services.rules import current_rules, tier_ranks

REVIEWS_PER_PAGE = 50
# The kit filter offers the newest kits; an older one is still reachable by ?kit_id=.
KIT_CHOICES = 200
# The queue (pending and held) or what was decided, which a reviewer can re-open.
QUEUE_VIEWS = ("queue", "decided")
SCORING_HISTORY_LIMIT = 50
PREVIEW_URL_TTL = 900
RATINGS = (1, 2, 3, 4, 5)
# Labels for the fixed reject reasons, in the order the select offers them.
REJECT_REASON_LABELS = {
    "invalid_proof": _l("Invalid proof"),
    "duplicate": _l("Duplicate"),
    "outside_window": _l("Outside the kit's window"),
    "off_brief": _l("Did not follow the brief"),
    "other": _l("Other"),
}
assert tuple(REJECT_REASON_LABELS) == REJECT_REASONS, "reject reasons out of step"


class ApproveForm(Form):
    """The approve controls, rendered only: reviews.js sends them to
    POST /api/v1/submissions/{id}/review, whose schema checks them."""

    rating = SelectField(
        _l("Rating"),
        # Plain strings: (value, label) tuples are deprecated in WTForms 3.3, while its
        # SelectChoice replacement does not exist in the older WTForms Flask-WTF allows.
        choices=[str(value) for value in RATINGS],
        coerce=int,
        default=3,
    )
    # Only for a submission that came in as a short link: the post's full URL.
    post_url = StringField(_l("Full post URL"))


class RejectForm(Form):
    """The reject controls, rendered only (reviews.js sends the reason code and the text)."""

    reason_code = SelectField(_l("Reason"), choices=list(REJECT_REASONS), default="other")
    reason = TextAreaField(_l("Reason"))


class QueueFilterSchema(Schema):
    """The review queue's filters, from the query string; unknown or bad values are ignored."""

    view = kf.OneOf(list(QUEUE_VIEWS), load_default="queue")
    platform = kf.OneOf(list(PLATFORMS))
    kit_id = kf.Id()
    flagged = fields.Boolean()
    short_link = fields.Boolean()
    unconfirmed_followers = fields.Boolean()


def queue_filters() -> dict[str, Any]:
    """The filters in the request, as loaded values; a bad one is dropped, not a 500."""
    raw = {name: value for name in QueueFilterSchema().fields
           if (value := request.args.get(name, "").strip())}
    try:
        return QueueFilterSchema().load(raw)
    except ValidationError as exc:
        bad = exc.messages if isinstance(exc.messages, dict) else {}
        return QueueFilterSchema().load({k: v for k, v in raw.items() if k not in bad})


def filter_args(filters: dict[str, Any]) -> dict[str, Any]:
    """The filters as query-string arguments again (for links, pages and redirects)."""
    args = {}
    for name, value in filters.items():
        if value is True:
            args[name] = "1"
        elif value not in (None, False) and not (name == "view" and value == "queue"):
            args[name] = value
    return args


def _filtered(stmt: sa.Select, filters: dict[str, Any]) -> sa.Select:
    if filters.get("platform"):
        stmt = stmt.where(Submission.platform == filters["platform"])
    if filters.get("kit_id"):
        stmt = stmt.where(Submission.kit_id == filters["kit_id"])
    if filters.get("flagged"):
        stmt = stmt.where(sa.exists().where(SubmissionFlag.submission_id == Submission.id))
    if filters.get("short_link"):
        stmt = stmt.where(Submission.url_unresolved.is_(True))
    if filters.get("unconfirmed_followers"):
        stmt = stmt.where(sa.exists().where(
            SocialAccount.member_id == Submission.member_id,
            SocialAccount.platform == Submission.platform,
            SocialAccount.confirmed_followers.is_(None)))
    return stmt


def _queue_rows(filters: dict[str, Any]) -> sa.Select:
    """The submissions the queue lists, filtered and ordered, without the page's joins."""
    if filters["view"] == "decided":
        # Decided and not held: what a reviewer may re-open, most recently decided first.
        stmt = (sa.select(Submission)
                .where(Submission.status.in_([SubmissionStatus.approved.value,
                                              SubmissionStatus.rejected.value]),
                       Submission.held_at.is_(None))
                .order_by(Submission.reviewed_at.desc(), Submission.id.desc()))
    else:
        # Oldest first, where the API lists newest first: the queue is worked from the top.
        stmt = posts.review_queue_query().order_by(Submission.created_at, Submission.id)
    return _filtered(stmt, filters)


def _queue_select(filters: dict[str, Any]) -> sa.Select:
    return (
        _queue_rows(filters)
        .add_columns(Member.display_name, Kit)
        .join(Member, Member.id == Submission.member_id)
        .outerjoin(Kit, Kit.id == Submission.kit_id)
        .options(selectinload(Submission.snapshots), selectinload(Submission.media),
                 selectinload(Submission.flags))
    )


@admin_blueprint.get("/reviews")
@login_required("reviewer")
def reviews() -> BaseResponse:
    filters = queue_filters()
    args = filter_args(filters)
    # Counted without the member and kit joins: at 70,000 pending posts the joins were most
    # of the page's time.
    listed = paginate(_queue_select(filters), REVIEWS_PER_PAGE,
                      count=_queue_rows(filters).with_only_columns(Submission.id))
    if listed.page > listed.pages:
        # Reviewing empties pages; land on the last one that still has rows.
        return redirect(url_for("admin.reviews", page=listed.pages, **args))
    previews = _media_previews(submission for submission, _name, _kit in listed.items)
    accounts = _accounts_for(submission for submission, _name, _kit in listed.items)
    kits = db.session.execute(
        sa.select(Kit.id, Kit.title).order_by(Kit.id.desc()).limit(KIT_CHOICES)).all()
    response = make_response(render_template(
        "admin/reviews.html",
        rows=listed.items,
        page=listed.page,
        pages=listed.pages,
        total=listed.total,
        filters=filters,
        args=args,
        kits=kits,
        previews=previews,
        accounts=accounts,
        approve_form=ApproveForm(formdata=None),
        reject_form=RejectForm(formdata=None),
        reject_reasons=REJECT_REASON_LABELS,
        max_bulk=MAX_BULK_REVIEW,
    ))
    return allow_store_origins(response, previews.values())


def _media_previews(submissions: Iterable[Submission]) -> dict[int, str]:
    """Short-lived URLs of the images attached to these submissions, by media id."""
    storage = get_storage()
    previews = {}
    for submission in submissions:
        for media in submission.media:
            if media.is_image:
                previews[media.id] = storage.presign_get(media.storage_key,
                                                         expires_in=PREVIEW_URL_TTL)
    return previews


def _accounts_for(submissions: Iterable[Submission]) -> dict[int, list[SocialAccount]]:
    """The member's accounts on each submission's platform, by submission id."""
    wanted = {s.id: (s.member_id, s.platform) for s in submissions}
    found = followers.accounts_on(set(wanted.values()))
    return {submission_id: found.get(key, []) for submission_id, key in wanted.items()}


# --- scoring rules -----------------------------------------------------------------------------

# The scoring rules form, field by field: (path in the rules, label, kind). "number?" may be left
# empty (null: no cap, no expiry). The JSON view below it holds the same rules.
SCORING_FIELDS: tuple[tuple[str, Any, str], ...] = (
    ("base", _l("Base points for an approved post"), "number"),
    ("engagement.points_per_log", _l("Points per step of engagement (logarithmic)"), "number"),
    ("engagement.weights.views", _l("Weight of views"), "number"),
    ("engagement.weights.likes", _l("Weight of likes"), "number"),
    ("engagement.weights.comments", _l("Weight of comments"), "number"),
    ("engagement.weights.saves", _l("Weight of saves"), "number"),
    ("engagement.weights.shares", _l("Weight of shares"), "number"),
    ("engagement.cap", _l("Engagement points cap (empty: none)"), "number?"),
    ("audience.reference_followers", _l("Reference audience (followers)"), "number"),
    ("audience.min_followers", _l("Smallest audience counted (followers)"), "number"),
    ("rating_multipliers.1", _l("Multiplier for rating 1"), "number"),
    ("rating_multipliers.2", _l("Multiplier for rating 2"), "number"),
    ("rating_multipliers.3", _l("Multiplier for rating 3"), "number"),
    ("rating_multipliers.4", _l("Multiplier for rating 4"), "number"),
    ("rating_multipliers.5", _l("Multiplier for rating 5"), "number"),
    ("in_window_bonus", _l("Bonus for posting inside the kit's window"), "number"),
    ("total_cap", _l("Points cap per post (empty: none)"), "number?"),
    ("points_expire_after_days", _l("Points expire after (days, empty: never)"), "number?"),
    ("anomalies.likes_above_views", _l("Flag more likes than views"), "bool"),
    ("anomalies.jump_factor", _l("Flag a day's engagement this many times the usual"), "number"),
    ("anomalies.jump_min_daily", _l("Usual daily engagement counts as at least"), "number"),
    ("anomalies.rate_factor", _l("Flag an engagement rate this many times the member's median"),
     "number"),
    ("anomalies.rate_min_history", _l("Posts needed before the rate check"), "number"),
    ("anomalies.media_max_distance", _l("Images this close count as the same (hash distance)"),
     "number"),
)
BREAKDOWN_NAMES = {
    "base": _l("Base"), "views": _l("Views"), "likes": _l("Likes"), "comments": _l("Comments"),
    "saves": _l("Saves"), "shares": _l("Shares"), "engagement_cap": _l("Engagement cap"),
    "rating": _l("Rating"), "in_window": _l("Inside the kit's window"), "cap": _l("Post cap"),
}


def _value_at(rules: dict[str, Any], path: str) -> Any:
    value: Any = rules
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else None
    return value


@admin_blueprint.get("/scoring")
@login_required("viewer")
def scoring_rules() -> str:
    version, current = scoring_rules_service.current_scoring()
    versions = list(db.session.scalars(
        scoring_rules_service.scoring_versions().limit(SCORING_HISTORY_LIMIT)))
    ids = {v.created_by_staff_id for v in versions if v.created_by_staff_id}
    authors = dict(db.session.execute(
        sa.select(Staff.id, Staff.email).where(Staff.id.in_(ids))).all()) if ids else {}
    return render_template(
        "admin/scoring.html",
        version=version,
        rules=current,
        text=json.dumps({"rules": current}, ensure_ascii=False, indent=2),
        fields=[(path, label, kind, _value_at(current, path))
                for path, label, kind in SCORING_FIELDS],
        versions=versions,
        authors=authors,
        can_edit=is_admin(),
        # A list, not an object: JSON objects come out with their keys sorted.
        meta={"parts": [[key, str(name)] for key, name in BREAKDOWN_NAMES.items()],
              "labels": {"audience": _("Audience factor"),
                         "followers": _("Followers counted"),
                         "multiplier": _("Rating multiplier")}},
    )


# --- a kit's funnel, step by step --------------------------------------------------------------

FUNNEL_PER_PAGE = 50
FUNNEL_STEP_NAMES = {
    "eligible": _l("Could see it"), "downloaded": _l("Downloaded"),
    "posted": _l("Posted about it"), "approved": _l("Approved"),
}


@admin_blueprint.get("/kits/<int:kit_id>/funnel/<step>")
@login_required("viewer")
def kit_funnel(kit_id: int, step: str) -> str:
    """Who is behind each number of a kit's funnel: the members at one step, paged."""
    if step not in funnel_service.FUNNEL_STEPS:
        abort(404)
    kit = found_or_404(kit_services.get_kit, kit_id)
    ranks = tier_ranks()
    counts = funnel_service.funnel(kit, ranks)
    # The funnel's own counts are the lists' totals: no second count.
    totals = {"eligible": counts.eligible, "downloaded": counts.downloaded,
              "posted": counts.submitted, "approved": counts.approved}
    listed = paginate(funnel_service.funnel_members(kit, step, ranks)
                      .options(selectinload(Member.user)), FUNNEL_PER_PAGE,
                      total=totals[step])
    ids = [m.id for m in listed.items]
    last_download = dict(db.session.execute(
        sa.select(Download.member_id, sa.func.max(Download.issued_at))
        .where(Download.kit_id == kit.id, Download.member_id.in_(ids))
        .group_by(Download.member_id)).all()) if ids else {}
    posts_by_member = {m: (count, approved) for m, count, approved in db.session.execute(
        sa.select(Submission.member_id, sa.func.count(),
                  sa.func.count().filter(Submission.status == SubmissionStatus.approved.value))
        .where(Submission.kit_id == kit.id, Submission.member_id.in_(ids))
        .group_by(Submission.member_id))} if ids else {}
    names = {t["key"]: t["name"] for t in current_rules().tiers}
    return render_template(
        "admin/kit_funnel.html", kit=kit, step=step, steps=FUNNEL_STEP_NAMES,
        counts=counts, listed=listed,
        last_download=last_download, posts_by_member=posts_by_member,
        tier_name=lambda key: tier_display_name(key, names))
