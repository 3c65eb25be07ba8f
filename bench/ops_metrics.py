"""What /metrics shows under load: gunicorn (deploy/gunicorn.conf.py) and a Celery worker, live.

On a throwaway PostgreSQL database and a Redis broker, it serves koc the way deploy/ does
(KOC_METRICS=port, JSON logs, multiprocess metrics), starts `koc worker`, then drives it:
member submissions through bench.submissions_throughput's closed loop, a users import of
--users rows through the API, and a tier recalculation. Then it scrapes the web tier's and the
worker's metrics listeners and prints the koc_* series (histogram buckets left out), and checks
that every log line was one JSON object. Nothing asserts on the figures.

    .venv/bin/python -m bench.ops_metrics                  # 1,000 submissions, 20,000 users
    .venv/bin/python -m bench.ops_metrics --requests 200   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

from bench.http_load import free_port
from bench.submissions_throughput import database_url, prepare, throwaway_database

REPO = Path(__file__).resolve().parent.parent
REDIS_URL = os.environ.get("KOC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/13")


@dataclass
class Result:
    label: str
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def percentile(self, p: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def load(base: str, label: str, tokens: list[str], *, total: int, clients: int,
         run_id: str) -> Result:
    """`total` new submissions from `clients` threads: traffic for the metrics to count (this
    bench checks what the metrics endpoints say under load, not how fast the API is; the
    submissions bench measures that with wrk)."""
    latencies: list[float] = []
    errors = [0]
    lock = threading.Lock()
    counter = iter(range(total))

    def client(index: int) -> None:
        session = requests.Session()
        token = tokens[index % len(tokens)]
        while True:
            with lock:
                n = next(counter, None)
            if n is None:
                return
            body = {
                "platform": "xiaohongshu",
                "post_url": f"https://www.xiaohongshu.com/explore/{run_id}{n:016x}"
                            "?xsec_source=pc_share",
                "caption": "开箱 #盲盒", "posted_at": "2026-11-01T10:00:00+00:00",
                "metrics": {"views": 1200, "likes": 80, "comments": 12, "saves": 30},
            }
            started = time.perf_counter()
            response = session.post(f"{base}/api/v1/submissions", json=body, timeout=60,
                                    headers={"Authorization": f"Bearer {token}",
                                             "Idempotency-Key": f"{run_id}-{n}"})
            elapsed = time.perf_counter() - started
            with lock:
                latencies.append(elapsed)
                if response.status_code != 201:
                    errors[0] += 1

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return Result(label, total, time.perf_counter() - started, latencies, errors[0])


@contextmanager
def running(command: list[str], env: dict[str, str], log: Path, cwd: str):
    with log.open("w") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT,
                                   cwd=cwd, start_new_session=True)
    try:
        yield process
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_for(url: str, process: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited; see {log}")
        try:
            requests.get(url, timeout=5)
            return
        except (requests.ConnectionError, requests.Timeout):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not answer; see {log}") from None
            time.sleep(0.2)


def staff_token(url: str, instance: str) -> str:
    from koc import create_app
    from koc.core.auth import create_staff, issue_token
    from koc.extensions import db

    app = create_app({"KOC_DATABASE_URL": url, "KOC_ENV": "test"}, instance_path=instance)
    with app.app_context():
        staff = create_staff(email="ops-bench@example.com", role="admin",
                             password=uuid.uuid4().hex)
        db.session.flush()
        token = issue_token(staff_id=staff.id)
        db.session.commit()
        db.engine.dispose()
    return token


def wait_for_job(base: str, token: str, job_id: int, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = requests.get(f"{base}/api/v1/jobs/{job_id}", timeout=10,
                           headers={"Authorization": f"Bearer {token}"}).json()
        if job.get("status") in ("succeeded", "failed"):
            return job
        time.sleep(0.5)
    raise RuntimeError(f"job {job_id} did not finish")


def koc_series(text: str) -> list[str]:
    return [line for line in text.splitlines()
            if line.startswith("koc_") and "_bucket{" not in line]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--users", type=int, default=20_000)
    args = parser.parse_args(argv)

    import redis

    redis.Redis.from_url(REDIS_URL).flushdb()
    work = Path(tempfile.mkdtemp(prefix="koc-ops-bench-"))
    instance = str(work / "instance")
    Path(instance).mkdir()
    with throwaway_database() as name:
        url = database_url(name)
        tokens = prepare(url, instance, 200)
        admin = staff_token(url, instance)
        web_port, web_metrics, worker_metrics = free_port(), free_port(), free_port()
        common = {**os.environ, "KOC_ENV": "test", "KOC_DATABASE_URL": url,
                  "KOC_BROKER_URL": REDIS_URL, "KOC_STORAGE_URL": f"file://{work / 'storage'}",
                  "KOC_SECRET_KEY": "ops-bench-secret-key-0123456789",
                  "KOC_PUBLIC_URL": f"http://127.0.0.1:{web_port}",
                  "KOC_LOG_FORMAT": "json", "KOC_METRICS": "port"}
        (work / "storage").mkdir()
        web_env = {**common, "KOC_BIND": f"127.0.0.1:{web_port}",
                   "KOC_METRICS_PORT": str(web_metrics), "KOC_WEB_WORKERS": "2",
                   "KOC_WEB_THREADS": "4", "PROMETHEUS_MULTIPROC_DIR": str(work / "m-web")}
        worker_env = {**common, "KOC_METRICS_PORT": str(worker_metrics),
                      "PROMETHEUS_MULTIPROC_DIR": str(work / "m-worker")}
        (work / "m-worker").mkdir()
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        koc = str(Path(sys.executable).with_name("koc"))
        web_log, worker_log = work / "web.log", work / "worker.log"
        base = f"http://127.0.0.1:{web_port}"
        with running([gunicorn, "-c", str(REPO / "deploy" / "gunicorn.conf.py"),
                      "koc:create_app()"], web_env, web_log, instance) as web, \
                running([koc, "worker", "--no-beat", "--concurrency", "2"], worker_env,
                        worker_log, instance) as worker:
            wait_for(base + "/healthz", web, web_log)
            wait_for(f"http://127.0.0.1:{worker_metrics}/metrics", worker, worker_log)
            result = load(base, "koc POST /submissions", tokens, total=args.requests,
                          clients=args.clients, run_id=uuid.uuid4().hex[:8])
            print(f"  {result.label}: {result.requests:,} requests, {result.errors} errors, "
                  f"{result.rps:,.0f} req/s, p50 {1000 * result.percentile(50):.1f} ms, "
                  f"p99 {1000 * result.percentile(99):.1f} ms")
            csv = "external_id,display_name,city\n" + "".join(
                f"ops-{n},user {n},Shanghai\n" for n in range(args.users))
            auth = {"Authorization": f"Bearer {admin}"}
            started = requests.post(f"{base}/api/v1/users/import", headers=auth, timeout=60,
                                    files={"file": ("users.csv", csv.encode())})
            job = wait_for_job(base, admin, started.json()["job_id"])
            print(f"\n  users import: {job['status']}, {job.get('processed')} rows")
            started = requests.post(f"{base}/api/v1/tiers/recalculate", headers=auth, timeout=60)
            job = wait_for_job(base, admin, started.json()["job_id"])
            print(f"  tier recalculation: {job['status']}")
            web_text = requests.get(f"http://127.0.0.1:{web_metrics}/metrics", timeout=30).text
            worker_text = requests.get(f"http://127.0.0.1:{worker_metrics}/metrics",
                                       timeout=30).text
        print("\n/metrics on the web tier's metrics listener (koc_* series, buckets left out):")
        for line in koc_series(web_text):
            print("  " + line)
        print("\n/metrics on the worker's listener:")
        for line in koc_series(worker_text):
            print("  " + line)
        lines = [line for line in web_log.read_text().splitlines() if line.strip()]
        bad = 0
        for line in lines:
            try:
                json.loads(line)
            except ValueError:
                bad += 1
        print(f"\n  web log: {len(lines):,} lines, {bad} not JSON; sample: {lines[-1][:300]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
