"""Reported posts: creating one (a post earns once, however linked), reading them, new metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError, field_error
from koc.core.jobs import enqueue_after_commit
from koc.core.storage import Storage
from koc.extensions import db
from koc.submissions.models import (
    METRICS,
    MediaUpload,
    MetricSnapshot,
    Submission,
    SubmissionFlag,
    SubmissionStatus,
)
from koc.submissions.services.anomalies import check_anomalies
from koc.submissions.services.ledger import sync_points
from koc.submissions.services.post_urls import NotAUrl, canonical_post_url
from koc.submissions.services.rules import score_of
from koc.submissions.services.scoring import interactions_of
from koc.submissions.services.uploads import verify_media


def create_submission(member_id: int, values: dict[str, Any], *,
                      kit_visible: Callable[[int], bool],
                      storage: Storage | None = None) -> Submission:
    """Record a reported post. `kit_visible(kit_id)` says whether the member may use that kit.

    With `storage`, attached media are checked against the store (size and first bytes).
    """
    try:
        canonical = canonical_post_url(values["post_url"], values["platform"])
    except NotAUrl as exc:
        raise field_error(422, "post_url", str(exc)) from exc
    if len(canonical) > 1000:
        raise field_error(422, "post_url", "is too long once normalised")

    kit_id = values.get("kit_id")
    if kit_id is not None and not kit_visible(kit_id):
        raise field_error(422, "kit_id", "no such kit open to you")

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
        raise field_error(422, "media_upload_ids", "unknown or already attached upload")
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
