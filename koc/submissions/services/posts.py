"""Reported posts: creating one (a post earns once, however linked), reading them, new metrics."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from koc.core.db import as_loaded, mapped_columns, utcnow
from koc.core.errors import DomainError, field_error
from koc.core.jobs import enqueue_after_commit
from koc.core.storage import Storage
from koc.extensions import db
from koc.submissions.models import (
    COUNTED_STATES,
    METRICS,
    MediaUpload,
    MetricSnapshot,
    ReviewEvent,
    Submission,
    SubmissionFlag,
    SubmissionStatus,
)
from koc.submissions.services.anomalies import check_anomalies
from koc.submissions.services.ledger import sync_points
from koc.submissions.services.post_urls import (
    NotAUrl,
    canonical_post_url,
    check_platform,
    extract_url,
    is_short_link,
    post_id_of,
)
from koc.submissions.services.rules import score_of
from koc.submissions.services.scoring import interactions_of
from koc.submissions.services.uploads import verify_media


def canonical_for(text: str, platform: str, *,
                  field: str = "post_url") -> tuple[str, str | None, bool]:
    """(canonical URL, post id, still a short link) of a post URL or share text, or a 422."""
    try:
        canonical = canonical_post_url(text, platform)
        check_platform(canonical, platform)
    except NotAUrl as exc:
        raise field_error(422, field, str(exc)) from exc
    if len(canonical) > 1000:
        raise field_error(422, field, "is too long once normalised")
    return canonical, post_id_of(canonical), is_short_link(canonical)


def find_same_post(canonical: str, platform: str, post_id: str | None, *,
                   excluding: int | None = None) -> int | None:
    """The submission that is this post already, by canonical URL or platform post id."""
    same = Submission.canonical_url == canonical
    if post_id is not None:
        same = sa.or_(same, sa.and_(Submission.platform == platform,
                                    Submission.post_id == post_id))
    stmt = sa.select(Submission.id).where(same).order_by(Submission.id).limit(1)
    if excluding is not None:
        stmt = stmt.where(Submission.id != excluding)
    return db.session.scalar(stmt)


def create_submission(member_id: int, values: dict[str, Any], *,
                      kit_visible: Callable[[int], bool],
                      storage: Storage | None = None,
                      resolve_short_links: bool = False,
                      savepoint: bool = False) -> Submission:
    """Record a reported post. `kit_visible(kit_id)` says whether the member may use that kit.

    With `storage`, attached media are checked against the store (size and first bytes). A
    short link is stored unresolved, and the reviewer gives the full URL when approving; with
    `resolve_short_links`, a task follows it to its post after the commit (never inside the
    request: the platform's answer may take seconds, and the transaction would wait for it).
    """
    platform = values["platform"]
    canonical, post_id, short = canonical_for(values["post_url"], platform)

    kit_id = values.get("kit_id")
    if kit_id is not None and not kit_visible(kit_id):
        raise field_error(422, "kit_id", "no such kit open to you")

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
        verify_media(media, storage, now=utcnow())

    now = utcnow()
    values_of_submission = {
        "member_id": member_id, "kit_id": kit_id, "platform": platform,
        "post_url": values["post_url"], "canonical_url": canonical, "post_id": post_id,
        "url_unresolved": short, "caption": values.get("caption", ""),
        "posted_at": values["posted_at"], "status": SubmissionStatus.pending.value,
        "interactions": interactions_of(values["metrics"]), "created_at": now,
    }
    # Before review the member's figures are what the reviewer judges, so they count.
    values_of_snapshot = {"source": "member", "state": "counted", "recorded_at": now,
                          "history_pending": True, **dict.fromkeys(METRICS, 0),
                          **values["metrics"]}
    # No look-up first: the unique keys on the canonical URL and the platform's post id decide,
    # also between two members sending the same post at the same moment. A duplicate ends the
    # request with 409, which rolls back everything it did, so no savepoint is kept around the
    # insert (`savepoint=True` for callers that go on after a duplicate, like an import).
    try:
        if savepoint:
            with db.session.begin_nested():
                submission, snapshot = _insert_submission(values_of_submission,
                                                          values_of_snapshot)
        else:
            submission, snapshot = _insert_submission(values_of_submission, values_of_snapshot)
    except IntegrityError as exc:
        if not savepoint:
            db.session.rollback()
        existing_id = find_same_post(canonical, platform, post_id)
        if existing_id is None:
            raise
        raise _duplicate(existing_id) from exc
    for upload in media:
        upload.submission_id = submission.id  # written with the commit
    sa.orm.attributes.set_committed_value(submission, "media", media)
    # What needs no history is checked now; the checks against the member's other posts inform
    # reviewers and decide nothing here, so they run after the commit: the snapshot is marked
    # and a periodic sweep (anomalies.check_pending_history) takes it, with no task sent here.
    check_anomalies(submission, snapshot, with_history=False)
    _hash_images_after_commit(media)
    if short and resolve_short_links:
        enqueue_after_commit("koc.submissions.tasks.resolve_short_link_task", submission.id)
    return submission


# What a new submission and its first snapshot are written with (all else is NULL or unset).
_SUBMISSION_KEYS = ("member_id", "kit_id", "platform", "post_url", "canonical_url", "post_id",
                    "url_unresolved", "caption", "posted_at", "status", "interactions",
                    "created_at")
_SNAPSHOT_KEYS = (*METRICS, "source", "state", "recorded_at", "history_pending")
# What the INSERT reads back: the new id, and the times as the database stores them (UTC).
# Every other column is what was written, or NULL; reading all thirty back cost more than the
# statement.
_SUBMISSION_RETURNS = ("id", "posted_at", "created_at")
# Built once per dialect: every submission runs them. On PostgreSQL the submission and its first
# snapshot go in one statement (a data-modifying CTE); SQLite has none, so it sends two.
_INSERTS: dict[str, tuple[Any, Any]] = {}


def _insert_statements(dialect: str) -> tuple[Any, Any]:
    found = _INSERTS.get(dialect)
    if found is None:
        submissions = cast(sa.Table, Submission.__table__)
        snapshots = cast(sa.Table, MetricSnapshot.__table__)
        insert_submission = sa.insert(submissions).values(
            {key: sa.bindparam(key, type_=submissions.c[key].type) for key in _SUBMISSION_KEYS}
        ).returning(*(submissions.c[key] for key in _SUBMISSION_RETURNS))
        snapshot_params = [sa.bindparam(f"snapshot_{key}", type_=snapshots.c[key].type)
                           for key in _SNAPSHOT_KEYS]
        if dialect == "postgresql":
            new = insert_submission.cte("new_submission")
            new_snapshot = (
                sa.insert(snapshots)
                .from_select(["submission_id", *_SNAPSHOT_KEYS],
                             sa.select(new.c.id, *snapshot_params))
                .returning(snapshots.c.id, snapshots.c.submission_id).cte("new_snapshot"))
            found = (sa.select(*new.c, new_snapshot.c.id.label("snapshot_id"))
                     .join_from(new, new_snapshot, new_snapshot.c.submission_id == new.c.id),
                     None)
        else:
            found = (insert_submission, sa.insert(snapshots).values(
                submission_id=sa.bindparam("submission_id"),
                **dict(zip(_SNAPSHOT_KEYS, snapshot_params, strict=True)),
            ).returning(snapshots.c.id))
        found = _INSERTS.setdefault(dialect, found)
    return found


def _insert_submission(submission_values: dict[str, Any],
                       snapshot_values: dict[str, Any]) -> tuple[Submission, MetricSnapshot]:
    """Insert a new submission and its first snapshot with Core statements (the unit of work's
    bookkeeping cost more than the round trips) and put both into the session as loaded rows."""
    connection = db.session.connection()
    first, second = _insert_statements(connection.dialect.name)
    snapshot_params = {f"snapshot_{key}": value for key, value in snapshot_values.items()}
    if second is None:
        row = connection.execute(first, {**submission_values, **snapshot_params}).one()
        snapshot_id = row.snapshot_id
    else:
        row = connection.execute(first, submission_values).one()
        snapshot_id = connection.execute(
            second, {**snapshot_params, "submission_id": row.id}).scalar_one()
    submission = as_loaded(db.session(), Submission, {
        **dict.fromkeys(mapped_columns(Submission)[0]), **submission_values,
        **dict(zip(_SUBMISSION_RETURNS, row[:len(_SUBMISSION_RETURNS)], strict=True))})
    snapshot = as_loaded(db.session(), MetricSnapshot, {
        **snapshot_values, "id": snapshot_id, "submission_id": submission.id,
        "decided_at": None, "decided_by_staff_id": None, "confirmed_by_snapshot_id": None,
        "import_ref": None})
    for name, value in (("snapshots", [snapshot]), ("flags", []), ("events", [])):
        sa.orm.attributes.set_committed_value(submission, name, value)
    sa.orm.attributes.set_committed_value(snapshot, "submission", submission)
    return submission, snapshot


def short_link_to_resolve(submission_id: int) -> tuple[str, str] | None:
    """(the URL inside the member's text, platform) of a submission still on a short link."""
    row = db.session.execute(
        sa.select(Submission.post_url, Submission.platform)
        .where(Submission.id == submission_id, Submission.url_unresolved.is_(True))).first()
    return (extract_url(row.post_url), row.platform) if row is not None else None


def apply_resolved_link(submission_id: int, resolved: str | None, *,
                        now: datetime | None = None) -> str:
    """Key a short-link submission on the post its link led to. Returns what happened:
    `resolved`, `duplicate` (flagged for the reviewer, who rejects it: one post earns once),
    `unresolved` (the link led to no post: the reviewer gives the full URL) or `done` (already
    resolved, by a reviewer or an earlier run)."""
    submission = get_submission(submission_id, lock=True)
    if not submission.url_unresolved:
        return "done"
    try:
        target = canonical_post_url(resolved, submission.platform) if resolved else None
        if target is not None:
            check_platform(target, submission.platform)
    except NotAUrl:
        target = None
    # Only a link that lands on a post counts: a login wall or an error page names no post,
    # and taking it as the key would make unrelated links clash.
    post_id = post_id_of(target) if target is not None else None
    if target is None or post_id is None or len(target) > 1000:
        return "unresolved"
    existing_id = find_same_post(target, submission.platform, post_id, excluding=submission.id)
    if existing_id is None:
        submission.canonical_url, submission.post_id = target, post_id
        submission.url_unresolved = False
        try:
            with db.session.begin_nested():
                db.session.flush()
            return "resolved"
        except IntegrityError:
            # The same post arrived under its full URL while the link was being followed.
            db.session.refresh(submission)
            existing_id = find_same_post(target, submission.platform, post_id,
                                         excluding=submission.id)
    flag = SubmissionFlag(submission_id=submission.id, kind="duplicate_post",
                          reference=f"post:{post_id}"[:64], related_submission_id=existing_id,
                          detail={"resolved_url": target}, created_at=now or utcnow())
    try:
        with db.session.begin_nested():
            db.session.add(flag)
    except IntegrityError:
        pass  # flagged by an earlier run
    return "duplicate"


def _hash_images_after_commit(media: Iterable[MediaUpload]) -> None:
    for upload in media:
        if upload.fixed_at is not None:
            enqueue_after_commit("koc.submissions.tasks.fingerprint_media_task", upload.id)
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
                      kit_id: int | None = None, flagged: bool | None = None,
                      held: bool | None = None,
                      unconfirmed_metrics: bool | None = None) -> sa.Select:
    stmt = sa.select(Submission).order_by(Submission.id.desc())
    if unconfirmed_metrics is not None:
        waiting = sa.exists().where(MetricSnapshot.submission_id == Submission.id,
                                    MetricSnapshot.state == "unconfirmed")
        stmt = stmt.where(waiting if unconfirmed_metrics else ~waiting)
    if held is not None:
        stmt = stmt.where(Submission.held_at.is_not(None) if held else Submission.held_at.is_(None))
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


def best_posts(member_id: int, *, limit: int = 5) -> list[Submission]:
    """A member's approved posts with the most counted interactions: what tier rules read."""
    return list(db.session.scalars(
        sa.select(Submission)
        .where(Submission.member_id == member_id,
               Submission.status == SubmissionStatus.approved.value)
        .order_by(Submission.interactions.desc(), Submission.id.desc()).limit(limit)
        .options(sa.orm.selectinload(Submission.snapshots))))


def counted_snapshot(submission: Submission) -> MetricSnapshot | None:
    counted = [s for s in submission.snapshots if s.state in COUNTED_STATES]
    return counted[-1] if counted else None


def review_queue_query() -> sa.Select:
    """What waits for a reviewer: pending submissions, and approved ones held on new figures."""
    return sa.select(Submission).where(sa.or_(
        Submission.status == SubmissionStatus.pending.value, Submission.held_at.is_not(None)))


def add_metrics(submission: Submission, metrics: dict[str, int], *, source: str,
                import_ref: str | None = None, tolerance: float = 0.1,
                now: datetime | None = None) -> MetricSnapshot:
    """A new engagement snapshot; what counts is re-scored and the ledger follows.

    Figures from staff or a trusted import count at once. A member's own figures after approval
    are recorded and shown but count only once staff confirm them, or once an import agrees
    within `tolerance` (a fraction); if they trip an anomaly rule the submission is held for
    review. Call with the submission locked (get_submission(lock=True)).
    """
    now = now or utcnow()
    approved = submission.status == SubmissionStatus.approved
    state = "unconfirmed" if source == "member" and approved else "counted"
    snapshot = MetricSnapshot(source=source, state=state, recorded_at=now, import_ref=import_ref,
                              **{name: metrics.get(name, 0) for name in METRICS})
    submission.snapshots.append(snapshot)
    db.session.flush()
    if source == "import":
        for waiting in submission.unconfirmed_snapshots:
            if _agrees(waiting.metrics, snapshot.metrics, tolerance):
                waiting.state = "confirmed"
                waiting.decided_at = now
                waiting.confirmed_by_snapshot_id = snapshot.id
    _recount(submission, event=f"snapshot:{snapshot.id}",
             description=f"new {source} metrics on submission {submission.id}")
    flags = check_anomalies(submission, snapshot)
    if state == "unconfirmed" and flags:
        submission.held_at = submission.held_at or now
    if not submission.unconfirmed_snapshots:
        submission.held_at = None
    return snapshot


def _agrees(reported: dict[str, int], trusted: dict[str, int], tolerance: float) -> bool:
    return all(abs(reported[name] - trusted[name]) <= tolerance * max(trusted[name], 1)
               for name in METRICS)


def _recount(submission: Submission, *, event: str, description: str) -> None:
    """Bring interactions, score and the ledger in line with the snapshots that count."""
    submission.interactions = interactions_of(submission.latest_metrics)
    if submission.status == SubmissionStatus.approved:
        total, breakdown, _version = score_of(submission, submission.scoring_version)
        submission.score, submission.score_breakdown = total, breakdown
        sync_points(submission, event=event, description=description)
    db.session.flush()


def decide_metrics(submission: Submission, snapshot_id: int, *, decision: str,
                   note: str | None, staff_id: int | None,
                   now: datetime | None = None) -> MetricSnapshot:
    """Staff confirm a member's unconfirmed figures (they count from now on, and the points
    follow as one ledger adjustment giving the reason) or dismiss them. Call locked."""
    now = now or utcnow()
    snapshot = next((s for s in submission.snapshots if s.id == snapshot_id), None)
    if snapshot is None:
        raise DomainError(404, "No such metrics snapshot on this submission.")
    if snapshot.state != "unconfirmed":
        raise DomainError(409, f"These metrics are {snapshot.state} already.")
    snapshot.state = "confirmed" if decision == "confirm" else "dismissed"
    snapshot.decided_at = now
    snapshot.decided_by_staff_id = staff_id
    event = ReviewEvent(submission=submission, staff_id=staff_id,
                        action=f"{decision}_metrics", rating=submission.rating,
                        note=note, created_at=now)
    db.session.add(event)
    db.session.flush()
    reason = note or "metrics confirmed by a reviewer"
    _recount(submission, event=f"event:{event.id}",
             description=f"submission {submission.id}: {reason}")
    event.score = submission.score
    if not submission.unconfirmed_snapshots:
        submission.held_at = None
    return snapshot
