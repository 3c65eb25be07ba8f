"""Kits background work: checksums, previews, watermarks, the zip bundle, abandoned uploads.

Every task takes ids and is safe to run twice: a finished result is recognised and left alone,
a half-finished one is redone. The work itself is in `koc.assets.services`.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from flask import current_app

from koc.assets.models import Kit
from koc.assets.services import bundles, uploads, watermarks
from koc.core.celery import Every, periodic_task
from koc.core.jobs import Job, run_job
from koc.core.storage import get_storage
from koc.extensions import db

log = logging.getLogger(__name__)


@periodic_task("koc.assets.tasks.clear_abandoned_uploads", Every(timedelta(hours=6)))
def clear_abandoned_uploads() -> int:
    """Delete assets still pending long after their upload URL expired, and any partial object."""
    cleared = uploads.clear_abandoned_uploads(storage=get_storage())
    db.session.commit()
    if cleared:
        log.info("cleared %d abandoned uploads", cleared)
    return cleared


@shared_task(name="koc.assets.tasks.checksum_asset")
def checksum_asset(asset_id: int) -> str | None:
    sha256 = uploads.record_checksum(asset_id, storage=get_storage())
    db.session.commit()
    return sha256


@shared_task(name="koc.assets.tasks.preview_asset")
def preview_asset(asset_id: int) -> str | None:
    key = uploads.make_preview(asset_id, storage=get_storage())
    db.session.commit()
    return key


@shared_task(name="koc.assets.tasks.watermark_asset")
def watermark_asset(watermark_id: int) -> str | None:
    key = watermarks.make_marked_copy(
        watermark_id, storage=get_storage(),
        text_template=current_app.config["KOC_SETTINGS"].watermark_text)
    db.session.commit()
    return key


def _bundle_work(job: Job) -> None:
    kit = db.session.get(Kit, job.payload["kit_id"])
    if kit is None:
        job.errors = [{"line": None, "message": "the kit no longer exists"}]
        job.failed = 1
        return
    storage = get_storage()
    built = bundles.build_bundle(
        kit, storage=storage, part_size=current_app.config["KOC_SETTINGS"].multipart_part_size)
    job.processed = built.files
    job.result = {"kit_id": kit.id, "files": built.files, "size": kit.bundle_size}
    # The kit points at the new zip before the old one goes, so no row names a deleted object.
    db.session.commit()
    if built.replaced_key:
        storage.delete(built.replaced_key)


@shared_task(name="koc.assets.tasks.build_bundle_job")
def build_bundle_job(job_id: int) -> bool:
    return run_job(job_id, _bundle_work)
