"""The Celery app: bound to the Flask app so every task runs inside an app context.

With `KOC_BROKER_URL` unset, kombu's filesystem transport carries messages through a directory in
the instance folder, so `koc worker` (worker plus beat scheduler) runs with no broker server.
Tasks keep their state in the `jobs` table, not in a result backend.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from celery import Celery, Task
from flask import Flask

from koc.core.sqlite import run_task
from koc.settings import Settings

TASK_MODULES = [
    "koc.core.jobs",
    "koc.core.events",
    "koc.members.tasks",
    "koc.assets.tasks",
    "koc.submissions.tasks",
    "koc.tiers.tasks",
]


def _broker_options(settings: Settings) -> dict[str, Any]:
    if settings.broker_url:
        return {"socket_connect_timeout": 5, "socket_timeout": 10}
    queue_dir = Path(settings.broker_dir) / "queue"
    return {
        # Producer and consumer must read and write the same folder.
        "data_folder_in": str(queue_dir),
        "data_folder_out": str(queue_dir),
        "processed_folder": str(Path(settings.broker_dir) / "processed"),
        # Exchange bindings; kombu's default is a "control" folder in the working directory.
        "control_folder": str(Path(settings.broker_dir) / "control"),
        "store_processed": False,
    }


def ensure_broker_dirs(settings: Settings) -> None:
    """Create the filesystem transport's folders; called by commands, never at import."""
    if settings.broker_url:
        return
    for name in ("queue", "processed", "control"):
        (Path(settings.broker_dir) / name).mkdir(parents=True, exist_ok=True)


def _periodic_tasks(settings: Settings) -> dict[str, Any]:
    # Each tasks module declares its own schedule next to its tasks.
    schedule: dict[str, Any] = {}
    for module_name in TASK_MODULES:
        module = importlib.import_module(module_name)
        declare = getattr(module, "periodic_tasks", None)
        if declare is not None:
            schedule.update(declare(settings))
    return schedule


def celery_init_app(app: Flask) -> Celery:
    settings: Settings = app.config["KOC_SETTINGS"]

    class FlaskTask(Task):
        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                # A task writes: it begins immediate on SQLite, and runs again if still busy.
                return run_task(self.name, lambda: self.run(*args, **kwargs))

    celery_app = Celery(app.name, task_cls=FlaskTask, include=TASK_MODULES)
    celery_app.conf.update(
        broker_url=settings.celery_broker_url,
        broker_transport_options=_broker_options(settings),
        broker_connection_retry_on_startup=True,
        # A request that enqueues must not hang on a dead broker; the job row stays queued and
        # koc.core.jobs.requeue_stale_jobs sends it later.
        task_publish_retry_policy={"max_retries": 2, "interval_start": 0,
                                   "interval_step": 0.5, "interval_max": 1},
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        beat_schedule_filename=str(Path(settings.instance_path) / "celerybeat-schedule"),
        beat_schedule=_periodic_tasks(settings),
        timezone="UTC",
    )
    celery_app.set_default()
    app.extensions["celery"] = celery_app
    return celery_app
