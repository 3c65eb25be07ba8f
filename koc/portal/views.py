"""The portal's pages. Thin: each reads the signed-in member and asks the services for a view.

Signing in: the join page accepts the invitation through `POST /api/v1/invitations/{code}/accept`
and hands the member token it gets to `POST /m/session`, which puts it into the HttpOnly session
cookie (the token never stays in the page). Every other write goes through the API.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import wraps
from typing import Any

from flask import (
    Blueprint,
    Response,
    current_app,
    g,
    jsonify,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_datetime
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from koc.admin.blueprint import SECURITY_HEADERS, origin
from koc.admin.i18n import LOCALE_NAMES, SUPPORTED_LOCALES, select_locale, tier_display_name
from koc.assets.services import kits
from koc.core.auth import (
    clear_member_session,
    end_member_session,
    member_csrf_token,
    member_of_token,
    member_session_token,
    session_member,
    set_member_session,
)
from koc.core.db import utcnow
from koc.core.ratelimit import invitation_limit
from koc.core.sqlite import writes
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import PLATFORMS
from koc.members.services import invitations
from koc.members.services.roster import get_member
from koc.submissions.admin import REJECT_REASON_LABELS
from koc.submissions.services import ledger, post_urls, posts
from koc.tiers.models import Drop, DropClaim
from koc.tiers.services import badges, digest, drops, groups, progress, rules

portal_blueprint = Blueprint("portal", __name__, template_folder="templates",
                             static_folder="static", static_url_path="/m/static")

# The cookie that remembers the previous visit (per device), for "what changed".
SEEN_COOKIE = "koc_m_seen"
SUBMISSIONS_SHOWN = 20

METRIC_LABELS = {
    "approved_submissions": _l("Approved posts"),
    "points_earned": _l("Points earned"),
    "weekly_streak": _l("Consecutive weeks with an approved post"),
    "best_post_interactions": _l("Likes + comments + saves of the best post"),
    "best_post_reach": _l("Best post's interactions per 1,000 followers"),
    "average_rating": _l("Average reviewer rating"),
    "distinct_kits": _l("Different kits used"),
}
PLATFORM_LABELS = {
    "xiaohongshu": _l("Xiaohongshu"),
    "douyin": _l("Douyin"),
    "wechat_channels": _l("WeChat Channels"),
    "weibo": _l("Weibo"),
    "other": _l("Other"),
}
STATUS_LABELS = {
    "pending": _l("In review"),
    "held": _l("In review"),
    "approved": _l("Approved"),
    "rejected": _l("Not approved"),
}
SCORE_PART_LABELS = {
    "base": _l("Base"),
    "views": _l("Views"),
    "likes": _l("Likes"),
    "comments": _l("Comments"),
    "saves": _l("Saves"),
    "shares": _l("Shares"),
    "engagement_cap": _l("Engagement cap"),
    "rating": _l("Reviewer rating"),
    "in_window": _l("Posted in the kit's window"),
    "cap": _l("Score cap"),
}
CLAIM_LABELS = {
    "claimed": _l("Claimed"),
    "entered": _l("Entered in the draw"),
    "won": _l("Won"),
    "lost": _l("Not drawn"),
}


def requirement_label(row: dict[str, Any]) -> str:
    label = str(METRIC_LABELS.get(row.get("metric", ""), row.get("name", "")))
    if row.get("window_days"):
        return _("%(label)s (last %(days)s days)", label=label, days=row["window_days"])
    return label


def number(value: Any) -> str:
    value = float(value or 0)
    return f"{value:,.0f}" if value == int(value) else f"{value:,.1f}"


@portal_blueprint.app_template_filter("portal_date")
def _portal_date(value: datetime | None) -> str:
    return format_datetime(value, "yyyy-MM-dd HH:mm") if value else ""


def _store_origin() -> str:
    """Where the page's uploads go when that is not the app itself (S3 or a compatible store)."""
    settings = current_app.config["KOC_SETTINGS"]
    if not settings.uses_s3:
        return ""
    if settings.s3_endpoint_url:
        return origin(settings.s3_endpoint_url) or ""
    return "https://*.amazonaws.com"


@portal_blueprint.app_template_filter("post_link")
def _post_link(text: str) -> str:
    """The URL inside stored share text (as the service reads it), else the text itself."""
    try:
        return post_urls.extract_url(text)
    except post_urls.NotAUrl:
        return text


@portal_blueprint.after_request
def _headers(response: Response) -> Response:
    # As the admin panel's, plus images from https (WeCom's group QR codes live on its CDN)
    # and uploads straight to the object store.
    policy = SECURITY_HEADERS["Content-Security-Policy"].replace(
        "img-src 'self' data:", "img-src 'self' data: https:")
    policy += f"; connect-src 'self' {_store_origin()}".rstrip()
    response.headers.setdefault("Content-Security-Policy", policy)
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    # In-app browsers cache hard; a page shows one member's data.
    response.headers.setdefault("Cache-Control", "private, no-store")
    return response


@portal_blueprint.context_processor
def _page_context() -> dict[str, Any]:
    token = member_session_token() if g.get("portal_member_id") else None
    return {
        "api_csrf": member_csrf_token(token) if token else "",
        "locale_names": LOCALE_NAMES,
        "current_locale": select_locale(),
        "locales": SUPPORTED_LOCALES,
        "platform_labels": PLATFORM_LABELS,
        "number": number,
    }


def member_page(view: Callable[..., Any]) -> Callable[..., Any]:
    """A page for a signed-in member; without a session, the page that says how to get one."""

    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        principal = session_member()
        if principal is None or principal.member_id is None:
            return render_template("portal/signed_out.html"), 401
        g.portal_member_id = principal.member_id
        return view(*args, **kwargs)

    return wrapper


def _member():
    return get_member(g.portal_member_id)


# --- joining and signing in --------------------------------------------------------------------

@portal_blueprint.get("/join/<key:code>")
@writes
@invitation_limit
def join(code: str):
    state = invitations.invitation_state(code)
    message = None
    if state == "open":
        # The first opening is recorded: the campaign funnel's "opened".
        _invitation, campaign = invitations.open_invitation(code, now=utcnow())
        message = campaign.message if campaign is not None else None
    status = {"open": 200, "used": 409, "expired": 410, "unknown": 404}[state]
    return render_template("portal/join.html", code=code, state=state, message=message,
                           platforms=PLATFORMS), status


@portal_blueprint.post("/m/session")
def start_session():
    """Exchange a member token (just issued by the invitation) for the session cookie."""
    body = request.get_json(silent=True)
    token = body.get("token") if isinstance(body, dict) else None
    if not isinstance(token, str) or len(token) > 200 or member_of_token(token) is None:
        return jsonify(code=422, status="Unprocessable Entity",
                       message=_("This is not a valid member token."),
                       errors={"json": {"token": ["not a valid member token"]}}), 422
    response = make_response(jsonify(next=url_for("portal.home")))
    set_member_session(response, token)
    return response


@portal_blueprint.post("/m/sign-out")
def sign_out():
    token = member_session_token()
    if token:
        end_member_session(token)
    response = make_response(redirect(url_for("portal.home")))
    clear_member_session(response)
    response.delete_cookie(SEEN_COOKIE, path="/m")
    return response


@portal_blueprint.get("/m/lang/<key:locale>")
def choose_locale(locale: str):
    if locale in SUPPORTED_LOCALES:
        session["locale"] = locale
    target = request.args.get("next", "")
    # Only a path on this site: never an open redirect.
    if not target.startswith("/m") or target.startswith("//"):
        target = url_for("portal.home")
    return redirect(target)


# --- pages -------------------------------------------------------------------------------------

def _tier_names() -> dict[str, str]:
    return {t["key"]: t["name"] for t in rules.current_rules().tiers}


def _previous_visit() -> datetime | None:
    raw = request.cookies.get(SEEN_COOKIE, "")
    try:
        seen = datetime.fromisoformat(raw)
    except ValueError:
        return None
    return seen if seen.tzinfo is not None else seen.replace(tzinfo=UTC)


@portal_blueprint.get("/m/")
@member_page
def home():
    member = _member()
    ranks = rules.tier_ranks()
    names = _tier_names()
    now = utcnow()
    seen = _previous_visit()
    since = seen if seen is not None else member.joined_at
    response = make_response(render_template(
        "portal/home.html", member=member, page="home",
        tier_name=tier_display_name(member.tier_key, names),
        progress=progress.progress(member), requirement_label=requirement_label,
        points=ledger.points_totals(member.id), badges=badges.live_badges(member.id),
        digest=digest.changes_since(member, since, tier_ranks=ranks), first_visit=seen is None,
        tier_label=lambda key: tier_display_name(key, names),
        group=groups.my_group(member.id)))
    days = current_app.config["KOC_SETTINGS"].member_token_idle_days
    response.set_cookie(SEEN_COOKIE, now.isoformat(), max_age=int(timedelta(days=days)
                        .total_seconds()), httponly=True, samesite="Lax", path="/m",
                        secure=current_app.config["KOC_SETTINGS"].env == "production")
    return response


@portal_blueprint.get("/m/kits")
@member_page
def kit_list():
    member = _member()
    now = utcnow()
    visible = kits.kits_visible_to(member, rules.tier_ranks())
    return render_template("portal/kits.html", page="kits", kits=visible, now=now)


@portal_blueprint.get("/m/submit")
@member_page
def submit():
    member = _member()
    mine = list(db.session.scalars(posts.submissions_query(member_id=member.id)
                                   .limit(SUBMISSIONS_SHOWN)))
    visible = kits.kits_visible_to(member, rules.tier_ranks())
    settings = current_app.config["KOC_SETTINGS"]
    return render_template("portal/submit.html", page="submit", submissions=mine,
                           kits=visible, status_labels=STATUS_LABELS,
                           part_labels=SCORE_PART_LABELS,
                           reject_labels=REJECT_REASON_LABELS,
                           max_upload_bytes=settings.max_upload_bytes)


@portal_blueprint.get("/m/drops")
@member_page
def drop_list():
    member = _member()
    open_drops = drops.open_drops_for(member, rules.tier_ranks())
    claims = db.session.execute(
        db.select(DropClaim, Drop).join(Drop, Drop.id == DropClaim.drop_id)
        .where(DropClaim.member_id == member.id).order_by(DropClaim.id.desc()).limit(50)).all()
    claimed_ids: dict[int, int] = {}
    for _claim, drop in claims:
        claimed_ids[drop.id] = claimed_ids.get(drop.id, 0) + 1
    return render_template("portal/drops.html", page="drops", drops=open_drops, claims=claims,
                           claimed_ids=claimed_ids, claim_labels=CLAIM_LABELS)


@portal_blueprint.get("/m/group")
@member_page
def group():
    membership = groups.my_group(g.portal_member_id)
    join_url = current_app.config["KOC_SETTINGS"].senior_group_url
    qr_url = membership.wecom_qr_url if membership is not None else None
    return render_template("portal/group.html", page="group", membership=membership,
                           join_url=join_url, qr_url=qr_url)


def storage_available() -> bool:
    return get_storage() is not None
