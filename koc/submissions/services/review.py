"""Reviewers' decisions: approve or reject, in bulk, and re-opening a decision."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.db import utcnow
from koc.core.errors import DomainError, field_error
from koc.core.storage import Storage
from koc.extensions import db
from koc.submissions.models import (
    ReviewEvent,
    Submission,
    SubmissionStatus,
)
from koc.submissions.services.ledger import sync_points
from koc.submissions.services.posts import canonical_for, find_same_post
from koc.submissions.services.rules import score_of
from koc.submissions.services.uploads import changed_media


def review_submission(submission: Submission, *, decision: str, rating: int | None,
                      reason: str | None, staff_id: int | None,
                      note: str | None = None, post_url: str | None = None,
                      storage: Storage | None = None) -> Submission:
    """Approve or reject a pending submission. Call with the submission locked.

    A submission still holding a short link is approved only with the post's full URL
    (`post_url`), checked against every other submission so that one post earns once. With
    `storage`, an approval first checks that each attached file is still the one fixed at
    submission (a presigned URL stays valid for a while: bytes swapped through it are refused).
    """
    if submission.status != SubmissionStatus.pending:
        raise DomainError(409, f"This submission was already {submission.status}.")
    if decision == "reject" and not reason:
        raise field_error(422, "reason", "a reason is required to reject")
    if decision == "approve" and storage is not None and submission.media:
        changed = changed_media(submission.media, storage)
        if changed:
            raise DomainError(
                409, f"Media {changed} changed after the submission was made; reject it "
                     "(reason invalid_proof) or ask the member to submit again.",
                errors={"media_upload_ids": [f"upload {i} changed after submission"
                                             for i in changed]})
    if decision == "approve" and submission.url_unresolved:
        _resolve_url(submission, post_url)
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
                note: str | None, staff_id: int | None,
                storage: Storage | None = None) -> list[Submission]:
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
    if decision == "approve":
        short = [s.id for s in found if s.url_unresolved]
        if short:
            raise DomainError(422, f"Short links need their full URL, one by one: {short}.",
                              errors={"json": {"ids": [f"short link, approve it on its own: {i}"
                                                       for i in short]}})
    by_id = {s.id: s for s in found}
    return [review_submission(by_id[i], decision=decision, rating=rating, reason=reason,
                              note=note, staff_id=staff_id, storage=storage) for i in ids]


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


def _resolve_url(submission: Submission, post_url: str | None) -> None:
    if not post_url:
        raise field_error(422, "post_url", "this submission is a short link: give the post's "
                                           "full URL to approve it")
    canonical, post_id, short = canonical_for(post_url, submission.platform)
    if short:
        raise field_error(422, "post_url", "is a short link too: open it and copy the full URL")
    existing_id = find_same_post(canonical, submission.platform, post_id,
                                 excluding=submission.id)
    if existing_id is not None:
        raise DomainError(
            409, f"This post was already submitted (submission {existing_id}); reject this "
                 "one as a duplicate.",
            errors={"json": {"post_url": [f"already submitted as submission {existing_id}"]},
                    "existing_submission_id": existing_id})
    submission.canonical_url, submission.post_id = canonical, post_id
    submission.url_unresolved = False
    try:
        with db.session.begin_nested():
            db.session.flush()
    except IntegrityError as exc:
        raise DomainError(409, "This post was submitted at the same moment; reload.", errors={
            "json": {"post_url": ["already submitted"]}}) from exc
