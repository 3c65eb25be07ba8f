"""Prometheus metrics: `/metrics`, and the hooks that feed it.

Counters and histograms are updated where the thing happens (a request ends, a task ends, a
webhook delivery is tried, a pooled connection is checked out). Figures that live in the
database or the broker (queue depth, outbox backlog, and the domains' figures registered by
`add_scrape_collector`) are read when Prometheus scrapes, so they are true even when the process
that did the work has gone.

Under gunicorn (and a prefork Celery worker) every process writes its own files in
PROMETHEUS_MULTIPROC_DIR and `/metrics` adds them up; without that variable the process's own
registry is served. KOC_METRICS says who may read it: `off` (404), `token` (a bearer token on
the app's port) or `port` (only requests that reached the app through the KOC_METRICS_PORT
listener, which the reverse proxy does not forward).
"""

from __future__ import annotations

import hmac
import os
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from celery import signals as celery_signals
from flask import Blueprint, Flask, Response, abort, current_app, g, request
from kombu import Connection
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
    multiprocess,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import event
from sqlalchemy.engine import Engine

from koc.extensions import db
from koc.settings import Settings

# Request latency: API reads answer in milliseconds, exports and imports take seconds.
_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_TASK_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600)

HTTP_REQUESTS = Counter(
    "koc_http_requests_total", "HTTP requests answered, by endpoint, method and status.",
    ["endpoint", "method", "status"])
HTTP_LATENCY = Histogram(
    "koc_http_request_duration_seconds", "Time to answer an HTTP request.",
    ["endpoint", "method", "status"], buckets=_LATENCY_BUCKETS)
# Summed over the live processes: what the database sees from this deployment.
DB_POOL_CHECKED_OUT = Gauge(
    "koc_db_pool_checked_out", "Database connections in use.", multiprocess_mode="livesum")
DB_POOL_SIZE = Gauge(
    "koc_db_pool_connections", "Database connections the pools hold open.",
    multiprocess_mode="livesum")
DB_POOL_CHECKOUTS = Counter(
    "koc_db_pool_checkouts_total", "Connections handed out by the pools.")
TASKS = Counter(
    "koc_celery_tasks_total", "Celery tasks finished, by task and outcome.", ["task", "state"])
TASK_DURATION = Histogram(
    "koc_celery_task_duration_seconds", "Time a Celery task ran.", ["task"],
    buckets=_TASK_BUCKETS)
WEBHOOK_ATTEMPTS = Counter(
    "koc_webhook_deliveries_total", "Webhook delivery attempts, by webhook id and outcome.",
    ["webhook_id", "outcome"])

METRICS_PATH = "/metrics"
_SCRAPE_COLLECTORS: list[Callable[[], Iterable[Metric]]] = []


def add_scrape_collector(collect: Callable[[], Iterable[Metric]]) -> None:
    """Register figures read at scrape time (inside an app context, so it may query)."""
    if collect not in _SCRAPE_COLLECTORS:
        _SCRAPE_COLLECTORS.append(collect)


# --- web requests ------------------------------------------------------------------------------

def _start_timer() -> None:
    g.koc_metrics_started = time.perf_counter()


def _endpoint_label() -> str:
    # The route's rule, never the raw path: one series per endpoint, whatever ids are in it.
    rule = request.url_rule
    return rule.rule if rule is not None else "unmatched"


def _count_request(response: Response) -> Response:
    started = g.pop("koc_metrics_started", None)
    if started is not None and request.path != METRICS_PATH:
        labels = (_endpoint_label(), request.method, str(response.status_code))
        HTTP_REQUESTS.labels(*labels).inc()
        HTTP_LATENCY.labels(*labels).observe(time.perf_counter() - started)
    return response


# --- database pool -------------------------------------------------------------------------------

def _watch_pool(engine: Engine) -> None:
    pool = engine.pool

    def update(returning: int) -> None:
        # QueuePool (PostgreSQL, SQLite files); NullPool keeps nothing to report.
        checked_out = getattr(pool, "checkedout", None)
        checked_in = getattr(pool, "checkedin", None)
        if callable(checked_out) and callable(checked_in):
            in_use = max(checked_out() - returning, 0)
            DB_POOL_CHECKED_OUT.set(in_use)
            DB_POOL_SIZE.set(checked_out() + checked_in())

    def checkout(*_: Any) -> None:
        DB_POOL_CHECKOUTS.inc()
        update(0)

    def checkin(*_: Any) -> None:
        # Fired before the connection is back in the pool, so it still counts as out.
        update(1)

    if not event.contains(pool, "checkout", checkout):
        event.listen(pool, "checkout", checkout)
        event.listen(pool, "checkin", checkin)


# --- Celery tasks --------------------------------------------------------------------------------

_task_started: dict[str, float] = {}


def _task_prerun(task_id: str | None = None, **_: Any) -> None:
    if task_id:
        _task_started[task_id] = time.perf_counter()


def _task_postrun(task_id: str | None = None, task: Any = None, state: str | None = None,
                  **_: Any) -> None:
    started = _task_started.pop(task_id or "", None)
    name = getattr(task, "name", "unknown")
    TASKS.labels(name, (state or "unknown").lower()).inc()
    if started is not None:
        TASK_DURATION.labels(name).observe(time.perf_counter() - started)


def _task_retry(request: Any = None, **_: Any) -> None:
    TASKS.labels(getattr(request, "task", "unknown"), "retry").inc()


def install_task_metrics(settings: Settings) -> None:
    celery_signals.task_prerun.connect(_task_prerun, weak=False, dispatch_uid="koc.metrics.pre")
    celery_signals.task_postrun.connect(_task_postrun, weak=False,
                                        dispatch_uid="koc.metrics.post")
    celery_signals.task_retry.connect(_task_retry, weak=False, dispatch_uid="koc.metrics.retry")
    if settings.metrics == "port":
        # The worker has no web app of its own: its main process serves the figures that it
        # and its pool children wrote.
        def serve(**_: Any) -> None:
            start_http_server(settings.metrics_port, registry=scrape_registry(None))

        celery_signals.worker_ready.connect(serve, weak=False, dispatch_uid="koc.metrics.serve")


# --- webhooks ------------------------------------------------------------------------------------

def webhook_attempted(webhook_id: int, *, delivered: bool, count: int = 1) -> None:
    WEBHOOK_ATTEMPTS.labels(str(webhook_id), "delivered" if delivered else "failed").inc(count)


# --- scrape-time figures -------------------------------------------------------------------------

def _queue_depth() -> Iterator[Metric]:
    settings: Settings = current_app.config["KOC_SETTINGS"]
    family = GaugeMetricFamily("koc_celery_queue_depth", "Messages waiting in a broker queue.",
                               labels=["queue"])
    if settings.broker_url and settings.broker_url.startswith(("redis://", "rediss://")):
        with Connection(settings.broker_url, connect_timeout=2) as conn:
            client = conn.default_channel.client
            family.add_metric(["celery"], float(client.llen("celery")))
    elif not settings.broker_url:
        queue = Path(settings.broker_dir) / "queue"
        family.add_metric(["celery"], float(sum(1 for _ in queue.iterdir()))
                          if queue.is_dir() else 0.0)
    yield family


class _ScrapeTime(Collector):
    """Everything read when Prometheus asks; one failing source does not hide the rest."""

    def __init__(self, app: Flask | None) -> None:
        self.app = app

    def collect(self) -> Iterator[Metric]:
        if self.app is None:
            return
        sources = [_queue_depth, *_SCRAPE_COLLECTORS]
        failures = GaugeMetricFamily("koc_metrics_source_up", "1 when a scrape-time source "
                                     "answered.", labels=["source"])
        for source in sources:
            try:
                yield from list(source())
                failures.add_metric([source.__name__.strip("_")], 1.0)
            except Exception:  # a dead broker or database must not fail the whole scrape
                db.session.rollback()
                failures.add_metric([source.__name__.strip("_")], 0.0)
        yield failures


def scrape_registry(app: Flask | None) -> CollectorRegistry:
    if "PROMETHEUS_MULTIPROC_DIR" in os.environ:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_Default())
    registry.register(_ScrapeTime(app))
    return registry


class _Default(Collector):
    # The process's own registry (single-process mode), without registering it twice.
    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()


metrics_blueprint = Blueprint("metrics", __name__)


@metrics_blueprint.get(METRICS_PATH)
def metrics_view() -> Response:
    settings: Settings = current_app.config["KOC_SETTINGS"]
    if settings.metrics == "off":
        abort(404)
    if settings.metrics == "port":
        if request.environ.get("SERVER_PORT") != str(settings.metrics_port):
            abort(404)
    else:
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), (settings.metrics_token or "").encode()):
            return Response("metrics need the bearer token KOC_METRICS_TOKEN\n", 401,
                            {"WWW-Authenticate": 'Bearer realm="metrics"'})
    body = generate_latest(scrape_registry(current_app))
    return Response(body, 200, {"Content-Type": CONTENT_TYPE_LATEST, "Cache-Control": "no-store"})


def install(app: Flask) -> None:
    """Request timing and the pool watch for this app; `/metrics` (it answers 404 when off)."""
    # `_created` timestamps double the series and no dashboard reads them.
    disable_created_metrics()
    app.before_request_funcs.setdefault(None, []).insert(0, _start_timer)
    # First in the list, so it runs last: the time includes the request's commit.
    app.after_request_funcs.setdefault(None, []).insert(0, _count_request)
    app.register_blueprint(metrics_blueprint)
    with app.app_context():
        # Reads the engine's configuration; no connection is made.
        _watch_pool(db.engine)
