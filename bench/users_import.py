"""The user-base import on PostgreSQL: `koc users import` against raw COPY of the same file.

Generates a CRM export of N rows (10 columns, CSV), then in one run:
1. COPY of the file (psycopg's copy protocol, as `psql \\copy` does) into a table of the same
   shape and indexes as `users`: the file's columns, a score the database computes from them on
   the way in (a generated column with the default weights on a log scale), the primary key, the
   unique external_id and every other index the migrations put on `users` (read from the
   catalogue, so the floor follows the schema): the database's own rate, the floor. For
   reference also COPY into the table with its keys alone (the floor of earlier runs, which
   leaves out the three candidate indexes every write to `users` keeps up);
2. `koc users import FILE` in a child process, the real CLI path (streamed reading, COPY into
   staging, checks in SQL, one merge per chunk): rows/s, and the child's peak RSS;
3. the same import again on the unchanged file: rows/s, and how many rows it updated (0 expected).

Prints rows/s of each, the ratio import/COPY (goal: at least 0.5, i.e. within 2x), peak
memory, and for each import the seconds per phase (`koc users import --timings`: reading the
file, COPY into staging, checks and merge, the refused lines, commits) and outside them (the
child's start). The scratch database is dropped at exit, also after an error or Ctrl-C.

    .venv/bin/python -m bench.users_import                  # 10,000,000 rows (the issue's default)
    .venv/bin/python -m bench.users_import --rows 200000    # a quicker look
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg

from bench.tier_recalc import ADMIN_URL, in_scratch_database, migrated_app

CITIES = ["上海", "北京", "深圳", "广州", "杭州", "成都", "Wuhan", "Xi'an"]
TAGS = ["mother-baby", "beauty", "snacks", "outdoor", "pets", "toys"]
HEADER = ("external_id,display_name,city,store_code,tags,orders_count,spend_cents,"
          "last_order_at,shares_count,community_posts_count\n")
# The candidate score as the default rules give it, minus the recency part (a generated
# column may not read the clock): what the indexes on the score see is as varied as in `users`.
# The file's tags (a|b) become a JSON array the same way, so the tags' GIN index is fed alike.
BASELINE_DDL = """
CREATE TABLE users_copy_baseline (
  id bigserial PRIMARY KEY,
  external_id varchar(64) NOT NULL UNIQUE,
  display_name varchar(100), city varchar(64), store_code varchar(32), tags_text text,
  tags jsonb GENERATED ALWAYS AS (CASE WHEN coalesce(tags_text, '') = '' THEN '[]'::jsonb
    ELSE ('["' || replace(tags_text, '|', '","') || '"]')::jsonb END) STORED,
  orders_count integer NOT NULL, spend_cents bigint NOT NULL, last_order_at timestamptz,
  shares_count integer NOT NULL, community_posts_count integer NOT NULL,
  candidate_score double precision GENERATED ALWAYS AS (round((
    3.0 * ln(1 + orders_count) + 2.0 * ln(1 + spend_cents / 100.0) + 2.5 * ln(1 + shares_count)
    + 2.5 * ln(1 + community_posts_count))::numeric, 4)::double precision) STORED,
  created_at timestamptz NOT NULL DEFAULT now(), updated_at timestamptz NOT NULL DEFAULT now(),
  CHECK (orders_count >= 0 AND spend_cents >= 0 AND shares_count >= 0
         AND community_posts_count >= 0)
)
"""
# users' other indexes (beyond the primary key and the unique external_id), as the migrations
# made them.
SECONDARY_INDEXES = """
SELECT indexname, indexdef FROM pg_indexes
WHERE schemaname = current_schema() AND tablename = 'users'
  AND indexname NOT IN ('pk_users', 'uq_users_external_id', 'users_pkey',
                        'users_external_id_key')
ORDER BY indexname
"""
SECONDARY_NAMES: list[str] = []


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--seed", type=int, default=11)
    return parser.parse_args(argv)


def generate(path: Path, rows: int, seed: int) -> None:
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as out:
        out.write(HEADER)
        batch = []
        for i in range(rows):
            orders = int(40 * rng.random() ** 3)
            tags = "|".join(rng.sample(TAGS, rng.randint(0, 2)))
            last = (f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}T{i % 24:02d}:15:00+08:00"
                    if orders else "")
            batch.append(f"crm-{i:010d},用户 {i},{CITIES[i % len(CITIES)]},S{i % 500:04d},"
                         f"{tags},{orders},{orders * (3000 + i % 20000)},{last},{orders // 2},"
                         f"{orders // 3}\n")
            if len(batch) >= 10_000:
                out.write("".join(batch))
                batch.clear()
        out.write("".join(batch))


def copy_baseline(url: str, path: Path, *, secondary_indexes: bool = True) -> float:
    """Seconds to COPY the file into the baseline table, with users' secondary indexes or, for
    reference, with its keys alone; the table is dropped after."""
    with psycopg.connect(url) as conn:
        conn.execute(BASELINE_DDL)
        secondary = conn.execute(SECONDARY_INDEXES).fetchall() if secondary_indexes else []
        SECONDARY_NAMES[:] = [name for name, _ in secondary]
        for name, definition in secondary:
            conn.execute(definition.replace(f"INDEX {name} ON ", f"INDEX {name}_baseline ON ")
                         .replace(" public.users ", " users_copy_baseline ")
                         .replace(" users ", " users_copy_baseline "))
        conn.commit()
        started = time.perf_counter()
        with conn.cursor() as cursor, cursor.copy(
                "COPY users_copy_baseline (external_id, display_name, city, store_code, "
                "tags_text, orders_count, spend_cents, last_order_at, shares_count, "
                "community_posts_count) "
                "FROM STDIN (FORMAT csv, HEADER)") as copy, path.open("rb") as source:
            while chunk := source.read(1024 * 1024):
                copy.write(chunk)
        conn.commit()
        seconds = time.perf_counter() - started
        conn.execute("DROP TABLE users_copy_baseline")
        conn.commit()
        return seconds


def cli_import(url: str, instance: str, path: Path) -> tuple[float, int, str, str]:
    """(seconds, peak RSS in KiB, summary line, phases line) of `koc users import PATH` in a
    child."""
    env = {**os.environ, "KOC_DATABASE_URL": url, "KOC_ENV": "test", "KOC_LOG_LEVEL": "WARNING"}
    koc = Path(sys.executable).with_name("koc")
    started = time.perf_counter()
    process = subprocess.Popen([str(koc), "users", "import", "--timings", str(path)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    _pid, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    output = process.stdout.read() if process.stdout else ""
    if os.waitstatus_to_exitcode(status) not in (0, 1):
        raise SystemExit(f"koc users import failed: {output}")
    lines = output.strip().splitlines()
    summary = next(line for line in reversed(lines) if line.startswith("imported "))
    phases = next((line for line in lines if line.startswith("phases: ")), "phases: ?")
    return elapsed, usage.ru_maxrss, summary, phases


def outside(seconds: float, phases: str) -> str:
    """The phases line, with the seconds outside them (the child's start: Python, the app, the
    connection), which the import's time includes and COPY's does not."""
    spent = sum(float(value) for value in re.findall(r"([\d.]+) s", phases))
    return f"{phases}; outside the phases {seconds - spent:.2f} s"


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    with migrated_app(url, instance):
        pass
    with tempfile.TemporaryDirectory() as scratch:
        path = Path(scratch) / "crm.csv"
        generate(path, args.rows, args.seed)
        size = path.stat().st_size
        print(f"database {name}; file: {args.rows:,} rows, {size / 1e6:,.1f} MB", flush=True)
        # Each step's time as it ends (a 40M run takes over an hour); the table follows.
        keys_seconds = copy_baseline(url, path, secondary_indexes=False)
        print(f"  (COPY, keys only: {keys_seconds:.1f} s)", flush=True)
        copy_seconds = copy_baseline(url, path)
        print(f"  (COPY into the same-shape table: {copy_seconds:.1f} s)", flush=True)
        import_seconds, rss_kib, summary, phases = cli_import(url, instance, path)
        print(f"  (import: {import_seconds:.1f} s; {phases})", flush=True)
        again_seconds, again_rss_kib, again_summary, again_phases = cli_import(url, instance,
                                                                               path)
    copy_rate = args.rows / copy_seconds
    import_rate = args.rows / import_seconds
    again_rate = args.rows / again_seconds
    updated = re.search(r"(\d+) updated", again_summary)
    print(f"COPY, keys only (reference)    {keys_seconds:8.2f} s  {args.rows / keys_seconds:12,.0f}"
          " rows/s   (primary key and unique external_id alone)")
    print(f"COPY into a same-shape table   {copy_seconds:8.2f} s  {copy_rate:12,.0f} rows/s"
          "   (the floor: users' indexes, listed below)")
    print(f"  secondary indexes: {', '.join(SECONDARY_NAMES) or 'none'}")
    print(f"koc users import               {import_seconds:8.2f} s  {import_rate:12,.0f} rows/s"
          f"   peak RSS {rss_kib / 1024:,.0f} MiB")
    print(f"  {summary}")
    print(f"  {outside(import_seconds, phases)}")
    print(f"re-import of the unchanged file {again_seconds:7.2f} s  {again_rate:12,.0f} rows/s"
          f"   peak RSS {again_rss_kib / 1024:,.0f} MiB   rows updated: "
          f"{updated.group(1) if updated else '?'}")
    print(f"  {outside(again_seconds, again_phases)}")
    print(f"RATIO users-import koc/COPY {import_rate / copy_rate:.3f} (goal >= 0.5) "
          f"reimport={again_rate:,.0f} rows/s peak_rss={rss_kib / 1024:,.0f}MiB")
    print(f"ratio import/COPY: {import_rate / copy_rate:.2f} (goal >= 0.5: within 2x); "
          f"COPY is {copy_seconds and import_seconds / copy_seconds:.1f}x faster; against the "
          f"keys-only COPY {keys_seconds / import_seconds:.2f}")


def main(argv: list[str] | None = None) -> int:
    print(f"PostgreSQL admin URL: {ADMIN_URL}")
    return in_scratch_database(benchmark, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
