"""Import files: a CRM export goes from the client straight into object storage (one presigned
PUT, or presigned parts for a large file), then a job streams it (koc.members.tasks)."""

from __future__ import annotations

import contextlib
import math
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa

from koc.core.errors import DomainError
from koc.core.jobs import Job, JobStatus, start_job
from koc.core.storage import Storage, StorageError, StorageUnavailable
from koc.core.storage.base import as_multipart, supports_multipart
from koc.extensions import db
from koc.members.models import UserImport, UserImportStatus
from koc.members.services.imports import import_format, refusals_prefix

# S3 takes objects of up to 5 TiB in at most 10,000 parts; a 40-million-row export is a few GB.
MAX_IMPORT_BYTES = 1024**4
MAX_PARTS = 10_000
# An import whose file was never started is abandoned this long after its upload URL expired.
ABANDONED_AFTER = timedelta(days=1)


@dataclass(frozen=True)
class ImportSettings:
    url_ttl: int
    multipart_threshold: int
    part_size: int


def _upload(item: UserImport, storage: Storage, settings: ImportSettings) -> dict[str, Any]:
    if item.upload_id and item.part_size:
        multipart = as_multipart(storage)
        parts = []
        for number in range(1, math.ceil(item.size / item.part_size) + 1):
            length = min(item.part_size, item.size - (number - 1) * item.part_size)
            parts.append({"part_number": number, "size": length,
                          "url": multipart.presign_upload_part(
                              item.storage_key, upload_id=item.upload_id, part_number=number,
                              expires_in=settings.url_ttl)})
        return {"method": "PUT", "url": None, "headers": {}, "multipart": True,
                "part_size": item.part_size, "parts": parts}
    single = storage.presign_put(item.storage_key, content_type=item.content_type,
                                 size=item.size, expires_in=settings.url_ttl)
    return {"method": single.method, "url": single.url, "headers": single.headers,
            "multipart": False, "part_size": None, "parts": []}


def create_import(*, filename: str, content_type: str, size: int, fmt: str | None,
                  encoding: str, staff_id: int | None, storage: Storage,
                  settings: ImportSettings) -> tuple[UserImport, dict[str, Any]]:
    """A new import and where to upload its file."""
    if size > MAX_IMPORT_BYTES:
        raise DomainError(422, "The file is too large.",
                          errors={"json": {"size": [f"must be at most {MAX_IMPORT_BYTES} bytes"]}})
    fmt = fmt or import_format(filename)
    item = UserImport(filename=filename, content_type=content_type, size=size, format=fmt,
                      encoding=encoding, storage_key=f"imports/users/{uuid.uuid4().hex}.{fmt}",
                      created_by_staff_id=staff_id, status=UserImportStatus.pending.value)
    if size > settings.multipart_threshold and supports_multipart(storage):
        # The store is asked first: if it is down the request fails before any row exists.
        item.upload_id = storage.create_multipart(item.storage_key, content_type=content_type)
        item.part_size = max(settings.part_size, math.ceil(size / MAX_PARTS))
    db.session.add(item)
    db.session.flush()
    return item, _upload(item, storage, settings)


def get_import(import_id: int) -> UserImport:
    item = db.session.get(UserImport, import_id)
    if item is None:
        raise DomainError(404, "No such import.")
    return item


def start_import(item: UserImport, *, storage: Storage, staff_id: int | None,
                 parts: Sequence[tuple[int, str]] | None = None) -> int:
    """The job that reads the uploaded file; the same job again when asked twice."""
    if item.status == UserImportStatus.started and item.job_id is not None:
        return item.job_id
    if item.file_deleted_at is not None:
        raise DomainError(410, "This import's file was deleted; create a new import.")
    if item.upload_id:
        multipart = as_multipart(storage)
        try:
            stored = parts or multipart.list_parts(item.storage_key, upload_id=item.upload_id)
            if not stored:
                raise DomainError(409, "The file has not been uploaded yet.")
            multipart.complete_multipart(item.storage_key, upload_id=item.upload_id,
                                         parts=list(stored))
        except StorageUnavailable:
            raise
        except StorageError as exc:
            raise DomainError(409, "The store could not assemble the uploaded parts; upload "
                              "the missing parts or send their ETags.",
                              errors={"json": {"parts": [str(exc)[:300]]}}) from exc
        item.upload_id = None
    info = storage.head(item.storage_key)
    if info is None:
        raise DomainError(409, "The file has not been uploaded yet.")
    if info.size != item.size:
        raise DomainError(409, f"The stored file has {info.size} bytes, not the {item.size} "
                          "declared; upload it again.",
                          errors={"json": {"size": ["does not match the uploaded file"]}})
    job = start_job("koc.members.tasks.import_users_task", kind="users.import",
                    staff_id=staff_id, payload={
        "import_id": item.id, "storage_key": item.storage_key, "format": item.format,
        "encoding": item.encoding, "size": item.size})
    item.status = UserImportStatus.started.value
    item.job_id = job.id
    db.session.flush()
    return job.id


def store_posted_file(data: bytes, *, filename: str, storage: Storage,
                      staff_id: int | None) -> int:
    """`POST /users/import` (a small file in the request): stored, then read like any other."""
    fmt = import_format(filename)
    item = UserImport(filename=filename[:255] or "upload", content_type="text/plain",
                      size=len(data), format=fmt, encoding="utf-8",
                      storage_key=f"imports/users/{uuid.uuid4().hex}.{fmt}",
                      created_by_staff_id=staff_id, status=UserImportStatus.pending.value)
    storage.put_bytes(item.storage_key, data, content_type="text/plain")
    db.session.add(item)
    db.session.flush()
    return start_import(item, storage=storage, staff_id=staff_id)


def _delete_file(item: UserImport, storage: Storage, now: datetime) -> None:
    if item.upload_id and supports_multipart(storage):
        # An open multipart upload keeps its parts until aborted; gone already is fine.
        with contextlib.suppress(StorageError):
            as_multipart(storage).abort_multipart(item.storage_key, upload_id=item.upload_id)
        item.upload_id = None
    storage.delete(item.storage_key)
    item.file_deleted_at = now


def delete_job_file(job_id: int, *, storage: Storage, now: datetime) -> bool:
    """The import file of a job that ended (succeeded or failed): deleted from storage, the
    import marked; False when it was deleted before. The caller commits."""
    item = db.session.scalar(sa.select(UserImport).where(UserImport.job_id == job_id))
    if item is None or item.file_deleted_at is not None:
        return False
    _delete_file(item, storage, now)
    db.session.flush()
    return True


def purge_import_files(*, storage: Storage, now: datetime, url_ttl: int,
                       limit: int = 500) -> int:
    """What the end of a job did not delete (a worker that died between the job's end and the
    deletion), and uploads never started: their files deleted. Safe to run any time."""
    ended = sa.select(Job.id).where(Job.status.in_([JobStatus.succeeded.value,
                                                    JobStatus.failed.value]))
    cutoff = now - timedelta(seconds=url_ttl) - ABANDONED_AFTER
    items = db.session.scalars(sa.select(UserImport).where(
        UserImport.file_deleted_at.is_(None),
        sa.or_(UserImport.job_id.in_(ended),
               sa.and_(UserImport.status == UserImportStatus.pending.value,
                       UserImport.created_at < cutoff)))
        .order_by(UserImport.id).limit(limit)).all()
    for item in items:
        _delete_file(item, storage, now)
    db.session.flush()
    return len(items)


def purge_refusal_reports(*, storage: Storage, now: datetime, retention_days: int,
                          limit: int = 200) -> int:
    """The full refused-lines reports (CSV objects beside a users import job, quoting the
    file's lines) of jobs that ended more than `retention_days` ago: deleted, as the job's own
    report is emptied then (koc.core.jobs.purge_job_reports). Returns the jobs cleared."""
    cutoff = now - timedelta(days=retention_days)
    jobs = db.session.scalars(sa.select(Job).where(
        Job.kind == "users.import", Job.finished_at < cutoff,
        Job.status.in_([JobStatus.succeeded.value, JobStatus.failed.value]),
        sa.cast(Job.result, sa.Text).not_like('%"refusals_purged_at"%'))
        .order_by(Job.id).limit(limit)).all()
    for job in jobs:
        for key in list(storage.list_keys(refusals_prefix(job.id))):
            storage.delete(key)
        job.result = {**(job.result or {}), "refusals_purged_at": now.isoformat()}
    db.session.flush()
    return len(jobs)
