"""Invitation campaigns on PostgreSQL: 100,000 invitations in one INSERT ... SELECT.

Fills a scratch database with N users (default 1,000,000, scored under the default candidate
rules), then through the HTTP API in one run:
1. `POST /api/v1/invitation-campaigns` with limit 100,000 (the top of a city): seconds and
   invitations/s;
2. `GET /api/v1/invitation-campaigns/{id}` (the funnel over 100,000 invitations);
3. the codes and join links as CSV (`GET .../links`): rows/s;
4. `PUT /api/v1/candidates/rules` (a new version), then its job (every user rescored, one UPDATE
   per 500,000 ids);
5. `GET /api/v1/candidates?city=...` (the index-backed top 20 and the estimated count).

The scratch database is dropped at exit.

    .venv/bin/python -m bench.invitation_campaign                     # 1,000,000 users
    .venv/bin/python -m bench.invitation_campaign --users 200000 --limit 20000
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from bench.tier_recalc import in_scratch_database, migrated_app

CITIES = ["上海", "北京", "深圳", "广州", "杭州", "成都"]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--limit", type=int, default=100_000)
    return parser.parse_args(argv)


def _fill(app: Any, users: int) -> None:
    from koc.extensions import db

    conn = db.session.connection().connection.driver_connection
    with conn.cursor() as cursor:
        cursor.execute(
            "INSERT INTO users (external_id, display_name, city, store_code, tags, orders_count,"
            " spend_cents, last_order_at, shares_count, community_posts_count, candidate_score,"
            " created_at, updated_at) "
            "SELECT 'crm-' || n, '顾客 ' || n, (%s::text[])[1 + n %% 6], 'S' || (n %% 500),"
            " '[]'::jsonb, n %% 97, (n %% 1000) * 1000, now() - (n %% 365) * interval '1 day',"
            " n %% 13, n %% 7, 0, now(), now() FROM generate_series(1, %s) AS n",
            (CITIES, users))
    db.session.commit()


def run(args: argparse.Namespace, _name: str, url: str, instance: str) -> None:
    from koc.core.auth import create_staff, issue_token
    from koc.core.jobs import Job
    from koc.extensions import db
    from koc.members.services import candidate_rules
    from koc.members.tasks import rescore_candidates_job

    with migrated_app(url, instance) as app:
        started = time.perf_counter()
        _fill(app, args.users)
        candidate_rules.rescore(candidate_rules.current_rules().created_at or _now())
        db.session.execute(candidate_rules.sa.text("ANALYZE users"))
        db.session.commit()
        print(f"{args.users:,} users filled and scored in {time.perf_counter() - started:.1f} s")
        staff = create_staff(email="bench@example.com", role="admin", password="bench horse 1")  # noqa: S106 - a scratch database
        token = issue_token(staff_id=staff.id)
        db.session.commit()
        client = app.test_client()
        headers = {"Authorization": f"Bearer {token}"}

        def timed(label: str, method: str, path: str, count: int | None = None, **kw: Any):
            started = time.perf_counter()
            response = getattr(client, method)(f"/api/v1{path}", headers=headers, **kw)
            body = response.get_data()
            elapsed = time.perf_counter() - started
            rate = f", {count / elapsed:,.0f}/s" if count else ""
            print(f"{label:<48} {elapsed * 1000:9.1f} ms{rate}  (HTTP {response.status_code},"
                  f" {len(body):,} bytes)")
            if response.status_code >= 400:
                raise SystemExit(response.get_data(as_text=True))
            return response

        city = CITIES[0]
        created = timed(f"campaign: top {args.limit:,} of {city}", "post",
                        "/invitation-campaigns", args.limit, json={
                            "name": "bench", "filter": {"city": city}, "limit": args.limit,
                            "expires_in_days": 14})
        invited = created.json["invited"]
        print(f"  invited {invited:,}")
        campaign = created.json["id"]
        timed("campaign funnel", "get", f"/invitation-campaigns/{campaign}")
        timed("codes and links (CSV)", "get", f"/invitation-campaigns/{campaign}/links", invited)
        rules = candidate_rules.current_rules().rules
        rules["recency"] = {"weight": 10.0, "half_life_days": 30}
        saved = timed("rules version saved (the request)", "put", "/candidates/rules",
                      json={"rules": rules})
        started = time.perf_counter()
        rescore_candidates_job.run(saved.json["job_id"])
        elapsed = time.perf_counter() - started
        job = db.session.get(Job, saved.json["job_id"])
        print(f"{'rules version: the job rescoring ' + format(args.users, ',') + ' users':<48} "
              f"{elapsed * 1000:9.1f} ms, {args.users / elapsed:,.0f}/s  "
              f"({job.status}, {job.processed:,} changed)")
        listed = timed(f"candidates top 20 of {CITIES[1]}", "get",
                       f"/candidates?city={CITIES[1]}")
        print(f"  total (estimated above 100,000): {listed.headers.get('X-Pagination')}")


def _now() -> Any:
    from koc.core.db import utcnow

    return utcnow()


def main(argv: list[str] | None = None) -> int:
    return in_scratch_database(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
