"""Tier recalculation on PostgreSQL: the real set-based job against a naive per-member ORM loop.

Builds a throwaway database with the Alembic migrations, fills it with a synthetic population
using set-based SQL, times `koc.tiers.services.engine.recalculate` over everyone, times a naive loop
(a handful of ORM queries per member) over a random sample and scales it to the population, and
prints both with their ratio. The database is dropped at exit, also after an error or Ctrl-C.

    .venv/bin/python -m bench.tier_recalc                              # 100k members, 1M posts
    .venv/bin/python -m bench.tier_recalc --members 5000 --submissions 50000   # a quick look
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import psycopg
import sqlalchemy as sa

ADMIN_URL = os.environ.get(
    "KOC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
WEEK_SECONDS = 7 * 86400
# Weeks start on Monday; the Unix epoch was a Thursday, three days after one.
WEEK_OFFSET_SECONDS = 3 * 86400

# --- the synthetic population ------------------------------------------------------------------
#
# Every statement runs in one session after setseed(), so the same flags give the same data.
# `OFFSET 0` keeps PostgreSQL from flattening a subquery, which could evaluate one random() call
# several times per row and break the distributions below.

USERS_SQL = """
INSERT INTO users (id, external_id, display_name, city, store_code, tags, orders_count,
                   spend_cents, last_order_at, shares_count, community_posts_count,
                   candidate_score, created_at, updated_at)
SELECT g, 'crm-' || lpad(g::text, 10, '0'), 'user ' || g,
       (ARRAY['Shanghai', 'Beijing', 'Shenzhen', 'Guangzhou', 'Hangzhou', 'Chengdu'])[1 + g %% 6],
       'S' || lpad((g %% 500)::text, 4, '0'), '[]'::jsonb, orders, orders * (3000 + g %% 20000),
       CASE WHEN orders > 0 THEN now() - interval '1 day' * (g %% 365) END,
       orders / 2, orders / 3, orders * 1.5, created, created
FROM (SELECT g, floor(40 * random() ^ 3)::int AS orders,
             now() - interval '1 day' * (400 + 600 * random()) AS created
      FROM generate_series(1, %(members)s::bigint) AS g OFFSET 0) AS u
"""

# One member per user. A few are suspended and a few have a tier pinned by staff, so the job's
# filter (active, not locked) has something to skip.
MEMBERS_SQL = """
INSERT INTO members (id, user_id, display_name, status, tier_key, tier_locked, tier_since,
                     joined_at, terms_accepted_at, show_name_on_badge)
SELECT g, g, 'koc ' || g,
       CASE WHEN r < 0.02 THEN 'suspended' ELSE 'active' END,
       CASE WHEN r >= 0.02 AND r < 0.025 THEN 'certified' END,
       r >= 0.02 AND r < 0.025,
       CASE WHEN r >= 0.02 AND r < 0.025 THEN joined END,
       joined, joined, false
FROM (SELECT g, random() AS r, now() - interval '1 day' * (150 + 250 * random()) AS joined
      FROM generate_series(1, %(members)s::bigint) AS g OFFSET 0) AS m
"""

# How many posts each member gets: 30% none, the rest a Lomax (Pareto II, alpha 1.5) weight, so
# most post a little and a few a lot; the cap keeps the busiest near a thousand posts. Each member
# owns the consecutive submission ids (lo, hi], which makes the total exactly --submissions.
ACTIVITY_SQL = """
CREATE TEMPORARY TABLE bench_activity AS
SELECT member_id, coalesce(lag(hi) OVER (ORDER BY member_id), 0) AS lo, hi
FROM (SELECT member_id,
             round(%(submissions)s::bigint * sum(w) OVER (ORDER BY member_id)
                   / nullif(sum(w) OVER (), 0))::bigint AS hi
      FROM (SELECT id AS member_id,
                   CASE WHEN random() < 0.30 THEN 0.0
                        ELSE least(random() ^ (-1.0 / 1.5) - 1.0, 150.0) END AS w
            FROM members OFFSET 0) AS weights) AS cumulative
"""

# Posts over the last 120 days, 85% approved; interactions (likes + comments + saves) follow a
# Lomax tail (alpha 1.2, scale 20): the median post has a dozen, about 1% pass 1,000.
SUBMISSIONS_SQL = """
INSERT INTO submissions (id, member_id, kit_id, platform, post_url, canonical_url, caption,
                         posted_at, status, rating, review_reason, reviewed_by_staff_id,
                         reviewed_at, interactions, score, score_breakdown, created_at)
SELECT id, member_id, NULL, 'xiaohongshu', url || '?xsec_source=pc_share', url, '', posted_at,
       status,
       CASE WHEN status = 'approved' THEN 1 + id %% 5 END,
       CASE WHEN status = 'rejected' THEN 'does not follow the brief' END,
       NULL,
       CASE WHEN status <> 'pending' THEN least(posted_at + interval '1 day', now()) END,
       interactions, NULL, NULL, least(posted_at + interval '2 hours', now())
FROM (SELECT id, member_id,
             'https://www.xiaohongshu.com/explore/' || lpad(to_hex(id), 24, '0') AS url,
             posted_at,
             CASE WHEN r < 0.85 THEN 'approved' WHEN r < 0.93 THEN 'rejected'
                  ELSE 'pending' END AS status,
             least(floor(20 * (t ^ (-1.0 / 1.2) - 1.0)), 5000000)::bigint AS interactions
      FROM (SELECT g AS id, a.member_id, random() AS r,
                   greatest(random(), 1e-12) AS t,
                   now() - interval '1 day' * 120 * random() AS posted_at
            FROM bench_activity AS a, generate_series(a.lo + 1, a.hi) AS g OFFSET 0) AS raw
      OFFSET 0) AS s
"""

POINTS_SQL = """
INSERT INTO points_ledger (member_id, source, reference, points, description, created_at)
SELECT member_id, 'submission', id::text, 10 + least(interactions / 100, 90),
       'approved post', reviewed_at
FROM submissions WHERE status = 'approved'
"""

SEQUENCES_SQL = [
    f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
    f"(SELECT coalesce(max(id), 0) + 1 FROM {table}), false)"
    for table in ("users", "members", "submissions", "points_ledger")
]

RESET_SQL = [
    "DELETE FROM tier_changes",
    "DELETE FROM tier_runs",
    "UPDATE members SET tier_key = NULL, tier_since = NULL "
    "WHERE NOT tier_locked AND tier_key IS NOT NULL",
]
RESET_VACUUM = "VACUUM (ANALYZE) members, tier_changes, tier_runs"


# --- plumbing -----------------------------------------------------------------------------------

def database_url(admin_url: str, name: str) -> str:
    return urlsplit(admin_url)._replace(path=f"/{name}").geturl()


def admin_execute(*statements: str) -> None:
    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=5) as conn:
        for statement in statements:
            conn.execute(statement)


@contextmanager
def stopwatch() -> Iterator[list[float]]:
    """Yields a one-element list that holds the elapsed seconds once the block ends."""
    box = [0.0]
    start = time.perf_counter()
    try:
        yield box
    finally:
        box[0] = time.perf_counter() - start


@dataclass
class StatementLog:
    """Time spent inside cursor.execute/executemany, from SQLAlchemy's engine events.

    Only recorded while `active`, so the benchmark's own housekeeping queries stay out. An
    executemany is one call but as many statements as it has parameter sets (psycopg pipelines
    them), so both are counted.
    """

    active: bool = False
    calls: list[tuple[float, int, str]] = field(default_factory=list)
    _started: list[float] = field(default_factory=list)

    def attach(self, engine: sa.Engine) -> None:
        sa.event.listen(engine, "before_cursor_execute", self._before)
        sa.event.listen(engine, "after_cursor_execute", self._after)

    @contextmanager
    def recording(self) -> Iterator[StatementLog]:
        self.calls, self.active = [], True
        try:
            yield self
        finally:
            self.active = False

    @property
    def statements(self) -> int:
        return sum(rows for _, rows, _ in self.calls)

    @property
    def sql_seconds(self) -> float:
        return sum(seconds for seconds, _, _ in self.calls)

    def slowest(self, n: int) -> list[tuple[float, int, str]]:
        return sorted(self.calls, reverse=True)[:n]

    def _before(self, *_: Any) -> None:
        if self.active:
            self._started.append(time.perf_counter())

    def _after(self, _conn: Any, _cursor: Any, statement: str, parameters: Any,
               _context: Any, executemany: bool) -> None:
        if self.active and self._started:
            seconds = time.perf_counter() - self._started.pop()
            rows = len(parameters) if executemany else 1
            self.calls.append((seconds, rows, " ".join(statement.split())))


# --- generation ---------------------------------------------------------------------------------

@dataclass
class Population:
    members: int
    submissions: int
    approved: int
    points_rows: int
    steps: dict[str, float]
    seconds: float


# Secondary indexes of the big tables: dropped for the load and rebuilt from their own
# definitions, because one sorted build is several times faster than a million index insertions.
# Constraint-backed indexes stay, so the unique constraints still check the generated data.
SECONDARY_INDEXES_SQL = """
SELECT ci.relname, pg_get_indexdef(i.indexrelid)
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_class AS ci ON ci.oid = i.indexrelid
WHERE c.relname IN ('submissions', 'points_ledger')
  AND NOT EXISTS (SELECT 1 FROM pg_constraint AS k WHERE k.conindid = i.indexrelid)
ORDER BY ci.relname
"""


def skip_foreign_key_checks(conn: psycopg.Connection) -> bool:
    """Every reference is valid by construction; checking each row would double the load time.

    Needs a superuser (the default admin URL is one); otherwise the checks simply run.
    """
    try:
        conn.execute("SET session_replication_role = replica")
    except psycopg.errors.InsufficientPrivilege:
        return False
    return True


def generate(url: str, *, members: int, submissions: int, seed: int) -> Population:
    params = {"members": members, "submissions": submissions}
    steps: dict[str, float] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        total_start = time.perf_counter()
        # setseed takes a double in [-1, 1].
        conn.execute("SELECT setseed(%s)", [(seed % 2000) / 1000 - 1])
        fk_skipped = skip_foreign_key_checks(conn)
        indexes = conn.execute(SECONDARY_INDEXES_SQL).fetchall()
        for index_name, _ in indexes:
            conn.execute(f'DROP INDEX "{index_name}"')
        for name, sql in (("users", USERS_SQL), ("members", MEMBERS_SQL),
                          ("activity", ACTIVITY_SQL), ("submissions", SUBMISSIONS_SQL),
                          ("points", POINTS_SQL)):
            with stopwatch() as took:
                conn.execute(sql, params)
            steps[name] = took[0]
        if fk_skipped:
            conn.execute("RESET session_replication_role")
        for sql in SEQUENCES_SQL:
            conn.execute(sql)
        with stopwatch() as took:
            conn.execute("SET maintenance_work_mem = '256MB'")
            for _, definition in indexes:
                conn.execute(definition)
        steps["indexes"] = took[0]
        # Autovacuum would have done this on a live system; without it the first run pays for
        # hint bits and an empty visibility map, and the planner guesses row counts.
        with stopwatch() as took:
            conn.execute("VACUUM (ANALYZE)")
        steps["vacuum analyze"] = took[0]
        seconds = time.perf_counter() - total_start
        approved = conn.execute(
            "SELECT count(*) FROM submissions WHERE status = 'approved'").fetchone()[0]
        points_rows = conn.execute("SELECT count(*) FROM points_ledger").fetchone()[0]
        actual = conn.execute("SELECT count(*) FROM submissions").fetchone()[0]
    return Population(members=members, submissions=actual, approved=approved,
                      points_rows=points_rows, steps=steps, seconds=seconds)


def reset_tiers(url: str) -> None:
    """Back to nobody promoted (staff-pinned tiers stay), so every repetition does the same work."""
    with psycopg.connect(url, autocommit=True) as conn:
        with conn.transaction():
            for sql in RESET_SQL:
                conn.execute(sql)
        conn.execute(RESET_VACUUM)


# --- the naive baseline -------------------------------------------------------------------------

def week_index(moment: datetime) -> int:
    return math.floor((moment.timestamp() + WEEK_OFFSET_SECONDS) / WEEK_SECONDS)


def longest_weekly_streak(dates: list[datetime]) -> int:
    best = run = 0
    previous = None
    for week in sorted({week_index(d) for d in dates}):
        run = run + 1 if previous is not None and week == previous + 1 else 1
        best = max(best, run)
        previous = week
    return best


def naive_loop(member_ids: list[int], now: datetime) -> dict[int, str | None]:
    """What a straightforward implementation does: per member, ask the ORM for each metric.

    The thresholds mirror DEFAULT_TIERS on purpose instead of reusing the service's rule
    evaluation, so that agreement with the real job is an independent check of its result.
    Returns the tier each member holds afterwards.
    """
    from flask import current_app

    from koc.extensions import db
    from koc.members.models import Member, MemberStatus, SocialAccount
    from koc.submissions.models import Submission, SubmissionStatus
    from koc.tiers.models import TierChange
    from koc.tiers.services.rules import DEFAULT_TIERS

    floor = int(current_app.config["KOC_SETTINGS"].unconfirmed_followers_floor)
    ranks = {t["key"]: t["rank"] for t in DEFAULT_TIERS}
    names = {t["key"]: t["name"] for t in DEFAULT_TIERS}
    since_60 = now - timedelta(days=60)
    since_90 = now - timedelta(days=90)
    held: dict[int, str | None] = {}
    for member_id in member_ids:
        member = db.session.get(Member, member_id)
        if member.status != MemberStatus.active.value or member.tier_locked:
            held[member_id] = member.tier_key
            continue
        mine = (Submission.member_id == member.id,
                Submission.status == SubmissionStatus.approved.value)
        approved = db.session.scalar(
            sa.select(sa.func.count()).select_from(Submission).where(*mine))
        approved_60 = db.session.scalar(
            sa.select(sa.func.count()).select_from(Submission)
            .where(*mine, Submission.posted_at >= since_60))
        best_90 = db.session.scalar(
            sa.select(sa.func.max(Submission.interactions))
            .where(*mine, Submission.posted_at >= since_90)) or 0
        posts_90 = db.session.execute(
            sa.select(Submission.posted_at, Submission.platform, Submission.interactions)
            .where(*mine, Submission.posted_at >= since_90)).all()
        streak_90 = longest_weekly_streak([post.posted_at for post in posts_90])
        # Reach: interactions per 1,000 followers of the member's account on the post's
        # platform (confirmed, else declared raised to the floor; the largest account).
        audience: dict[str, int] = {}
        for account in db.session.scalars(
                sa.select(SocialAccount).where(SocialAccount.member_id == member.id)):
            followers = (account.confirmed_followers if account.confirmed_followers is not None
                         else max(account.followers, floor))
            audience[account.platform] = max(audience.get(account.platform, 0), followers)
        best_reach_90 = max((post.interactions * 1000.0 / audience[post.platform]
                             for post in posts_90 if audience.get(post.platform)), default=0)

        # Senior's weak-post rule: not given when the last three approved posts are all weak.
        last_three = db.session.scalars(
            sa.select(Submission.interactions).where(*mine)
            .order_by(Submission.posted_at.desc(), Submission.id.desc()).limit(3)).all()
        weak_streak = len(last_three) == 3 and all(n < 100 for n in last_three)

        if (best_90 >= 1000 or best_reach_90 >= 100) and not weak_streak:
            target = "senior"
        elif streak_90 >= 3 or approved_60 >= 5:
            target = "early_access"
        elif approved >= 1:
            target = "certified"
        else:
            target = None
        if target is not None and ranks[target] > ranks.get(member.tier_key, 0):
            db.session.add(TierChange(member_id=member.id, from_tier=member.tier_key,
                                      to_tier=target, rules_version=0, changed_at=now,
                                      reason=f"met the requirements of {names[target]}"))
            member.tier_key = target
            member.tier_since = now
        held[member_id] = member.tier_key
    db.session.commit()
    return held


# --- measuring ----------------------------------------------------------------------------------

@dataclass
class SetBasedRun:
    seconds: float
    sql_seconds: float
    calls: int
    statements: int
    slowest: list[tuple[float, int, str]]
    evaluated: int
    promotions: int
    skipped: bool


def run_set_based(log: StatementLog, now: datetime) -> SetBasedRun:
    from koc.extensions import db
    from koc.tiers.services import engine

    with log.recording(), stopwatch() as took:
        summary = engine.recalculate(trigger="bench", now=now)
        db.session.commit()
    db.session.remove()
    return SetBasedRun(seconds=took[0], sql_seconds=log.sql_seconds, calls=len(log.calls),
                       statements=log.statements, slowest=log.slowest(4),
                       evaluated=summary.members_evaluated, promotions=summary.promotions,
                       skipped=summary.skipped)


def expected_promotions() -> int:
    """Active, unlocked members with an approved post: every one of them earns at least a tier."""
    from koc.extensions import db

    return db.session.scalar(sa.text(
        "SELECT count(*) FROM members AS m WHERE m.status = 'active' AND NOT m.tier_locked "
        "AND EXISTS (SELECT 1 FROM submissions AS s "
        "            WHERE s.member_id = m.id AND s.status = 'approved')"))


def explain_metrics(now: datetime) -> None:
    """EXPLAIN ANALYZE of each statement the job reads with, as the job builds them."""
    from koc.extensions import db
    from koc.members.models import Member, MemberStatus
    from koc.tiers.services import metrics
    from koc.tiers.services.rules import current_rules

    rules = current_rules()
    queries: list[tuple[str, sa.Select]] = [(
        "members to evaluate",
        sa.select(Member.id, Member.tier_key).where(
            Member.status == MemberStatus.active.value, Member.tier_locked.is_(False)),
    )]
    for metric, window in sorted(metrics.metric_keys(rules.tiers), key=str):
        label = f"{metric}" + (f", {window} days" if window else "")
        queries.append((label, metrics.metric_query(metric, window, now, None)))
    with db.engine.connect() as conn:
        for label, query in queries:
            compiled = query.compile(dialect=db.engine.dialect)
            plan = conn.exec_driver_sql(
                "EXPLAIN (ANALYZE, BUFFERS) " + str(compiled), compiled.params).scalars().all()
            print(f"\n-- {label}")
            for line in plan:
                print(f"   {line}")
    db.session.remove()


# --- report -------------------------------------------------------------------------------------

def fmt_int(value: float) -> str:
    return f"{round(value):,}"


def print_table(rows: list[tuple[str, ...]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0])] + [c.rjust(w) for c, w in zip(row[1:], widths[1:],
                                                                          strict=True)]
        print("  " + "   ".join(cells))
        if n == 0:
            print("  " + "   ".join("-" * w for w in widths))


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tier_recalc",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--sample", type=int, default=2_000,
                        help="members the naive loop visits (scaled to the population)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs of the real job; the median is reported")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--explain", action="store_true",
                        help="also print EXPLAIN (ANALYZE, BUFFERS) of the job's queries")
    args = parser.parse_args(argv)
    if args.members < 1 or args.submissions < 0 or args.sample < 1 or args.repeat < 1:
        parser.error("sizes must be positive")
    args.sample = min(args.sample, args.members)
    return args


def main(argv: list[str] | None = None) -> int:
    return in_scratch_database(benchmark, parse_args(argv))


def in_scratch_database(benchmark: Callable[..., None], args: argparse.Namespace) -> int:
    """Run `benchmark(args, name, url, instance)` on a fresh database, always dropped after."""
    name = f"koc_bench_{uuid.uuid4().hex[:10]}"
    url = database_url(ADMIN_URL, name)
    try:
        admin_execute(f'CREATE DATABASE "{name}"')
    except psycopg.OperationalError as exc:
        print(f"cannot create a database through {ADMIN_URL} (set KOC_BENCH_POSTGRES_URL): {exc}",
              file=sys.stderr)
        return 2
    try:
        with tempfile.TemporaryDirectory() as instance:
            benchmark(args, name, url, instance)
    finally:
        admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        print(f"\ndropped database {name}")
    return 0


@contextmanager
def migrated_app(url: str, instance: str) -> Iterator[Any]:
    """An app on `url` with the schema the migrations build, inside its app context."""
    import flask_migrate

    from koc import create_app
    from koc.core.celery import ensure_broker_dirs

    app = create_app({"KOC_DATABASE_URL": url, "KOC_ENV": "test", "KOC_LOG_LEVEL": "WARNING"},
                     instance_path=instance)
    # Tasks a run sends after commit (the rest of a large run's badges) queue in the folder;
    # no worker runs here, so the figures are the run's own.
    ensure_broker_dirs(app.config["KOC_SETTINGS"])
    with app.app_context():
        # Migration chatter would bury the figures; the migrations' env.py reconfigures logging
        # from alembic.ini, so a logger level set here would be overridden.
        logging.disable(logging.INFO)
        try:
            flask_migrate.upgrade()
        finally:
            logging.disable(logging.NOTSET)
        yield app


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    from koc.core.db import utcnow
    from koc.extensions import db

    with migrated_app(url, instance):
        print_header(name)
        population = generate(url, members=args.members, submissions=args.submissions,
                              seed=args.seed)
        print_population(population)

        # One clock for both so their results can be compared member by member.
        now = utcnow()
        log = StatementLog()
        log.attach(db.engine)
        all_ids = list(db.session.scalars(sa.text("SELECT id FROM members ORDER BY id")))
        db.session.remove()
        sample = random.Random(args.seed).sample(all_ids, args.sample)

        with log.recording(), stopwatch() as took:
            naive_held = naive_loop(sample, now)
        db.session.remove()
        naive = NaiveRun(seconds=took[0], statements=log.statements,
                         sql_seconds=log.sql_seconds, sample=len(sample))
        reset_tiers(url)

        runs = []
        for n in range(args.repeat):
            if n:
                reset_tiers(url)
            runs.append(run_set_based(log, now))
        # What the periodic schedule mostly does: a re-run that finds nothing to change.
        converged = run_set_based(log, now)

        report_set_based(runs, converged)
        report_naive(naive, naive_held)
        report_summary(population.members, runs, naive)
        if args.explain:
            explain_metrics(now)
        db.engine.dispose()


@dataclass
class NaiveRun:
    seconds: float
    statements: int
    sql_seconds: float
    sample: int


def print_header(name: str) -> None:
    from koc.extensions import db

    version, buffers, work_mem, workers = db.session.execute(sa.text(
        "SELECT current_setting('server_version'), current_setting('shared_buffers'), "
        "current_setting('work_mem'), current_setting('max_parallel_workers_per_gather')"
    )).one()
    db.session.remove()
    print("koc tier recalculation benchmark")
    print(f"  PostgreSQL {version} (shared_buffers {buffers}, work_mem {work_mem}, "
          f"parallel workers per gather {workers}); database {name}")


def print_population(population: Population) -> None:
    from koc.extensions import db

    size = db.session.scalar(sa.text(
        "SELECT pg_size_pretty(pg_database_size(current_database()))"))
    db.session.remove()
    steps = ", ".join(f"{k} {v:.1f}" for k, v in population.steps.items())
    print(f"  population   {fmt_int(population.members)} members, "
          f"{fmt_int(population.submissions)} submissions "
          f"({fmt_int(population.approved)} approved), "
          f"{fmt_int(population.points_rows)} points rows")
    print(f"  generation   {population.seconds:.1f} s ({steps})")
    print(f"  database     {size}")


def report_set_based(runs: list[SetBasedRun], converged: SetBasedRun) -> None:
    from koc.extensions import db
    from koc.tiers.services.history import members_per_tier
    from koc.tiers.services.rules import DEFAULT_TIERS

    per_tier = members_per_tier()
    expected = expected_promotions()
    db.session.remove()
    median = statistics.median(r.seconds for r in runs)
    last = runs[-1]
    print(f"\nreal job: recalculate(trigger=\"bench\") + commit, {len(runs)} run(s) "
          f"over everyone")
    if any(r.skipped for r in runs):
        print("  WARNING      a run was skipped: another process holds the tier advisory lock")
    print("  runs         " + ", ".join(f"{r.seconds:.2f} s" for r in runs)
          + f"  (median {median:.2f} s)")
    print(f"  last run     {fmt_int(last.evaluated)} evaluated (active, not locked), "
          f"{fmt_int(last.promotions)} promoted")
    print(f"  SQL          {last.calls} execute calls carrying {fmt_int(last.statements)} "
          f"statements; {last.sql_seconds:.2f} s of {last.seconds:.2f} s waiting on PostgreSQL, "
          f"the rest in Python")
    for seconds, rows, statement in last.slowest:
        many = f"executemany x {fmt_int(rows)}" if rows > 1 else "one statement"
        print(f"    {seconds:6.2f} s  {many:<22} {statement[:64]}")
    print(f"  re-run       {converged.seconds:.2f} s with nothing left to change "
          f"({fmt_int(converged.promotions)} promoted; the periodic job's usual case)")
    order = ["none"] + [t["key"] for t in DEFAULT_TIERS]
    tiers = ", ".join(f"{k} {fmt_int(per_tier.get(k, 0))}" for k in order)
    print(f"  per tier     {tiers}  (locked members keep their pinned tier)")
    verdict = "ok" if expected == last.promotions else "MISMATCH"
    print(f"  check        {fmt_int(expected)} active unlocked members have an approved post, "
          f"{fmt_int(last.promotions)} promoted: {verdict}")


def report_naive(naive: NaiveRun, naive_held: dict[int, str | None]) -> None:
    from koc.extensions import db

    job_held = dict(db.session.execute(
        sa.text("SELECT id, tier_key FROM members WHERE id = ANY(:ids)"),
        {"ids": list(naive_held)}).all())
    db.session.remove()
    agree = sum(1 for mid, tier in naive_held.items() if job_held.get(mid) == tier)
    print(f"\nnaive per-member ORM loop over a random sample of {fmt_int(naive.sample)} members")
    print(f"  sample       {naive.seconds:.2f} s, "
          f"{naive.seconds / naive.sample * 1000:.2f} ms per member; "
          f"{fmt_int(naive.statements)} SQL statements "
          f"({naive.statements / naive.sample:.1f} per member), "
          f"{naive.sql_seconds:.2f} s of it waiting on PostgreSQL")
    verdict = "ok" if agree == naive.sample else "MISMATCH"
    print(f"  check        tiers agree with the real job for {fmt_int(agree)} of "
          f"{fmt_int(naive.sample)} sampled members: {verdict}")


def report_summary(members: int, runs: list[SetBasedRun], naive: NaiveRun) -> None:
    median = statistics.median(r.seconds for r in runs)
    scaled = naive.seconds / naive.sample * members
    print("\nsummary (naive scaled to the population: seconds per sampled member x members)")
    print_table([
        ("", "members", "seconds", "members/s"),
        ("real job (set-based, median)", fmt_int(members), f"{median:.2f}",
         fmt_int(members / median)),
        ("naive loop (scaled)", fmt_int(members), f"{scaled:.2f}", fmt_int(members / scaled)),
    ])
    print(f"  ratio naive / set-based: {scaled / median:.1f}x")

if __name__ == "__main__":
    sys.exit(main())
