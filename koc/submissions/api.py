"""Submissions HTTP API: thin handlers over submissions.services."""

from __future__ import annotations

from flask import current_app

from koc.assets.services import get_kit_for_member
from koc.core.auth import current_principal, member_required, staff_or_member, staff_required
from koc.core.errors import DomainError
from koc.core.idempotency import idempotent
from koc.core.pagination import Blueprint, SelectPage
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.services import get_member
from koc.submissions import services
from koc.submissions.schemas import (
    MediaUploadCreatedSchema,
    MediaUploadInSchema,
    MetricsSchema,
    PointsEntrySchema,
    ReviewInSchema,
    SubmissionInSchema,
    SubmissionOutSchema,
    SubmissionQuerySchema,
)
from koc.tiers.services import tier_ranks

blp = Blueprint("submissions", __name__, description="Submissions, review and points")


@blp.post("/uploads")
@blp.arguments(MediaUploadInSchema)
@blp.response(201, MediaUploadCreatedSchema)
@member_required
def create_upload(data: dict):
    settings = current_app.config["KOC_SETTINGS"]
    upload, request = services.create_media_upload(
        current_principal().member_id, **data, storage=get_storage(),
        max_bytes=settings.max_upload_bytes, url_ttl=settings.upload_url_ttl,
    )
    db.session.commit()
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
    member = get_member(current_principal().member_id)
    ranks = tier_ranks()

    def kit_visible(kit_id: int) -> bool:
        try:
            get_kit_for_member(kit_id, member, ranks)
        except DomainError:
            return False
        return True

    return services.create_submission(member.id, data, kit_visible=kit_visible)


@blp.get("/submissions")
@blp.arguments(SubmissionQuerySchema, location="query")
@blp.response(200, SubmissionOutSchema(many=True))
@blp.paginate(SelectPage)
@staff_or_member("viewer")
def list_submissions(query: dict):
    principal = current_principal()
    if principal.is_member:
        # Members see their own, whatever member_id they ask for.
        query["member_id"] = principal.member_id
    return services.submissions_query(**query)


@blp.get("/submissions/<int:submission_id>")
@blp.response(200, SubmissionOutSchema)
@staff_or_member("viewer")
def get_submission(submission_id: int):
    return services.get_submission(submission_id, member_id=current_principal().member_id)


@blp.post("/submissions/<int:submission_id>/metrics")
@blp.arguments(MetricsSchema)
@blp.response(201, SubmissionOutSchema)
@staff_or_member("admin")
def add_metrics(data: dict, submission_id: int):
    principal = current_principal()
    submission = services.get_submission(submission_id, member_id=principal.member_id)
    services.add_metrics(submission, data, source="member" if principal.is_member else "admin")
    db.session.commit()
    return submission


@blp.post("/submissions/<int:submission_id>/review")
@blp.arguments(ReviewInSchema)
@blp.response(200, SubmissionOutSchema)
@staff_required("reviewer")
def review_submission(data: dict, submission_id: int):
    submission = services.review_submission(
        services.get_submission(submission_id), **data, staff_id=current_principal().staff_id
    )
    db.session.commit()
    return submission


@blp.get("/me/points")
@blp.response(200, PointsEntrySchema(many=True))
@blp.paginate(SelectPage)
@member_required
def my_points():
    return services.ledger_query(current_principal().member_id)
