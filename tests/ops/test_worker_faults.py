"""Workers stopped mid-task, for real (`koc worker` on Redis and PostgreSQL).

A users import is held mid-task by a lock the test owns on the users table. A pool process
SIGKILLed then (the OOM killer's way) has its task delivered again (late acknowledgement,
reject on worker lost) and the end state equals an uninterrupted run; a worker sent SIGTERM then
(systemd stopping it) finishes the task before it exits."""

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

pytestmark = [pytest.mark.postgres, pytest.mark.redis]  # redis: a server of its own (conftest)

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


def _import_held_mid_task(make_app, postgres_url, redis_url, tmp_path):
    """Start an import job and a worker; returns once the task waits on the users lock."""
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
    response = app.test_client().post(
        "/api/v1/users/import", headers={"Authorization": f"Bearer {token}"},
        data={"file": (io.BytesIO(csv.encode()), "users.csv")},
        content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    # Taken after the request (whose token look-up reads users) and before the worker starts.
    holder = psycopg.connect(postgres_url)
    holder.execute("LOCK TABLE users IN ACCESS EXCLUSIVE MODE")
    env = {**os.environ, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
           "KOC_DATABASE_URL": postgres_url, "KOC_BROKER_URL": redis_url,
           "KOC_STORAGE_URL": settings.storage_url, "KOC_PUBLIC_URL": "http://localhost"}
    log = tmp_path / "worker.log"
    worker = subprocess.Popen(
        [str(Path(sys.executable).with_name("koc")), "worker", "--no-beat", "--concurrency", "1"],
        env=env, cwd=settings.instance_path, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def waiting_on_users() -> bool:
        with psycopg.connect(postgres_url, autocommit=True) as watcher:
            return bool(watcher.execute(
                "SELECT count(*) FROM pg_locks WHERE NOT granted "
                "AND relation = 'users'::regclass").fetchone()[0])

    _wait(waiting_on_users, "the import reaching the users table", worker, log)
    return response.json["job_id"], holder, worker, log


def _job_status(postgres_url: str, job_id: int) -> str | None:
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        status = conn.execute("SELECT status FROM jobs WHERE id = %s", (job_id,)).fetchone()[0]
    return status if status in ("succeeded", "failed") else None


def _end_state(postgres_url: str, job_id: int):
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        users = conn.execute("SELECT count(*), count(DISTINCT external_id), "
                             "min(city), max(city) FROM users "
                             "WHERE external_id LIKE 'kill-%'").fetchone()
        counts = conn.execute("SELECT processed, failed FROM jobs WHERE id = %s",
                              (job_id,)).fetchone()
    return users, counts


def _stop(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait()


def test_an_import_whose_worker_process_is_killed_runs_again_to_the_same_end(
        make_app, postgres_url, own_redis, tmp_path):
    job_id, holder, worker, log = _import_held_mid_task(make_app, postgres_url, own_redis,
                                                        tmp_path)
    try:
        children = _worker_pids(worker.pid)
        assert len(children) == 1
        os.kill(children[0], signal.SIGKILL)
        holder.rollback()  # the lock goes; the killed attempt's transaction died with it
        status = _wait(lambda: _job_status(postgres_url, job_id), "the job finishing", worker,
                       log)
        assert status == "succeeded"
        assert "WorkerLostError" in log.read_text()
    finally:
        holder.close()
        _stop(worker)
    # The same end as an uninterrupted run: every row once, the job's counts for the whole file.
    assert _end_state(postgres_url, job_id) == ((ROWS, ROWS, "Hangzhou", "Hangzhou"), (ROWS, 0))


def test_sigterm_lets_the_worker_finish_the_task_in_hand_before_it_exits(
        make_app, postgres_url, own_redis, tmp_path):
    job_id, holder, worker, log = _import_held_mid_task(make_app, postgres_url, own_redis,
                                                        tmp_path)
    try:
        worker.send_signal(signal.SIGTERM)  # warm shutdown: no new task, finish this one
        time.sleep(1)
        assert worker.poll() is None, log.read_text()
        holder.rollback()
        assert worker.wait(timeout=60) == 0, log.read_text()[-3000:]
    finally:
        holder.close()
        _stop(worker)
    assert _job_status(postgres_url, job_id) == "succeeded"
    assert _end_state(postgres_url, job_id) == ((ROWS, ROWS, "Hangzhou", "Hangzhou"), (ROWS, 0))
