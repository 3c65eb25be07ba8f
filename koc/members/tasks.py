"""Members background work: bulk imports of the user base."""

from __future__ import annotations

import io

from celery import shared_task

from koc.core.jobs import Job, run_job
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.services import imports


@shared_task(name="koc.members.tasks.import_users_task")
def import_users_task(job_id: int) -> None:
    """Run an import job. Upserts are keyed on external_id, so a re-delivered task is harmless."""
    storage = get_storage()

    def work(job: Job) -> None:
        # At most KOC_MAX_IMPORT_FILE_BYTES (the web process held it whole too); decoded and
        # parsed line by line, so a gzipped file's lines are never all in memory at once.
        data = storage.get_bytes(job.payload["storage_key"])
        report = imports.import_users(io.BytesIO(data), fmt=job.payload["format"])
        # The job runs to the end either way; `failed` and `errors` say which lines were refused.
        job.processed = report.processed
        job.failed = report.failed
        job.errors = report.errors

    if run_job(job_id, work):
        storage.delete(db.session.get_one(Job, job_id).payload["storage_key"])
