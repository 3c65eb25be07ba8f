"""A Celery pool process SIGKILLed mid-task (the OOM killer's way): the task is delivered again
(late acknowledgement, reject on worker lost) and the end state equals an uninterrupted run."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg
import pytest

from tests.ops.test_web_faults import _worker_pids

pytestmark = [pytest.mark.postgres, pytest.mark.redis]

ROWS = 3000


def _wait(check, what: str, worker: subprocess.Popen, log: Path, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.2)
    pytest.fail(f"{what} did not happen; worker log:\n{log.read_text()[-4000:]}")


def test_an_import_whose_worker_process_is_killed_runs_again_to_the_same_end(
        make_app, postgres_url, redis_url, tmp_path):
    from koc.core.auth import create_staff, issue_token
    from koc.extensions import db

    app = make_app(KOC_DATABASE_URL=postgres_url, KOC_BROKER_URL=redis_url)
    settings = app.config["KOC_SETTINGS"]
    with app.app_context():
        staff = create_staff(email="ops@example.com", role="admin", password="a-password-1")
        db.session.flush()
        token = issue_token(staff_id=staff.id)
        db.session.commit()
    csv = "external_id,display_name,city\n" + "".join(
        f"kill-{n},user {n},Hangzhou\n" for n in range(ROWS))

    holder = psycopg.connect(postgres_url)
    holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    try:
        response = app.test_client().post(
            "/api/v1/users/import", headers={"Authorization": f"Bearer {token}"},
            data={"file": (io.BytesIO(csv.encode()), "users.csv")},
            content_type="multipart/form-data")
        assert response.status_code == 202, response.json
        job_id = response.json["job_id"]
        env = {**os.environ, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
               "KOC_DATABASE_URL": postgres_url, "KOC_BROKER_URL": redis_url,
               "KOC_STORAGE_URL": settings.storage_url, "KOC_PUBLIC_URL": "http://localhost"}
        log = tmp_path / "worker.log"
        worker = subprocess.Popen(
            [str(Path(sys.executable).with_name("koc")), "worker", "--no-beat",
             "--concurrency", "1"], env=env, cwd=settings.instance_path,
            stdout=log.open("w"), stderr=subprocess.STDOUT)
        try:
            def waiting_on_users() -> bool:
                with psycopg.connect(postgres_url, autocommit=True) as watcher:
                    return bool(watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted "
                        "AND relation = 'users'::regclass").fetchone()[0])

            _wait(waiting_on_users, "the import reaching the users table", worker, log)
            children = _worker_pids(worker.pid)
            assert len(children) == 1
            os.kill(children[0], signal.SIGKILL)
            holder.rollback()  # the lock goes; the killed attempt's transaction died with it

            def job_status() -> str | None:
                with psycopg.connect(postgres_url, autocommit=True) as conn:
                    status = conn.execute("SELECT status FROM jobs WHERE id = %s",
                                          (job_id,)).fetchone()[0]
                return status if status in ("succeeded", "failed") else None

            assert _wait(job_status, "the job finishing", worker, log) == "succeeded"
            assert "WorkerLostError" in log.read_text() or "SIGKILL" in log.read_text()
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
    finally:
        holder.close()
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        users = conn.execute("SELECT count(*), count(DISTINCT external_id), "
                             "min(city), max(city) FROM users "
                             "WHERE external_id LIKE 'kill-%'").fetchone()
        processed = conn.execute("SELECT processed, failed FROM jobs WHERE id = %s",
                                 (job_id,)).fetchone()
    # The same end as an uninterrupted run: every row once, the job's counts for the whole file.
    assert users == (ROWS, ROWS, "Hangzhou", "Hangzhou")
    assert processed == (ROWS, 0)
