"""Submissions HTTP API: thin handlers over the topic modules of submissions.services."""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from flask import current_app
from flask_smorest import abort

from koc.assets.services import kits
from koc.core.auth import (
    current_member_id,
    current_principal,
    member_required,
    staff_or_member,
    staff_required,
)
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.idempotency import idempotent
from koc.core.jobs import start_job
from koc.core.jobs.api import JobCreatedSchema
from koc.core.pagination import Blueprint, SelectPage
from koc.core.storage import get_storage
from koc.members.models import SocialAccount
from koc.members.services.roster import get_member
from koc.submissions.models import MetricSnapshot
from koc.submissions.schemas import (
    BulkReviewInSchema,
    BulkReviewOutSchema,
    FlagOutSchema,
    FollowersInSchema,
    MediaUploadCreatedSchema,
    MediaUploadInSchema,
    MetricsDecisionInSchema,
    MetricsImportFileSchema,
    MetricsSchema,
    PointsEntrySchema,
    ReopenInSchema,
    ReviewEventOutSchema,
    ReviewInSchema,
    ScoringPreviewInSchema,
    ScoringPreviewOutSchema,
    ScoringRulesInSchema,
    ScoringRulesOutSchema,
    ScoringVersionOutSchema,
    SnapshotOutSchema,
    SocialAccountAudienceSchema,
    SubmissionInSchema,
    SubmissionOutSchema,
    SubmissionQuerySchema,
)
from koc.submissions.services import (
    followers,
    ledger,
    posts,
    privacy,  # noqa: F401 - connects the person_forgotten / person_export_requested receivers
    review,
    rules,
    uploads,
)
from koc.tiers.services.rules import tier_ranks

blp = Blueprint("submissions", __name__, description="Submissions, review and points")
MAX_IMPORT_BYTES = 64 * 1024 * 1024


@blp.post("/uploads")
@blp.arguments(MediaUploadInSchema)
@blp.response(201, MediaUploadCreatedSchema)
@member_required
def create_upload(data: dict):
    settings = current_app.config["KOC_SETTINGS"]
    limits = uploads.UploadLimits(
        image_bytes=settings.max_image_upload_bytes, video_bytes=settings.max_video_upload_bytes,
        daily_count=settings.upload_daily_count, daily_bytes=settings.upload_daily_bytes)
    upload, request = uploads.create_media_upload(
        current_member_id(), **data, storage=get_storage(), limits=limits,
        url_ttl=settings.upload_url_ttl, now=utcnow(),
    )
    return {"upload_id": upload.id,
            "upload": {"method": request.method, "url": request.url, "headers": request.headers}}


@blp.post("/submissions")
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"},
                      "description": "Retries with the same key and body replay the result."}])
@member_required
@idempotent
@blp.arguments(SubmissionInSchema)
@blp.response(201, SubmissionOutSchema)
def create_submission(data: dict):
    # The member and the rule versions came with the token lookup (koc.core.auth), and the
    # tier ranks from the process's cache: neither costs a round trip here.
    member = get_member(current_member_id())

    def kit_visible(kit_id: int) -> bool:
        try:
            kits.get_kit_for_member(kit_id, member, tier_ranks())
        except DomainError:
            return False
        return True

    storage = get_storage() if data["media_upload_ids"] else None
    settings = current_app.config["KOC_SETTINGS"]
    return posts.create_submission(member.id, data, kit_visible=kit_visible, storage=storage,
                                   resolve_short_links=settings.resolve_short_links)


@blp.get("/submissions")
@blp.arguments(SubmissionQuerySchema, location="query")
@blp.response(200, SubmissionOutSchema(many=True))
@blp.paginate(SelectPage)
@staff_or_member("viewer")
def list_submissions(query: dict):
    principal = current_principal()
    if principal.is_member:
        # Members see their own, whatever member_id they ask for; flags are for reviewers.
        query["member_id"] = principal.member_id
        query.pop("flagged", None)
        query.pop("unconfirmed_metrics", None)
    return posts.submissions_query(**query)


@blp.get("/submissions/<id:submission_id>")
@blp.response(200, SubmissionOutSchema)
@staff_or_member("viewer")
def get_submission(submission_id: int):
    return posts.get_submission(submission_id, member_id=current_principal().member_id)


@blp.post("/submissions/<id:submission_id>/metrics")
@blp.arguments(MetricsSchema)
@blp.response(201, SubmissionOutSchema)
@staff_or_member("admin")
def add_metrics(data: dict, submission_id: int):
    principal = current_principal()
    submission = posts.get_submission(submission_id, member_id=principal.member_id,
                                         lock=True)
    posts.add_metrics(submission, data, source="member" if principal.is_member else "staff",
                      tolerance=current_app.config["KOC_SETTINGS"].import_agreement_tolerance)
    return submission


@blp.post("/submissions/<id:submission_id>/metrics/<id:snapshot_id>/decision")
@blp.arguments(MetricsDecisionInSchema)
@blp.response(200, SubmissionOutSchema)
@staff_required("reviewer")
def decide_metrics(data: dict, submission_id: int, snapshot_id: int):
    """Confirm a member's own figures reported after approval (they count from now on; the
    points follow as one ledger adjustment with the note as its reason), or dismiss them."""
    submission = posts.get_submission(submission_id, lock=True)
    posts.decide_metrics(submission, snapshot_id, **data,
                         staff_id=current_principal().staff_id)
    return submission


@blp.get("/social-accounts/<id:account_id>")
@blp.response(200, SocialAccountAudienceSchema)
@staff_required("viewer")
def social_account(account_id: int):
    """A member's social account with its declared and confirmed followers and their log."""
    account = followers.get_account(account_id)
    return _with_checks(account)


@blp.post("/social-accounts/<id:account_id>/followers")
@blp.arguments(FollowersInSchema)
@blp.response(200, SocialAccountAudienceSchema)
@staff_required("reviewer")
def confirm_followers(data: dict, account_id: int):
    """Confirm or correct an account's follower count; logged with who and when. Approved posts
    on that platform are re-scored; the tier follows at the next recalculation."""
    account = followers.get_account(account_id)
    followers.confirm_followers(account, data["followers"], source="reviewer",
                                staff_id=current_principal().staff_id, now=utcnow(),
                                submission_id=data["submission_id"], note=data["note"])
    return _with_checks(account)


def _with_checks(account: SocialAccount) -> dict:
    fields = ("id", "member_id", "platform", "handle", "url", "followers", "confirmed_followers",
              "followers_source", "followers_confirmed_at", "followers_confirmed_by_staff_id")
    return {**{name: getattr(account, name) for name in fields},
            "checks": followers.checks_of(account.id)}


@blp.get("/submissions/<id:submission_id>/metrics")
@blp.response(200, SnapshotOutSchema(many=True))
@blp.paginate(SelectPage)
@staff_or_member("viewer")
def metrics_history(submission_id: int):
    """Every engagement snapshot of a submission, newest first."""
    posts.get_submission(submission_id, member_id=current_principal().member_id)
    return (sa.select(MetricSnapshot).where(MetricSnapshot.submission_id == submission_id)
            .order_by(MetricSnapshot.id.desc()))


@blp.get("/submissions/<id:submission_id>/flags")
@blp.response(200, FlagOutSchema(many=True))
@staff_required("viewer")
def submission_flags(submission_id: int):
    return posts.get_submission(submission_id).flags


@blp.get("/submissions/<id:submission_id>/events")
@blp.response(200, ReviewEventOutSchema(many=True))
@staff_required("viewer")
def review_events(submission_id: int):
    """The review log: each decision and re-opening, oldest first."""
    return posts.get_submission(submission_id).events


@blp.post("/submissions/<id:submission_id>/review")
@blp.arguments(ReviewInSchema)
@blp.response(200, SubmissionOutSchema)
@staff_required("reviewer")
def review_submission(data: dict, submission_id: int):
    submission = review.review_submission(
        posts.get_submission(submission_id, lock=True), **data,
        staff_id=current_principal().staff_id, storage=get_storage(),
    )
    return submission


@blp.post("/submissions/bulk-review")
@blp.arguments(BulkReviewInSchema)
@blp.response(200, BulkReviewOutSchema)
@staff_required("reviewer")
def bulk_review(data: dict):
    """Approve or reject up to 200 pending submissions with one decision, all or nothing."""
    reviewed = review.bulk_review(data.pop("ids"), **data,
                                    staff_id=current_principal().staff_id, storage=get_storage())
    return {"reviewed": len(reviewed), "submissions": reviewed}


@blp.post("/submissions/<id:submission_id>/reopen")
@blp.arguments(ReopenInSchema)
@blp.response(200, SubmissionOutSchema)
@staff_required("reviewer")
def reopen(data: dict, submission_id: int):
    """Put a decided submission back in the queue; the log keeps the decision it undid."""
    submission = review.reopen_submission(
        posts.get_submission(submission_id, lock=True), note=data["note"],
        staff_id=current_principal().staff_id,
    )
    return submission


@blp.post("/submissions/metrics/import")
@blp.arguments(MetricsImportFileSchema, location="files")
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def import_metrics(files: dict):
    """CSV with submission_id or post_url and views, likes, comments, saves, shares."""
    key = _store_import(files["file"], "metrics", "Metrics files over 64 MiB must be split.")
    job = start_job("koc.submissions.tasks.import_metrics_task", kind="submissions.metrics_import",
                    payload={"storage_key": key}, staff_id=current_principal().staff_id)
    return {"job_id": job.id}


@blp.post("/social-accounts/followers/import")
@blp.arguments(MetricsImportFileSchema, location="files")
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def import_followers(files: dict):
    """CSV of follower counts from a trusted source: social_account_id, or platform and handle;
    then followers (and an optional note). Each count confirms the account's audience."""
    key = _store_import(files["file"], "followers", "Follower files over 64 MiB must be split.")
    job = start_job("koc.submissions.tasks.import_followers_task",
                    kind="submissions.followers_import", payload={"storage_key": key},
                    staff_id=current_principal().staff_id)
    return {"job_id": job.id}


def _store_import(upload, kind: str, too_large: str) -> str:
    data = upload.read(MAX_IMPORT_BYTES + 1)
    if len(data) > MAX_IMPORT_BYTES:
        abort(413, message=too_large, errors={"files": {"file": ["too large"]}})
    key = f"imports/{kind}/{uuid.uuid4().hex}.csv"
    # The worker reads the file from the object store, so any worker host can run the job.
    get_storage().put_bytes(key, data, content_type="text/csv")
    return key


@blp.get("/scoring/rules")
@blp.response(200, ScoringRulesOutSchema)
@staff_required("viewer")
def get_scoring_rules():
    row = rules.scoring_rules_row()
    version, current = rules.current_scoring()
    return {"version": version, "rules": current,
            "created_at": row.created_at if row is not None else None}


@blp.put("/scoring/rules")
@blp.arguments(ScoringRulesInSchema)
@blp.response(200, ScoringRulesOutSchema)
@staff_required("admin")
def put_scoring_rules(data: dict):
    """Save a new rules version. Approved scores keep the version they were approved under."""
    row = rules.save_scoring_rules(data["rules"], staff_id=current_principal().staff_id)
    return row


@blp.get("/scoring/rules/versions")
@blp.response(200, ScoringVersionOutSchema(many=True))
@blp.paginate(SelectPage)
@staff_required("viewer")
def scoring_rules_versions():
    """Every saved scoring rules version, newest first, for the history and its restore.

    Restoring an older version is saving its rules again with PUT /scoring/rules."""
    return rules.scoring_versions()


@blp.post("/scoring/rules/preview")
@blp.arguments(ScoringPreviewInSchema)
@blp.response(200, ScoringPreviewOutSchema)
@staff_required("admin")
def preview_scoring_rules(data: dict):
    """The worked breakdown of a sample post under the rules sent; saves nothing."""
    candidate = data["rules"]
    audience = candidate["audience"]
    if audience["min_followers"] > audience["reference_followers"]:
        raise DomainError(422, "min_followers must not exceed reference_followers.", errors={
            "json": {"rules": {"audience": {"min_followers": [
                "must not exceed reference_followers"]}}}})
    total, breakdown = rules.preview_score(candidate, **data["sample"], posted_at=utcnow())
    return {"score": float(total), "score_breakdown": breakdown}


@blp.get("/me/points")
@blp.response(200, PointsEntrySchema(many=True))
@blp.paginate(SelectPage)
@member_required
def my_points():
    return ledger.ledger_query(current_principal().member_id)

