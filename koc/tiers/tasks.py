"""Tiers background work: the periodic recalculation and recalculations asked for by staff."""

from __future__ import annotations

import logging
from datetime import timedelta

import sqlalchemy as sa
from celery import shared_task
from celery.schedules import crontab
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, run_job
from koc.extensions import db
from koc.members.models import Member
from koc.tiers.services import badges, drops, engine, insight, rollups, standings, wecom_groups
from koc.tiers.wecom import wecom_client

log = logging.getLogger(__name__)


@periodic_task(
    "koc.tiers.tasks.recalculate_tiers_periodic",
    # Members with new activity, every few minutes: promotions show up quickly.
    Every(lambda settings: timedelta(seconds=settings.tier_recalc_interval),
          kwargs={"incremental": True}),
    # Everyone, daily at 03:00 China time: windows roll past old posts even for members
    # who did nothing, and grace periods run out.
    Every(crontab(hour=19, minute=0), kwargs={"incremental": False}),
)
def recalculate_tiers_periodic(incremental: bool = False) -> dict:
    """Incremental runs and small populations run here, in one transaction; a full run over
    more members than one part is split into member-id ranges that any worker can take."""
    part_size = current_app.config["KOC_SETTINGS"].tier_part_size
    members = db.session.scalar(sa.select(sa.func.count()).select_from(Member))
    if incremental or members <= part_size:
        summary = engine.recalculate(trigger="schedule", incremental=incremental)
        db.session.commit()
        log.info("tier recalculation: %s", summary.as_dict())
        return summary.as_dict()
    part_ids = engine.start_split_run(trigger="schedule", part_size=part_size)
    db.session.commit()
    for part_id in part_ids:
        recalculate_tier_part.delay(part_id)
    log.info("tier recalculation split into %d parts", len(part_ids))
    return {"parts": len(part_ids)}


@shared_task(name="koc.tiers.tasks.recalculate_tier_part", acks_late=True)
def recalculate_tier_part(part_id: int) -> bool:
    done = engine.run_part(part_id)
    db.session.commit()
    return done


@shared_task(name="koc.tiers.tasks.recalculate_tiers_job")
def recalculate_tiers_job(job_id: int) -> None:
    def work(job: Job) -> None:
        summary = engine.recalculate(trigger="api")
        job.processed = summary.members_evaluated
        job.result = summary.as_dict()

    run_job(job_id, work)


@periodic_task(
    "koc.tiers.tasks.refresh_activity_rollups",
    # The hours closed since the last run (and re-opened approvals), every ten minutes.
    Every(timedelta(minutes=10)),
    # Every hour it holds again, daily at 03:30 China time: whatever else changed history.
    Every(crontab(hour=19, minute=30), kwargs={"full": True}),
)
def refresh_activity_rollups(full: bool = False) -> dict:
    """The dashboard's activity rollup; safe to run twice or at once (see rollups.refresh)."""
    summary = rollups.refresh(utcnow(), full=full)
    db.session.commit()
    return summary


@periodic_task("koc.tiers.tasks.refresh_leaderboards", Every(timedelta(minutes=10)))
def refresh_leaderboards() -> dict:
    """The leaderboard's standings for its preset windows and the dashboard's engagement by
    platform; safe to run twice or at once (see standings.refresh)."""
    now = utcnow()
    ranked = standings.refresh(now)
    # Under the windows' locks taken above: the dashboard's engagement by platform.
    ranked["platform_weeks"] = insight.refresh_engagement_by_platform(now)
    db.session.commit()
    return ranked


@periodic_task("koc.tiers.tasks.draw_closed_lotteries", Every(timedelta(minutes=1)))
def draw_closed_lotteries() -> int:
    """Draw each lottery drop once it closes; a drawn one is left as it is."""
    drawn = drops.draw_closed_lotteries()
    db.session.commit()
    return drawn


# Every 10 minutes it also catches up on badges a run left to it if that task was lost.
@periodic_task("koc.tiers.tasks.issue_badges", Every(timedelta(minutes=10)))
def issue_badges(chunk: int = 5000) -> int:
    """Issue the badges a large run left over, a chunk per transaction, until none is missing.
    Safe to run twice: a member's second live badge is refused by a unique index, and the
    query only picks members without one."""
    issued = 0
    while True:
        count, _ = badges.sync_badges(inline_limit=chunk, defer_rest=False)
        db.session.commit()
        issued += count
        if count < chunk:
            return issued


@periodic_task("koc.tiers.tasks.sync_wecom_senior_group", Every(timedelta(minutes=10)))
def sync_wecom_senior_group() -> dict:
    """Join methods for new senior invitations, and the roster reconciled with each senior chat
    (a callback WeCom failed to deliver is caught up here). Nothing without WeCom settings."""
    settings = current_app.config["KOC_SETTINGS"]
    if not settings.wecom_enabled or not settings.wecom_senior_chat_ids:
        return {"skipped": "WeCom is not configured"}
    client = wecom_client()
    chat_ids = list(settings.wecom_senior_chat_ids)
    created = wecom_groups.create_join_ways(client, chat_ids)
    db.session.commit()
    chats = {}
    for chat_id in chat_ids:
        chats[chat_id] = wecom_groups.reconcile_chat(client, chat_id)
        db.session.commit()
    log.info("WeCom senior group: %d join methods made, %s", created, chats)
    return {"join_ways_created": created, "chats": chats}
