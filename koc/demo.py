"""The demo data set behind `make demo`: an admin, a user base, members, a kit, submissions."""

from __future__ import annotations

import random
from datetime import timedelta

import sqlalchemy as sa

from koc.assets.models import Asset, AssetStatus, Kit, KitStatus
from koc.core.auth import create_staff, find_staff
from koc.core.db import utcnow
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import Member
from koc.members.services import invitations, users
from koc.submissions.services import posts, review
from koc.tiers.services.engine import recalculate

DEMO_ADMIN_EMAIL = "admin@demo.koc"
DEMO_ADMIN_PASSWORD = "demo-admin-pass"  # noqa: S105 - printed to the person running the demo
CITIES = ("Guangzhou", "Shanghai", "Shenzhen", "Chengdu", "Hangzhou")
TAGS = ("mother-baby", "toys", "beauty", "outdoor", "collector")


def load_demo(seed: int = 7) -> str:
    """Load the demo data; running it again changes nothing."""
    if find_staff(DEMO_ADMIN_EMAIL) is not None:
        return _login_text("demo data already loaded")
    rng = random.Random(seed)  # noqa: S311 - reproducible demo data, not secrets
    create_staff(email=DEMO_ADMIN_EMAIL, role="admin", password=DEMO_ADMIN_PASSWORD)
    create_staff(email="reviewer@demo.koc", role="reviewer", password=DEMO_ADMIN_PASSWORD)

    records = [
        {
            "external_id": f"crm-{n:05d}",
            "display_name": f"Customer {n}",
            "city": rng.choice(CITIES),
            "store_code": f"GZ{rng.randint(1, 9):02d}",
            "tags": rng.sample(TAGS, k=rng.randint(0, 2)),
            "orders_count": rng.randint(0, 40),
            "spend_cents": rng.randint(0, 800_000),
            "last_order_at": utcnow() - timedelta(days=rng.randint(0, 200)),
            "shares_count": rng.randint(0, 30),
            "community_posts_count": rng.randint(0, 25),
        }
        for n in range(1, 501)
    ]
    users.upsert_users_bulk(records)

    storage = get_storage()
    storage.ensure_bucket()
    kit = Kit(title="Blind-box figure launch", status=KitStatus.published.value,
              notes="## How to shoot it\n\n- Natural light, figure at eye level\n"
                    "- Show the unboxing in the first 3 seconds\n",
              segments=[], published_at=utcnow())
    db.session.add(kit)
    db.session.flush()
    brief = b"Shooting notes: natural light, unboxing first, tag #blindbox.\n"
    key = f"kits/{kit.id}/demo/shooting-notes.txt"
    storage.put_bytes(key, brief, content_type="text/plain")
    db.session.add(Asset(kit=kit, filename="shooting-notes.txt", content_type="text/plain",
                         size=len(brief), storage_key=key, status=AssetStatus.ready.value,
                         completed_at=utcnow()))

    reviewer = find_staff("reviewer@demo.koc")
    if reviewer is None:
        raise RuntimeError("the demo reviewer is created above; it must exist here")
    for n in range(1, 21):
        _invitation, code = invitations.create_invitation(f"crm-{n:05d}", expires_in_days=14,
                                                          staff_id=None)
        member, _token = invitations.accept_invitation(
            code, display_name=f"KOC {n}",
            social_accounts=[{"platform": "xiaohongshu", "handle": f"koc_demo_{n}",
                              "url": None, "followers": rng.randint(200, 20_000)}],
        )
        for post in range(rng.randint(0, 3)):
            likes = rng.randint(5, 1500)
            submission = posts.create_submission(
                member.id,
                {"kit_id": kit.id, "platform": "xiaohongshu",
                 "post_url": f"https://www.xiaohongshu.com/explore/{n:012x}{post:012x}",
                 "caption": "开箱啦", "posted_at": utcnow() - timedelta(days=rng.randint(0, 30)),
                 "metrics": {"views": likes * 10, "likes": likes, "comments": likes // 10,
                             "saves": likes // 5, "shares": likes // 20}},
                kit_visible=lambda _kit_id: True,
            )
            if post == 0 and n % 3:
                review.review_submission(submission, decision="approve", rating=4,
                                              reason=None, staff_id=reviewer.id)
    db.session.flush()
    # Tiers as the periodic job would set them, so the demo opens with a populated roster.
    summary = recalculate(trigger="demo")
    db.session.commit()
    count = db.session.scalar(sa.select(sa.func.count()).select_from(Member))
    return _login_text(f"loaded 500 users, {count} members ({summary.promotions} with a tier), "
                       "1 kit")


def _login_text(headline: str) -> str:
    return f"{headline}\nadmin panel login: {DEMO_ADMIN_EMAIL} / {DEMO_ADMIN_PASSWORD}"
