"""Swagger UI's files for `/api/v1/docs`, served from the pinned `swagger-ui-bundle` package.

Loading them from a CDN would run whatever the CDN serves that day on the service's own origin,
next to the admin panel's session; these are the bytes of the version pinned in pyproject.
"""

from __future__ import annotations

from flask import Blueprint, Response, abort, send_from_directory
from swagger_ui_bundle import swagger_ui_path

ASSETS_URL = "/api/v1/docs/assets/"
# Only what the docs page loads.
FILES = frozenset({"swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js",
                   "favicon-32x32.png", "favicon-16x16.png"})

apidocs_blueprint = Blueprint("apidocs", __name__)


@apidocs_blueprint.get(ASSETS_URL + "<name>")
def asset(name: str) -> Response:
    if name not in FILES:
        abort(404)
    response = send_from_directory(swagger_ui_path, name, max_age=86400)
    response.headers["X-Content-Type-Options"] = "nosniff"
    return response
