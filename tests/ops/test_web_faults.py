"""Faults of the web tier, for real: gunicorn (deploy/gunicorn.conf.py) on PostgreSQL.

A request is held mid-transaction by a table lock the test owns, so "mid-request" is a state
the test controls rather than a race: then the worker is SIGKILLed (the client's retry with its
Idempotency-Key must give one row), or gunicorn gets SIGTERM (the request must finish first).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psycopg
import pytest
import requests

from tests.ops.test_gunicorn import REPO, _free_port

pytestmark = pytest.mark.postgres


def _member_token(app) -> str:
    from koc.core.auth import issue_token
    from koc.extensions import db
    from koc.members.models import Member, User

    with app.app_context():
        user = User(external_id="fault-1")
        db.session.add(user)
        db.session.flush()
        member = Member(user_id=user.id, display_name="fault")
        db.session.add(member)
        db.session.flush()
        token = issue_token(member_id=member.id)
        db.session.commit()
    return token


def _body(n: int) -> dict:
    return {"platform": "xiaohongshu",
            "post_url": f"https://www.xiaohongshu.com/explore/{n:024x}?xsec_source=pc_share",
            "caption": "开箱", "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": {"views": 1200, "likes": 80, "comments": 12, "saves": 30}}


@pytest.fixture
def web(make_app, postgres_url, tmp_path):
    app = make_app(KOC_DATABASE_URL=postgres_url)
    settings = app.config["KOC_SETTINGS"]
    port = _free_port()
    env = {**os.environ, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
           "KOC_DATABASE_URL": postgres_url, "KOC_STORAGE_URL": settings.storage_url,
           "KOC_BROKER_DIR": settings.broker_dir, "KOC_PUBLIC_URL": "http://localhost",
           "KOC_BIND": f"127.0.0.1:{port}", "KOC_WEB_WORKERS": "1", "KOC_WEB_THREADS": "2",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c",
             str(REPO / "deploy" / "gunicorn.conf.py"), "koc:create_app()"],
            env=env, cwd=settings.instance_path, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_up(base, process, log)
        yield base, process, log, _member_token(app), postgres_url
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=20)


def _wait_until_up(base, process, log) -> None:
    deadline = time.monotonic() + 90
    while True:
        assert process.poll() is None, log.read_text()
        assert time.monotonic() < deadline, log.read_text()
        try:
            requests.get(base + "/healthz", timeout=10)
            return
        except (requests.ConnectionError, requests.Timeout):
            time.sleep(0.1)


def _blocked_behind_lock(url: str):
    """Hold an exclusive lock on submissions; returns the connection that holds it."""
    conn = psycopg.connect(url)
    conn.execute("LOCK TABLE submissions IN ACCESS EXCLUSIVE MODE")
    return conn


def _wait_for_lock_waiter(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as watcher:
        for _ in range(400):
            waiting = watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted "
                "AND relation = 'submissions'::regclass").fetchone()[0]
            if waiting:
                return
            time.sleep(0.05)
    pytest.fail("the request never reached the submissions table")


def _worker_pids(master: int) -> list[int]:
    children = Path(f"/proc/{master}/task/{master}/children").read_text().split()
    return [int(pid) for pid in children]


def _submissions(url: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute("SELECT count(*) FROM submissions").fetchone()[0]


def test_a_worker_killed_mid_request_and_the_clients_retry_make_one_row(web):
    base, process, log, token, url = web
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "fault-retry-1"}
    lock = _blocked_behind_lock(url)
    outcome: dict = {}

    def first_attempt() -> None:
        try:
            outcome["response"] = requests.post(f"{base}/api/v1/submissions", json=_body(1),
                                                headers=headers, timeout=60)
        except requests.RequestException as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=first_attempt)
    thread.start()
    try:
        _wait_for_lock_waiter(url)
        for pid in _worker_pids(process.pid):
            os.kill(pid, signal.SIGKILL)
        thread.join(timeout=30)
    finally:
        lock.rollback()
        lock.close()
    assert "error" in outcome, outcome  # the client saw the connection die
    _wait_until_up(base, process, log)  # the master starts a new worker
    retry = requests.post(f"{base}/api/v1/submissions", json=_body(1), headers=headers,
                          timeout=60)
    assert retry.status_code in (200, 201), retry.text
    again = requests.post(f"{base}/api/v1/submissions", json=_body(1), headers=headers,
                          timeout=60)
    assert again.json()["id"] == retry.json()["id"]
    assert _submissions(url) == 1


def test_sigterm_lets_the_request_in_flight_finish_before_gunicorn_exits(web):
    base, process, _log, token, url = web
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "fault-term-1"}
    lock = _blocked_behind_lock(url)
    outcome: dict = {}

    def in_flight() -> None:
        outcome["response"] = requests.post(f"{base}/api/v1/submissions", json=_body(2),
                                            headers=headers, timeout=60)

    thread = threading.Thread(target=in_flight)
    thread.start()
    try:
        _wait_for_lock_waiter(url)
        process.send_signal(signal.SIGTERM)
        time.sleep(1)  # gunicorn is now draining; the request is still waiting on the lock
        assert process.poll() is None
    finally:
        lock.rollback()
        lock.close()
    thread.join(timeout=60)
    assert outcome["response"].status_code == 201, outcome["response"].text
    assert process.wait(timeout=40) == 0
    assert _submissions(url) == 1
