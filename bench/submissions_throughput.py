"""Submission creation under gunicorn on PostgreSQL, beside a bare Flask insert, in one run.

Builds a throwaway database with the Alembic migrations and some members with API tokens, then
serves two apps with the same gunicorn settings (3 workers x 2 threads), one after the other:

- koc: the real `POST /api/v1/submissions` (token lookup, Idempotency-Key row, schema, URL
  normalisation, duplicate check, the submission, its first snapshot, anomaly checks, commit);
- bare: a Flask app whose one endpoint parses the same JSON and does a single INSERT ... RETURNING
  through a SQLAlchemy engine with the same pool settings. It is the floor: what one request
  costs here before any domain logic.

`wrk` drives each (16 connections, closed loop; a Lua script gives every request a new post URL,
a new Idempotency-Key and the next member's token), then koc once more at about half its peak
rate (each connection waits between requests), where the issue asks for p99 under 50 ms. Prints
req/s, p50, p99 and the ratio koc / bare (the issue's goal: 0.6 or better). Nothing asserts on
the figures. The database is dropped and the servers stopped at exit, also after an error.

    .venv/bin/python -m bench.submissions_throughput                  # 20 s per run
    .venv/bin/python -m bench.submissions_throughput --duration 5     # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import psycopg

from bench.http_load import WrkResult, gunicorn, lua_string, print_table, run_wrk

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
    from koc.core.celery import ensure_broker_dirs
    from koc.extensions import db
    from koc.members.models import Member, User

    app = create_app({"KOC_DATABASE_URL": url, "KOC_ENV": "test"}, instance_path=instance)
    # The served app's tasks (the history checks after each commit) wait in the embedded
    # filesystem broker of the same instance folder; no worker runs during the measurement.
    ensure_broker_dirs(app.config["KOC_SETTINGS"])
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


# wrk runs this in each of its threads; `setup` numbers the threads so URLs never collide.
LUA = r"""
-- `thread_id` is a global: `thread:set` in `setup` writes the thread's globals.
local counter, tokens = 0, {}
local run = RUN
local delay_ms = DELAY
local next_id = 0

function setup(thread)
  thread:set("thread_id", next_id)
  next_id = next_id + 1
end

function init(args)
  for line in io.lines(TOKENS) do tokens[#tokens + 1] = line end
end

function delay()
  return delay_ms
end

request = function()
  counter = counter + 1
  local n = thread_id * 100000000 + counter
  local token = tokens[(n % #tokens) + 1]
  local body = string.format('{"platform": "xiaohongshu", "post_url": '
    .. '"https://www.xiaohongshu.com/explore/%s%016x?xsec_source=pc_share", '
    .. '"caption": "\\u5f00\\u7bb1 #blindbox", "posted_at": "2026-11-01T10:00:00+00:00", '
    .. '"metrics": {"views": 1200, "likes": 80, "comments": 12, "saves": 30}}', run, n)
  return wrk.format("POST", "/api/v1/submissions", {
    ["Authorization"] = "Bearer " .. token,
    ["Idempotency-Key"] = run .. "-" .. n,
    ["Content-Type"] = "application/json"}, body)
end
"""


def lua(run: str, tokens_file: Path, delay_ms: int = 0) -> str:
    return (LUA.replace("RUN", lua_string(run)).replace("TOKENS", lua_string(str(tokens_file)))
            .replace("DELAY", str(delay_ms)))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.submissions_throughput",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=20, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=3, help="seconds per app, not measured")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=3, help="gunicorn worker processes")
    parser.add_argument("--threads", type=int, default=2, help="gunicorn threads per worker")
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
        work = Path(instance)
        tokens_file = work / "tokens.txt"
        tokens_file.write_text("\n".join(tokens) + "\n")
        env = {"KOC_DATABASE_URL": url, "KOC_ENV": "test", "KOC_LOG_LEVEL": "WARNING",
               "KOC_SECRET_KEY": "bench-secret-key-0123456789",
               "KOC_RATELIMIT_ENABLED": "false"}
        with psycopg.connect(url) as conn:
            version = conn.execute("SHOW server_version").fetchone()[0]
        print("koc submission creation benchmark (wrk)")
        print(f"  PostgreSQL {version}; gunicorn {args.workers} workers x {args.threads} threads;"
              f" wrk {args.connections} connections; {os.cpu_count()} CPUs shared with the"
              f" servers and the database; load average {os.getloadavg()[0]:.1f} at start")
        results: list[WrkResult] = []
        for label, target in (("koc POST /submissions",
                               f"koc:create_app(instance_path={instance!r})"),
                              ("bare Flask, one INSERT",
                               "bench.submissions_throughput:bare_app()")):
            log = work / f"gunicorn-{len(results)}.log"
            with gunicorn(target, env, workers=args.workers, threads=args.threads,
                          log=log) as base:
                run = uuid.uuid4().hex[:8]
                run_wrk(label, base, lua(run[:4] + "0000", tokens_file),
                        duration=args.warmup, connections=args.connections, workdir=work)
                peak = run_wrk(label, base, lua(run, tokens_file), duration=args.duration,
                               connections=args.connections, workdir=work)
                results.append(peak)
                if label.startswith("koc") and peak.rps > 0:
                    # Each connection waits so that all of them together ask about half the peak.
                    delay = round(1000 * args.connections / (peak.rps / 2))
                    half = run_wrk(f"koc at ~half peak ({delay} ms pauses)", base,
                                   lua(uuid.uuid4().hex[:8], tokens_file, delay),
                                   duration=args.duration, connections=args.connections,
                                   workdir=work)
                    results.append(half)
        print()
        print_table(results)
        koc, half, bare = results
        print(f"\n  throughput ratio koc / bare: {koc.rps / bare.rps:.2f}  (goal >= 0.6)")
        print(f"  p50 koc / bare: {koc.p50_ms / bare.p50_ms:.2f}x   "
              f"p99 koc / bare: {koc.p99_ms / bare.p99_ms:.2f}x   "
              f"p99 at ~half peak ({half.rps:,.0f} req/s): {half.p99_ms:.1f} ms (goal < 50 ms)")
        with psycopg.connect(url) as conn:
            rows = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
            bare_rows = conn.execute(f"SELECT count(*) FROM {BARE_TABLE}").fetchone()[0]
        print(f"  rows written: {rows:,} submissions, {bare_rows:,} bare rows"
              f" (non-2xx answers are in the table)")
        print(f"RATIO submissions koc/bare {koc.rps / bare.rps:.3f} "
              f"koc={koc.rps:.0f}/s bare={bare.rps:.0f}/s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
