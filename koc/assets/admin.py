"""Admin pages for creative kits: list, kit page, create/edit form and direct-to-storage upload.

The upload page calls two small JSON endpoints with the admin session and the CSRF token (sent
in the X-CSRFToken header); they load the API's schemas and call the same services as the staff
API. The browser then sends the bytes straight to the object store (or, embedded, to the app's
signed /storage route).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from flask import abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from markdown_it import MarkdownIt
from markupsafe import Markup
from werkzeug.wrappers import Response as BaseResponse
from wtforms import BooleanField, DateTimeLocalField, SelectField, StringField, TextAreaField
from wtforms.validators import DataRequired, Length, Optional
from wtforms.validators import ValidationError as FormValidationError

from koc.admin.blueprint import (
    admin_blueprint,
    allow_store_origins,
    current_staff,
    found_or_404,
    is_admin,
    login_required,
    paginate,
    undo_if_refused,
)
from koc.admin.forms import ActionForm, strip
from koc.admin.i18n import from_local, tier_display_name, to_local, zone_label
from koc.assets.models import Asset, Kit, KitStatus
from koc.assets.schemas import SEGMENT_KEYS
from koc.assets.services import kits as kit_services
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import get_storage
from koc.extensions import db
from koc.settings import Settings
from koc.submissions.services.funnel import funnel
from koc.tiers.services.rules import current_rules, tier_ranks

KITS_PER_PAGE = 50
PREVIEW_URL_TTL = 900
# Raw HTML in notes is shown as text, never as markup; commonmark also refuses javascript: links.
_markdown = MarkdownIt("commonmark", {"html": False})


# A segment's kind as the panel says it (koc.assets.schemas.SEGMENT_KEYS).
SEGMENT_NAMES = {"city": _l("City"), "store_code": _l("Store"), "tag": _l("Tag")}


def _tier_namer() -> Callable[[str | None], str]:
    """A tier key to its name in the rules in force, in the reader's language."""
    names = {tier["key"]: tier["name"] for tier in current_rules().tiers}
    return lambda key: tier_display_name(key, names)


def render_notes(notes: str | None) -> Markup:
    # Safe as markup: the renderer escapes every raw HTML block and inline tag in the notes.
    return Markup(_markdown.render(notes or ""))  # noqa: S704


def _settings() -> Settings:
    return current_app.config["KOC_SETTINGS"]


# --- the form ----------------------------------------------------------------------------------

def parse_segments(text: str | None) -> list[dict[str, str]]:
    """One selector a line, `kind: value` (kind tag, city or store_code)."""
    segments = []
    for raw in (text or "").splitlines():
        line = raw.strip()
        if not line:
            continue
        kind, sep, value = line.partition(":")
        kind, value = kind.strip(), value.strip()
        if not sep or kind not in SEGMENT_KEYS or not value:
            raise FormValidationError(
                _("Write one selector a line as kind: value, where kind is one of %(kinds)s.",
                  kinds=", ".join(SEGMENT_KEYS)))
        segments.append({kind: value})
    return segments


def _segments_text(segments: list[dict[str, str]] | None) -> str:
    return "\n".join(f"{kind}: {value}" for selector in segments or ()
                     for kind, value in selector.items())


# The first is what the field renders: the only form <input type="datetime-local"> accepts.
_LOCAL_FORMATS = ["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S"]


class KitForm(FlaskForm):
    title = StringField(_l("Title"), filters=[strip],
                        validators=[DataRequired(), Length(max=200)])
    notes = TextAreaField(_l("Notes (Markdown)"), validators=[Length(max=100_000)])
    product_name = StringField(_l("Product"), filters=[strip],
                               validators=[Optional(), Length(max=200)])
    # Read in the programme's time zone; the labels name its offset (_kit_form).
    launch_at = DateTimeLocalField(_l("Launch"), format=_LOCAL_FORMATS,
                                   validators=[Optional()])
    embargo_tier = SelectField(_l("Before launch, visible to"), validators=[Optional()])
    min_tier = SelectField(_l("Minimum tier"), validators=[Optional()])
    segments = TextAreaField(_l("Segments (one a line: tag, city or store_code: value)"),
                             validators=[Length(max=10_000)])
    available_from = DateTimeLocalField(_l("Available from"),
                                        format=_LOCAL_FORMATS, validators=[Optional()])
    available_until = DateTimeLocalField(_l("Available until"),
                                         format=_LOCAL_FORMATS, validators=[Optional()])
    watermark = BooleanField(_l("Watermark images for each member during the embargo"))

    def validate_segments(self, field: Any) -> None:
        parse_segments(field.data)

    def validate_available_until(self, field: Any) -> None:
        start = self.available_from.data
        if start and field.data and field.data <= start:
            raise FormValidationError(_("Must be after the start of the window."))


def _kit_form(kit: Kit | None) -> KitForm:
    form = KitForm(obj=kit) if kit is not None and request.method == "GET" else KitForm()
    ranks = tier_ranks()
    tier_name = _tier_namer()
    tiers = [("", _("Any"))] + [(key, tier_name(key))
                                for key in sorted(ranks, key=lambda k: ranks[k])]
    form.min_tier.choices = tiers
    form.embargo_tier.choices = [("", _("Default (early access)")), *tiers[1:]]
    zone = zone_label(utcnow())
    for name in ("launch_at", "available_from", "available_until"):
        field = getattr(form, name)
        field.label.text = _("%(field)s (%(zone)s)", field=field.label.text, zone=zone)
    if kit is not None and request.method == "GET":
        form.segments.data = _segments_text(kit.segments)
        for name in ("launch_at", "available_from", "available_until"):
            value = getattr(kit, name)
            getattr(form, name).data = to_local(value) if value else None
        form.min_tier.data = kit.min_tier or ""
        form.embargo_tier.data = kit.embargo_tier or ""
    return form


def _utc(value: datetime | None) -> datetime | None:
    """A field's time (in the programme's zone) as stored: UTC."""
    return from_local(value) if value else None


def _form_values(form: KitForm) -> dict[str, Any]:
    embargo_tier = form.embargo_tier.data or None
    if form.launch_at.data and embargo_tier is None and "early_access" in tier_ranks():
        # As the service does for a new kit: unreleased products go to early access.
        embargo_tier = "early_access"
    return {
        "title": form.title.data,
        "notes": form.notes.data or "",
        "product_name": form.product_name.data or None,
        "launch_at": _utc(form.launch_at.data),
        "embargo_tier": embargo_tier,
        "min_tier": form.min_tier.data or None,
        "segments": parse_segments(form.segments.data),
        "available_from": _utc(form.available_from.data),
        "available_until": _utc(form.available_until.data),
        "watermark": bool(form.watermark.data),
    }


def _flash_domain_error(exc: DomainError) -> None:
    details = "; ".join(f"{name}: {', '.join(map(str, problems))}"
                        for fields in (exc.errors or {}).values()
                        for name, problems in fields.items())
    flash(_("The kit was not saved: %(message)s %(details)s", message=exc.message,
            details=details), "error")


# --- pages -------------------------------------------------------------------------------------

@admin_blueprint.get("/kits")
@login_required("viewer")
def kits() -> str:
    listed = paginate(kit_services.kits_query_for_staff(), KITS_PER_PAGE)
    rows: list[Kit] = listed.items
    counts = dict(db.session.execute(
        sa.select(Asset.kit_id, sa.func.count()).where(Asset.kit_id.in_([k.id for k in rows]))
        .group_by(Asset.kit_id)).all())
    ranks = tier_ranks()
    funnels = {kit.id: funnel(kit, ranks) for kit in rows}
    return render_template("admin/kits/list.html", kits=rows, counts=counts, funnels=funnels,
                           page=listed.page, has_next=listed.has_next, is_admin=is_admin(),
                           tier_name=_tier_namer())


@admin_blueprint.route("/kits/new", methods=["GET", "POST"])
@login_required("admin")
def new_kit() -> BaseResponse | str:
    form = _kit_form(None)
    if form.validate_on_submit():
        try:
            with undo_if_refused():
                kit = kit_services.create_kit(_form_values(form), staff_id=current_staff().id,
                                          tier_ranks=tier_ranks())
        except DomainError as exc:
            _flash_domain_error(exc)
        else:
            flash(_("Kit %(title)s created.", title=kit.title), "success")
            return redirect(url_for("admin.kit", kit_id=kit.id))
    return render_template("admin/kits/form.html", form=form, kit=None)


@admin_blueprint.route("/kits/<int:kit_id>/edit", methods=["GET", "POST"])
@login_required("admin")
def edit_kit(kit_id: int) -> BaseResponse | str:
    kit = found_or_404(kit_services.get_kit, kit_id)
    form = _kit_form(kit)
    if form.validate_on_submit():
        try:
            with undo_if_refused():
                kit_services.update_kit(kit, _form_values(form), tier_ranks=tier_ranks())
        except DomainError as exc:
            _flash_domain_error(exc)
        else:
            flash(_("Kit %(title)s saved.", title=kit.title), "success")
            return redirect(url_for("admin.kit", kit_id=kit.id))
    return render_template("admin/kits/form.html", form=form, kit=kit)


@admin_blueprint.get("/kits/<int:kit_id>")
@login_required("viewer")
def kit(kit_id: int) -> BaseResponse:
    kit = found_or_404(kit_services.get_kit, kit_id)
    storage = get_storage()
    previews = {}
    for asset in kit.assets:
        if asset.preview_key:
            previews[asset.id] = storage.presign_get(asset.preview_key,
                                                     expires_in=PREVIEW_URL_TTL)
    response = current_app.make_response(render_template(
        "admin/kits/detail.html",
        kit=kit,
        notes_html=render_notes(kit.notes),
        previews=previews,
        funnel=funnel(kit, tier_ranks()),
        is_admin=is_admin(),
        max_upload_bytes=_settings().max_upload_bytes,
        tier_name=_tier_namer(),
        segment_names=SEGMENT_NAMES,
    ))
    # Previews come from, and uploads go to, the object store: maybe another origin.
    store_probe = storage.presign_get(f"kits/{kit.id}/origin-probe", expires_in=60)
    return allow_store_origins(response, [*previews.values(), store_probe], connect=True)


def _kit_action(kit_id: int, action: Callable[[Kit], Kit], done: str) -> BaseResponse:
    if not ActionForm().validate_on_submit():
        abort(400)
    kit = found_or_404(kit_services.get_kit, kit_id)
    try:
        with undo_if_refused():
            action(kit)
    except DomainError as exc:
        flash(exc.message, "error")
    else:
        flash(done, "success")
    return redirect(url_for("admin.kit", kit_id=kit_id))


@admin_blueprint.post("/kits/<int:kit_id>/publish")
@login_required("admin")
def publish_kit(kit_id: int) -> BaseResponse:
    return _kit_action(kit_id, kit_services.publish_kit, _("The kit is published."))


@admin_blueprint.post("/kits/<int:kit_id>/archive")
@login_required("admin")
def archive_kit(kit_id: int) -> BaseResponse:
    return _kit_action(kit_id, kit_services.archive_kit, _("The kit is archived."))


KIT_STATUS_LABELS = {
    KitStatus.draft.value: _l("Draft"),
    KitStatus.published.value: _l("Published"),
    KitStatus.archived.value: _l("Archived"),
}


@admin_blueprint.app_template_global("kit_status_label")
def kit_status_label(status: str) -> str:
    return str(KIT_STATUS_LABELS.get(status, status))
