"""The submissions' part of forgetting and exporting a person (see koc.members.services.privacy).

Forgetting rejects the posts still waiting for review, blanks captions, post URLs and
reviewers' notes about the person's posts; engagement
snapshots and the points ledger stay (numbers, no personal data), so totals stay right. Stored
media are deleted after the commit by `koc.submissions.tasks.delete_member_media`, which is
safe to re-run (forgetting again sends it again).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa

from koc.core.jobs import enqueue_after_commit
from koc.core.signals import person_export_requested, person_forgotten
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import (
    FollowerCheck,
    MediaUpload,
    MetricSnapshot,
    PointsEntry,
    ReviewEvent,
    Submission,
    SubmissionStatus,
)
from koc.submissions.services.review import review_submission


@person_forgotten.connect
def _forget_posts(_sender: object, *, member_id: int, **_: object) -> None:
    # Posts still waiting for review can no longer be judged (no link, no media): rejected,
    # which books nothing, so they leave the queue. Decided ones keep their points.
    waiting = db.session.scalars(
        sa.select(Submission).where(Submission.member_id == member_id,
                                    Submission.status == SubmissionStatus.pending.value)
        .order_by(Submission.id).with_for_update()).all()
    for submission in waiting:
        review_submission(submission, decision="reject", rating=None, reason="other",
                          note=None, staff_id=None)
    mine = sa.select(Submission.id).where(Submission.member_id == member_id)
    # canonical_url is unique: the row's own id keeps it so; post_id goes, so the public post
    # no longer points at this row.
    db.session.execute(
        sa.update(Submission).where(Submission.member_id == member_id)
        .values(caption="", post_url="", post_id=None, review_reason=None,
                canonical_url=sa.literal("forgotten:") + sa.cast(Submission.id, sa.String)))
    db.session.execute(sa.update(ReviewEvent).where(ReviewEvent.submission_id.in_(mine))
                       .values(note=None))
    db.session.execute(sa.update(FollowerCheck).where(FollowerCheck.member_id == member_id)
                       .values(note=None))
    db.session.execute(sa.update(MediaUpload).where(MediaUpload.member_id == member_id)
                       .values(filename="forgotten", phash=None))
    enqueue_after_commit("koc.submissions.tasks.delete_member_media", member_id)


def delete_member_media(member_id: int, storage: Any) -> int:
    """Delete a member's stored media, objects first then rows; the caller commits. A second
    run finds nothing (or what a crash left) and finishes the job."""
    rows = db.session.scalars(sa.select(MediaUpload).where(MediaUpload.member_id == member_id)
                              .order_by(MediaUpload.id)).all()
    for row in rows:
        storage.delete(row.storage_key)
    for row in rows:
        db.session.delete(row)
    db.session.flush()
    return len(rows)


def _snapshot(s: MetricSnapshot) -> dict[str, Any]:
    return {"id": s.id, **s.metrics, "source": s.source, "state": s.state,
            "recorded_at": s.recorded_at, "decided_at": s.decided_at}


def _media(m: MediaUpload) -> dict[str, Any]:
    return {"id": m.id, "filename": m.filename, "content_type": m.content_type,
            "size": m.size, "created_at": m.created_at, "sha256": m.sha256,
            "submission_id": m.submission_id}


@person_export_requested.connect
def _export_posts(_sender: object, *, member: Member, **_: object) -> dict[str, Any]:
    submissions = db.session.scalars(sa.select(Submission).where(
        Submission.member_id == member.id).order_by(Submission.id)).all()
    ledger = db.session.scalars(sa.select(PointsEntry).where(
        PointsEntry.member_id == member.id).order_by(PointsEntry.id)).all()
    checks = db.session.scalars(sa.select(FollowerCheck).where(
        FollowerCheck.member_id == member.id).order_by(FollowerCheck.id)).all()
    media = db.session.scalars(sa.select(MediaUpload).where(
        MediaUpload.member_id == member.id).order_by(MediaUpload.id)).all()
    return {
        "submissions": [
            {"id": s.id, "kit_id": s.kit_id, "platform": s.platform, "post_url": s.post_url,
             "caption": s.caption, "posted_at": s.posted_at, "status": s.status,
             "rating": s.rating, "review_reason": s.review_reason,
             "reject_reason": s.reject_reason, "reviewed_at": s.reviewed_at,
             "score": s.score, "score_breakdown": s.score_breakdown,
             "created_at": s.created_at,
             "snapshots": [_snapshot(snap) for snap in s.snapshots],
             "media": [_media(m) for m in s.media]}
            for s in submissions],
        "media": [_media(m) for m in media if m.submission_id is None],
        "ledger": [{"id": e.id, "source": e.source, "reference": e.reference,
                    "points": e.points, "description": e.description,
                    "created_at": e.created_at, "submission_id": e.submission_id}
                   for e in ledger],
        "follower_checks": [{"id": c.id, "social_account_id": c.social_account_id,
                             "source": c.source, "declared": c.declared,
                             "previous": c.previous, "confirmed": c.confirmed,
                             "note": c.note, "created_at": c.created_at} for c in checks],
    }
