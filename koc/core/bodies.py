"""How large a request body may be, by kind of route, enforced before anything reads it.

Every route gets the small `max_body_bytes`: JSON API writes, the admin panel's forms, public
routes. Routes that take a multipart file get `max_import_file_bytes`. The local storage
endpoint sets its own limit, the size its presigned URL was signed for. A declared
Content-Length over the limit is refused without reading a byte; a body sent without a length
(chunked) is refused as soon as it passes the limit.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import IO

from flask import Flask, jsonify, request
from werkzeug.exceptions import RequestEntityTooLarge

from koc.core.errors import error_body
from koc.settings import Settings

_FILE_LOCATIONS = frozenset({"files", "form"})
# The local storage backend's upload endpoint: its limit is the size its URL was signed for.
_OWN_LIMIT = frozenset({"storage.object"})

# What to do instead, for the routes where a bigger body has a way in.
_WAY_AROUND = {
    "members.import_users": ("Larger import files go through POST /api/v1/users/imports (a "
                             "presigned upload) or `koc users import PATH`."),
    "submissions.import_metrics": "Split larger metrics files.",
    "submissions.import_followers": "Split larger follower files.",
}


def _takes_files(view: Callable) -> bool:
    # The route's `@blp.arguments(..., location="files")`, as flask-smorest records it for the
    # OpenAPI document: the same declaration that tells clients to send multipart.
    parameters = getattr(view, "_apidoc", {}).get("arguments", {}).get("parameters", [])
    return any(p.get("in") in _FILE_LOCATIONS for p in parameters)


def describe_size(size: int) -> str:
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size >= factor and size % factor == 0:
            return f"{size // factor} {unit}"
    return f"{size} bytes"


class _CappedInput:
    """The WSGI input of a body sent without a length: 413 once the client sends past `limit`.

    For such a body Werkzeug stops reading at its maximum and hands over what it read as if it
    were all of it (a form cut short would parse). Werkzeug is given one byte more to ask
    for, and asking for it raises here.
    """

    def __init__(self, stream: IO[bytes], limit: int) -> None:
        self._stream = stream
        self._limit = limit
        self._read = 0

    def _count(self, data: bytes) -> bytes:
        self._read += len(data)
        if self._read > self._limit:
            raise RequestEntityTooLarge
        return data

    def read(self, size: int = -1) -> bytes:
        return self._count(self._stream.read(size))

    def readline(self, size: int = -1) -> bytes:
        return self._count(self._stream.readline(size))


def install_body_limits(app: Flask, settings: Settings) -> None:
    """Bound every body by its route's kind; answer 413 in the API's shape, naming the limit."""
    file_endpoints = frozenset(
        endpoint for endpoint, view in app.view_functions.items() if _takes_files(view)
    )

    def bound_the_body() -> None:
        if request.endpoint in _OWN_LIMIT:
            return
        limit = (settings.max_import_file_bytes if request.endpoint in file_endpoints
                 else settings.max_body_bytes)
        request.environ["koc.body_limit"] = limit
        request.max_content_length = limit
        if request.content_length is None and request.environ.get("wsgi.input_terminated"):
            request.environ["wsgi.input"] = _CappedInput(request.environ["wsgi.input"], limit)
            request.max_content_length = limit + 1

    # First of all the hooks: CSRF protection reads the admin panel's forms in its own hook.
    app.before_request_funcs.setdefault(None, []).insert(0, bound_the_body)

    @app.errorhandler(RequestEntityTooLarge)
    def _too_large(_error: RequestEntityTooLarge):
        limit = request.environ.get("koc.body_limit", request.max_content_length)
        message = (f"The request body is over the {describe_size(limit)} this route accepts."
                   if limit is not None else "The request body is too large.")
        if way_around := _WAY_AROUND.get(request.endpoint or ""):
            message = f"{message} {way_around}"
        return jsonify(error_body(413, message)), 413
