"""HTTP endpoint for the local backend's presigned URLs (the embedded set-up's stand-in for S3)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from flask import Blueprint, Response, jsonify, request, send_file
from werkzeug.exceptions import RequestEntityTooLarge
from werkzeug.http import HTTP_STATUS_CODES

from koc.core.db import utcnow
from koc.core.storage.base import CHUNK, InvalidKey, StorageUnavailable
from koc.core.storage.factory import get_storage
from koc.core.storage.local import LocalStorage

storage_blueprint = Blueprint("storage", __name__)


def _error(status: int, message: str) -> Response:
    # Same shape as the API's errors, so clients handle one format.
    response = jsonify(
        {"code": status, "status": HTTP_STATUS_CODES.get(status, ""), "message": message}
    )
    response.status_code = status
    return response


def _int_arg(name: str) -> int | None:
    raw = request.args.get(name, "")
    return int(raw) if raw.isascii() and raw.isdigit() else None


def _body_chunks(stream: IO[bytes]) -> Iterator[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


@storage_blueprint.route("/storage/<path:key>", methods=["GET", "PUT"], endpoint="object")
def object_view(key: str) -> Response:
    storage = get_storage()
    if not isinstance(storage, LocalStorage):
        return _error(404, "objects are not served by this app")
    try:
        storage.path_for(key)
    except InvalidKey as exc:
        return _error(400, str(exc))
    expires = _int_arg("expires")
    signature = request.args.get("signature", "")
    if expires is None or not signature:
        return _error(403, "missing or malformed signature")
    if expires < utcnow().timestamp():
        return _error(403, "this link has expired")
    if request.method == "PUT":
        return _put_object(storage, key, expires, signature)
    return _get_object(storage, key, expires, signature)


def _put_object(storage: LocalStorage, key: str, expires: int, signature: str) -> Response:
    size = _int_arg("size")
    content_type = (request.headers.get("Content-Type") or "").strip()
    if size is None or not storage.verify_put(
        key, expires=expires, size=size, content_type=content_type, signature=signature
    ):
        return _error(
            403, "signature does not match (tampered URL, or a Content-Type other than signed)"
        )
    declared = request.content_length
    if declared is not None and declared > size:
        return _error(400, f"body of {declared} bytes is larger than the signed size {size}")
    # The app-wide MAX_CONTENT_LENGTH is for forms; this upload's limit is the signed size.
    # One more byte, because werkzeug refuses any read once a maximum is reached, even at the
    # end of a chunked body of exactly that size; write_stream itself refuses size + 1.
    request.max_content_length = size + 1
    try:
        storage.write_stream(key, _body_chunks(request.stream), max_size=size)
    except (ValueError, RequestEntityTooLarge):
        return _error(400, f"body is larger than the signed size {size}")
    except StorageUnavailable as exc:
        return _error(503, str(exc))
    info = storage.head(key)
    response = Response(status=200)
    response.headers["Content-Length"] = "0"
    if info and info.etag:
        response.set_etag(info.etag)
    return response


def _get_object(storage: LocalStorage, key: str, expires: int, signature: str) -> Response:
    filename = request.args.get("filename", "")
    if not storage.verify_get(key, expires=expires, filename=filename, signature=signature):
        return _error(403, "signature does not match")
    path = storage.path_for(key)
    if not path.is_file():
        return _error(404, "no such object")
    response = send_file(
        path,
        conditional=True,
        as_attachment=bool(filename),
        download_name=filename or None,
        max_age=None,
    )
    # These URLs are on the app's own origin: an uploaded HTML or SVG file must not run
    # scripts there, so browsers are told not to sniff and to sandbox whatever they render.
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Content-Security-Policy"] = "default-src 'none'; sandbox"
    return response
