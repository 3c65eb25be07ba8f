"""Server time of the admin panel's list pages at the reference size: dashboard, roster,
leaderboard, review queue (with its filters), a member's page, a kit's funnel lists, the rules,
drops and webhooks pages, and the user-base pages (用户库, 候选人 with filters, 邀请活动).

Builds a throwaway PostgreSQL database with the migrations, fills it with bench.tier_recalc's
synthetic population (members, their posts and points ledger, set-based SQL), adds the rest of
the user base (`--users` in all, members included; one INSERT ... SELECT over generate_series,
scored under the candidate rules in force), gives members tiers, tags and at-risk marks, runs
the dashboard's rollup task once (as the scheduler would have), then requests each page through
the app (routing, queries and template rendering; no network) several times as a signed-in
admin and prints the median and the slowest. The database is dropped at exit.

    .venv/bin/python -m bench.admin_lists                        # 50k members, 1M posts, 40M users
    .venv/bin/python -m bench.admin_lists --users 2000000        # a smaller user base
    .venv/bin/python -m bench.admin_lists --members 5000 --submissions 50000 --users 200000
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import time

import sqlalchemy as sa

from bench.tier_recalc import generate, in_scratch_database, migrated_app

PAGES = (
    "/admin/",
    "/admin/members",
    "/admin/members?page=500",
    "/admin/members?city=Shanghai&sort=name",
    "/admin/members?tag=vip&at_risk=true",
    "/admin/members?q=koc%2012345",
    "/admin/members?tier=senior&store_code=S0042",
    "/admin/leaderboard",
    "/admin/leaderboard?metric=engagement&window_days=90&city=Beijing",
    "/admin/leaderboard?metric=approved&window_days=365&page=20",
    "/api/v1/leaderboard?window_days=30",
    "/admin/reviews",
    "/admin/reviews?page=50",
    "/admin/reviews?platform=xiaohongshu&unconfirmed_followers=1",
    "/admin/reviews?kit_id=1&flagged=1",
    "/admin/reviews?view=decided",
    "/admin/members/4242",
    "/admin/kits/1/funnel/eligible",
    "/admin/kits/1/funnel/downloaded?page=50",
    "/admin/kits/1/funnel/posted",
    "/admin/kits/1/funnel/approved?page=20",
    "/admin/tiers",
    "/admin/scoring",
    "/admin/drops",
    "/admin/webhooks",
    "/admin/users",
    "/admin/users?external_id=crm-0000123456",
    "/admin/users?external_id=crm-0000004242",
    "/admin/candidates",
    "/admin/candidates?page=50",
    "/admin/candidates?city=Shanghai",
    # (tag=vip&city=Beijing matches nobody in this data: the top-N walk then reads the whole
    # candidate index, minutes at 40M; a filter that matches almost nobody is still slow.)
    "/admin/candidates?tag=vip&city=Shanghai",
    "/admin/candidates?store_code=S0042",
    # A tag one user in 10,000 carries: found through the tags' index, not by a walk.
    "/admin/candidates?tag=pets",
    "/admin/candidates?tag=pets&city=Shanghai",
    "/api/v1/candidates?tag=pets",
    "/admin/candidates?min_score=20&ordered_within_days=90",
    "/api/v1/candidates?city=Shanghai",
    "/admin/campaigns",
    "/admin/kits",
    "/admin/groups/senior",
    "/admin/announcements",
    "/admin/staff",
    "/admin/tokens",
    "/admin/audit",
    "/admin/audit?action=member.export",
)

CITIES = ("Shanghai", "Beijing", "Shenzhen", "Guangzhou", "Hangzhou", "Chengdu")

# The users who are not members (ids after the members' users), in one INSERT ... SELECT:
# mostly people with a few orders, a tenth tagged (and one in 10,000 with a rare tag), spread
# over the cities and 500 stores; the score is the candidate rules' own expression over the row
# (as an import computes it).
EXTRA_USERS_SQL = """
INSERT INTO users (id, external_id, display_name, city, store_code, tags, orders_count,
                   spend_cents, last_order_at, shares_count, community_posts_count,
                   candidate_score, created_at, updated_at)
SELECT u.id, u.external_id, u.display_name, u.city, u.store_code, u.tags, u.orders_count,
       u.spend_cents, u.last_order_at, u.shares_count, u.community_posts_count,
       {score}, u.created_at, u.created_at
FROM (SELECT g AS id, 'crm-' || lpad(g::text, 10, '0') AS external_id, '顾客 ' || g AS display_name,
             (%(cities)s::text[])[1 + g %% 6] AS city, 'S' || lpad((g %% 500)::text, 4, '0')
             AS store_code,
             CASE WHEN g %% 10 = 0 THEN '["vip", "mom"]'::jsonb
                  WHEN g %% 7 = 0 THEN '["mom"]'::jsonb
                  WHEN g %% 10000 = 2 THEN '["pets"]'::jsonb ELSE '[]'::jsonb END AS tags,
             (g * 7919) %% 23 AS orders_count, ((g * 7919) %% 23) * (3000 + g %% 20000)
             AS spend_cents,
             CASE WHEN (g * 7919) %% 23 > 0 THEN %(now)s::timestamptz
                  - interval '1 day' * (g %% 400) END AS last_order_at,
             (g * 31) %% 11 AS shares_count, (g * 17) %% 7 AS community_posts_count,
             %(now)s::timestamptz - interval '1 day' * (g %% 900) AS created_at
      FROM generate_series(%(first)s::bigint, %(last)s::bigint) AS g) AS u
"""

USERS_INDEXES_SQL = """
SELECT ci.relname, pg_get_indexdef(i.indexrelid), k.conname
FROM pg_index AS i
JOIN pg_class AS c ON c.oid = i.indrelid
JOIN pg_class AS ci ON ci.oid = i.indexrelid
LEFT JOIN pg_constraint AS k ON k.conindid = i.indexrelid AND k.contype = 'u'
WHERE c.relname = 'users' AND NOT i.indisprimary
ORDER BY ci.relname
"""

# Tiers in the reference programme's proportions, tags on a tenth of the users and a few
# members in their grace period.
DRESS_SQL = (
    """UPDATE members SET tier_key = CASE WHEN id % 50 = 0 THEN 'senior'
                                        WHEN id % 10 = 0 THEN 'early_access'
                                        WHEN id % 3 = 0 THEN 'certified' END""",
    "UPDATE members SET tier_below_since = now() - interval '2 days' WHERE id % 37 = 0",
    """UPDATE users SET tags = CASE WHEN id % 10 = 0 THEN '["vip", "mom"]'::jsonb
                                 WHEN id % 7 = 0 THEN '["mom"]'::jsonb ELSE '[]'::jsonb END
       WHERE id IN (SELECT user_id FROM members)""",
    # One published kit with a fifth of the posts, downloads by a third of the members, and a
    # declared (unconfirmed) follower count on half of them: the review filters and funnels.
    """INSERT INTO kits (id, title, notes, status, segments, watermark, published_at, created_at)
       VALUES (1, 'Spring launch', '', 'published', '[]'::jsonb, false, now(), now())""",
    "UPDATE submissions SET kit_id = 1 WHERE id % 5 = 0",
    """INSERT INTO downloads (member_id, kit_id, issued_at, expires_at)
       SELECT id, 1, now() - interval '1 day', now() FROM members WHERE id % 3 = 0""",
    """INSERT INTO social_accounts (member_id, platform, handle, followers, followers_source)
       SELECT id, 'xiaohongshu', 'koc' || id, 500 + id % 5000, 'declared'
       FROM members WHERE id % 2 = 0""",
    # Every member signed in once (a token each), and a year of staff actions in the audit log:
    # a review decision per submission, and now and then a personal-data export.
    """INSERT INTO api_tokens (token_hash, display_prefix, member_id, created_at, last_used_at)
       SELECT md5('member-' || id) || md5('token-' || id), 'koc_' || left(md5('p' || id), 6),
              id, now() - interval '1 day' * (id % 365), now() - interval '1 hour' * (id % 500)
       FROM members""",
    """INSERT INTO audit_events (created_at, actor, action, target, details)
       SELECT s.reviewed_at, 'reviewer' || (s.id % 20) || '@brand.example',
              CASE WHEN s.id % 1000 = 0 THEN 'member.export' ELSE 'submission.review' END,
              CASE WHEN s.id % 1000 = 0 THEN 'member:' || s.member_id
                   ELSE 'submission:' || s.id END,
              jsonb_build_object('decision', s.status)
       FROM submissions AS s WHERE s.reviewed_at IS NOT NULL""",
    "VACUUM (ANALYZE) api_tokens",
    "VACUUM (ANALYZE) audit_events",
    "VACUUM (ANALYZE) members",
    "VACUUM (ANALYZE) users",
    "VACUUM (ANALYZE) submissions",
    "VACUUM (ANALYZE) downloads",
    "VACUUM (ANALYZE) social_accounts",
)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=50_000)
    parser.add_argument("--submissions", type=int, default=1_000_000)
    parser.add_argument("--users", type=int, default=40_000_000,
                        help="the user base in all, members included (the issue's 40M)")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--only", default="", help="only the pages whose path contains this")
    parser.add_argument("--reuse", default="", help="a database an earlier run filled and kept: "
                        "only the pages are measured, and it is not dropped")
    parser.add_argument("--keep", default="", metavar="DATABASE",
                        help="fill a new database of this name and keep it at exit, for "
                        "--reuse (the 40M set takes a while to build)")
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    from koc.core.auth import SESSION_SECRET_KEY, create_staff, issue_token, start_session
    from koc.core.db import utcnow
    from koc.extensions import db
    from koc.members.services import campaigns

    with migrated_app(url, instance) as app:
        print(f"database {name}: {args.members:,} members, {args.submissions:,} submissions, "
              f"{max(args.users, args.members):,} users")
        started = time.perf_counter()
        if not args.reuse:
            generate(url, members=args.members, submissions=args.submissions, seed=args.seed)
            print(f"members and posts in {time.perf_counter() - started:.1f} s")
            add_users(url, first=args.members + 1, last=args.users)
            print(f"user base in {time.perf_counter() - started:.1f} s")
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                for sql in DRESS_SQL:
                    conn.execute(sa.text(sql))
        run_rollups()
        if not args.reuse:
            # What autovacuum would have done by the time a manager opens the panel: the
            # visibility map set for the rows written above, so counts read only the indexes
            # (the review queue's count visited 35,000 table pages without it).
            db.session.remove()
            with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                conn.execute(sa.text("VACUUM (ANALYZE)"))
        # Nobody signs in with it: the bench starts a panel session and puts it in the cookie.
        staff = create_staff(email=f"bench-{secrets.token_hex(4)}@example.com", role="admin",
                             password=secrets.token_urlsafe(16))
        db.session.commit()
        staff_id = staff.id
        # One campaign of 10,000 invitations, so 邀请活动 lists a funnel over real rows (a
        # reused database has it already).
        if not args.reuse:
            campaigns.create_campaign(name="Bench spring", filter={"city": "Shanghai"},
                                      limit=10_000,
                                      expires_in_days=14, message="", staff_id=staff_id,
                                      now=utcnow())
        db.session.commit()
        secret = start_session(staff)
        db.session.commit()
        print(f"generated in {time.perf_counter() - started:.1f} s\n")

        client = app.test_client()
        with client.session_transaction() as session:
            session["staff_id"] = staff_id
            session[SESSION_SECRET_KEY] = secret
        token = None
        print(f"{'page':<68} {'median ms':>10} {'max ms':>8}")
        for path in (p for p in PAGES if args.only in p):
            headers = {}
            if path.startswith("/api/"):
                if token is None:
                    token = issue_token(staff_id=staff_id)
                    db.session.commit()
                headers = {"Authorization": f"Bearer {token}"}
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                response = client.get(path, headers=headers)
                times.append((time.perf_counter() - start) * 1000)
                # A page past the end (302) or a user not there (404) at a small size.
                assert response.status_code in (200, 302, 404), (path, response.status_code)
            # The first request warms the caches (templates, plans); the median is the figure.
            note = "" if response.status_code == 200 else f"  (HTTP {response.status_code})"
            print(f"{path:<68} {statistics.median(times):>10.1f} {max(times):>8.1f}{note}")
        weekly_activity_ratio(args.repeat)


def weekly_activity_ratio(repeat: int) -> None:
    """The dashboard's weekly series alone, counted from the base tables and from the rollup
    plus its open edge, in the same run: the figures must agree; the ratio is the gain."""
    from koc.core.db import utcnow
    from koc.extensions import db
    from koc.tiers.services import insight

    now = utcnow()
    medians, figures = {}, {}
    for label, use_rollup in (("direct", False), ("rollup", True)):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            figures[label] = insight.weekly_activity(now, 12, use_rollup=use_rollup)
            times.append((time.perf_counter() - start) * 1000)
            db.session.rollback()
        medians[label] = statistics.median(times)
        print(f"{'weekly activity, ' + label:<68} {medians[label]:>10.1f} {max(times):>8.1f}")
    print(f"same figures: {figures['direct'] == figures['rollup']}")
    print(f"RATIO weekly-activity rollup/direct {medians['rollup'] / medians['direct']:.3f}")


def add_users(url: str, *, first: int, last: int) -> None:
    """Users `first`..`last` (not members), secondary indexes dropped during the load and built
    after it, as a bulk load would; then analysed, so the planner's estimates are real."""
    import psycopg

    from koc.core.db import utcnow
    from koc.members.services import candidate_rules

    if last < first:
        return
    rules = candidate_rules.current_rules().rules
    score = candidate_rules.merge_score_sql(rules, "u", "%(now)s")
    with psycopg.connect(url, autocommit=True) as conn:
        indexes = conn.execute(USERS_INDEXES_SQL).fetchall()
        for index_name, _definition, constraint in indexes:
            if constraint:
                conn.execute(f'ALTER TABLE users DROP CONSTRAINT "{constraint}"')
            else:
                conn.execute(f'DROP INDEX "{index_name}"')
        conn.execute("SET maintenance_work_mem = '512MB'")
        step = 5_000_000
        for start in range(first, last + 1, step):
            conn.execute(EXTRA_USERS_SQL.format(score=score),
                         {"cities": list(CITIES), "now": utcnow(), "first": start,
                          "last": min(start + step - 1, last)})
        for index_name, definition, constraint in indexes:
            conn.execute(definition)
            if constraint:
                conn.execute(f'ALTER TABLE users ADD CONSTRAINT "{constraint}" '
                             f'UNIQUE USING INDEX "{index_name}"')
        conn.execute("SELECT setval(pg_get_serial_sequence('users', 'id'), %s)", [last])
        conn.execute("VACUUM (ANALYZE) users")


def run_rollups() -> None:
    """What the scheduler would have done by now: the dashboard's and leaderboard's rollups."""
    from koc.tiers import tasks

    refresh = getattr(tasks, "refresh_activity_rollups", None)
    if refresh is None:  # a baseline run of the code before the rollups
        print("no rollup task in this version")
        return
    started = time.perf_counter()
    summary = refresh()
    print(f"rollups filled in {time.perf_counter() - started:.1f} s: {summary}")
    leaderboards = getattr(tasks, "refresh_leaderboards", None)
    if leaderboards is not None:
        started = time.perf_counter()
        ranked = leaderboards()
        print(f"leaderboard standings in {time.perf_counter() - started:.1f} s: {ranked}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.reuse:
        import tempfile

        from bench.tier_recalc import ADMIN_URL, database_url

        with tempfile.TemporaryDirectory() as instance:
            benchmark(args, args.reuse, database_url(ADMIN_URL, args.reuse), instance)
        return 0
    if args.keep:
        import tempfile

        from bench.tier_recalc import ADMIN_URL, admin_execute, database_url

        admin_execute(f'CREATE DATABASE "{args.keep}"')
        with tempfile.TemporaryDirectory() as instance:
            benchmark(args, args.keep, database_url(ADMIN_URL, args.keep), instance)
        print(f"\nkept database {args.keep} (--reuse {args.keep}; DROP DATABASE when done)")
        return 0
    return in_scratch_database(benchmark, args)


if __name__ == "__main__":
    raise SystemExit(main())
