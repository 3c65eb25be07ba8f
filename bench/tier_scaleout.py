"""A split full tier run on 1 and then 2 Celery worker processes: the scale-out, measured.

One throwaway PostgreSQL database with bench.tier_recalc's population, Redis as the broker. For
each worker count the tiers are reset to nobody promoted, the real job plans the run
(`engine.start_split_run`, member-id ranges of `--part-size`), the parts are sent as the real
task (`koc.tiers.tasks.recalculate_tier_part`) to a Celery worker started with that many
processes (prefork pool, `--concurrency N`), and the clock stops when the run's row says
succeeded. Prints seconds, members/s and the speed-up 1 -> 2.

The messages go to a queue of this run's own name (on `KOC_BENCH_REDIS_URL`, default Redis
database 0, which the test suite does not use), deleted at exit with the database.

    .venv/bin/python -m bench.tier_scaleout                                   # 100k members
    .venv/bin/python -m bench.tier_scaleout --members 20000 --submissions 400000
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from bench.tier_engine import RESET_BENEFITS_SQL
from bench.tier_recalc import (
    fmt_int,
    generate,
    in_scratch_database,
    print_header,
    print_population,
    reset_tiers,
)

REDIS_URL = os.environ.get("KOC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
ROOT = Path(__file__).resolve().parent.parent


def worker_main(queue: str, concurrency: int, instance: str) -> None:
    """The worker child: the koc app's Celery, consuming only this run's queue."""
    from koc import create_app

    app = create_app(instance_path=instance)
    with app.app_context():
        app.extensions["celery"].worker_main([
            "worker", "--loglevel=WARNING", f"--concurrency={concurrency}", "--pool=prefork",
            "-Q", queue, "-n", f"{queue}-{concurrency}@%h", "--without-gossip",
            "--without-mingle"])


def _env(url: str) -> dict[str, str]:
    return {"KOC_DATABASE_URL": url, "KOC_BROKER_URL": REDIS_URL, "KOC_ENV": "test",
            "KOC_LOG_LEVEL": "WARNING", "KOC_SECRET_KEY": "bench-secret-key-0123456789"}


def start_worker(url: str, queue: str, concurrency: int, instance: str,
                 log: Path) -> subprocess.Popen[bytes]:
    with log.open("w") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "bench.tier_scaleout", "--worker", queue,
             "--concurrency", str(concurrency), "--instance", instance],
            env={**os.environ, **_env(url)}, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True)


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def wait_ready(celery: Any, name: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the worker exited; see {log}")
        replies = celery.control.ping(timeout=1.0)
        if any(name in reply for reply_set in replies for reply in reply_set):
            return
    raise RuntimeError(f"the worker did not answer; see {log}")


def split_run(app: Any, url: str, *, queue: str, part_size: int,
              timeout: float) -> tuple[float, int, int]:
    """Reset, plan, send the parts, wait for the run to succeed: (seconds, parts, evaluated)."""
    import psycopg
    import sqlalchemy as sa

    from koc.extensions import db
    from koc.tiers.models import TierRun
    from koc.tiers.services import engine
    from koc.tiers.tasks import recalculate_tier_part

    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for sql in RESET_BENEFITS_SQL:
            conn.execute(sql)
    reset_tiers(url)
    with app.app_context():
        started = time.perf_counter()
        part_ids = engine.start_split_run(trigger="bench", part_size=part_size)
        db.session.commit()
        run_id = db.session.scalar(sa.select(sa.func.max(TierRun.id)))
        for part_id in part_ids:
            recalculate_tier_part.apply_async((part_id,), queue=queue)
        while True:
            db.session.rollback()
            run = db.session.get(TierRun, run_id, populate_existing=True)
            if run is not None and run.status == "succeeded":
                break
            if time.perf_counter() - started > timeout:
                raise RuntimeError("the split run did not finish in time")
            time.sleep(0.1)
        seconds = time.perf_counter() - started
        evaluated = run.members_evaluated or 0
        db.session.remove()
    return seconds, len(part_ids), evaluated


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tier_scaleout",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--parts", type=int, default=8, help="member-id ranges per run")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=900,
                        help="seconds a split run may take before the bench gives up")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--instance", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    import flask_migrate
    import redis

    from koc import create_app
    from koc.extensions import db

    app = create_app({**_env(url)}, instance_path=instance)
    with app.app_context():
        flask_migrate.upgrade(revision="heads")
        print_header(name)
        population = generate(url, members=args.members, submissions=args.submissions,
                              seed=args.seed)
        print_population(population)
        db.engine.dispose()
    members = population.members
    part_size = max(1, -(-members // args.parts))
    queue = f"koc-bench-{uuid.uuid4().hex[:8]}"
    celery = app.extensions["celery"]
    results: dict[int, tuple[float, int, int]] = {}
    try:
        for workers in (1, 2):
            log = Path(instance) / f"worker-{workers}.log"
            process = start_worker(url, queue, workers, instance, log)
            try:
                wait_ready(celery, f"{queue}-{workers}@", process, log)
                results[workers] = split_run(app, url, queue=queue, part_size=part_size,
                                             timeout=args.timeout)
            finally:
                stop(process)
            seconds, parts, evaluated = results[workers]
            print(f"  {workers} worker process{'es' if workers > 1 else ''}: {seconds:.2f} s, "
                  f"{parts} parts of {fmt_int(part_size)} ids, {fmt_int(evaluated)} evaluated, "
                  f"{fmt_int(members / seconds)} members/s", flush=True)
    finally:
        client = redis.Redis.from_url(REDIS_URL)
        client.delete(queue, *client.keys(f"_kombu.binding.{queue}*"))
    one, two = results[1][0], results[2][0]
    print(f"\n  speed-up 1 -> 2 worker processes: {one / two:.2f}x "
          f"(same PostgreSQL, {os.cpu_count()} CPUs shared by both workers and the database)")
    print(f"RATIO tiers-scaleout 1w/2w {one / two:.3f} one={one:.2f}s two={two:.2f}s")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker, args.concurrency, args.instance)
        return 0
    return in_scratch_database(benchmark, args)


if __name__ == "__main__":
    sys.exit(main())
