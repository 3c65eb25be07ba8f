"""Tier engine at national-brand scale (issue 5): full and incremental runs against two baselines.

Reuses bench.tier_recalc's population generator and naive loop, and measures in one run:

1. the full recalculation, `recalculate(trigger="bench")` + commit, over every member, starting
   from nobody promoted (every member with an approved post is promoted, badged and told);
2. an incremental run, `recalculate(trigger="bench", incremental=True)`, after a full run and
   new approved posts (and points) for a share of the members (default 1%);
3. the bare SQL floor: the grouped metric queries the rules need (metrics.compute, the job's own
   SQL) and ONE `UPDATE members SET tier_key` from their result, with no history, hysteresis,
   badges, events or benefits;
4. the hand-written floor (issue 14): the reference programme's tiers in one SQL statement over
   the schema, not the job's code (HAND_FLOOR_SQL), checked against the full run;
5. the naive per-member ORM loop over a random sample, scaled to the population.

It prints seconds and members/s for each, the ratios full / floor (issue 5 wants at most 2x),
full / hand floor, the job's metric SQL / hand floor (issue 14: within 2x) and naive / full,
and where the full run spends its time. The database is dropped at exit.

    .venv/bin/python -m bench.tier_engine                        # 500k members, 10M posts
    .venv/bin/python -m bench.tier_engine --members 20000 --submissions 400000   # a quick look
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa

from bench.tier_recalc import (
    ADMIN_URL,
    NaiveRun,
    Population,
    StatementLog,
    admin_execute,
    database_url,
    explain_metrics,
    fmt_int,
    generate,
    in_scratch_database,
    migrated_app,
    naive_loop,
    print_header,
    print_population,
    print_table,
    reset_tiers,
    stopwatch,
)

# Benefits and events a run writes, cleared with the tiers so that every full run does the
# first-run work (issue every badge, invite every senior, one event per change).
RESET_BENEFITS_SQL = [
    "DELETE FROM webhook_deliveries",
    "DELETE FROM outbox_events",
    "DELETE FROM group_memberships",
    "DELETE FROM badges",
]

# New approved posts (with their points) for a random share of the active, unlocked members,
# reviewed now, i.e. after the last run started: what an incremental run picks up.
ACTIVITY_SQL = """
CREATE TEMPORARY TABLE bench_new_activity AS
SELECT id AS member_id FROM members
WHERE status = 'active' AND NOT tier_locked
ORDER BY random() LIMIT %(active)s
"""
NEW_POSTS_SQL = """
INSERT INTO submissions (member_id, kit_id, platform, post_url, canonical_url, caption,
                         posted_at, status, rating, reviewed_at, interactions, created_at)
SELECT member_id, NULL, 'xiaohongshu', url || '?xsec_source=pc_share', url, '', posted_at,
       'approved', 3, now(), interactions, posted_at
FROM (SELECT a.member_id,
             'https://www.xiaohongshu.com/explore/new-' || a.member_id || '-' || g AS url,
             now() - interval '1 day' * 14 * random() AS posted_at,
             least(floor(20 * (greatest(random(), 1e-12) ^ (-1.0 / 1.2) - 1.0)),
                   5000000)::bigint AS interactions
      FROM bench_new_activity AS a, generate_series(1, %(posts)s) AS g OFFSET 0) AS s
"""
NEW_POINTS_SQL = """
INSERT INTO points_ledger (member_id, source, reference, points, description, created_at)
SELECT s.member_id, 'submission', s.id::text, 10 + least(s.interactions / 100, 90),
       'approved post', now()
FROM submissions AS s JOIN bench_new_activity AS a ON a.member_id = s.member_id
WHERE s.canonical_url LIKE 'https://www.xiaohongshu.com/explore/new-%%'
"""

# The floor's one write: every member the metrics saw, with the tier its values earn; only rows
# whose tier differs are written, and staff-pinned or suspended members are left alone.
FLOOR_UPDATE_SQL = sa.text("""
UPDATE members AS m SET tier_key = v.tier
FROM unnest(CAST(:ids AS bigint[]), CAST(:tiers AS text[])) AS v(id, tier)
WHERE m.id = v.id AND m.status = 'active' AND NOT m.tier_locked
  AND m.tier_key IS DISTINCT FROM v.tier
""")


# The hand-written floor: the reference programme's tiers (the default rules, which the bench
# runs) in ONE statement over the schema, written without the job's code: one grouped pass over
# the approved posts for every windowed count and maximum, reach through a join to followers
# grouped per account (confirmed count, else the declared one raised to the floor), the weekly
# streak as gaps and islands over distinct weeks, senior's weak-post rule for those who meet
# senior, and one UPDATE of the tiers that change.
HAND_FLOOR_SQL = """
WITH audience AS (
    SELECT member_id, platform,
           max(CASE WHEN confirmed_followers IS NOT NULL THEN confirmed_followers
                    WHEN followers > %(floor)s THEN followers ELSE %(floor)s END) AS followers
    FROM social_accounts GROUP BY member_id, platform
), per_member AS (
    SELECT s.member_id,
           count(*) AS approved,
           count(*) FILTER (WHERE s.posted_at >= %(d60)s) AS approved_60,
           max(s.interactions) FILTER (WHERE s.posted_at >= %(d90)s) AS best_90,
           max(s.interactions * 1000.0 / nullif(a.followers, 0))
               FILTER (WHERE s.posted_at >= %(d90)s) AS reach_90
    FROM submissions AS s
    LEFT JOIN audience AS a ON a.member_id = s.member_id AND a.platform = s.platform
    WHERE s.status = 'approved'
    GROUP BY s.member_id
), weeks AS (
    SELECT member_id,
           floor((date_part('epoch', posted_at) + 259200) / 604800)::bigint AS week
    FROM submissions WHERE status = 'approved' AND posted_at >= %(d90)s
    GROUP BY 1, 2
), streaks AS (
    SELECT member_id, max(length) AS streak
    FROM (SELECT member_id, count(*) AS length
          FROM (SELECT member_id,
                       week - row_number() OVER (PARTITION BY member_id ORDER BY week) AS island
                FROM weeks) AS islands
          GROUP BY member_id, island) AS runs
    GROUP BY member_id
), weak AS (
    -- Senior's weak-post rule, asked of those who meet senior: their last three approved posts,
    -- off the (member_id, status, posted_at) index, all under 100 interactions.
    SELECT p.member_id
    FROM per_member AS p
    CROSS JOIN LATERAL (SELECT s.interactions FROM submissions AS s
                        WHERE s.member_id = p.member_id AND s.status = 'approved'
                        ORDER BY s.posted_at DESC, s.id DESC LIMIT 3) AS last_posts
    WHERE p.best_90 >= 1000 OR p.reach_90 >= 100
    GROUP BY p.member_id
    HAVING count(*) = 3 AND bool_and(last_posts.interactions < 100)
), earned AS (
    SELECT p.member_id,
           CASE WHEN (p.best_90 >= 1000 OR p.reach_90 >= 100) AND k.member_id IS NULL
                THEN 'senior'
                WHEN coalesce(w.streak, 0) >= 3 OR p.approved_60 >= 5 THEN 'early_access'
                WHEN p.approved >= 1 THEN 'certified' END AS tier
    FROM per_member AS p LEFT JOIN streaks AS w USING (member_id)
    LEFT JOIN weak AS k USING (member_id)
)
UPDATE members AS m SET tier_key = e.tier
FROM earned AS e
WHERE m.id = e.member_id AND m.status = 'active' AND NOT m.tier_locked
  AND m.tier_key IS DISTINCT FROM e.tier
"""


@dataclass
class HandFloorRun:
    seconds: float
    updated: int


def run_hand_floor(url: str, now: datetime, floor: int) -> HandFloorRun:
    """The hand-written floor through psycopg alone, in one transaction."""
    from datetime import timedelta

    with psycopg.connect(url) as conn, stopwatch() as took:
        updated = conn.execute(HAND_FLOOR_SQL, {
            "floor": floor, "d60": now - timedelta(days=60),
            "d90": now - timedelta(days=90)}).rowcount
        conn.commit()
    return HandFloorRun(seconds=took[0], updated=updated)


# --- where the job's time goes ------------------------------------------------------------------

@dataclass
class Phases:
    """Wall time inside the job's parts, by wrapping their module attributes during a run."""

    seconds: dict[str, float]

    @classmethod
    @contextmanager
    def recording(cls) -> Iterator[Phases]:
        from koc.tiers.services import badges, engine, groups, metrics

        phases = cls(defaultdict(float))
        targets: list[tuple[Any, str, str]] = [
            (engine, "plan", "plan (read members, metrics, evaluate)"),
            (metrics, "compute", "  metric queries (metrics.compute)"),
            (metrics, "members_with_weak_streak", "  weak-post streak query"),
            (engine, "members_with_activity_since", "active-member lookup (incremental)"),
            (engine, "_apply_changes", "UPDATE members + INSERT tier_changes"),
            (engine, "_apply_marks", "below-water marks"),
            (badges, "sync_badges", "badges (sign + insert)"),
            (groups, "sync_group", "senior group + its events"),
            (engine, "emit_select", "member.tier_changed events"),
        ]
        originals = [(module, attr, getattr(module, attr)) for module, attr, _ in targets]
        for module, attr, label in targets:
            setattr(module, attr, phases._timed(getattr(module, attr), label))
        try:
            yield phases
        finally:
            for module, attr, original in originals:
                setattr(module, attr, original)

    def _timed(self, fn: Callable[..., Any], label: str) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
        return wrapper


# --- the runs -----------------------------------------------------------------------------------

@dataclass
class JobRun:
    seconds: float
    commit_seconds: float
    sql_seconds: float
    statements: int
    evaluated: int
    promotions: int
    demotions: int
    skipped: bool
    phases: dict[str, float]
    slowest: list[tuple[float, int, str]]


def run_job(log: StatementLog, now: datetime, *, incremental: bool) -> JobRun:
    from koc.extensions import db
    from koc.tiers.services import engine

    with log.recording(), Phases.recording() as phases, stopwatch() as took:
        summary = engine.recalculate(trigger="bench", now=now, incremental=incremental)
        with stopwatch() as committing:
            db.session.commit()
    db.session.remove()
    return JobRun(seconds=took[0], commit_seconds=committing[0], sql_seconds=log.sql_seconds,
                  statements=log.statements, evaluated=summary.members_evaluated,
                  promotions=summary.promotions, demotions=summary.demotions,
                  skipped=summary.skipped, phases=dict(phases.seconds), slowest=log.slowest(5))


@dataclass
class FloorRun:
    seconds: float
    metrics_seconds: float
    evaluate_seconds: float
    update_seconds: float
    queries: int
    updated: int


def run_floor(now: datetime) -> FloorRun:
    """The grouped metric queries of the current rules, then one UPDATE of the tier column."""
    from koc.extensions import db
    from koc.tiers.services import engine, metrics
    from koc.tiers.services.rules import current_rules

    start = time.perf_counter()
    rules = current_rules()
    values = metrics.compute_for(rules, now=now)
    metrics_done = time.perf_counter()
    earned = engine.tier_evaluator(rules, values)
    ids = sorted({member_id for column in values.values() for member_id in column})
    tiers = [earned(member_id) for member_id in ids]
    # The weak-post rule, asked of those who earn a tier that has one: that tier is not given,
    # the highest lower one met is (the engine's rule).
    compiled = engine.compile_tiers(rules, values)
    for tier in rules.tiers:
        rule = tier.get("weak_posts")
        if not rule:
            continue
        weak = metrics.members_with_weak_streak(
            rule["count"], rule["below"],
            member_ids=[m for m, t in zip(ids, tiers, strict=True) if t == tier["key"]])
        for position, member_id in enumerate(ids):
            if member_id in weak:
                tiers[position] = next((t.key for t in compiled if t.rank < tier["rank"]
                                        and t.passes(member_id)), None)
    evaluated = time.perf_counter()
    updated = db.session.execute(FLOOR_UPDATE_SQL, {"ids": ids, "tiers": tiers}).rowcount
    db.session.commit()
    end = time.perf_counter()
    db.session.remove()
    return FloorRun(seconds=end - start, metrics_seconds=metrics_done - start,
                    evaluate_seconds=evaluated - metrics_done, update_seconds=end - evaluated,
                    queries=len(values), updated=updated)


def reset_all(url: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn, conn.transaction():
        for sql in RESET_BENEFITS_SQL:
            conn.execute(sql)
    reset_tiers(url)


def snapshot_tiers(url: str, table: str) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f"DROP TABLE IF EXISTS {table}")
        conn.execute(f"CREATE UNLOGGED TABLE {table} AS SELECT id, tier_key FROM members")


def tier_disagreements(url: str, table: str) -> int:
    with psycopg.connect(url, autocommit=True) as conn:
        return conn.execute(
            f"SELECT count(*) FROM members AS m JOIN {table} AS f USING (id) "
            "WHERE m.tier_key IS DISTINCT FROM f.tier_key").fetchone()[0]


# What add_activity wrote, taken out again when a kept database is reused, so that every run
# starts from the generated population.
REMOVE_ACTIVITY_SQL = [
    "DELETE FROM points_ledger WHERE source = 'submission' AND reference IN ("
    "SELECT id::text FROM submissions "
    "WHERE canonical_url LIKE 'https://www.xiaohongshu.com/explore/new-%%')",
    "DELETE FROM submissions WHERE canonical_url LIKE 'https://www.xiaohongshu.com/explore/new-%%'",
]


def reused_population(url: str) -> Population:
    """A kept database's population as generated: without the activity an earlier run added,
    nobody promoted, no benefits (the naive loop runs before any reset)."""
    with stopwatch() as took:
        with psycopg.connect(url, autocommit=True) as conn:
            with conn.transaction():
                for sql in REMOVE_ACTIVITY_SQL:
                    conn.execute(sql)
                conn.execute("UPDATE members SET tier_below_since = NULL "
                             "WHERE tier_below_since IS NOT NULL")
            conn.execute("VACUUM (ANALYZE) submissions, points_ledger")
        reset_all(url)
    with psycopg.connect(url, autocommit=True) as conn:
        counts = conn.execute(
            "SELECT (SELECT count(*) FROM members), (SELECT count(*) FROM submissions), "
            "(SELECT count(*) FROM submissions WHERE status = 'approved'), "
            "(SELECT count(*) FROM points_ledger)").fetchone()
    return Population(members=counts[0], submissions=counts[1], approved=counts[2],
                      points_rows=counts[3], steps={"reused": took[0]}, seconds=took[0])


def add_activity(url: str, *, active: int, posts: int) -> tuple[int, float]:
    with psycopg.connect(url, autocommit=True) as conn, stopwatch() as took:
        conn.execute("DROP TABLE IF EXISTS bench_new_activity")
        conn.execute(ACTIVITY_SQL, {"active": active})
        inserted = conn.execute(NEW_POSTS_SQL, {"posts": posts}).rowcount
        conn.execute(NEW_POINTS_SQL)
    return inserted, took[0]


# --- report -------------------------------------------------------------------------------------

def rate(count: float, seconds: float) -> str:
    return fmt_int(count / seconds) if seconds > 0 else "-"


def print_job(title: str, runs: list[JobRun], population: int) -> None:
    last = runs[-1]
    print(f"\n{title}")
    if any(r.skipped for r in runs):
        print("  WARNING      a run was skipped: another process holds the tier advisory lock")
    print("  runs         " + ", ".join(f"{r.seconds:.2f} s" for r in runs)
          + f"  (median {statistics.median(r.seconds for r in runs):.2f} s)")
    print(f"  last run     {fmt_int(last.evaluated)} evaluated "
          f"({rate(last.evaluated, last.seconds)} members/s evaluated, "
          f"{rate(population, last.seconds)} members/s of the population), "
          f"{fmt_int(last.promotions)} promoted, {fmt_int(last.demotions)} demoted")
    print(f"  SQL          {fmt_int(last.statements)} statements, {last.sql_seconds:.2f} s waiting "
          f"on PostgreSQL of {last.seconds:.2f} s; commit {last.commit_seconds:.2f} s")
    print("  phases (wall time inside each part; indented ones are inside plan)")
    for label, seconds in last.phases.items():
        print(f"    {seconds:7.2f} s  {label}")
    print("  slowest statements")
    for seconds, rows, statement in last.slowest:
        many = f"executemany x {fmt_int(rows)}" if rows > 1 else "one statement"
        print(f"    {seconds:7.2f} s  {many:<22} {statement[:70]}")


def print_floor(runs: list[FloorRun], population: int) -> None:
    last = runs[-1]
    print("\nbare SQL floor: the rules' grouped metric queries + one UPDATE of the tier column")
    print("  runs         " + ", ".join(f"{r.seconds:.2f} s" for r in runs)
          + f"  (median {statistics.median(r.seconds for r in runs):.2f} s)")
    print(f"  last run     {last.queries} metric queries {last.metrics_seconds:.2f} s, "
          f"evaluate in Python {last.evaluate_seconds:.2f} s, UPDATE + commit "
          f"{last.update_seconds:.2f} s ({fmt_int(last.updated)} rows); "
          f"{rate(population, last.seconds)} members/s")


def report(args: argparse.Namespace, members: int, naive: NaiveRun, *, floors: list[FloorRun],
           fulls: list[JobRun], incremental: JobRun, disagree: int, active: int,
           hands: list[HandFloorRun], hand_disagree: int) -> None:
    hand = statistics.median(r.seconds for r in hands)
    print("\nhand-written SQL floor: one statement (grouped pass, gaps-and-islands streak, "
          "followers by join, one UPDATE), not the job's code")
    print("  runs         " + ", ".join(f"{r.seconds:.2f} s" for r in hands)
          + f"  (median {hand:.2f} s, {fmt_int(hands[-1].updated)} rows updated)")
    print(f"  check        the hand floor and the full run agree on "
          f"{fmt_int(members - hand_disagree)} of {fmt_int(members)} members' tiers: "
          f"{'ok' if hand_disagree == 0 else 'MISMATCH'}")
    print_floor(floors, members)
    print(f"  check        the floor and the full run agree on "
          f"{fmt_int(members - disagree)} of {fmt_int(members)} members' tiers: "
          f"{'ok' if disagree == 0 else 'MISMATCH'}")
    print_job("full run: recalculate(trigger=\"bench\") + commit, from nobody promoted",
              fulls, members)
    print_job(f"incremental run: recalculate(trigger=\"bench\", incremental=True) + commit, "
              f"{args.active:g}% of members with new posts", [incremental], members)
    verdict = "ok" if incremental.evaluated == active else "MISMATCH"
    print(f"  check        {fmt_int(active)} members had new posts, "
          f"{fmt_int(incremental.evaluated)} evaluated: {verdict}")

    full = statistics.median(r.seconds for r in fulls)
    floor = statistics.median(r.seconds for r in floors)
    scaled = naive.seconds / naive.sample * members
    print("\nsummary (members/s = population / seconds; incremental also per member "
          "evaluated)")
    print_table([
        ("", "members", "seconds", "members/s"),
        ("full run (median)", fmt_int(members), f"{full:.2f}", rate(members, full)),
        ("incremental run", fmt_int(incremental.evaluated), f"{incremental.seconds:.2f}",
         rate(incremental.evaluated, incremental.seconds)),
        ("job-SQL floor (median)", fmt_int(members), f"{floor:.2f}", rate(members, floor)),
        ("hand-written floor (median)", fmt_int(members), f"{hand:.2f}", rate(members, hand)),
        ("naive loop (scaled)", fmt_int(members), f"{scaled:.2f}", rate(members, scaled)),
    ])
    metric_sql = statistics.median(r.metrics_seconds for r in floors)
    print(f"  ratio full / job-SQL floor:   {full / floor:.2f}x  (issue 5: at most 2x)")
    print(f"  ratio full / hand floor:      {full / hand:.2f}x")
    print(f"  ratio job metric SQL / hand floor: {metric_sql / hand:.2f}x  (issue 14: within 2x;"
          f" metrics.compute {metric_sql:.2f} s)")
    print(f"  incremental run, {args.active:g}% active: {incremental.seconds:.2f} s "
          f"(issue 14: under 1 s)")
    print(f"RATIO tiers full/hand-floor {full / hand:.3f} metric-sql/hand-floor "
          f"{metric_sql / hand:.3f} full={full:.2f}s hand={hand:.2f}s "
          f"incremental={incremental.seconds:.2f}s")
    print(f"  ratio naive scaled / full:    {scaled / full:.1f}x")
    print(f"  ratio full / incremental:     {full / incremental.seconds:.1f}x")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.tier_engine",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--members", type=int, default=500_000)
    parser.add_argument("--submissions", type=int, default=10_000_000)
    parser.add_argument("--sample", type=int, default=2_000,
                        help="members the naive loop visits (scaled to the population)")
    parser.add_argument("--repeat", type=int, default=1,
                        help="floor and full runs, alternated; medians are reported")
    parser.add_argument("--active", type=float, default=1.0,
                        help="percent of members with new posts before the incremental run")
    parser.add_argument("--posts", type=int, default=2,
                        help="new approved posts per active member")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--keep", metavar="DATABASE",
                        help="generate into DATABASE and keep it at exit; if it exists, reuse "
                             "its data instead (--members, --submissions and --seed then come "
                             "from that database; drop it yourself when done)")
    parser.add_argument("--explain", action="store_true",
                        help="also print EXPLAIN (ANALYZE, BUFFERS) of the metric queries")
    args = parser.parse_args(argv)
    if (args.members < 1 or args.submissions < 0 or args.sample < 1 or args.repeat < 1
            or not 0 < args.active <= 100 or args.posts < 1):
        parser.error("sizes must be positive (and --active a percentage)")
    args.sample = min(args.sample, args.members)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.keep is None:
        return in_scratch_database(benchmark, args)
    import tempfile

    url = database_url(ADMIN_URL, args.keep)
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        args.reuse = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                                  [args.keep]).fetchone() is not None
    if not args.reuse:
        admin_execute(f'CREATE DATABASE "{args.keep}"')
    with tempfile.TemporaryDirectory() as instance:
        benchmark(args, args.keep, url, instance)
    print(f"\nkept database {args.keep} (DROP DATABASE \"{args.keep}\" when done)")
    return 0


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    from flask import current_app

    from koc.core.db import utcnow
    from koc.extensions import db

    with migrated_app(url, instance):
        print_header(name)
        if getattr(args, "reuse", False):
            population = reused_population(url)
        else:
            population = generate(url, members=args.members, submissions=args.submissions,
                                  seed=args.seed)
        print_population(population)
        members = population.members
        args.sample = min(args.sample, members)

        now = utcnow()
        log = StatementLog()
        log.attach(db.engine)
        all_ids = list(db.session.scalars(sa.text("SELECT id FROM members ORDER BY id")))
        db.session.remove()
        sample = random.Random(args.seed).sample(all_ids, args.sample)
        del all_ids

        with log.recording(), stopwatch() as took:
            naive_loop(sample, now)
        db.session.remove()
        naive = NaiveRun(seconds=took[0], statements=log.statements,
                         sql_seconds=log.sql_seconds, sample=len(sample))
        print(f"\nnaive per-member ORM loop: {naive.seconds:.2f} s for {fmt_int(naive.sample)} "
              f"sampled members ({naive.statements / naive.sample:.1f} statements each)",
              flush=True)

        floors: list[FloorRun] = []
        fulls: list[JobRun] = []
        hands: list[HandFloorRun] = []
        disagree = hand_disagree = 0
        floor_setting = current_app.config["KOC_SETTINGS"].unconfirmed_followers_floor
        for _ in range(args.repeat):
            reset_all(url)
            hands.append(run_hand_floor(url, now, floor_setting))
            print(f"  hand floor   {hands[-1].seconds:.2f} s", flush=True)
            snapshot_tiers(url, "bench_hand_tiers")
            reset_all(url)
            floors.append(run_floor(now))
            print(f"  floor        {floors[-1].seconds:.2f} s", flush=True)
            snapshot_tiers(url, "bench_floor_tiers")
            reset_all(url)
            fulls.append(run_job(log, now, incremental=False))
            print(f"  full run     {fulls[-1].seconds:.2f} s", flush=True)
            disagree = tier_disagreements(url, "bench_floor_tiers")
            hand_disagree = tier_disagreements(url, "bench_hand_tiers")

        active = max(1, round(members * args.active / 100))
        inserted, took_activity = add_activity(url, active=active, posts=args.posts)
        print(f"  new activity {fmt_int(active)} members, {fmt_int(inserted)} approved posts "
              f"({took_activity:.1f} s)", flush=True)
        incremental = run_job(log, utcnow(), incremental=True)

        report(args, members, naive, floors=floors, fulls=fulls, incremental=incremental,
               disagree=disagree, active=active, hands=hands, hand_disagree=hand_disagree)
        if args.explain:
            explain_metrics(now)
        db.engine.dispose()


if __name__ == "__main__":
    sys.exit(main())
