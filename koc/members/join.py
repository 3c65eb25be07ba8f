"""/join/<code>/qr.svg: an invitation's join link as a QR code, for sharing in WeCom.

The landing page itself, /join/<code>, is the member portal's (koc.portal.views): it records
the opening (the campaign funnel's "opened") and accepts through the API.
"""

from __future__ import annotations

import io

import segno
from flask import Blueprint, Response

from koc.members.services import codes, invitations

join_blueprint = Blueprint("join", __name__)


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
