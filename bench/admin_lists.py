"""Server time of the admin panel's list pages at the reference size: dashboard, roster,
leaderboard, review queue (with its filters), a member's page, a kit's funnel lists, the rules,
drops and webhooks pages.

Builds a throwaway PostgreSQL database with the migrations, fills it with bench.tier_recalc's
synthetic population (members, their posts and points ledger, set-based SQL), gives members
tiers, tags and at-risk marks, then requests each page through the app (routing, queries and
template rendering; no network) several times as a signed-in admin and prints the median and
the slowest. The database is dropped at exit.

    .venv/bin/python -m bench.admin_lists                                 # 50k members, 1M posts
    .venv/bin/python -m bench.admin_lists --members 5000 --submissions 50000   # a quick look
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
)

# Tiers in the reference programme's proportions, tags on a tenth of the users and a few
# members in their grace period.
DRESS_SQL = (
    """UPDATE members SET tier_key = CASE WHEN id % 50 = 0 THEN 'senior'
                                        WHEN id % 10 = 0 THEN 'early_access'
                                        WHEN id % 3 = 0 THEN 'certified' END""",
    "UPDATE members SET tier_below_since = now() - interval '2 days' WHERE id % 37 = 0",
    """UPDATE users SET tags = CASE WHEN id % 10 = 0 THEN '["vip", "mom"]'::jsonb
                                 WHEN id % 7 = 0 THEN '["mom"]'::jsonb ELSE '[]'::jsonb END""",
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
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--only", default="", help="only the pages whose path contains this")
    return parser.parse_args(argv)


def benchmark(args: argparse.Namespace, name: str, url: str, instance: str) -> None:
    from koc.core.auth import SESSION_SECRET_KEY, create_staff, issue_token, start_session
    from koc.extensions import db

    with migrated_app(url, instance) as app:
        print(f"database {name}: {args.members:,} members, {args.submissions:,} submissions")
        started = time.perf_counter()
        generate(url, members=args.members, submissions=args.submissions, seed=args.seed)
        with db.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for sql in DRESS_SQL:
                conn.execute(sa.text(sql))
        # Nobody signs in with it: the bench starts a panel session and puts it in the cookie.
        staff = create_staff(email="bench@example.com", role="admin",
                             password=secrets.token_urlsafe(16))
        db.session.commit()
        staff_id = staff.id
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
                assert response.status_code == 200, (path, response.status_code)
            # The first request warms the caches (templates, plans); the median is the figure.
            print(f"{path:<68} {statistics.median(times):>10.1f} {max(times):>8.1f}")


def main(argv: list[str] | None = None) -> int:
    return in_scratch_database(benchmark, parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
