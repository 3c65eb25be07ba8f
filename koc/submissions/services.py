"""Submissions domain logic: plain functions over the session; they flush, the caller commits."""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import PresignedRequest, Storage
from koc.extensions import db
from koc.submissions.models import (
    METRICS,
    MediaUpload,
    MetricSnapshot,
    PointsEntry,
    Submission,
    SubmissionStatus,
)
from koc.submissions.urls import NotAUrl, canonical_post_url

LEDGER_SOURCE_SUBMISSION = "submission"


# --- scoring -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class ScoringRules:
    """Version 1 of the scoring rules; issue #4 turns these into versioned, editable data."""

    version: int = 1
    base: Decimal = Decimal("10")
    # Points per natural-log unit of interactions, so 10x the likes is not 10x the points.
    engagement_per_log: Decimal = Decimal("4")
    # Points per rating step above (or below) an average rating of 3.
    rating_step: Decimal = Decimal("2")
    cap: Decimal = Decimal("100")


DEFAULT_SCORING = ScoringRules()
_CENT = Decimal("0.01")


def score_submission(metrics: dict[str, int], rating: int | None,
                     rules: ScoringRules = DEFAULT_SCORING) -> tuple[Decimal, dict[str, Any]]:
    """Return (score, breakdown); the breakdown's parts add up to the score exactly."""
    interactions = sum(metrics.get(name, 0) for name in ("likes", "comments", "saves", "shares"))
    parts = {
        "base": rules.base,
        "engagement": (rules.engagement_per_log * Decimal(math.log1p(interactions))
                       ).quantize(_CENT),
        "rating": (rules.rating_step * (rating - 3)) if rating is not None else Decimal(0),
    }
    total = sum(parts.values(), Decimal(0))
    if total > rules.cap:
        parts["cap"] = rules.cap - total
        total = rules.cap
    breakdown = {
        "rules_version": rules.version,
        "parts": {name: float(value) for name, value in parts.items()},
    }
    return total.quantize(_CENT), breakdown


def interactions_of(metrics: dict[str, int]) -> int:
    """The reference programme's measure of a post: likes + comments + saves."""
    return metrics.get("likes", 0) + metrics.get("comments", 0) + metrics.get("saves", 0)


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


# --- submissions -------------------------------------------------------------------------------

def _field_error(status: int, field: str, message: str) -> DomainError:
    return DomainError(status, f"{field}: {message}", errors={"json": {field: [message]}})


def create_submission(member_id: int, values: dict[str, Any], *,
                      kit_visible: Any) -> Submission:
    """Record a reported post. `kit_visible(kit_id)` says whether the member may use that kit."""
    try:
        canonical = canonical_post_url(values["post_url"])
    except NotAUrl as exc:
        raise _field_error(422, "post_url", str(exc)) from exc

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
    ).all() if media_ids else []
    if len(media) != len(media_ids):
        raise _field_error(422, "media_upload_ids", "unknown or already attached upload")

    submission = Submission(
        member_id=member_id, kit_id=kit_id, platform=values["platform"],
        post_url=values["post_url"], canonical_url=canonical, caption=values.get("caption", ""),
        posted_at=values["posted_at"], status=SubmissionStatus.pending.value,
    )
    submission.snapshots.append(MetricSnapshot(source="member", **values["metrics"]))
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
    return submission


def _duplicate(existing_id: int | None) -> DomainError:
    return DomainError(
        409, f"This post was already submitted (submission {existing_id}).",
        errors={"json": {"post_url": [f"already submitted as submission {existing_id}"]},
                "existing_submission_id": existing_id},
    )


def get_submission(submission_id: int, *, member_id: int | None = None) -> Submission:
    """Members get only their own; another member's submission is 404, not 403."""
    submission = db.session.get(Submission, submission_id)
    if submission is None or (member_id is not None and submission.member_id != member_id):
        raise DomainError(404, "No such submission.")
    return submission


def submissions_query(*, member_id: int | None = None, status: str | None = None,
                      kit_id: int | None = None) -> sa.Select:
    stmt = sa.select(Submission).order_by(Submission.id.desc())
    if member_id is not None:
        stmt = stmt.where(Submission.member_id == member_id)
    if status is not None:
        stmt = stmt.where(Submission.status == status)
    if kit_id is not None:
        stmt = stmt.where(Submission.kit_id == kit_id)
    return stmt


def add_metrics(submission: Submission, metrics: dict[str, int], *, source: str
                ) -> MetricSnapshot:
    snapshot = MetricSnapshot(source=source, **{name: metrics[name] for name in METRICS})
    submission.snapshots.append(snapshot)
    submission.interactions = interactions_of(metrics)
    db.session.flush()
    return snapshot


def review_submission(submission: Submission, *, decision: str, rating: int | None,
                      reason: str | None, staff_id: int) -> Submission:
    if submission.status != SubmissionStatus.pending:
        raise DomainError(409, f"This submission was already {submission.status}.")
    if decision == "reject" and not reason:
        raise _field_error(422, "reason", "a reason is required to reject")
    submission.rating = rating
    submission.review_reason = reason
    submission.reviewed_by_staff_id = staff_id
    submission.reviewed_at = utcnow()
    if decision == "reject":
        submission.status = SubmissionStatus.rejected.value
        db.session.flush()
        return submission
    submission.status = SubmissionStatus.approved.value
    score, breakdown = score_submission(submission.latest_metrics, rating)
    submission.score = score
    submission.score_breakdown = breakdown
    book_points(submission.member_id, source=LEDGER_SOURCE_SUBMISSION,
                reference=str(submission.id), points=score,
                description=f"approved submission {submission.id}")
    db.session.flush()
    return submission


def book_points(member_id: int, *, source: str, reference: str, points: Decimal,
                description: str) -> bool:
    """Append a ledger entry unless one with this key exists; returns whether it was booked."""
    exists = db.session.scalar(
        sa.select(PointsEntry.id).filter_by(member_id=member_id, source=source,
                                            reference=reference)
    )
    if exists is not None:
        return False
    db.session.add(PointsEntry(member_id=member_id, source=source, reference=reference,
                               points=points, description=description))
    db.session.flush()
    return True


def points_totals(member_id: int) -> dict[str, float]:
    balance, lifetime = db.session.execute(
        sa.select(
            sa.func.coalesce(sa.func.sum(PointsEntry.points), 0),
            sa.func.coalesce(
                sa.func.sum(sa.case((PointsEntry.points > 0, PointsEntry.points), else_=0)), 0
            ),
        ).where(PointsEntry.member_id == member_id)
    ).one()
    return {"balance": float(balance), "lifetime": float(lifetime)}


def ledger_query(member_id: int) -> sa.Select:
    return (sa.select(PointsEntry).where(PointsEntry.member_id == member_id)
            .order_by(PointsEntry.created_at.desc(), PointsEntry.id.desc()))
