"""Admin panel pages: staff login, dashboard and the review queue (zh-CN and English).

Handlers stay thin: they read forms and call the domain services; the request commits once
(koc.core.unit_of_work).
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    abort,
    current_app,
    flash,
    g,
    make_response,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_babel import format_timedelta
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import selectinload
from werkzeug.exceptions import HTTPException

from koc.admin.forms import (
    REJECT_REASON_LABELS,
    REVIEW_FORMS,
    ApproveForm,
    LocaleForm,
    LoginForm,
    LogoutForm,
    RejectForm,
)
from koc.admin.i18n import SUPPORTED_LOCALES, select_locale
from koc.assets.models import Kit
from koc.core.auth import Staff, StaffRole, find_staff
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import Submission, SubmissionStatus
from koc.submissions.services.review import review_submission
from koc.tiers.models import TierRun
from koc.tiers.services.history import members_per_tier

admin_blueprint = Blueprint(
    "admin",
    __name__,
    template_folder="templates",
    static_folder="static",
    static_url_path="/static",
)

REVIEWS_PER_PAGE = 50
SESSION_STAFF_KEY = "staff_id"
LOCALE_PICKED_KEY = "locale_picked"
# Shown as-is in the switch: each language names itself, whatever the page's language.
LOCALE_NAMES = {"zh_CN": "简体中文", "en": "English"}

# Pages hold no inline script or style and load nothing from other origins.
_SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


# --- who is signed in --------------------------------------------------------------------------

def _signed_in_staff() -> Staff | None:
    if "admin_staff" not in g:
        staff_id = session.get(SESSION_STAFF_KEY)
        staff = db.session.get(Staff, staff_id) if isinstance(staff_id, int) else None
        # Role and active flag are read on every request, so a demotion or deactivation
        # takes effect at once rather than when the cookie expires.
        g.admin_staff = staff if staff is not None and staff.active else None
    return g.admin_staff


def login_required(role: str = "viewer") -> Callable:
    """Pages for signed-in staff holding at least `role` (viewer < reviewer < admin)."""
    needed = StaffRole(role)

    def decorator(view: Callable) -> Callable:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            staff = _signed_in_staff()
            if staff is None:
                return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
            if not StaffRole(staff.role).covers(needed):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


def _safe_next(target: str | None, default: str) -> str:
    """Only same-site paths: a `next` pointing elsewhere would make login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def _in_admin() -> bool:
    """Whether this request is for an admin page, including admin URLs that match no view."""
    if request.blueprint == "admin":
        return True
    prefix = current_app.extensions.get("koc.admin_prefix", "")
    return bool(prefix) and (request.path == prefix or request.path.startswith(prefix + "/"))


@admin_blueprint.app_context_processor
def _layout_context() -> dict[str, Any]:
    if not _in_admin():
        return {}
    staff = _signed_in_staff()
    return {
        "current_staff": staff,
        "can_review": staff is not None and StaffRole(staff.role).covers(StaffRole.reviewer),
        "locale_names": LOCALE_NAMES,
        "supported_locales": SUPPORTED_LOCALES,
        # The selector's code, not str(get_locale()): Babel spells zh_CN as "zh_Hans_CN".
        "current_locale": select_locale(),
        "external_href": _external_href,
    }


def _external_href(url: str | None) -> str | None:
    """A member-given URL as a link target only if it is http(s): never javascript: or data:."""
    if not url:
        return None
    scheme = urlsplit(url).scheme.lower()
    return url if scheme in ("http", "https") else None


@admin_blueprint.after_request
def _harden(response):
    for name, value in _SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "admin.static":
        # Pages show member data to signed-in staff; no cache should keep them.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --- errors ------------------------------------------------------------------------------------

def _error_page(error: HTTPException):
    return render_template("admin/error.html", error=error), error.code


@admin_blueprint.errorhandler(HTTPException)
def _admin_http_error(error: HTTPException):
    """Errors raised in admin views (403, 404, a missing CSRF token) render as HTML pages."""
    if error.code is None or error.code < 400:
        return error
    return _error_page(error)


@admin_blueprint.record_once
def _register_path_errors(state) -> None:
    """404/405 for unknown /admin URLs are raised before any view, so outside the blueprint.

    flask-smorest answers every HTTPException with JSON app-wide; these handlers take over
    only 404 and 405, and hand everything outside the admin prefix back to the API's handler.
    """
    state.app.extensions["koc.admin_prefix"] = (state.url_prefix or "").rstrip("/")

    def handler(error: HTTPException):
        if _in_admin():
            return _error_page(error)
        from koc.extensions import api

        return api.handle_http_exception(error)

    state.app.register_error_handler(404, handler)
    state.app.register_error_handler(405, handler)


# --- sign in and out ---------------------------------------------------------------------------

@functools.cache
def _decoy_hash() -> str:
    staff = Staff()
    staff.set_password("decoy password that matches nothing")
    return staff.password_hash


def _authenticate(email: str, password: str) -> Staff | None:
    staff = find_staff(email)
    if staff is None:
        # Verify against a decoy so an unknown email takes as long as a wrong password.
        Staff(password_hash=_decoy_hash()).check_password(password)
        return None
    if not staff.check_password(password) or not staff.active:
        return None
    return staff


@admin_blueprint.route("/login", methods=["GET", "POST"])
def login():
    next_url = _safe_next(request.args.get("next"), url_for("admin.dashboard"))
    if _signed_in_staff() is not None and request.method == "GET":
        return redirect(next_url)
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        staff = _authenticate(form.email.data, form.password.data)
        if staff is None:
            # One message for every failure, so the page does not tell which part was wrong.
            error = _("Wrong email or password, or the account is disabled.")
        else:
            # Only a language picked on this login page overrides the staff member's setting;
            # one left over from someone who signed out on the same browser does not.
            chosen_locale = session.get("locale") if session.get(LOCALE_PICKED_KEY) else None
            # A fresh session on sign-in: nothing set before (including the CSRF secret)
            # survives into the signed-in session.
            session.clear()
            session[SESSION_STAFF_KEY] = staff.id
            session["locale"] = _remember_locale(staff, chosen_locale)
            return redirect(next_url)
    return render_template("admin/login.html", form=form, error=error)


def _remember_locale(staff: Staff, chosen: str | None) -> str:
    """A language picked on the login page wins and is kept; otherwise the staff's own."""
    if chosen in SUPPORTED_LOCALES:
        staff.locale = chosen
        return chosen
    return staff.locale if staff.locale in SUPPORTED_LOCALES else SUPPORTED_LOCALES[0]


@admin_blueprint.post("/logout")
def logout():
    form = LogoutForm()
    if not form.validate_on_submit():
        abort(400)
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    flash(_("You are signed out."), "success")
    return redirect(url_for("admin.login"))


@admin_blueprint.post("/locale")
def set_locale():
    form = LocaleForm()
    if not form.validate_on_submit():
        abort(400)
    session["locale"] = form.locale.data
    staff = _signed_in_staff()
    if staff is None:
        session[LOCALE_PICKED_KEY] = True
    else:
        staff.locale = form.locale.data
    return redirect(_safe_next(form.next.data, url_for("admin.dashboard")))


# --- dashboard ---------------------------------------------------------------------------------

@admin_blueprint.get("/")
@login_required("viewer")
def dashboard():
    tiers = sorted(members_per_tier().items(), key=lambda item: (item[0] == "none", item[0]))
    pending = db.session.scalar(
        sa.select(sa.func.count()).select_from(Submission)
        .where(Submission.status == SubmissionStatus.pending.value)
    )
    last_run = db.session.scalar(
        sa.select(TierRun).where(TierRun.finished_at.is_not(None))
        .order_by(TierRun.finished_at.desc(), TierRun.id.desc()).limit(1)
    )
    interval = timedelta(seconds=current_app.config["KOC_SETTINGS"].tier_recalc_interval)
    since = utcnow() - last_run.finished_at if last_run is not None else None
    return render_template(
        "admin/dashboard.html",
        tiers=tiers,
        total_members=sum(count for _tier, count in tiers),
        pending=pending,
        last_run=last_run,
        # Babel reads a negative delta as the past ("5 minutes ago").
        last_run_ago=format_timedelta(-since, add_direction=True) if since is not None else None,
        # Two missed beats is the sign that the scheduler (koc worker) is not running.
        scheduler_stale=since is None or since > 2 * interval,
        interval=format_timedelta(interval),
    )


# --- review queue ------------------------------------------------------------------------------

PREVIEW_URL_TTL = 900


@admin_blueprint.get("/reviews")
@login_required("reviewer")
def reviews():
    page = max(request.args.get("page", 1, type=int), 1)
    pending = Submission.status == SubmissionStatus.pending.value
    total = db.session.scalar(sa.select(sa.func.count()).select_from(Submission).where(pending))
    pages = max(math.ceil(total / REVIEWS_PER_PAGE), 1)
    if page > pages:
        # Reviewing empties pages; land on the last one that still has rows.
        return redirect(url_for("admin.reviews", page=pages))
    rows = db.session.execute(
        sa.select(Submission, Member.display_name, Kit)
        .join(Member, Member.id == Submission.member_id)
        .outerjoin(Kit, Kit.id == Submission.kit_id)
        .where(pending)
        .order_by(Submission.created_at, Submission.id)
        .offset((page - 1) * REVIEWS_PER_PAGE)
        .limit(REVIEWS_PER_PAGE)
        .options(selectinload(Submission.snapshots), selectinload(Submission.media),
                 selectinload(Submission.flags))
    ).all()
    previews = _media_previews(submission for submission, _name, _kit in rows)
    response = make_response(render_template(
        "admin/reviews.html",
        rows=rows,
        page=page,
        pages=pages,
        total=total,
        previews=previews,
        approve_form=ApproveForm(formdata=None),
        reject_form=RejectForm(formdata=None),
        reject_reasons=REJECT_REASON_LABELS,
    ))
    # Previews come from the object store, which may be another origin than the panel's.
    origins = sorted({_origin(url) for url in previews.values()} - {None})
    if origins:
        response.headers["Content-Security-Policy"] = _SECURITY_HEADERS[
            "Content-Security-Policy"].replace("img-src 'self' data:",
                                               "img-src 'self' data: " + " ".join(origins))
    return response


def _media_previews(submissions) -> dict[int, str]:
    """Short-lived URLs of the images attached to these submissions, by media id."""
    storage = get_storage()
    previews = {}
    for submission in submissions:
        for media in submission.media:
            if media.is_image:
                previews[media.id] = storage.presign_get(media.storage_key,
                                                         expires_in=PREVIEW_URL_TTL)
    return previews


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


@admin_blueprint.post("/reviews/<int:submission_id>")
@login_required("reviewer")
def review(submission_id: int):
    page = max(request.args.get("page", 1, type=int), 1)
    back = redirect(url_for("admin.reviews", page=page))
    decision = request.form.get("decision", "")
    form_class = REVIEW_FORMS.get(decision)
    if form_class is None:
        abort(400)
    form = form_class()
    if not form.validate_on_submit():
        if form.csrf_token.errors:
            abort(400)
        if decision == "reject":
            flash(_("Give a reason to reject submission %(id)s.", id=submission_id), "error")
        else:
            flash(_("Choose a rating from 1 to 5 to approve submission %(id)s.",
                    id=submission_id), "error")
        return back

    # Locks the row on PostgreSQL so two reviewers cannot both decide the same submission.
    submission = db.session.scalar(
        sa.select(Submission).where(Submission.id == submission_id).with_for_update()
    )
    if submission is None:
        abort(404)
    try:
        review_submission(
            submission,
            decision=decision,
            rating=form.rating.data if decision == "approve" else None,
            reason=(form.reason_code.data or "other") if decision == "reject" else None,
            note=form.reason.data if decision == "reject" else None,
            staff_id=_signed_in_staff().id,
        )
    except DomainError as exc:
        db.session.rollback()
        flash(_review_error_message(exc, submission_id), "error")
        return back
    except IntegrityError:
        db.session.rollback()
        flash(_("Submission %(id)s was already reviewed.", id=submission_id), "error")
        return back

    if decision == "approve":
        flash(_("Submission %(id)s approved with rating %(rating)s.",
                id=submission_id, rating=form.rating.data), "success")
    else:
        flash(_("Submission %(id)s rejected.", id=submission_id), "success")
    return back


def _review_error_message(exc: DomainError, submission_id: int) -> str:
    # Service messages are English only; the statuses have fixed meanings worth translating.
    if exc.status == 409:
        return _("Submission %(id)s was already reviewed.", id=submission_id)
    if exc.status == 404:
        return _("Submission %(id)s does not exist.", id=submission_id)
    return _("Submission %(id)s could not be reviewed: %(message)s",
             id=submission_id, message=exc.message)


from koc.admin import kits as _kits  # noqa: E402,F401
from koc.admin import tiers as _tiers  # noqa: E402,F401
