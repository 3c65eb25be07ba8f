"""One error shape for the whole API: {"code", "status", "message", "errors"}."""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from flask import Flask, jsonify, request

from koc.core.storage import StorageUnavailable
from koc.core.unit_of_work import keep_changes_despite_error

log = logging.getLogger(__name__)


class DomainError(Exception):
    """Raised by services for a request that breaks a domain rule; the API turns it into a 4xx.

    Services do not know about HTTP, but they know which rule was broken; `status` is the
    contract's code for that rule (404 not found, 409 conflict, 410 gone, 422 invalid).
    """

    # Set on an error raised after the service undid something outside the database (a refused
    # upload it deleted): the request commits the rows that record it although it fails.
    keeps_changes = False

    def __init__(
        self, status: int, message: str, *, errors: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        # Extra response headers (Retry-After on a quota's 429).
        self.headers = headers or {}


def field_error(status: int, field: str, message: str) -> DomainError:
    """A DomainError about one field of the JSON body, named in the message and in `errors`."""
    return DomainError(status, f"{field}: {message}", errors={"json": {field: [message]}})


def error_body(status: int, message: str, errors: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "code": status,
        "status": HTTPStatus(status).phrase,
        "message": message,
    }
    if errors:
        body["errors"] = errors
    return body


def register_error_handlers(app: Flask) -> None:

    @app.errorhandler(DomainError)
    def _domain_error(exc: DomainError):
        if exc.keeps_changes:
            keep_changes_despite_error()
        return (jsonify(error_body(exc.status, exc.message, exc.errors)), exc.status,
                exc.headers)

    @app.errorhandler(StorageUnavailable)
    def _storage_down(exc: StorageUnavailable):
        log.warning("object store unavailable on %s: %s", request.path, exc)
        body = error_body(503, "The object store is not answering; try again shortly.")
        return jsonify(body), 503, {"Retry-After": "30"}
