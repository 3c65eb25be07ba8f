"""deploy/gunicorn.conf.py for real: JSON log lines, redacted access log, multiprocess /metrics."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

REPO = Path(__file__).resolve().parents[2]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def served(app, tmp_path):
    settings = app.config["KOC_SETTINGS"]
    port, metrics_port = _free_port(), _free_port()
    env = {**os.environ, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
           "KOC_DATABASE_URL": settings.database_url, "KOC_STORAGE_URL": settings.storage_url,
           "KOC_BROKER_DIR": settings.broker_dir, "KOC_PUBLIC_URL": "http://localhost",
           "KOC_LOG_FORMAT": "json", "KOC_METRICS": "port",
           "KOC_METRICS_PORT": str(metrics_port), "KOC_BIND": f"127.0.0.1:{port}",
           "KOC_WEB_WORKERS": "2", "KOC_WEB_THREADS": "2",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    log = tmp_path / "gunicorn.log"
    gunicorn = Path(sys.executable).with_name("gunicorn")
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(gunicorn), "-c", str(REPO / "deploy" / "gunicorn.conf.py"), "koc:create_app()"],
            env=env, cwd=settings.instance_path, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, f"gunicorn did not answer:\n{log.read_text()}"
            try:
                requests.get(base + "/healthz", timeout=10)
                break
            except (requests.ConnectionError, requests.Timeout):
                time.sleep(0.1)
        yield base, f"http://127.0.0.1:{metrics_port}", process, log
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=40)


def _samples(text: str, name: str) -> dict[str, float]:
    found = {}
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            series, _, value = line.rpartition(" ")
            found[series] = float(value)
    return found


def test_gunicorn_logs_json_lines_without_secrets_and_serves_summed_metrics(served):
    base, metrics_base, process, log = served
    session = requests.Session()
    answer = session.get(base + "/healthz", headers={"X-Request-ID": "trace-abc-1"})
    assert answer.headers["X-Request-ID"] == "trace-abc-1"
    for _ in range(30):
        # New connections each time, so both workers answer some.
        assert requests.get(base + "/healthz", timeout=5).status_code == 200
    refused = requests.get(base + "/storage/kits/1/a.jpg?expires=1&signature=S1GNATURE0SECRET",
                           timeout=5)
    assert refused.status_code in (403, 404)
    requests.post(base + "/api/v1/invitations/INV1TECODE0SECRET/accept", json={}, timeout=5)
    requests.get(base + "/api/v1/me", headers={"Authorization": "Bearer koc_T0KEN0SECRET0xyz"},
                 timeout=5)

    # /metrics answers on its own listener only.
    assert requests.get(base + "/metrics", timeout=5).status_code == 404
    scraped = requests.get(metrics_base + "/metrics", timeout=5)
    assert scraped.status_code == 200
    counts = _samples(scraped.text, "koc_http_requests_total")
    healthz = 'koc_http_requests_total{endpoint="/healthz",method="GET",status="200"}'
    # 31 requests over two worker processes, added up by the multiprocess collector (plus the
    # start-up probes, which also hit /healthz).
    assert counts[healthz] >= 31
    assert any('endpoint="/api/v1/invitations/<key:code>/accept"' in series for series in counts)
    assert _samples(scraped.text, "koc_http_request_duration_seconds_bucket")
    assert "koc_db_pool_checked_out" in scraped.text

    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=40) == 0
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    entries = [json.loads(line) for line in lines]  # every line is one JSON object
    access = [entry for entry in entries if entry["logger"] == "gunicorn.access"]
    assert len(access) >= 34
    traced = [entry for entry in access if entry.get("request_id") == "trace-abc-1"]
    assert traced and traced[0]["path"] == "/healthz" and traced[0]["status"] == 200
    assert all(entry.get("request_id") for entry in access)
    text = log.read_text()
    for secret in ("S1GNATURE0SECRET", "INV1TECODE0SECRET", "T0KEN0SECRET0xyz"):
        assert secret not in text
    assert "signature=***" in text and "/invitations/***/accept" in text
