"""Anomaly flags for reviewers: engagement out of line with history, near-duplicate images."""

from __future__ import annotations

import statistics
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import BIT
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.media import perceptual_hash, spool
from koc.core.storage import Storage
from koc.extensions import db
from koc.submissions.models import (
    MediaUpload,
    MetricSnapshot,
    Submission,
    SubmissionFlag,
    SubmissionStatus,
)
from koc.submissions.services.rules import current_scoring, scoring_rules_to_read
from koc.submissions.services.scoring import interactions_of

# Images above this are not fetched for hashing; phone photos are a few MB.
MAX_HASH_BYTES = 40 * 1024 * 1024


def _add_flag(submission_id: int, kind: str, reference: str, detail: dict[str, Any],
              related_submission_id: int | None = None) -> SubmissionFlag | None:
    exists = db.session.scalar(sa.select(SubmissionFlag.id).filter_by(
        submission_id=submission_id, kind=kind, reference=reference))
    if exists is not None:
        return None
    flag = SubmissionFlag(submission_id=submission_id, kind=kind, reference=reference,
                          detail=detail, related_submission_id=related_submission_id,
                          created_at=utcnow())
    try:
        with db.session.begin_nested():
            db.session.add(flag)
    except IntegrityError:
        return None  # raised at the same moment by another worker
    return flag


def _member_history(member_id: int, exclude_submission_id: int) -> list[tuple[int, float, int]]:
    """(interactions, days the post had to gather them, views) of the member's other posts."""
    inner = sa.orm.aliased(MetricSnapshot)
    latest = (sa.select(sa.func.max(inner.id)).where(inner.submission_id == Submission.id)
              .correlate(Submission).scalar_subquery())
    rows = db.session.execute(
        sa.select(Submission.interactions, Submission.posted_at, MetricSnapshot.views,
                  MetricSnapshot.recorded_at)
        .join(MetricSnapshot, MetricSnapshot.id == latest)
        .where(Submission.member_id == member_id, Submission.id != exclude_submission_id,
               Submission.status != SubmissionStatus.rejected.value)
        .order_by(Submission.id.desc()).limit(200)
    ).all()
    return [(interactions, max((recorded - posted).total_seconds() / 86400, 1.0), views)
            for interactions, posted, views, recorded in rows]


def check_anomalies(submission: Submission, snapshot: MetricSnapshot, *,
                    with_history: bool = True, without_history: bool = True,
                    ) -> list[SubmissionFlag]:
    """Flag what a reviewer should look at in a new snapshot. Flags inform; they decide nothing.

    `with_history=False` leaves out the checks against the member's other posts (one query
    over their history), which a new submission runs after its commit;
    `without_history=False` runs only those.
    """
    rules = scoring_rules_to_read()["anomalies"]
    raised: list[SubmissionFlag | None] = []
    reference = f"snapshot:{snapshot.id}"
    if without_history and rules["likes_above_views"] and 0 < snapshot.views < snapshot.likes:
        raised.append(_add_flag(submission.id, "likes_above_views", reference,
                                {"likes": snapshot.likes, "views": snapshot.views}))
    if not with_history:
        return [flag for flag in raised if flag is not None]

    earlier = [s for s in submission.snapshots if s.id is not None and s.id < snapshot.id]
    if earlier:
        since, before = earlier[-1].recorded_at, interactions_of(earlier[-1].metrics)
    else:
        since, before = submission.posted_at, 0
    now_interactions = interactions_of(snapshot.metrics)
    days = max((snapshot.recorded_at - since).total_seconds() / 86400, 1.0)
    daily_gain = (now_interactions - before) / days
    history = _member_history(submission.member_id, submission.id)
    usual = (sum(i for i, _, _ in history) / sum(d for _, d, _ in history)) if history else 0.0
    threshold = rules["jump_factor"] * max(usual, rules["jump_min_daily"])
    if daily_gain > threshold:
        raised.append(_add_flag(submission.id, "engagement_jump", reference, {
            "daily_gain": round(daily_gain, 1), "usual_daily": round(usual, 1),
            "threshold": round(threshold, 1)}))

    rates = [i / v for i, _, v in history if v > 0]
    if snapshot.views > 0 and len(rates) >= rules["rate_min_history"]:
        rate = now_interactions / snapshot.views
        baseline = statistics.median(rates)
        if baseline > 0 and rate > rules["rate_factor"] * baseline:
            raised.append(_add_flag(submission.id, "engagement_rate", reference, {
                "rate": round(rate, 4), "baseline": round(baseline, 4)}))
    return [flag for flag in raised if flag is not None]


def check_pending_history(*, limit: int = 500) -> int:
    """The history checks of new submissions' first snapshots, oldest first, `limit` at a time;
    each snapshot is taken once (rows locked, skipping those another worker holds)."""
    stmt = (sa.select(MetricSnapshot).where(MetricSnapshot.history_pending.is_(True))
            .order_by(MetricSnapshot.id).limit(limit))
    if db.session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    snapshots = db.session.scalars(stmt).all()
    for snapshot in snapshots:
        check_anomalies(snapshot.submission, snapshot, without_history=False)
        snapshot.history_pending = False
    db.session.flush()
    return len(snapshots)


def near_duplicates(media: MediaUpload, max_distance: int) -> list[tuple[int, int, int]]:
    """(media id, submission id, distance) of other members' attached images close to `media`."""
    where = [MediaUpload.phash.is_not(None), MediaUpload.member_id != media.member_id,
             MediaUpload.submission_id.is_not(None), MediaUpload.id != media.id]
    if db.session.get_bind().dialect.name == "postgresql":
        distance = sa.func.bit_count(sa.cast(MediaUpload.phash.op("#")(media.phash), BIT(64)))
        rows = db.session.execute(
            sa.select(MediaUpload.id, MediaUpload.submission_id, distance)
            .where(*where, distance <= max_distance).order_by(distance, MediaUpload.id).limit(20)
        ).all()
        return [(row[0], row[1], int(row[2])) for row in rows]
    # SQLite has no popcount; the embedded set-up holds few images.
    mask = (1 << 64) - 1
    found: list[tuple[int, int, int]] = []
    mine = media.phash or 0  # where[] already keeps to images that have a hash
    for media_id, submission_id, phash in db.session.execute(
        sa.select(MediaUpload.id, MediaUpload.submission_id, MediaUpload.phash).where(*where)
    ):
        if phash is None or submission_id is None:
            continue
        bits = ((phash ^ mine) & mask).bit_count()
        if bits <= max_distance:
            found.append((media_id, submission_id, bits))
    return sorted(found, key=lambda row: (row[2], row[0]))[:20]


def hash_media(media_id: int, storage: Storage) -> list[SubmissionFlag]:
    """Hash an attached image and flag both submissions of any near-duplicate pair."""
    media = db.session.get(MediaUpload, media_id)
    if media is None or media.submission_id is None or not media.is_image:
        return []
    if media.phash is None:
        if media.hashed_at is not None or media.size > MAX_HASH_BYTES:
            return []  # tried before and it was not a readable image, or too big
        with spool(storage, media.storage_key) as source:
            media.phash = perceptual_hash(source)
        media.hashed_at = utcnow()
        db.session.flush()
        if media.phash is None:
            return []
    max_distance = current_scoring()[1]["anomalies"]["media_max_distance"]
    flags = []
    for other_id, other_submission_id, distance in near_duplicates(media, max_distance):
        if other_submission_id == media.submission_id:
            continue
        pair = f"media:{min(media.id, other_id)}:{max(media.id, other_id)}"
        for mine, theirs, my_media, their_media in (
            (media.submission_id, other_submission_id, media.id, other_id),
            (other_submission_id, media.submission_id, other_id, media.id),
        ):
            flag = _add_flag(mine, "near_duplicate_media", pair,
                             {"media_id": my_media, "matching_media_id": their_media,
                              "distance": distance}, related_submission_id=theirs)
            if flag is not None:
                flags.append(flag)
    return flags
