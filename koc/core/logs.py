"""Logs an operations team can ship and search: one JSON object per line, one request id across
the web request and the tasks it enqueued, and no secrets in any line.

The request id comes from the `X-Request-ID` header (a proxy's or the client's) when it is a
sane token, else it is made here; it is echoed in the response, put into the headers of every
Celery message sent while the request runs, and set again in the worker that runs the task.
Every line goes through `redact` on its way out, whatever logged it: signatures and codes in
query strings, invitation codes in paths, bearer and API tokens, passwords in URLs.
"""

from __future__ import annotations

import contextvars
import json
import logging
import os
import re
import sys
import traceback
import uuid
from datetime import UTC, datetime
from typing import Any

from celery import signals as celery_signals
from flask import Flask, Response, request
from gunicorn.glogging import Logger as GunicornBaseLogger

from koc.settings import Settings, log_format_of

REQUEST_ID_HEADER = "X-Request-ID"
# The Celery message header that carries it; custom headers reach the task as request fields.
TASK_HEADER = "koc_request_id"
_VALID_REQUEST_ID = re.compile(r"[A-Za-z0-9._:\-]{1,128}")

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "koc_request_id", default=None)

# --- redaction ---------------------------------------------------------------------------------

# Query parameters whose values let someone act as the holder: presigned-URL signatures
# (ours and S3's), invitation and join codes, tokens, passwords.
SENSITIVE_PARAMS = ("signature", "sig", "x-amz-signature", "x-amz-credential",
                    "x-amz-security-token", "code", "token", "access_token", "password",
                    "secret", "invitation", "invite")
MASK = "***"
_QUERY_PARAM = re.compile(
    r"(?i)([?&;](?:" + "|".join(re.escape(name) for name in SENSITIVE_PARAMS) + r")=)[^&\s\"'#]*")
_INVITATION_PATH = re.compile(r"(/(?:invitations|join)/)[^/?\s\"']+")
_BEARER = re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=\-]+")
_API_TOKEN = re.compile(r"\bkoc_[A-Za-z0-9_\-]{8,}")
_URL_PASSWORD = re.compile(r"(\b[a-z][a-z0-9+.\-]*://[^:/@\s]*:)[^@/\s]+(@)")


def redact(text: str) -> str:
    """`text` with every secret the patterns above know replaced by ***."""
    text = _QUERY_PARAM.sub(r"\1" + MASK, text)
    text = _INVITATION_PATH.sub(r"\1" + MASK, text)
    text = _BEARER.sub(r"\1" + MASK, text)
    text = _API_TOKEN.sub("koc_" + MASK, text)
    return _URL_PASSWORD.sub(r"\1" + MASK + r"\2", text)


# --- formatters --------------------------------------------------------------------------------

# Attributes every LogRecord has; anything else was passed in `extra=` and becomes a JSON field.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
    "message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None) or request_id_var.get()
        if request_id:
            entry["request_id"] = request_id
        for name, value in vars(record).items():
            if name not in _RECORD_ATTRIBUTES and not name.startswith("_"):
                entry[name] = redact(value) if isinstance(value, str) else value
        if record.exc_info:
            entry["exception"] = redact("".join(traceback.format_exception(*record.exc_info)))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """The development format, redacted the same way."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        record.request_id = getattr(record, "request_id", None) or request_id_var.get() or "-"
        return redact(super().format(record))


def make_formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class _KocHandler(logging.StreamHandler):
    """The handler configure_logging installs, recognisable so a second call replaces it."""


def configure_logging(settings: Settings) -> None:
    """Root logging for a web or worker process; a second call (another app) reconfigures it.

    A process whose root logger already has someone else's handlers (pytest, an embedding
    application) keeps them: only the level is set.
    """
    root = logging.getLogger()
    root.setLevel(settings.log_level)
    ours = [handler for handler in root.handlers if isinstance(handler, _KocHandler)]
    if not ours and root.handlers:
        return
    handler = ours[0] if ours else _KocHandler(sys.stderr)
    handler.setFormatter(make_formatter(settings.log_format))
    if not ours:
        root.addHandler(handler)


# --- request ids: web ----------------------------------------------------------------------------

def new_request_id() -> str:
    return uuid.uuid4().hex


def _take_request_id() -> None:
    given = request.headers.get(REQUEST_ID_HEADER, "")
    request_id_var.set(given if _VALID_REQUEST_ID.fullmatch(given) else new_request_id())


def _echo_request_id(response: Response) -> Response:
    request_id = request_id_var.get()
    if request_id:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def _forget_request_id(_exc: BaseException | None) -> None:
    request_id_var.set(None)


def install_request_ids(app: Flask) -> None:
    # First before_request, so every later hook and handler logs with the id.
    app.before_request_funcs.setdefault(None, []).insert(0, _take_request_id)
    app.after_request(_echo_request_id)
    app.teardown_request(_forget_request_id)


# --- request ids: tasks ------------------------------------------------------------------------

def _add_request_id_header(headers: dict[str, Any] | None = None, **_: Any) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id:
        headers[TASK_HEADER] = request_id


def _set_task_request_id(task_id: str | None = None, task: Any = None, **_: Any) -> None:
    # A task nobody's request enqueued (the scheduler's) is known by its own task id.
    given = getattr(getattr(task, "request", None), TASK_HEADER, None)
    request_id_var.set(given if isinstance(given, str) and given else task_id)


def _clear_task_request_id(**_: Any) -> None:
    request_id_var.set(None)


def install_task_request_ids() -> None:
    """Connect the Celery signals once per process (dispatch_uid makes it idempotent)."""
    celery_signals.before_task_publish.connect(
        _add_request_id_header, weak=False, dispatch_uid="koc.logs.publish")
    celery_signals.task_prerun.connect(
        _set_task_request_id, weak=False, dispatch_uid="koc.logs.prerun")
    celery_signals.task_postrun.connect(
        _clear_task_request_id, weak=False, dispatch_uid="koc.logs.postrun")


# --- gunicorn ------------------------------------------------------------------------------------

class GunicornLogger(GunicornBaseLogger):
    """gunicorn's logger with koc's formats: access lines as structured, redacted records.

    Used by deploy/gunicorn.conf.py and `koc serve` (`logger_class`); the format follows
    KOC_LOG_FORMAT, read through the same strict settings parser as the app.
    """

    def setup(self, cfg: Any) -> None:
        super().setup(cfg)
        log_format = log_format_of(os.environ)
        for logger in (self.error_log, self.access_log):
            for handler in logger.handlers:
                handler.setFormatter(make_formatter(log_format))

    def access(self, resp: Any, req: Any, environ: dict, request_time: Any) -> None:
        if not (self.cfg.accesslog or self.cfg.logconfig or self.cfg.logconfig_dict
                or self.cfg.syslog):
            return
        path = req.path + (f"?{req.query}" if req.query else "")
        headers = {name.lower(): value for name, value in resp.headers}
        status = int(str(resp.status).split()[0])
        duration_ms = round(request_time.total_seconds() * 1000, 1)
        self.access_log.info(
            "%s %s %s %.1fms", req.method, redact(path), status, duration_ms,
            extra={"method": req.method, "path": redact(path), "status": status,
                   "duration_ms": duration_ms, "bytes": getattr(resp, "sent", None),
                   "remote_addr": environ.get("REMOTE_ADDR"),
                   "user_agent": environ.get("HTTP_USER_AGENT"),
                   "request_id": headers.get("x-request-id")})
