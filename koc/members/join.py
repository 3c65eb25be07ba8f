"""/join/<code>: an invitation's landing page (the link in a campaign's message and QR code).

Opening it is recorded once (the campaign funnel's "opened"); the page's form accepts through
POST /api/v1/invitations/<code>/accept. /join/<code>/qr.svg is the link as a QR code for
sharing in WeCom; it records nothing.
"""

from __future__ import annotations

import io

import segno
from flask import Blueprint, Response, render_template
from flask_babel import get_locale

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.ratelimit import invitation_limit
from koc.core.sqlite import writes
from koc.members.services import codes, invitations

join_blueprint = Blueprint("join", __name__, template_folder="templates", static_folder="static",
                           static_url_path="/join/static")
# The page holds no inline script or style and loads nothing from other origins.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'; "
        "object-src 'none'"),
    "X-Content-Type-Options": "nosniff",
    # The code is in the URL: never sent to another site.
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@join_blueprint.after_request
def _harden(response: Response) -> Response:
    for name, value in _HEADERS.items():
        response.headers.setdefault(name, value)
    return response


def _lang() -> str:
    return "zh-CN" if str(get_locale() or "zh_CN").startswith("zh") else "en"


@join_blueprint.get("/join/<key:code>")
@writes
@invitation_limit
def join(code: str) -> tuple[str, int]:
    try:
        invitation, campaign = invitations.open_invitation(code, now=utcnow())
    except DomainError as exc:
        return render_template("members/join.html", problem=exc.status, code=code,
                               lang=_lang()), exc.status
    return render_template("members/join.html", problem=None, code=code, invitation=invitation,
                           campaign=campaign, lang=_lang()), 200


@join_blueprint.get("/join/<key:code>/qr.svg")
def join_qr(code: str) -> Response:
    """The join link as a QR code; 404 for a code that names no invitation.

    Not rate-limited: an admin may fetch a whole campaign's codes, and a code cannot be guessed
    (128 bits of HMAC, checked before any lookup)."""
    if invitations.find_invitation(code) is None:
        return Response("Not found", status=404, mimetype="text/plain")
    buffer = io.BytesIO()
    segno.make(codes.join_url(code), error="m").save(buffer, kind="svg", scale=6, border=2)
    return Response(buffer.getvalue(), mimetype="image/svg+xml",
                    headers={"Cache-Control": "private, max-age=3600"})
