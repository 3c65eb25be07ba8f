"""Submission creation under gunicorn on PostgreSQL, beside a bare Flask insert, in one run.

Builds a throwaway database with the Alembic migrations and a few hundred members with API
tokens, then serves two apps with the same gunicorn settings, one after the other:

- koc: the real `POST /api/v1/submissions` (token lookup, Idempotency-Key row, schema, URL
  normalisation, duplicate check, the submission, its first snapshot, anomaly checks, commit);
- bare: a Flask app whose one endpoint parses the same JSON and does a single INSERT ... RETURNING
  through a SQLAlchemy engine with the same pool settings. It is the floor: what one request
  costs here before any domain logic.

Each app gets the same closed-loop load (--clients threads, each sending its next request when
the last one answered, every post a new URL and a new Idempotency-Key). Prints requests per
second, p50 and p99 latency for both, and the ratios. Nothing asserts on the figures. The database
is dropped and both servers stopped at exit, also after an error or Ctrl-C.

    .venv/bin/python -m bench.submissions_throughput                    # 3,000 requests per app
    .venv/bin/python -m bench.submissions_throughput --requests 500     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import requests

ADMIN_URL = os.environ.get(
    "KOC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
BARE_TABLE = "bench_bare_posts"


# --- the bare app (served by gunicorn as bench.submissions_throughput:bare_app()) ------------

def bare_app():
    """One endpoint, one INSERT: the cost of Flask + gunicorn + a pooled PostgreSQL round trip."""
    import sqlalchemy as sa
    from flask import Flask, jsonify, request

    url = os.environ["KOC_DATABASE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
    engine = sa.create_engine(url, pool_size=5, max_overflow=10, pool_pre_ping=True)
    insert = sa.text(f"INSERT INTO {BARE_TABLE} (body) VALUES (CAST(:body AS jsonb)) "
                     "RETURNING id")
    app = Flask("bare")

    @app.post("/api/v1/submissions")
    def create():
        body = request.get_json()
        with engine.begin() as conn:
            new_id = conn.execute(insert, {"body": json.dumps(body)}).scalar_one()
        return jsonify({"id": new_id, **body}), 201

    return app


# --- plumbing ------------------------------------------------------------------------------

def database_url(name: str) -> str:
    return urlsplit(ADMIN_URL)._replace(path=f"/{name}").geturl()


def admin_execute(*statements: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def throwaway_database() -> Iterator[str]:
    name = f"koc_bench_{uuid.uuid4().hex[:10]}"
    admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"\ndropped database {name}")


def prepare(url: str, instance: str, members: int) -> list[str]:
    """Schema by the migrations, `members` members with tokens; returns the tokens."""
    from flask_migrate import upgrade

    from koc import create_app
    from koc.core.auth import issue_token
    from koc.extensions import db
    from koc.members.models import Member, User

    app = create_app({"KOC_DATABASE_URL": url, "KOC_ENV": "test"}, instance_path=instance)
    with app.app_context():
        upgrade(revision="heads")
        db.session.execute(db.text(
            f"CREATE TABLE {BARE_TABLE} (id bigserial PRIMARY KEY, body jsonb NOT NULL, "
            "created_at timestamptz NOT NULL DEFAULT now())"))
        tokens = []
        for n in range(members):
            user = User(external_id=f"bench-{n}")
            db.session.add(user)
            db.session.flush()
            member = Member(user_id=user.id, display_name=f"bench {n}")
            db.session.add(member)
            db.session.flush()
            tokens.append(issue_token(member_id=member.id))
        db.session.commit()
        db.engine.dispose()
    return tokens


@contextmanager
def gunicorn(target: str, env: dict[str, str], workers: int, threads: int,
             log: Path) -> Iterator[str]:
    port = free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(workers),
               "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", target]
    with log.open("w") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=Path(__file__).parent.parent,
                                   start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn for {target} exited; see {log}")
            try:
                requests.get(base + "/", timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn for {target} did not start; see {log}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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


def print_results(results: list[Result]) -> None:
    rows = [("", "requests", "errors", "seconds", "req/s", "p50 ms", "p99 ms")]
    for r in results:
        rows.append((r.label, f"{r.requests:,}", str(r.errors), f"{r.seconds:.2f}",
                     f"{r.rps:,.0f}", f"{1000 * r.percentile(50):.1f}",
                     f"{1000 * r.percentile(99):.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  " + "   ".join(cell.rjust(w) if i else cell.ljust(w)
                                for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  " + "   ".join("-" * w for w in widths))
    koc, bare = results
    print(f"\n  throughput ratio bare / koc: {bare.rps / koc.rps:.2f}x")
    print(f"  p50 ratio koc / bare: {koc.percentile(50) / bare.percentile(50):.2f}x   "
          f"p99 ratio koc / bare: {koc.percentile(99) / bare.percentile(99):.2f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.submissions_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per app, after warm-up")
    parser.add_argument("--warmup", type=int, default=200, help="per app, not measured")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client threads")
    parser.add_argument("--workers", type=int, default=2, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=4, help="gunicorn threads per worker")
    parser.add_argument("--members", type=int, default=200)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        admin_execute("SELECT 1")
    except psycopg.OperationalError as exc:
        print(f"cannot reach PostgreSQL at {ADMIN_URL} (set KOC_BENCH_POSTGRES_URL): {exc}",
              file=sys.stderr)
        return 2
    with throwaway_database() as name, tempfile.TemporaryDirectory() as instance:
        url = database_url(name)
        tokens = prepare(url, instance, args.members)
        env = {"KOC_DATABASE_URL": url, "KOC_ENV": "test", "KOC_LOG_LEVEL": "WARNING",
               "KOC_SECRET_KEY": "bench-secret-key-0123456789", "FLASK_INSTANCE_PATH": instance}
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        print("koc submission creation benchmark")
        print(f"  PostgreSQL {version}; gunicorn {args.workers} workers x {args.threads} threads;"
              f" {args.clients} client threads on the same machine ({os.cpu_count()} CPUs)")
        results = []
        for label, target in (("koc POST /submissions", "koc:create_app()"),
                              ("bare Flask, one INSERT",
                               "bench.submissions_throughput:bare_app()")):
            log = Path(instance) / f"gunicorn-{len(results)}.log"
            with gunicorn(target, env, args.workers, args.threads, log) as base:
                run = uuid.uuid4().hex[:8]
                warm = load(base, label, tokens, total=args.warmup, clients=args.clients,
                            run_id=run + "w")
                if warm.errors:
                    print(f"  {label}: {warm.errors} warm-up requests failed; see {log}")
                results.append(load(base, label, tokens, total=args.requests,
                                    clients=args.clients, run_id=run))
        print()
        print_results(results)
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
        print(f"  submissions written: {rows:,} (expected {args.requests + args.warmup:,})")
        print(f"  mean koc latency {1000 * statistics.fmean(results[0].latencies):.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
