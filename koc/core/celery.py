"""The Celery app: bound to the Flask app so every task runs inside an app context.

With `KOC_BROKER_URL` unset, kombu's filesystem transport carries messages through a directory in
the instance folder, so `koc worker` (worker plus beat scheduler) runs with no broker server.
Tasks keep their state in the `jobs` table, not in a result backend.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeAlias

from celery import Celery, Task, shared_task
from celery.schedules import crontab
from flask import Flask

from koc.core import logs, metrics
from koc.core.sqlite import run_task
from koc.extensions import db
from koc.settings import Settings

TASK_MODULES = [
    "koc.core.jobs.runner",
    "koc.core.events.delivery",
    "koc.core.security_tasks",
    "koc.members.tasks",
    "koc.assets.tasks",
    "koc.submissions.tasks",
    "koc.tiers.tasks",
]

FILESYSTEM_TRANSPORT = "koc.core.filesystem_broker:Transport"


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


Schedule: TypeAlias = timedelta | crontab


@dataclass(frozen=True)
class Every:
    """One periodic run of a task: a fixed schedule, or one read from the settings."""

    schedule: Schedule | Callable[[Settings], Schedule]
    kwargs: dict[str, Any] = field(default_factory=dict)

    def resolve(self, settings: Settings) -> Schedule:
        return self.schedule(settings) if callable(self.schedule) else self.schedule


# Task name -> its runs; filled by @periodic_task as the task modules are imported.
_PERIODIC: dict[str, tuple[Every, ...]] = {}


def periodic_task(name: str, *runs: Every, **options: Any) -> Callable[[Callable], Task]:
    """A shared task whose schedule is declared with it, so its name is written once."""

    def decorator(function: Callable) -> Task:
        _PERIODIC[name] = runs
        return shared_task(name=name, **options)(function)

    return decorator


def _periodic_tasks(settings: Settings) -> dict[str, Any]:
    for module_name in TASK_MODULES:
        importlib.import_module(module_name)
    schedule: dict[str, Any] = {}
    for name, runs in _PERIODIC.items():
        for index, run in enumerate(runs):
            entry = name if len(runs) == 1 else f"{name}#{index}"
            schedule[entry] = {"task": name, "schedule": run.resolve(settings),
                               "kwargs": run.kwargs}
    return schedule


def celery_init_app(app: Flask) -> Celery:
    settings: Settings = app.config["KOC_SETTINGS"]

    class FlaskTask(Task):
        """Runs inside an app context and owns the task's transaction: one commit, on success."""

        def __call__(self, *args: object, **kwargs: object) -> object:
            with app.app_context():
                # A task writes: it begins immediate on SQLite, and runs again if still busy.
                return run_task(self.name, lambda: self._run_and_commit(*args, **kwargs))

        def _run_and_commit(self, *args: object, **kwargs: object) -> object:
            try:
                result = self.run(*args, **kwargs)
            except BaseException:
                db.session.rollback()
                raise
            db.session.commit()
            return result

    celery_app = Celery(app.name, task_cls=FlaskTask, include=TASK_MODULES)
    celery_app.conf.update(
        broker_url=settings.celery_broker_url,
        # With no broker server: kombu's filesystem transport, its exchange tables under a lock.
        broker_transport=None if settings.broker_url else FILESYSTEM_TRANSPORT,
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
    # Operations: the request id travels in each message's headers.
    logs.install_task_request_ids()
    metrics.install_task_metrics(settings)
    app.extensions["celery"] = celery_app
    return celery_app
