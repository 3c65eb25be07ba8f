"""Import files do not outlive their job (failed included); error reports are kept for
KOC_IMPORT_REPORT_RETENTION_DAYS, then emptied by a periodic task."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from flask import Flask

from koc.core.db import utcnow
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import UserImport
from koc.members.services import imports
from koc.members.tasks import import_users_task, purge_import_files
from tests.assets.conftest import put, status_of
from tests.conftest import Api, staff_token_for

CSV = b"external_id,display_name\nu-1,Alice\nbad id!,Bob\n"


def _create(app: Flask, admin: Api, data: bytes = CSV) -> tuple[int, dict]:
    created = admin.post("/users/imports", json={"filename": "crm.csv", "size": len(data)})
    assert created.status_code == 201, created.json
    upload = created.json["upload"]
    assert status_of(put(admin.client, upload["url"], data, upload["headers"])) in (200, 204)
    return created.json["import_id"], upload


def _key(app: Flask, import_id: int) -> str:
    with app.app_context():
        return db.session.get_one(UserImport, import_id).storage_key


def test_a_failed_import_job_deletes_its_file_too(app: Flask, monkeypatch) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    import_id, _ = _create(app, admin)
    job_id = admin.post(f"/users/imports/{import_id}/start", json={}).json["job_id"]

    def broken(*_args, **_kwargs):
        raise RuntimeError("the database went away")

    monkeypatch.setattr(imports, "import_users", broken)
    with app.app_context(), pytest.raises(RuntimeError):
        import_users_task.run(job_id)
    assert admin.get(f"/jobs/{job_id}").json["status"] == "failed"
    with app.app_context():
        assert get_storage().head(_key(app, import_id)) is None
        assert db.session.get_one(UserImport, import_id).file_deleted_at is not None


@pytest.mark.clock
def test_an_upload_never_started_is_deleted_once_abandoned(app: Flask) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    import_id, _ = _create(app, admin)
    key = _key(app, import_id)
    with app.app_context():
        assert purge_import_files.run() == 0  # still within its upload window
        assert get_storage().head(key) is not None
    ttl = app.config["KOC_SETTINGS"].upload_url_ttl
    with time_machine.travel(utcnow() + timedelta(seconds=ttl, days=1, minutes=1), tick=False), \
            app.app_context():
        assert purge_import_files.run() == 1
        assert purge_import_files.run() == 0  # safe to run again
        assert get_storage().head(key) is None
    gone = admin.post(f"/users/imports/{import_id}/start", json={})
    assert gone.status_code == 410


@pytest.mark.clock
def test_error_reports_are_kept_for_the_retention_window_then_emptied(any_app: Flask) -> None:
    app = any_app
    from koc.core.jobs.runner import purge_job_reports_task

    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    import_id, _ = _create(app, admin)
    job_id = admin.post(f"/users/imports/{import_id}/start", json={}).json["job_id"]
    with app.app_context():
        import_users_task.run(job_id)
    job = admin.get(f"/jobs/{job_id}").json
    assert job["status"] == "succeeded" and job["errors"][0]["line"] == 3
    days = app.config["KOC_SETTINGS"].import_report_retention_days
    assert days == 30
    with time_machine.travel(utcnow() + timedelta(days=days - 1), tick=False), \
            app.app_context():
        assert purge_job_reports_task.run() == 0
    assert admin.get(f"/jobs/{job_id}").json["errors"]
    with time_machine.travel(utcnow() + timedelta(days=days, hours=1), tick=False), \
            app.app_context():
        assert purge_job_reports_task.run() == 1
        assert purge_job_reports_task.run() == 0
    job = admin.get(f"/jobs/{job_id}").json
    # The counts stay; the lines quoted from the file are gone.
    assert job["errors"] == [] and (job["processed"], job["failed"]) == (1, 1)
    assert "errors_purged_at" in job["result"]


def test_the_full_refused_lines_report_goes_with_the_retention_window(app: Flask) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    import_id, _ = _create(app, admin)
    job_id = admin.post(f"/users/imports/{import_id}/start", json={}).json["job_id"]
    with app.app_context():
        import_users_task.run(job_id)
        storage = get_storage()
        assert list(storage.list_keys(imports.refusals_prefix(job_id)))
    days = app.config["KOC_SETTINGS"].import_report_retention_days
    with time_machine.travel(utcnow() + timedelta(days=days - 1), tick=False), \
            app.app_context():
        purge_import_files.run()
        assert list(get_storage().list_keys(imports.refusals_prefix(job_id)))
    with time_machine.travel(utcnow() + timedelta(days=days, hours=1), tick=False), \
            app.app_context():
        assert purge_import_files.run() == 1
        assert purge_import_files.run() == 0
        assert list(get_storage().list_keys(imports.refusals_prefix(job_id))) == []
