"""Logs: request ids from the edge into the tasks, JSON lines, and no secrets in any line."""

from __future__ import annotations

import base64
import io
import json
import logging
import time

import pytest

from koc.core import logs
from koc.core.logs import JsonFormatter, TextFormatter, redact


def test_a_request_id_from_the_proxy_is_kept_and_echoed(client):
    response = client.get("/healthz", headers={"X-Request-ID": "edge-7f3a:42"})
    assert response.headers["X-Request-ID"] == "edge-7f3a:42"


@pytest.mark.parametrize("given", ["", "has spaces", "x" * 129, "evil\u2028line", "a;b"])
def test_a_missing_or_odd_request_id_is_replaced_by_a_new_one(client, given):
    first = client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    second = client.get("/healthz", headers={"X-Request-ID": given}).headers["X-Request-ID"]
    assert len(first) == 32 and int(first, 16) >= 0
    assert first != second


SECRET_LINES = [
    ("GET /storage/kits/1/a.jpg?expires=1790000000&signature=c2VjcmV0c2lnbmF0dXJl HTTP/1.1",
     "c2VjcmV0c2lnbmF0dXJl"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAXX%2F"
     "2026&X-Amz-Signature=9f86d081884c7d659a2feaa0c55ad015", "9f86d081884c7d659a2feaa0c55ad015"),
    ("https://b.s3.amazonaws.com/k?X-Amz-Credential=AKIAIOSFODNN7EXAMPLE%2F20261201",
     "AKIAIOSFODNN7"),
    ("POST /api/v1/invitations/Zq3vB8kLmN0pQ/accept 201", "Zq3vB8kLmN0pQ"),
    ("GET /m/join?code=Zq3vB8kLmN0pQ&utm=x", "Zq3vB8kLmN0pQ"),
    ("Authorization: Bearer abcDEF123.456-_~", "abcDEF123.456"),
    ("token koc_Hk3l2n1m0b9v8c7x6z5a4s3d2f1g leaked", "Hk3l2n1m0b9v8c7x6z5a4s3d2f1g"),
    ("connecting to postgresql://koc:s3cr3t-pw@db.internal:5432/koc", "s3cr3t-pw"),
    ("redis://:redispass@cache:6379/0 down", "redispass"),
]


@pytest.mark.parametrize(("line", "secret"), SECRET_LINES)
def test_secrets_never_reach_a_log_line(line, secret):
    assert secret not in redact(line)
    record = logging.LogRecord("koc.test", logging.INFO, __file__, 1, "saw %s", (line,), None)
    assert secret not in JsonFormatter().format(record)
    assert secret not in TextFormatter().format(record)


def test_redaction_keeps_what_an_operator_needs():
    line = "GET /storage/kits/1/a.jpg?expires=1790000000&signature=abc&filename=a.jpg 200"
    assert redact(line) == ("GET /storage/kits/1/a.jpg?expires=1790000000&signature=***"
                            "&filename=a.jpg 200")
    assert redact("POST /api/v1/invitations/abc/accept") == "POST /api/v1/invitations/***/accept"


def test_each_line_is_one_json_object_with_the_request_id_and_extras(app):
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    log = logging.getLogger("koc.test.json")
    log.addHandler(handler)
    log.propagate = False
    try:
        with app.test_request_context(headers={"X-Request-ID": "req-1"}):
            app.preprocess_request()
            log.info("imported %d rows\nsecond line", 5, extra={"job_id": 9})
            try:
                raise ValueError("bad row with token koc_abcdefghijklmnop")
            except ValueError:
                log.exception("import failed")
    finally:
        log.removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "imported 5 rows\nsecond line"
    assert first["request_id"] == "req-1" and first["job_id"] == 9
    assert first["level"] == "INFO" and first["logger"] == "koc.test.json"
    assert "ValueError" in second["exception"]
    assert "abcdefghijklmnop" not in second["exception"]


def test_the_format_setting_is_strict_and_json_is_the_production_default(make_app):
    from koc.settings import SettingsError, load_settings

    production = {"KOC_ENV": "production", "KOC_SECRET_KEY": "x" * 40,
                  "KOC_BADGE_SIGNING_KEY": base64.b64encode(b"k" * 32).decode(),
                  "KOC_ENCRYPTION_KEYS": base64.urlsafe_b64encode(b"e" * 32).decode()}
    assert load_settings("/tmp", production).log_format == "json"  # noqa: S108 - never written
    assert load_settings("/tmp", {}).log_format == "text"  # noqa: S108
    assert load_settings("/tmp", {"KOC_LOG_FORMAT": "json"}).log_format == "json"  # noqa: S108
    with pytest.raises(SettingsError, match="KOC_LOG_FORMAT"):
        load_settings("/tmp", {"KOC_LOG_FORMAT": "yaml"})  # noqa: S108


@pytest.mark.redis
def test_tasks_a_request_enqueues_run_under_its_request_id(make_app, own_redis):
    from celery.contrib.testing.worker import start_worker

    app = make_app(KOC_BROKER_URL=own_redis)
    celery_app = app.extensions["celery"]
    seen: list[tuple[str | None, str]] = []

    @celery_app.task(name="tests.ops.record_request_id", bind=True)
    def record(self) -> None:
        seen.append((logs.request_id_var.get(), self.request.id))

    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="WARNING"):
        with app.test_request_context(headers={"X-Request-ID": "req-from-edge"}):
            app.preprocess_request()
            record.delay()
        scheduled = record.delay()  # outside any request: the scheduler's case
        for _ in range(200):
            if len(seen) == 2:
                break
            time.sleep(0.05)
    assert seen[0][0] == "req-from-edge"
    assert seen[1] == (scheduled.id, scheduled.id)
