"""Members background work: bulk imports of the user base, the daily candidate rescore (the
recency bonus decays) and reminders of invitation campaigns about to expire."""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from celery.schedules import crontab
from flask import current_app

from koc.core.celery import Every, periodic_task
from koc.core.db import utcnow
from koc.core.jobs import Job, JobStatus, run_job
from koc.core.storage import Storage, get_storage
from koc.extensions import db
from koc.members.services import campaigns, candidate_rules, import_files, imports


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
            _save_refusals(storage, job.id, report)
            _record(job, report, clock)
            # One commit per chunk (not one per task): that is what makes the job resumable
            # and its progress visible while it runs.
            db.session.commit()

        stream = imports.CountingReader(storage.iter_chunks(payload["storage_key"]))
        report = imports.import_users(stream, fmt=payload["format"],
                                      encoding=payload.get("encoding", "utf-8"),
                                      on_progress=progress, resume=resume)
        _save_refusals(storage, job.id, report)
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
    """Import files a job's end did not delete, uploads never started, and refused-lines
    reports past their retention window."""
    settings = current_app.config["KOC_SETTINGS"]
    storage, now = get_storage(), utcnow()
    deleted = import_files.purge_import_files(storage=storage, now=now,
                                              url_ttl=settings.upload_url_ttl)
    deleted += import_files.purge_refusal_reports(
        storage=storage, now=now, retention_days=settings.import_report_retention_days)
    db.session.commit()
    return deleted


def _save_refusals(storage: Storage, job_id: int, report: imports.ImportReport) -> None:
    """The chunk's refused lines, all of them, as one CSV object beside the job (the job's row
    keeps the first 1,000). Named after the chunk's first refused line: a chunk run again after
    a crash writes the same object again."""
    refused = report.take_recent()
    if refused:
        storage.put_bytes(imports.refusals_key(job_id, refused[0][0]),
                          imports.refusals_csv(refused), content_type="text/csv")


def _record(job: Job, report: imports.ImportReport, clock: imports.Throughput) -> None:
    job.processed = report.processed
    job.failed = report.failed
    job.errors = list(report.errors)
    job.result = {"progress": report.progress(), **clock.figures(report)}


@periodic_task("koc.members.tasks.rescore_candidates", Every(crontab(hour=18, minute=30)))
def rescore_candidates() -> int:
    """Every user's score under the rules in force, once a day (02:30 Beijing time), part by
    part, touching only the rows whose score moved (a recency bonus that decayed)."""
    return candidate_rules.rescore_in_parts(utcnow(), commit=db.session.commit)


@shared_task(name="koc.members.tasks.rescore_candidates_job")
def rescore_candidates_job(job_id: int) -> None:
    """The rescoring a saved rules version asks for, as a job staff can follow."""

    def work(job: Job) -> None:
        job.processed = candidate_rules.rescore_in_parts(utcnow(), commit=db.session.commit)

    run_job(job_id, work)


@periodic_task("koc.members.tasks.remind_expiring_invitations", Every(timedelta(hours=1)))
def remind_expiring_invitations() -> int:
    """One `invitation.expiring` event per campaign about to expire, once."""
    return campaigns.send_reminders(utcnow())
