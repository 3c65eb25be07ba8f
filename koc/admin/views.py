"""The panel's own pages: staff sign-in and sign-out, the language switch and the dashboard.

Each domain's pages live in koc/<domain>/admin.py; koc.admin.panel attaches them all.
"""

from __future__ import annotations

import functools
import logging
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, session, url_for
from flask_babel import format_date, format_datetime, format_timedelta
from flask_babel import gettext as _
from werkzeug.wrappers import Response as BaseResponse

from koc.admin.blueprint import (
    SESSION_SECRET_KEY,
    SESSION_STAFF_KEY,
    admin_blueprint,
    count_rows,
    login_required,
    signed_in_staff,
)
from koc.admin.forms import ActionForm, LocaleForm, LoginForm
from koc.admin.i18n import SUPPORTED_LOCALES, platform_display_name, tier_display_name
from koc.assets.services import kits
from koc.core import audit
from koc.core.auth import Staff, end_session, find_staff, start_session
from koc.core.db import utcnow
from koc.core.ratelimit import Lockout, login_attempt_limit
from koc.core.unit_of_work import keep_changes_despite_error
from koc.extensions import db
from koc.submissions.models import SubmissionStatus
from koc.submissions.services import posts
from koc.submissions.services.funnel import funnel
from koc.tiers.models import TierRun
from koc.tiers.services import insight, rules, snapshots
from koc.tiers.services.history import members_per_tier

LOCALE_PICKED_KEY = "locale_picked"
log = logging.getLogger(__name__)


def _safe_next(target: str | None, default: str) -> str:
    """Only same-site paths: a `next` pointing elsewhere would make login an open redirect."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


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
@login_attempt_limit
def login() -> BaseResponse | str | tuple[str, int, dict[str, str]]:
    next_url = _safe_next(request.args.get("next"), url_for("admin.dashboard"))
    if signed_in_staff() is not None and request.method == "GET":
        return redirect(next_url)
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        email = form.email.data.strip().lower()
        lockout = Lockout(email)
        wait = lockout.retry_after()
        if wait is not None:
            # Locked: not even the right password is checked (nor an argon2 hash computed).
            log.warning("admin sign-in refused while locked: %s from %s", email,
                        request.remote_addr)
            audit.record("staff.login_locked", f"staff:{email}", {"retry_after": wait},
                         actor=email)
            keep_changes_despite_error()  # the audit row stays although the answer is a 429
            error = _("Too many failed sign-ins; try again in %(minutes)s minutes.",
                      minutes=max(1, round(wait / 60)))
            return (render_template("admin/login.html", form=form, error=error), 429,
                    {"Retry-After": str(wait)})
        staff = _authenticate(email, form.password.data)
        if staff is None:
            lockout.failed()
            log.warning("admin sign-in failed: %s from %s", email, request.remote_addr)
            audit.record("staff.login_failed", f"staff:{email}", actor=email)
            # One message for every failure, so the page does not tell which part was wrong.
            error = _("Wrong email or password, or the account is disabled.")
        else:
            # Only a language picked on this login page overrides the staff member's setting;
            # one left over from someone who signed out on the same browser does not.
            chosen_locale = session.get("locale") if session.get(LOCALE_PICKED_KEY) else None
            # A fresh session on sign-in: nothing set before (including the CSRF secret)
            # survives into the signed-in session.
            session.clear()
            session.permanent = True
            session[SESSION_STAFF_KEY] = staff.id
            session[SESSION_SECRET_KEY] = start_session(
                staff, ip=request.remote_addr, user_agent=request.user_agent.string)
            session["locale"] = _remember_locale(staff, chosen_locale)
            audit.record("staff.login", f"staff:{staff.id}", actor=staff.email,
                         actor_staff_id=staff.id)
            return redirect(next_url)
    return render_template("admin/login.html", form=form, error=error)


def _remember_locale(staff: Staff, chosen: str | None) -> str:
    """A language picked on the login page wins and is kept; otherwise the staff's own."""
    if chosen in SUPPORTED_LOCALES:
        staff.locale = chosen
        return chosen
    return staff.locale if staff.locale in SUPPORTED_LOCALES else SUPPORTED_LOCALES[0]


@admin_blueprint.post("/logout")
def logout() -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    staff = signed_in_staff()
    secret = session.get(SESSION_SECRET_KEY)
    if isinstance(secret, str):
        end_session(secret)
    if staff is not None:
        audit.record("staff.logout", f"staff:{staff.id}")
    locale = session.get("locale")
    session.clear()
    if locale:
        session["locale"] = locale
    flash(_("You are signed out."), "success")
    return redirect(url_for("admin.login"))


@admin_blueprint.post("/locale")
def set_locale() -> BaseResponse:
    form = LocaleForm()
    if not form.validate_on_submit():
        abort(400)
    session["locale"] = form.locale.data
    staff = signed_in_staff()
    if staff is None:
        session[LOCALE_PICKED_KEY] = True
    else:
        staff.locale = form.locale.data
    return redirect(_safe_next(form.next.data, url_for("admin.dashboard")))


# --- dashboard ---------------------------------------------------------------------------------

DASHBOARD_WEEKS = 12
# The members-per-tier-over-time chart: this many days of the tier job's daily snapshots.
DASHBOARD_SNAPSHOT_DAYS = 30
DASHBOARD_KITS = 6


@admin_blueprint.get("/")
@login_required("viewer")
def dashboard() -> str:
    now = utcnow()
    names = {t["key"]: t["name"] for t in rules.current_rules().tiers}
    tiers = sorted(members_per_tier().items(), key=lambda item: (item[0] == "none", item[0]))
    pending = count_rows(posts.submissions_query(status=SubmissionStatus.pending.value))
    last_run = db.session.scalar(
        sa.select(TierRun).where(TierRun.finished_at.is_not(None))
        .order_by(TierRun.finished_at.desc(), TierRun.id.desc()).limit(1)
    )
    interval = timedelta(seconds=current_app.config["KOC_SETTINGS"].tier_recalc_interval)
    since = now - last_run.finished_at if last_run and last_run.finished_at else None
    return render_template(
        "admin/dashboard.html",
        tiers=[(tier_display_name(tier, names), count) for tier, count in tiers],
        total_members=sum(count for _tier, count in tiers),
        pending=pending,
        last_run=last_run,
        # Babel reads a negative delta as the past ("5 minutes ago").
        last_run_ago=format_timedelta(-since, add_direction=True) if since is not None else None,
        # Two missed beats is the sign that the scheduler (koc worker) is not running.
        scheduler_stale=since is None or since > 2 * interval,
        interval=format_timedelta(interval),
        charts=_dashboard_charts(now, names, tiers),
    )


def _dashboard_charts(now: datetime, names: dict[str, str],
                      tiers: list[tuple[str, int]]) -> dict[str, Any]:
    """Every chart's data and labels, for static/dashboard.js to draw (the page has no script)."""
    activity = insight.weekly_activity(now, DASHBOARD_WEEKS)
    weeks = [format_date(start, "MM-dd") for start in activity.week_starts]
    at_risk = insight.members_at_risk()
    ranks = rules.tier_ranks()
    ranked = sorted(names, key=lambda key: ranks.get(key, 0))
    recent_kits = db.session.scalars(
        kits.kits_query_for_staff(status="published").limit(DASHBOARD_KITS)).all()
    funnels = [(kit, funnel(kit, ranks)) for kit in recent_kits]
    runs = insight.recent_tier_runs()
    deliveries = insight.webhook_health(now)
    platforms = insight.engagement_by_platform(now, DASHBOARD_WEEKS)
    days, per_tier = snapshots.history(now, DASHBOARD_SNAPSHOT_DAYS)
    order = {key: rank for rank, key in enumerate(ranked)}
    return {
        "tiers_over_time": {
            "title": _("Members per tier over time (daily, from the tier job)"),
            "labels": [format_date(day, "MM-dd") for day in days],
            "series": [{"name": tier_display_name(key, names), "data": values}
                       for key, values in sorted(per_tier.items(),
                                                 key=lambda i: order.get(i[0], len(order)))]},
        "tiers": {"title": _("Members per tier"),
                  "labels": [tier_display_name(tier, names) for tier, _count in tiers],
                  "series": [{"name": _("Members"), "data": [count for _tier, count in tiers]}]},
        "activity": {"title": _("Submissions and approvals per week"), "labels": weeks,
                     "series": [{"name": _("Submissions received"), "data": activity.submitted},
                                {"name": _("Approved"), "data": activity.approved}]},
        "points": {"title": _("Points issued per week"), "labels": weeks,
                   "series": [{"name": _("Points"),
                               "data": [float(p) for p in activity.points_issued]}]},
        "funnels": {"title": _("Kit funnels (latest published kits)"),
                    "labels": [_("Could see it"), _("Downloaded"), _("Posted about it"),
                               _("Approved")],
                    "series": [{"name": kit.title, "data": [f.eligible, f.downloaded,
                                                            f.submitted, f.approved]}
                               for kit, f in funnels]},
        "platforms": {"title": _("Engagement by platform (likes + comments + saves of approved "
                                 "posts, by the week they went up)")
                      + (" " + _("(as of %(time)s)", time=format_datetime(platforms.as_of, "HH:mm"))
                         if platforms.as_of else ""),
                      "labels": [format_date(start, "MM-dd") for start in platforms.week_starts],
                      "series": [{"name": platform_display_name(platform), "data": values}
                                 for platform, values in platforms.engagement.items()]},
        "at_risk": {"title": _("Members at risk (below the low-water mark)"),
                    "labels": [tier_display_name(key, names) for key in ranked],
                    "series": [{"name": _("Members at risk"),
                                "data": [at_risk.get(key, 0) for key in ranked]}]},
        "runs": {"title": _("Tier recalculation runs"),
                 "labels": [format_datetime(run.started_at, "MM-dd HH:mm") for run in runs],
                 "series": [{"name": _("Members evaluated"),
                             "data": [run.members_evaluated for run in runs]},
                            {"name": _("Failed runs"),
                             "data": [1 if run.status == "failed" else 0 for run in runs]}]},
        "webhooks": {"title": _("Webhook deliveries, last 7 days"),
                     "labels": [_("Delivered"), _("Pending"), _("Failed")],
                     "series": [{"name": _("Deliveries"),
                                 "data": [deliveries["delivered"], deliveries["pending"],
                                          deliveries["failed"]]}]},
    }
