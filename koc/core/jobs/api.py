"""`GET /api/v1/jobs/{id}`: follow a background job."""

from __future__ import annotations

from flask_smorest import abort
from marshmallow import Schema, fields

from koc.core.auth import staff_required
from koc.core.jobs import Job
from koc.core.pagination import Blueprint
from koc.extensions import db

blp = Blueprint("jobs", __name__, description="Background jobs")


class JobErrorSchema(Schema):
    line = fields.Integer(allow_none=True)
    message = fields.String()


class JobCreatedSchema(Schema):
    job_id = fields.Integer()


class JobSchema(Schema):
    id = fields.Integer()
    kind = fields.String()
    status = fields.String()
    processed = fields.Integer()
    failed = fields.Integer()
    errors = fields.List(fields.Nested(JobErrorSchema))
    result = fields.Dict(allow_none=True)
    created_at = fields.DateTime()
    started_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


@blp.get("/jobs/<id:job_id>")
@blp.response(200, JobSchema)
@staff_required("viewer")
def get_job(job_id: int):
    job = db.session.get(Job, job_id)
    if job is None:
        abort(404, message="No such job.")
    return job
