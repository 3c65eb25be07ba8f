"""Members background work: bulk imports of the user base."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, JobStatus, run_job
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.services import import_files, imports


@shared_task(name="koc.members.tasks.import_users_task")
def import_users_task(job_id: int) -> None:
    """Run an import job: the stored file is streamed, never held whole.

    Each chunk commits with the job's progress, so a job that died half-way (or a re-delivered
    task) resumes after its last committed chunk; upserts keyed on external_id make the overlap
    harmless. The file is deleted once the job has ended, succeeded or failed.
    """
    storage = get_storage()

    def work(job: Job) -> None:
        payload = job.payload
        resume = imports.ImportReport.restore(
            processed=job.processed, failed=job.failed, errors=job.errors or [],
            progress=(job.result or {}).get("progress"))
        clock = imports.Throughput(size=payload.get("size"), start=resume)

        def progress(report: imports.ImportReport) -> None:
            _record(job, report, clock)
            # One commit per chunk (not one per task): that is what makes the job resumable
            # and its progress visible while it runs.
            db.session.commit()

        stream = imports.CountingReader(storage.iter_chunks(payload["storage_key"]))
        report = imports.import_users(stream, fmt=payload["format"],
                                      encoding=payload.get("encoding", "utf-8"),
                                      on_progress=progress, resume=resume)
        _record(job, report, clock)

    try:
        run_job(job_id, work)
    finally:
        # The file goes when the job ends, failed included (a failed job is not retried: the
        # import is started again from a new upload). A job still running elsewhere (this
        # delivery found it succeeded) keeps nothing either; a worker killed mid-job leaves
        # the job running, and the file, for the re-delivered task to resume.
        job = db.session.get(Job, job_id)
        if job is not None and job.status in (JobStatus.succeeded, JobStatus.failed):
            import_files.delete_job_file(job_id, storage=storage, now=utcnow())
            db.session.commit()


@periodic_task("koc.members.tasks.purge_import_files", Every(timedelta(hours=1)))
def purge_import_files() -> int:
    """Import files a job's end did not delete, and uploads never started."""
    deleted = import_files.purge_import_files(
        storage=get_storage(), now=utcnow(),
        url_ttl=current_app.config["KOC_SETTINGS"].upload_url_ttl)
    db.session.commit()
    return deleted


def _record(job: Job, report: imports.ImportReport, clock: imports.Throughput) -> None:
    job.processed = report.processed
    job.failed = report.failed
    job.errors = list(report.errors)
    job.result = {"progress": report.progress(), **clock.figures(report)}
