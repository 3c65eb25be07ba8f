"""The admin panel's blueprint and the guards every admin page uses, whichever domain it is in.

Pages live with their domain (`koc/<domain>/admin.py`, templates in `koc/<domain>/templates/admin/`)
and attach themselves to `admin_blueprint`; `koc.admin.panel` imports them all. The blueprint
finds the templates of every module that adds a route to it, so a domain needs no set-up of its
own.

How a page is written, the same way everywhere:
- posted data is read through a Flask-WTF form (`validate_on_submit`), even when a marshmallow
  schema of the API then loads it; a button that only posts is an `ActionForm`;
- the panel's scripts write through /api/v1 with the staff session and the X-CSRFToken header
  (static/api.js): the panel keeps no JSON endpoints of its own;
- a service call whose refusal the page answers itself runs inside `undo_if_refused()`;
- lists page with `paginate`.
Nothing here commits: the request hook in koc.core.unit_of_work does, once.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ParamSpec, TypeVar
from urllib.parse import urlsplit

import sqlalchemy as sa
from flask import (
    Blueprint,
    Response,
    abort,
    current_app,
    g,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask.blueprints import BlueprintSetupState
from flask.typing import RouteCallable
from jinja2 import BaseLoader, ChoiceLoader, FileSystemLoader
from werkzeug.exceptions import HTTPException

from koc.admin.i18n import LOCALE_NAMES, PLATFORM_NAMES, SUPPORTED_LOCALES, select_locale
from koc.core.audit import set_panel_actor
from koc.core.auth import (
    SESSION_SECRET_KEY,
    SESSION_STAFF_KEY,
    Staff,
    StaffRole,
    staff_of_session,
)
from koc.core.errors import DomainError
from koc.core.pagination import MAX_PAGE
from koc.extensions import api, db

P = ParamSpec("P")
T = TypeVar("T")
View = Callable[..., Any]

# SESSION_SECRET_KEY holds the random id of the sign-in's StaffSession row: signing out ends
# that row, so a copied cookie is worthless afterwards. The API reads the same keys (with the
# CSRF header) in koc.core.auth, so the panel's scripts write through /api/v1.

# Pages hold no inline script or style and load nothing from other origins.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


class PanelBlueprint(Blueprint):
    """A blueprint that finds templates in the `templates/` folder of each module adding routes.

    Flask gives a blueprint one template folder; the panel's pages come from several packages
    (the panel itself and each domain), so each route remembers where its module lives.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._template_dirs: list[str] = []
        self._loader: ChoiceLoader | None = None

    def add_url_rule(self, rule: str, endpoint: str | None = None,
                     view_func: RouteCallable | None = None,
                     provide_automatic_options: bool | None = None, **options: Any) -> None:
        if view_func is not None:
            self._add_templates_of(view_func.__module__)
        super().add_url_rule(rule, endpoint, view_func,
                             provide_automatic_options=provide_automatic_options, **options)

    def _add_templates_of(self, module_name: str) -> None:
        module_file = getattr(sys.modules.get(module_name), "__file__", None)
        if module_file is None:
            return
        folder = str(Path(module_file).parent / "templates")
        if folder not in self._template_dirs and Path(folder).is_dir():
            self._template_dirs.append(folder)
            self._loader = None

    @property
    def jinja_loader(self) -> BaseLoader | None:
        if self._loader is None:
            self._loader = ChoiceLoader([FileSystemLoader(d) for d in self._template_dirs])
        return self._loader


admin_blueprint = PanelBlueprint(
    "admin",
    __name__,
    static_folder="static",
    static_url_path="/static",
)
admin_blueprint._add_templates_of(__name__)


# --- who is signed in --------------------------------------------------------------------------

def signed_in_staff() -> Staff | None:
    if "admin_staff" not in g:
        staff_id = session.get(SESSION_STAFF_KEY)
        secret = session.get(SESSION_SECRET_KEY)
        staff = staff_of_session(secret) if isinstance(secret, str) else None
        # Session row, role and active flag are read on every request, so a sign-out,
        # demotion, deactivation or password change takes effect at once.
        g.admin_staff = staff if staff is not None and staff.id == staff_id else None
        set_panel_actor(g.admin_staff)
    return g.admin_staff


def current_staff() -> Staff:
    """The signed-in staff member, in a view behind `login_required`."""
    staff = signed_in_staff()
    if staff is None:
        abort(401)
    return staff


def has_role(role: str | StaffRole) -> bool:
    staff = signed_in_staff()
    return staff is not None and StaffRole(staff.role).covers(StaffRole(role))


def is_admin() -> bool:
    return has_role(StaffRole.admin)


def login_required(role: str = "viewer") -> Callable[[View], View]:
    """Pages for signed-in staff holding at least `role` (viewer < reviewer < admin)."""
    needed = StaffRole(role)

    def decorator(view: View) -> View:
        @functools.wraps(view)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            staff = signed_in_staff()
            if staff is None:
                return redirect(url_for("admin.login", next=request.full_path.rstrip("?")))
            if not StaffRole(staff.role).covers(needed):
                abort(403)
            return view(*args, **kwargs)

        return wrapper

    return decorator


# --- writing through services ------------------------------------------------------------------

@contextmanager
def undo_if_refused() -> Iterator[None]:
    """Around a service call whose refusal the page answers itself (a flash and a redirect).

    The request hook commits every answer below 400, so what the service flushed before it
    refused would be kept; the savepoint undoes exactly that, and the exception goes on to the
    view's `except`.
    """
    with db.session.begin_nested():
        yield


def found_or_404(lookup: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """A service lookup for a page: its "no such row" DomainError is the panel's HTML 404."""
    try:
        return lookup(*args, **kwargs)
    except DomainError:
        abort(404)


# --- lists -------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Paged:
    items: list[Any]
    page: int
    pages: int
    total: int
    # The total is the planner's estimate (a list of millions), not an exact count.
    estimated: bool = False

    @property
    def has_next(self) -> bool:
        return self.page < self.pages


def count_rows(stmt: sa.Select[Any]) -> int:
    return db.session.scalar(
        sa.select(sa.func.count()).select_from(stmt.order_by(None).subquery())) or 0


def paginate(stmt: sa.Select[Any], per_page: int, *, count: sa.Select[Any] | None = None,
             total: int | None = None,
             estimate: Callable[[sa.Select[Any]], tuple[int, bool]] | None = None) -> Paged:
    """The `?page=` of `stmt` (1-based), with the total and the number of pages (at least 1).

    Rows of a one-entity select are the entities; otherwise they are tuples. `count` is a
    leaner select of the same rows to count (without the joins that only add columns), or
    `total` the count already known, or `estimate` gives (total, estimated?) where an exact
    count would take too long.
    """
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    estimated = False
    if total is None and estimate is not None:
        total, estimated = estimate(stmt)
    if total is None:
        total = count_rows(count if count is not None else stmt)
    result = db.session.execute(stmt.offset((page - 1) * per_page).limit(per_page))
    items = (list(result.scalars()) if len(stmt.column_descriptions) == 1
             else list(result.all()))
    return Paged(items=items, page=page, pages=max(math.ceil(total / per_page), 1), total=total,
                 estimated=estimated)


# --- links and headers -------------------------------------------------------------------------

def origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def allow_store_origins(response: Response, urls: Iterable[str], *, connect: bool = False
                        ) -> Response:
    """Let the page load images from (and, with `connect`, send to) the object store's origins.

    Presigned URLs may point at another origin than the panel's.
    """
    origins = sorted({found for url in urls if (found := origin(url)) is not None})
    if origins:
        extra = " ".join(origins)
        policy = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "img-src 'self' data:", f"img-src 'self' data: {extra}")
        if connect:
            policy += f"; connect-src 'self' {extra}"
        response.headers["Content-Security-Policy"] = policy
    return response


def _external_href(url: str | None) -> str | None:
    """A member-given URL as a link target only if it is http(s): never javascript: or data:."""
    if not url:
        return None
    scheme = urlsplit(url).scheme.lower()
    return url if scheme in ("http", "https") else None


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
    staff = signed_in_staff()
    return {
        "current_staff": staff,
        "can_review": has_role(StaffRole.reviewer),
        "locale_names": LOCALE_NAMES,
        "platform_names": PLATFORM_NAMES,
        "supported_locales": SUPPORTED_LOCALES,
        # The selector's code, not str(get_locale()): Babel spells zh_CN as "zh_Hans_CN".
        "current_locale": select_locale(),
        "external_href": _external_href,
    }


@admin_blueprint.after_request
def _harden(response: Response) -> Response:
    for name, value in SECURITY_HEADERS.items():
        response.headers.setdefault(name, value)
    if request.endpoint != "admin.static":
        # Pages show member data to signed-in staff; no cache should keep them.
        response.headers.setdefault("Cache-Control", "no-store")
    return response


# --- errors ------------------------------------------------------------------------------------

def _error_page(error: HTTPException) -> tuple[str, int]:
    return render_template("admin/error.html", error=error), error.code or 500


@admin_blueprint.errorhandler(HTTPException)
def _admin_http_error(error: HTTPException) -> Any:
    """Errors raised in admin views (403, 404, a missing CSRF token) render as HTML pages."""
    if error.code is None or error.code < 400:
        return error
    return _error_page(error)


def _path_error(error: HTTPException) -> Any:
    if _in_admin():
        return _error_page(error)
    return api.handle_http_exception(error)


@admin_blueprint.record_once
def _register_path_errors(state: BlueprintSetupState) -> None:
    """404/405 for unknown /admin URLs are raised before any view, so outside the blueprint.

    flask-smorest answers every HTTPException with JSON app-wide; these handlers take over
    only 404 and 405, and hand everything outside the admin prefix back to the API's handler.
    """
    state.app.extensions["koc.admin_prefix"] = (state.url_prefix or "").rstrip("/")
    state.app.register_error_handler(404, _path_error)
    state.app.register_error_handler(405, _path_error)
