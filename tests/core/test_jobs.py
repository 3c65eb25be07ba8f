"""Jobs survive a broker that is down: the request succeeds, the job waits, a sweep resends it."""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from koc.core.db import utcnow
from koc.core.jobs import Job, requeue_stale_jobs
from koc.extensions import db
from tests.conftest import Api, staff_token_for


def test_job_is_kept_when_the_broker_is_down_and_resent_later(make_app, redis_url,
                                                              caplog) -> None:
    app = make_app(KOC_BROKER_URL="redis://127.0.0.1:9/0")  # nothing listens on port 9
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    response = admin.post("/tiers/recalculate")
    assert response.status_code == 202
    job_id = response.json["job_id"]
    assert admin.get(f"/jobs/{job_id}").json["status"] == "queued"
    assert "it is sent again later" in caplog.text

    with app.app_context():
        job = db.session.get(Job, job_id)
        job.created_at = utcnow() - timedelta(minutes=10)
        db.session.commit()

    # The broker is back: the same database, now with a reachable Redis.
    database_url = app.config["KOC_SETTINGS"].database_url
    recovered = make_app(KOC_DATABASE_URL=database_url, KOC_BROKER_URL=redis_url)
    with recovered.app_context():
        assert requeue_stale_jobs.run() == 1
    queued = redis.Redis.from_url(redis_url).lrange("celery", 0, -1)
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "koc.tiers.tasks.recalculate_tiers_job"
    assert json.loads(message["headers"]["argsrepr"]) == [job_id]


def _task_names_asked_for() -> list[tuple[str, str]]:
    """Every (place, task name) that koc/ asks for through start_job or enqueue_after_commit."""
    import ast
    from pathlib import Path

    import koc

    found = []
    root = Path(koc.__file__).parent
    for path in sorted(root.rglob("*.py")):
        if path.parent == root / "core" / "jobs":
            continue  # start_job passes its caller's name on
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in {"start_job", "enqueue_after_commit"}):
                first = node.args[0]
                place = f"{path.relative_to(root)}:{node.lineno}"
                assert isinstance(first, ast.Constant) and isinstance(first.value, str), (
                    f"{place}: ask for a task by its name, as a string")
                found.append((place, first.value))
    return found


def test_every_task_asked_for_by_name_is_a_registered_task(app) -> None:
    asked = _task_names_asked_for()
    assert len(asked) >= 8  # the scan sees the call sites; an empty scan would pass vacuously
    registered = set(app.extensions["celery"].tasks)
    unknown = [(place, name) for place, name in asked if name not in registered]
    assert unknown == []


def test_each_periodic_task_is_scheduled_under_its_own_name(app) -> None:
    celery_app = app.extensions["celery"]
    schedule = celery_app.conf.beat_schedule
    scheduled = {entry["task"] for entry in schedule.values()}
    assert {"koc.core.jobs.requeue_stale_jobs", "koc.core.events.deliver_due",
            "koc.tiers.tasks.recalculate_tiers_periodic"} <= scheduled
    assert scheduled <= set(celery_app.tasks)
    # The tier recalculation runs twice: incremental every few minutes and in full daily.
    tier_runs = sorted(str(entry["kwargs"]) for entry in schedule.values()
                       if entry["task"] == "koc.tiers.tasks.recalculate_tiers_periodic")
    assert tier_runs == ["{'incremental': False}", "{'incremental': True}"]


def test_a_busy_embedded_database_is_no_failure_of_the_job(app, caplog) -> None:
    """SQLite busy inside a job's work: the task runs again (koc.core.sqlite.run_task), so the
    job is neither marked failed nor logged as one; the second attempt finishes it."""
    import sqlite3

    import sqlalchemy as sa

    from koc.core.jobs import Job, run_job, start_job
    from koc.core.sqlite import run_task
    from koc.extensions import db

    attempts = []

    def work(job: Job) -> None:
        attempts.append(job.id)
        if len(attempts) == 1:
            raise sa.exc.OperationalError("UPDATE ...", {}, sqlite3.OperationalError(
                "database is locked"))
        job.processed = 7

    with app.app_context():
        job_id = start_job("koc.tiers.tasks.recalculate_tiers_job", kind="test.busy").id
        db.session.commit()
        run_task("test", lambda: run_job(job_id, work))
        job = db.session.get(Job, job_id)
        assert (job.status, job.processed, len(attempts)) == ("succeeded", 7, 2)
    assert not [r for r in caplog.records if "failed" in r.getMessage()]
