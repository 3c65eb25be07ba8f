"""Submissions domain logic: plain functions over the session; they flush, the caller commits.

Points follow one rule: the ledger holds, for every submission, entries that add up to its
current score when it is approved and to zero otherwise. Every change (a review, new metrics, a
re-opened decision) books the difference as a new entry keyed on the event that caused it, so
nothing is edited in place and a retried event books nothing twice.
"""

from __future__ import annotations

import csv
import io
import statistics
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.jobs import enqueue_after_commit
from koc.core.media import SNIFF_BYTES, perceptual_hash, sniff, spool, types_agree
from koc.core.storage import ObjectNotFound, PresignedRequest, Storage
from koc.extensions import db
from koc.members.models import SocialAccount
from koc.submissions import scoring
from koc.submissions.models import (
    METRICS,
    MediaUpload,
    MetricSnapshot,
    PointsEntry,
    ReviewEvent,
    ScoringRuleSet,
    Submission,
    SubmissionFlag,
    SubmissionStatus,
)
from koc.submissions.urls import NotAUrl, canonical_post_url

LEDGER_SOURCE_SUBMISSION = "submission"
LEDGER_SOURCE_ADJUSTMENT = "submission_adjustment"
LEDGER_SOURCE_EXPIRY = "expiry"
# Images above this are not fetched for hashing; phone photos are a few MB.
MAX_HASH_BYTES = 40 * 1024 * 1024
MAX_IMPORT_ERRORS = 100
IMPORT_COMMIT_EVERY = 200


def _field_error(status: int, field: str, message: str) -> DomainError:
    return DomainError(status, f"{field}: {message}", errors={"json": {field: [message]}})


# --- scoring rules -----------------------------------------------------------------------------

def current_scoring() -> tuple[int, dict[str, Any]]:
    """(version, rules) in force; version 0 is the built-in default, never saved."""
    row = db.session.scalar(
        sa.select(ScoringRuleSet).order_by(ScoringRuleSet.version.desc()).limit(1)
    )
    if row is None:
        return 0, scoring.default_rules()
    return row.version, row.rules


def scoring_rules_row() -> ScoringRuleSet | None:
    return db.session.scalar(
        sa.select(ScoringRuleSet).order_by(ScoringRuleSet.version.desc()).limit(1)
    )


def scoring_rules_version(version: int) -> dict[str, Any]:
    if version == 0:
        return scoring.default_rules()
    row = db.session.scalar(sa.select(ScoringRuleSet).where(ScoringRuleSet.version == version))
    if row is None:  # cannot happen while rule sets are never deleted; fall back to current
        return current_scoring()[1]
    return row.rules


def save_scoring_rules(rules: dict[str, Any], *, staff_id: int | None) -> ScoringRuleSet:
    """Save a new version (already validated by ScoringRulesSchema). Decided scores keep theirs."""
    audience = rules["audience"]
    if audience["min_followers"] > audience["reference_followers"]:
        raise DomainError(422, "min_followers must not exceed reference_followers.", errors={
            "json": {"rules": {"audience": {"min_followers": [
                "must not exceed reference_followers"]}}}})
    latest = db.session.scalar(sa.select(sa.func.max(ScoringRuleSet.version))) or 0
    row = ScoringRuleSet(version=latest + 1, rules=rules, created_by_staff_id=staff_id)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError as exc:
        raise DomainError(409, "Another rules version was saved at the same moment; "
                               "reload and try again.") from exc
    return row


def _followers(member_id: int, platform: str) -> int | None:
    return db.session.scalar(
        sa.select(sa.func.max(SocialAccount.followers))
        .where(SocialAccount.member_id == member_id, SocialAccount.platform == platform)
    )


def _kit_window(kit_id: int | None) -> tuple[datetime | None, datetime | None] | None:
    if kit_id is None:
        return None
    from koc.assets.models import Kit

    row = db.session.execute(
        sa.select(Kit.available_from, Kit.available_until).where(Kit.id == kit_id)
    ).first()
    return None if row is None else (row[0], row[1])


def score_of(submission: Submission, version: int | None = None
             ) -> tuple[Decimal, dict[str, Any], int]:
    """Score a submission under rules `version` (default: the rules in force)."""
    if version is None:
        version, rules = current_scoring()
    else:
        rules = scoring_rules_version(version)
    inputs = scoring.ScoreInputs(
        metrics=submission.latest_metrics, rating=submission.rating,
        followers=_followers(submission.member_id, submission.platform),
        posted_at=submission.posted_at, window=_kit_window(submission.kit_id),
    )
    total, breakdown = scoring.score(inputs, rules, version)
    return total, breakdown, version


# --- media uploads -----------------------------------------------------------------------------

def create_media_upload(member_id: int, *, filename: str, content_type: str, size: int,
                        storage: Storage, max_bytes: int, url_ttl: int
                        ) -> tuple[MediaUpload, PresignedRequest]:
    if size > max_bytes:
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"must be at most {max_bytes} bytes"]}})
    key = f"media/{member_id}/{uuid.uuid4().hex}/{filename}"
    upload = MediaUpload(member_id=member_id, filename=filename, content_type=content_type,
                         size=size, storage_key=key)
    db.session.add(upload)
    db.session.flush()
    return upload, storage.presign_put(key, content_type=content_type, size=size,
                                       expires_in=url_ttl)


def verify_media(media: Iterable[MediaUpload], storage: Storage) -> None:
    """Each upload is in the store, no larger than declared, and is what it says it is."""
    for upload in media:
        info = storage.head(upload.storage_key)
        if info is None:
            raise _field_error(422, "media_upload_ids", f"upload {upload.id} was not uploaded")
        if info.size != upload.size:
            raise _field_error(422, "media_upload_ids",
                               f"upload {upload.id} is not the size declared")
        try:
            head = storage.read_prefix(upload.storage_key, SNIFF_BYTES)
        except ObjectNotFound as exc:
            raise _field_error(422, "media_upload_ids",
                               f"upload {upload.id} was not uploaded") from exc
        if not types_agree(upload.content_type, sniff(head)):
            raise _field_error(422, "media_upload_ids",
                               f"upload {upload.id} is not a {upload.content_type} file")


# --- submissions -------------------------------------------------------------------------------

def create_submission(member_id: int, values: dict[str, Any], *,
                      kit_visible: Callable[[int], bool],
                      storage: Storage | None = None) -> Submission:
    """Record a reported post. `kit_visible(kit_id)` says whether the member may use that kit.

    With `storage`, attached media are checked against the store (size and first bytes).
    """
    try:
        canonical = canonical_post_url(values["post_url"], values["platform"])
    except NotAUrl as exc:
        raise _field_error(422, "post_url", str(exc)) from exc
    if len(canonical) > 1000:
        raise _field_error(422, "post_url", "is too long once normalised")

    kit_id = values.get("kit_id")
    if kit_id is not None and not kit_visible(kit_id):
        raise _field_error(422, "kit_id", "no such kit open to you")

    existing_id = db.session.scalar(
        sa.select(Submission.id).where(Submission.canonical_url == canonical)
    )
    if existing_id is not None:
        raise _duplicate(existing_id)

    media_ids = list(dict.fromkeys(values.get("media_upload_ids") or []))
    media = db.session.scalars(
        sa.select(MediaUpload).where(MediaUpload.id.in_(media_ids),
                                     MediaUpload.member_id == member_id,
                                     MediaUpload.submission_id.is_(None))
        .order_by(MediaUpload.id)
    ).all() if media_ids else []
    if len(media) != len(media_ids):
        raise _field_error(422, "media_upload_ids", "unknown or already attached upload")
    if storage is not None:
        verify_media(media, storage)

    submission = Submission(
        member_id=member_id, kit_id=kit_id, platform=values["platform"],
        post_url=values["post_url"], canonical_url=canonical, caption=values.get("caption", ""),
        posted_at=values["posted_at"], status=SubmissionStatus.pending.value,
    )
    snapshot = MetricSnapshot(source="member", recorded_at=utcnow(), **values["metrics"])
    submission.snapshots.append(snapshot)
    submission.interactions = interactions_of(values["metrics"])
    submission.media.extend(media)
    try:
        with db.session.begin_nested():
            db.session.add(submission)
    except IntegrityError as exc:
        # Another member submitted the same post at the same moment.
        existing_id = db.session.scalar(
            sa.select(Submission.id).where(Submission.canonical_url == canonical)
        )
        raise _duplicate(existing_id) from exc
    check_anomalies(submission, snapshot)
    _hash_images_after_commit(media)
    return submission


def _hash_images_after_commit(media: Iterable[MediaUpload]) -> None:
    for upload in media:
        if upload.is_image:
            enqueue_after_commit("koc.submissions.tasks.hash_media_task", upload.id)


def _duplicate(existing_id: int | None) -> DomainError:
    return DomainError(
        409, f"This post was already submitted (submission {existing_id}).",
        errors={"json": {"post_url": [f"already submitted as submission {existing_id}"]},
                "existing_submission_id": existing_id},
    )


def get_submission(submission_id: int, *, member_id: int | None = None,
                   lock: bool = False) -> Submission:
    """Members get only their own; another member's submission is 404, not 403.

    `lock` takes the row lock (PostgreSQL), so two changes to one submission's score book
    their differences one after the other instead of both from the same starting point.
    """
    stmt = sa.select(Submission).where(Submission.id == submission_id)
    if lock:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    submission = db.session.scalar(stmt)
    if submission is None or (member_id is not None and submission.member_id != member_id):
        raise DomainError(404, "No such submission.")
    return submission


def submissions_query(*, member_id: int | None = None, status: str | None = None,
                      kit_id: int | None = None, flagged: bool | None = None) -> sa.Select:
    stmt = sa.select(Submission).order_by(Submission.id.desc())
    if member_id is not None:
        stmt = stmt.where(Submission.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Submission.status == status)
    if kit_id is not None:
        stmt = stmt.where(Submission.kit_id == kit_id)
    if flagged is not None:
        has_flag = sa.exists().where(SubmissionFlag.submission_id == Submission.id)
        stmt = stmt.where(has_flag if flagged else ~has_flag)
    return stmt


def interactions_of(metrics: dict[str, int]) -> int:
    """The reference programme's measure of a post: likes + comments + saves."""
    return metrics.get("likes", 0) + metrics.get("comments", 0) + metrics.get("saves", 0)


def add_metrics(submission: Submission, metrics: dict[str, int], *, source: str,
                import_ref: str | None = None) -> MetricSnapshot:
    """A new engagement snapshot; an approved submission is re-scored and the ledger follows.

    Call with the submission locked (get_submission(lock=True)).
    """
    snapshot = MetricSnapshot(source=source, recorded_at=utcnow(), import_ref=import_ref,
                              **{name: metrics.get(name, 0) for name in METRICS})
    submission.snapshots.append(snapshot)
    submission.interactions = interactions_of(metrics)
    db.session.flush()
    if submission.status == SubmissionStatus.approved:
        version = submission.scoring_version
        total, breakdown, version = score_of(submission, version)
        submission.score, submission.score_breakdown = total, breakdown
        sync_points(submission, event=f"snapshot:{snapshot.id}",
                    description=f"new metrics on submission {submission.id}")
    check_anomalies(submission, snapshot)
    return snapshot


# --- review ------------------------------------------------------------------------------------

def review_submission(submission: Submission, *, decision: str, rating: int | None,
                      reason: str | None, staff_id: int | None,
                      note: str | None = None) -> Submission:
    """Approve or reject a pending submission. Call with the submission locked."""
    if submission.status != SubmissionStatus.pending:
        raise DomainError(409, f"This submission was already {submission.status}.")
    if decision == "reject" and not reason:
        raise _field_error(422, "reason", "a reason is required to reject")
    submission.rating = rating if decision == "approve" else None
    submission.reject_reason = reason if decision == "reject" else None
    submission.review_reason = note
    submission.reviewed_by_staff_id = staff_id
    submission.reviewed_at = utcnow()
    if decision == "reject":
        submission.status = SubmissionStatus.rejected.value
        submission.score, submission.score_breakdown = None, None
    else:
        submission.status = SubmissionStatus.approved.value
        total, breakdown, version = score_of(submission)
        submission.score, submission.score_breakdown = total, breakdown
        submission.scoring_version = version
    event = ReviewEvent(submission=submission, staff_id=staff_id, action=decision,
                        rating=submission.rating, reason=submission.reject_reason, note=note,
                        score=submission.score, created_at=utcnow())
    db.session.add(event)
    db.session.flush()
    sync_points(submission, event=f"event:{event.id}",
                description=f"{decision}d submission {submission.id}")
    return submission


def bulk_review(ids: list[int], *, decision: str, rating: int | None, reason: str | None,
                note: str | None, staff_id: int | None) -> list[Submission]:
    """Review many at once, all or nothing: one unknown or decided id and nothing is written."""
    # Locked in id order, so two bulk reviews over overlapping ids cannot deadlock.
    found = db.session.scalars(
        sa.select(Submission).where(Submission.id.in_(ids)).order_by(Submission.id)
        .with_for_update().execution_options(populate_existing=True)
    ).all()
    missing = sorted(set(ids) - {s.id for s in found})
    if missing:
        raise DomainError(422, f"No such submissions: {missing}.",
                          errors={"json": {"ids": [f"no such submission: {i}" for i in missing]}})
    decided = [s.id for s in found if s.status != SubmissionStatus.pending]
    if decided:
        raise DomainError(409, f"Already reviewed: {decided}; nothing was changed.",
                          errors={"json": {"ids": [f"already reviewed: {i}" for i in decided]}})
    by_id = {s.id: s for s in found}
    return [review_submission(by_id[i], decision=decision, rating=rating, reason=reason,
                              note=note, staff_id=staff_id) for i in ids]


def reopen_submission(submission: Submission, *, note: str, staff_id: int | None
                      ) -> Submission:
    """Put a decided submission back in the queue; its points are taken back by a new entry."""
    if submission.status == SubmissionStatus.pending:
        raise DomainError(409, "This submission is waiting for review already.")
    event = ReviewEvent(submission=submission, staff_id=staff_id, action="reopen", note=note,
                        rating=submission.rating, reason=submission.reject_reason,
                        score=submission.score, created_at=utcnow())
    submission.status = SubmissionStatus.pending.value
    submission.rating = None
    submission.reject_reason = None
    submission.review_reason = None
    submission.reviewed_by_staff_id = None
    submission.reviewed_at = None
    submission.score = None
    submission.score_breakdown = None
    submission.scoring_version = None
    db.session.add(event)
    db.session.flush()
    sync_points(submission, event=f"event:{event.id}",
                description=f"decision on submission {submission.id} re-opened")
    return submission


# --- the points ledger -------------------------------------------------------------------------

def booked_for(submission: Submission) -> Decimal:
    """What the ledger holds for one submission."""
    booked = db.session.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(PointsEntry.points), 0)).where(
            PointsEntry.member_id == submission.member_id,
            PointsEntry.source.in_([LEDGER_SOURCE_SUBMISSION, LEDGER_SOURCE_ADJUSTMENT]),
            sa.or_(PointsEntry.submission_id == submission.id,
                   # Rows booked before entries carried submission_id.
                   sa.and_(PointsEntry.submission_id.is_(None),
                           PointsEntry.source == LEDGER_SOURCE_SUBMISSION,
                           PointsEntry.reference == str(submission.id))),
        )
    )
    return Decimal(booked)


def sync_points(submission: Submission, *, event: str, description: str) -> Decimal:
    """Book the difference between the submission's due points and what the ledger holds."""
    due = submission.score if submission.status == SubmissionStatus.approved else Decimal(0)
    difference = Decimal(due or 0) - booked_for(submission)
    if difference == 0:
        return difference
    first = db.session.scalar(sa.select(PointsEntry.id).filter_by(
        member_id=submission.member_id, source=LEDGER_SOURCE_SUBMISSION,
        reference=str(submission.id)))
    if first is None:
        book_points(submission.member_id, source=LEDGER_SOURCE_SUBMISSION,
                    reference=str(submission.id), points=difference,
                    description=f"approved submission {submission.id}",
                    submission_id=submission.id)
    else:
        book_points(submission.member_id, source=LEDGER_SOURCE_ADJUSTMENT,
                    reference=f"{submission.id}:{event}", points=difference,
                    description=description, submission_id=submission.id)
    return difference


def book_points(member_id: int, *, source: str, reference: str, points: Decimal,
                description: str, submission_id: int | None = None) -> bool:
    """Append a ledger entry unless one with this key exists; returns whether it was booked."""
    exists = db.session.scalar(
        sa.select(PointsEntry.id).filter_by(member_id=member_id, source=source,
                                            reference=reference)
    )
    if exists is not None:
        return False
    db.session.add(PointsEntry(member_id=member_id, source=source, reference=reference,
                               points=points, description=description[:200],
                               submission_id=submission_id, created_at=utcnow()))
    db.session.flush()
    return True


def points_totals(member_id: int) -> dict[str, float]:
    """balance: everything; lifetime: everything earned, net of corrections, before expiry."""
    balance, lifetime = db.session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(PointsEntry.points), 0),
            sa.func.coalesce(sa.func.sum(sa.case(
                (PointsEntry.source != LEDGER_SOURCE_EXPIRY, PointsEntry.points), else_=0)), 0),
        ).where(PointsEntry.member_id == member_id)
    ).one()
    return {"balance": float(balance), "lifetime": float(lifetime)}


def ledger_query(member_id: int) -> sa.Select:
    return (sa.select(PointsEntry).where(PointsEntry.member_id == member_id)
            .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc()))


def expire_points(*, days: int, now: datetime | None = None) -> int:
    """Book an expiry entry for every member holding points older than `days`; one statement.

    What is due to expire is the net of everything booked before the cutoff, less what earlier
    runs expired already. The reference is the cutoff date, so a second run on the same day
    books nothing (the unique key refuses it), and a run that died is simply run again.
    Returns the number of entries booked.
    """
    now = now or utcnow()
    cutoff = now - timedelta(days=days)
    earned = sa.func.sum(sa.case(
        (sa.and_(PointsEntry.source != LEDGER_SOURCE_EXPIRY, PointsEntry.created_at < cutoff),
         PointsEntry.points), else_=0))
    expired = sa.func.sum(sa.case((PointsEntry.source == LEDGER_SOURCE_EXPIRY,
                                   PointsEntry.points), else_=0))
    totals = (sa.select(PointsEntry.member_id, (earned + expired).label("due"))
              .group_by(PointsEntry.member_id).subquery())
    rows = sa.select(
        totals.c.member_id, sa.literal(LEDGER_SOURCE_EXPIRY), sa.literal(cutoff.date().isoformat()),
        -totals.c.due, sa.literal(f"points older than {days} days expired"),
        sa.literal(now, PointsEntry.created_at.type),
    ).where(totals.c.due > 0)
    columns = ["member_id", "source", "reference", "points", "description", "created_at"]
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = (insert(PointsEntry.__table__).from_select(columns, rows)
                 .on_conflict_do_nothing().returning(PointsEntry.__table__.c.id))
    return len(db.session.execute(statement).all())


# --- anomaly flags -----------------------------------------------------------------------------

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


def check_anomalies(submission: Submission, snapshot: MetricSnapshot) -> list[SubmissionFlag]:
    """Flag what a reviewer should look at in a new snapshot. Flags inform; they decide nothing."""
    rules = current_scoring()[1]["anomalies"]
    raised: list[SubmissionFlag | None] = []
    reference = f"snapshot:{snapshot.id}"
    if rules["likes_above_views"] and 0 < snapshot.views < snapshot.likes:
        raised.append(_add_flag(submission.id, "likes_above_views", reference,
                                {"likes": snapshot.likes, "views": snapshot.views}))

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


# --- perceptual hashes -------------------------------------------------------------------------

def near_duplicates(media: MediaUpload, max_distance: int) -> list[tuple[int, int, int]]:
    """(media id, submission id, distance) of other members' attached images close to `media`."""
    where = [MediaUpload.phash.is_not(None), MediaUpload.member_id != media.member_id,
             MediaUpload.submission_id.is_not(None), MediaUpload.id != media.id]
    if db.session.get_bind().dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import BIT

        distance = sa.func.bit_count(sa.cast(MediaUpload.phash.op("#")(media.phash), BIT(64)))
        rows = db.session.execute(
            sa.select(MediaUpload.id, MediaUpload.submission_id, distance)
            .where(*where, distance <= max_distance).order_by(distance, MediaUpload.id).limit(20)
        ).all()
        return [(row[0], row[1], int(row[2])) for row in rows]
    # SQLite has no popcount; the embedded set-up holds few images.
    mask = (1 << 64) - 1
    found = []
    for media_id, submission_id, phash in db.session.execute(
        sa.select(MediaUpload.id, MediaUpload.submission_id, MediaUpload.phash).where(*where)
    ):
        distance = ((phash ^ media.phash) & mask).bit_count()
        if distance <= max_distance:
            found.append((media_id, submission_id, distance))
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


# --- bulk metrics import -----------------------------------------------------------------------

@dataclass
class ImportReport:
    processed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_IMPORT_ERRORS:
            self.errors.append({"line": line, "message": message})


def _csv_value(value: str | None) -> Any:
    if value is None:
        return None
    value = value.strip()
    if value == "":
        return None
    return int(value) if value.isascii() and value.isdigit() else value


def import_metrics(text: str, *, job_id: int,
                   commit: Callable[[], None] | None = None) -> ImportReport:
    """Engagement snapshots from CSV: submission_id or post_url, then the metric columns.

    Each line's snapshot carries "job<id>:line<n>", so running the job again after it died
    half-way adds only the lines it had not reached.
    """
    from koc.submissions.schemas import MetricsImportRowSchema

    schema = MetricsImportRowSchema()
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text))
    known = {"submission_id", "post_url", *METRICS}
    unknown = [name for name in reader.fieldnames or [] if name not in known]
    if not reader.fieldnames or unknown:
        report.fail(1, f"header must name submission_id or post_url and metric columns; "
                       f"unknown: {', '.join(unknown) or 'none given'}")
        return report
    for line, row in enumerate(reader, start=2):
        cleaned = {k: v for k, v in ((k, _csv_value(v)) for k, v in row.items() if k)
                   if v is not None}
        try:
            values = schema.load(cleaned)
        except ValidationError as exc:
            report.fail(line, "; ".join(f"{k}: {' '.join(map(str, v))}"
                                        for k, v in exc.normalized_messages().items()))
            continue
        submission_id = values["submission_id"]
        if submission_id is None:
            try:
                canonical = canonical_post_url(values["post_url"])
            except NotAUrl as exc:
                report.fail(line, f"post_url: {exc}")
                continue
            submission_id = db.session.scalar(
                sa.select(Submission.id).where(Submission.canonical_url == canonical))
        reference = f"job{job_id}:line{line}"
        try:
            submission = get_submission(submission_id or 0, lock=True)
        except DomainError:
            report.fail(line, "no such submission")
            continue
        done = db.session.scalar(sa.select(MetricSnapshot.id)
                                 .where(MetricSnapshot.import_ref == reference))
        if done is None:
            add_metrics(submission, {name: values[name] for name in METRICS}, source="import",
                        import_ref=reference)
        report.processed += 1
        if commit is not None and report.processed % IMPORT_COMMIT_EVERY == 0:
            commit()
    return report
