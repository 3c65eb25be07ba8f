"""gunicorn configuration for koc's web tier.

    gunicorn -c deploy/gunicorn.conf.py 'koc:create_app()'

Every value can be overridden from the environment (KOC_BIND, KOC_WEB_WORKERS, KOC_WEB_THREADS,
KOC_WEB_TIMEOUT) so one file serves every host; see docs/deploy.md for the reasoning.
"""

import os
import tempfile
from pathlib import Path

# prometheus-client picks its multiprocess value store when it is first imported, so the folder
# is named before anything imports it. systemd's RuntimeDirectory=koc gives /run/koc.
os.environ.setdefault("PROMETHEUS_MULTIPROC_DIR",
                      tempfile.mkdtemp(prefix="koc-metrics-"))

from prometheus_client import multiprocess

_cpus = os.cpu_count() or 1

# The reverse proxy talks to this address; the metrics listener (KOC_METRICS=port) is a second
# bind that the proxy does not forward: /metrics answers only on it.
bind = [os.environ.get("KOC_BIND", "127.0.0.1:8000")]
if os.environ.get("KOC_METRICS") == "port":
    bind.append(f"{os.environ.get('KOC_METRICS_HOST', '127.0.0.1')}:"
                f"{os.environ.get('KOC_METRICS_PORT', '9100')}")

# Sync-style threads: requests spend most of their time waiting on PostgreSQL; 2 x CPU processes
# of 4 threads each kept both cores busy in bench.submissions_throughput. Each process holds a
# pool of up to 10 + 20 connections (koc/__init__.py): size PostgreSQL's max_connections for it.
workers = int(os.environ.get("KOC_WEB_WORKERS", str(2 * _cpus)))
worker_class = "gthread"
threads = int(os.environ.get("KOC_WEB_THREADS", "4"))

# A request past this is killed and its worker replaced; uploads and downloads never pass
# through the web process, so 30 s is generous. On SIGTERM in-flight requests get
# graceful_timeout to finish before the worker exits (systemd's TimeoutStopSec is longer).
timeout = int(os.environ.get("KOC_WEB_TIMEOUT", "30"))
graceful_timeout = 30
keepalive = 5  # behind a proxy that keeps connections open (nginx upstream keepalive)
# Recycle workers now and then so a slow leak never becomes an outage; jitter spreads restarts.
max_requests = 5000
max_requests_jitter = 500
# No preload: each worker builds its app (and its database pool) after the fork.
preload_app = False

# Logs: JSON lines (KOC_LOG_FORMAT=json, the production default) on stderr, for journald or a
# log shipper; the access log is redacted (signatures, codes, tokens) by koc's logger class.
logger_class = "koc.core.logs.GunicornLogger"
accesslog = "-"
errorlog = "-"
# X-Forwarded-* are read by ProxyFix in the app (KOC_PROXY_HOPS), not by gunicorn.
forwarded_allow_ips = "127.0.0.1"


def on_starting(server):
    # Files of processes from an earlier start would be added to this one's figures.
    folder = Path(os.environ["PROMETHEUS_MULTIPROC_DIR"])
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("*.db"):
        stale.unlink()


def child_exit(server, worker):
    # Live gauges (the pool's connections) stop counting a worker that is gone.
    multiprocess.mark_process_dead(worker.pid)
