"""Bulk imports of the user base: presigned uploads, streamed jobs, resumable chunked merges."""

from __future__ import annotations

import gzip
import io
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.core.jobs import Job
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import User, UserImport
from koc.members.services import imports
from koc.members.tasks import import_users_task
from tests.assets.conftest import put, s3_env, status_of
from tests.conftest import Api, staff_token_for

ENGINES = ["sqlite", "postgresql"]


@pytest.fixture(params=ENGINES)
def any_app(request) -> Flask:
    return request.getfixturevalue("app" if request.param == "sqlite" else "pg_app")


def _csv(rows: int, *, start: int = 0, orders: int = 1) -> bytes:
    lines = [b"external_id,display_name,orders_count,spend_cents,tags,last_order_at\n"]
    lines += [b"u-%d,Name %d,%d,%d,a|b,2026-05-01T08:00:00+08:00\n" % (i, i, orders + i % 3, i)
              for i in range(start, start + rows)]
    return b"".join(lines)


def _rows(app: Flask) -> dict[str, tuple]:
    with app.app_context():
        return {u.external_id: (u.display_name, u.city, u.store_code, list(u.tags),
                                u.orders_count, u.spend_cents, u.last_order_at, u.shares_count,
                                u.community_posts_count, u.candidate_score)
                for u in db.session.scalars(sa.select(User))}


def _import(app: Flask, data: bytes, **kw: Any) -> imports.ImportReport:
    with app.app_context():
        report = imports.import_users(io.BytesIO(data), **kw)
        db.session.commit()
        return report


def _upload_and_start(app: Flask, data: bytes, filename: str, **fields: Any) -> dict:
    client = app.test_client()
    admin = Api(client, staff_token_for(app, "admin"))
    created = admin.post("/users/imports", json={"filename": filename, "size": len(data),
                                                  **fields})
    assert created.status_code == 201, created.json
    import_id, upload = created.json["import_id"], created.json["upload"]
    not_yet = admin.post(f"/users/imports/{import_id}/start", json={})
    assert not_yet.status_code == 409, not_yet.json
    if upload["multipart"]:
        etags = []
        for part in upload["parts"]:
            offset = (part["part_number"] - 1) * upload["part_size"]
            response = put(client, part["url"], data[offset:offset + part["size"]], {})
            assert status_of(response) == 200
            etags.append({"part_number": part["part_number"],
                          "etag": response.headers["ETag"].strip('"')})
        body: dict = {"parts": etags}
    else:
        assert status_of(put(client, upload["url"], data, upload["headers"])) in (200, 204)
        body = {}
    started = admin.post(f"/users/imports/{import_id}/start", json=body)
    assert started.status_code == 202, started.json
    again = admin.post(f"/users/imports/{import_id}/start", json={})
    assert again.json["job_id"] == started.json["job_id"]
    with app.app_context():
        import_users_task.run(started.json["job_id"])
        key = db.session.get_one(UserImport, import_id).storage_key
        # PIPL: the file does not outlive its job.
        assert get_storage().head(key) is None
    job = admin.get(f"/jobs/{started.json['job_id']}").json
    assert job["status"] == "succeeded", job
    return job


def test_a_presigned_upload_is_streamed_by_its_job_and_then_deleted(any_app) -> None:
    data = gzip.compress(_csv(50) + b"bad id!,X,1,1,,\n")

    job = _upload_and_start(any_app, data, "crm.csv.gz")

    assert (job["processed"], job["failed"]) == (50, 1)
    assert job["errors"][0]["line"] == 52
    assert job["errors"][0]["message"].startswith("external_id:")
    assert job["result"]["progress"]["created"] == 50
    assert job["result"]["lines_read"] == 52
    assert len(_rows(any_app)) == 50


def test_a_large_import_uploads_in_parts_to_s3(make_app, postgres_url, seaweedfs,
                                               s3_bucket) -> None:
    app = make_app(KOC_DATABASE_URL=postgres_url, KOC_MULTIPART_THRESHOLD=str(5 * 1024**2),
                   KOC_MULTIPART_PART_SIZE=str(5 * 1024**2), **s3_env(seaweedfs, s3_bucket))
    data = _csv(130_000)
    assert len(data) > 5 * 1024**2  # two parts

    job = _upload_and_start(app, data, "crm.csv")

    assert (job["processed"], job["failed"]) == (130_000, 0)


@pytest.mark.parametrize("engine", ENGINES)
def test_a_job_killed_half_way_resumes_and_ends_like_an_uninterrupted_run(
        request, monkeypatch, engine) -> None:
    fixture = "app" if engine == "sqlite" else "pg_app"
    # Line 43 is refused (a negative count), line 44 too (a second header).
    data = _csv(40) + b"u-5,Last line wins,9,9,,\n" + b"oops,X,-1,1,,\n" + _csv(40, start=40)
    monkeypatch.setattr(imports, "PG_CHUNK_ROWS", 7)
    monkeypatch.setattr(imports, "IMPORT_BATCH_SIZE", 7)

    reference = request.getfixturevalue(fixture)
    reference_report = _import(reference, data, chunk_rows=7)

    interrupted = request.getfixturevalue("make_app")(
        **({} if engine == "sqlite" else {"KOC_DATABASE_URL": request.getfixturevalue(
            "empty_postgres_url")}))
    if engine == "postgresql":
        with interrupted.app_context():
            db.create_all()
    with interrupted.app_context():
        storage = get_storage()
        storage.put_bytes("imports/users/kill.csv", data, content_type="text/csv")
        job = Job(kind="users.import", task_name="koc.members.tasks.import_users_task",
                  payload={"storage_key": "imports/users/kill.csv", "format": "csv",
                           "size": len(data)}, errors=[])
        db.session.add(job)
        db.session.commit()
        job_id = job.id

    real_progress = imports.ImportReport.progress
    calls = {"n": 0}

    class WorkerKilled(BaseException):
        """A kill, not an error: no handler of the job's runs, the job stays `running` (a
        failed job is over, its file deleted) and the re-delivered task resumes it."""

    def dies_on_the_fifth_chunk(self):
        calls["n"] += 1
        if calls["n"] == 5:
            raise WorkerKilled
        return real_progress(self)

    monkeypatch.setattr(imports.ImportReport, "progress", dies_on_the_fifth_chunk)
    with interrupted.app_context(), pytest.raises(WorkerKilled):
        import_users_task.run(job_id)
    with interrupted.app_context():
        db.session.rollback()
        half = db.session.get_one(Job, job_id)
        assert half.status == "running"
        assert 0 < half.result["progress"]["lines_done"] < 83
    assert 0 < len(_rows(interrupted)) < 79
    monkeypatch.setattr(imports.ImportReport, "progress", real_progress)
    with interrupted.app_context():
        import_users_task.run(job_id)
        done = db.session.get_one(Job, job_id)
        assert done.status == "succeeded"
        assert (done.processed, done.failed) == (reference_report.processed, 2)
        assert done.errors == reference_report.errors

    assert _rows(interrupted) == _rows(reference)
    assert _rows(reference)["u-5"][0] == "Last line wins"


def test_reimporting_an_unchanged_file_updates_nothing(any_app) -> None:
    data = _csv(30)
    first = _import(any_app, data)
    with any_app.app_context():
        stamps = dict(db.session.execute(sa.select(User.external_id, User.updated_at)).all())

    again = _import(any_app, data)
    with any_app.app_context():
        assert dict(db.session.execute(
            sa.select(User.external_id, User.updated_at)).all()) == stamps
    changed = _import(any_app, _csv(30, orders=5))

    assert (first.created, first.updated) == (30, 0)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 30)
    assert (changed.created, changed.updated) == (0, 30)
    assert _rows(any_app)["u-0"][4] == 5


def test_crm_shapes_columns_in_any_order_bom_gb18030_and_jsonl(any_app) -> None:
    reordered = ("\ufeffcity,external_id,orders_count\n广州,gz-1,4\n".encode())
    _import(any_app, reordered)
    _import(any_app, "external_id,display_name\ngb-1,张三\n".encode("gb18030"),
            encoding="gb18030")
    report = _import(any_app, gzip.compress(
        b'{"external_id": "j-1", "tags": ["mother-baby"], "spend_cents": "250"}\n'), fmt="jsonl")

    rows = _rows(any_app)
    assert rows["gz-1"][1] == "广州" and rows["gz-1"][4] == 4
    assert rows["gb-1"][0] == "张三"
    assert rows["j-1"][3] == ["mother-baby"] and rows["j-1"][5] == 250
    assert report.failed == 0


def test_a_gb18030_file_read_as_utf8_is_refused_line_by_line(any_app) -> None:
    report = _import(any_app, "external_id,display_name\ngb-1,张三\nok,Ann\n".encode("gb18030"))

    assert [e["line"] for e in report.errors] == [2]
    assert "not valid UTF-8" in report.errors[0]["message"]
    assert set(_rows(any_app)) == {"ok"}


def test_the_candidate_score_is_set_by_the_merge(any_app) -> None:
    _import(any_app, b"external_id,orders_count,spend_cents,shares_count\nhigh,9,900000,4\n"
                     b"low,1,100,0\n")
    with any_app.app_context():
        scores = dict(db.session.execute(sa.select(User.external_id, User.candidate_score)).all())
    assert scores["high"] > scores["low"] > 0


# Blocks of every kind the fast path meets: clean ones go straight to COPY; one with a tab, a
# blank line, a record spanning two lines, a byte that is not UTF-8, a cell too many or a line
# longer than the limit is read by the careful path instead. Quoted cells, CRLF line ends,
# padded numbers and tags with odd spacing are the fast path's own to read right.
_MIXED = (
    b"tags,external_id,display_name,orders_count,spend_cents,last_order_at,city\r\n"
    b"a| b |,m-1,Plain,3,300,2026-05-01T08:00:00+08:00,\r\n"
    b'"x,y|z",m-2,"Quoted, with comma",  4 ,400,,"Guang""zhou"\r\n'
    b"|,m-3,,0,0,,\r\n"
    b"a,m-4,Tab\there,1,1,,\r\n"
    b"a,m-5,Neg,-1,1,,\r\n"
    b"\r\n"
    b"a,m-6,Blank line before,1,1,,\r\n"
    b'a,m-7,"Two\r\nlines",1,1,,\r\n'
    b"a,m-8,Bad \xff byte,1,1,,\r\n"
    b"a,m-9,Extra,1,1,,,surplus\r\n"
    b"a,m-10,Date,1,1,tomorrow,\r\n"
    b"a,m-" + b"1" * 70 + b",Long id,1,1,,\r\n"
    b"a,m-11," + b"n" * (70 * 1024) + b",1,1,,\r\n"
    b"a,m-1,Last line wins,9,900,2026-06-01T08:00:00Z,Shenzhen\r\n"
    b"a,m-12,Plain again,2,2,,\r\n"
)


@pytest.mark.parametrize("chunk_rows", [1, 2, 3, 1000])
def test_the_fast_path_on_postgresql_refuses_and_keeps_exactly_what_the_careful_one_does(
        app, pg_app, monkeypatch, chunk_rows) -> None:
    copied = []
    real_copy_block = imports._copy_block

    def spy(*args: Any) -> bool:
        copied.append(real_copy_block(*args))
        return copied[-1]

    monkeypatch.setattr(imports, "_copy_block", spy)
    careful = _import(app, _MIXED, chunk_rows=chunk_rows)
    fast = _import(pg_app, _MIXED, chunk_rows=chunk_rows)
    if chunk_rows < 1000:  # small blocks: the clean ones went through COPY, the odd ones not
        assert True in copied and (False in copied or len(copied) < 16)
    assert (fast.processed, fast.failed) == (careful.processed, careful.failed)
    assert fast.errors == careful.errors
    assert _rows(pg_app) == _rows(app)
    assert _rows(pg_app)["m-1"][:2] == ("Last line wins", "Shenzhen")
    assert _rows(pg_app)["m-2"][1:4] == ("Guang\"zhou", None, ["x,y", "z"])
    assert careful.failed >= 8


def test_one_chunk_creates_updates_and_leaves_alike(any_app) -> None:
    _import(any_app, _csv(20))
    # u-0..u-9 as they were, u-10..u-19 with more orders, u-20..u-29 new.
    mixed = _csv(10) + _csv(10, start=10, orders=7).split(b"\n", 1)[1] \
        + _csv(10, start=20).split(b"\n", 1)[1]
    report = _import(any_app, mixed)
    assert (report.created, report.updated, report.unchanged) == (10, 10, 10)
    rows = _rows(any_app)
    assert len(rows) == 30 and rows["u-10"][4] == 7 + 10 % 3 and rows["u-0"][4] == 1


def test_a_user_created_by_another_writer_during_the_merge_is_updated_not_lost(
        pg_app, postgres_url) -> None:
    """The merge inserts new users without ON CONFLICT; a writer that creates one of them at
    the same moment makes that INSERT fail on the unique key, and the chunk is merged again as
    an upsert, which waits for the writer and then updates its row."""
    import threading
    import time

    import psycopg

    other = psycopg.connect(postgres_url)
    other.execute(
        "INSERT INTO users (external_id, display_name, tags, orders_count, spend_cents, "
        "shares_count, community_posts_count, candidate_score, created_at, updated_at) "
        "VALUES ('u-3', 'From the API', '[]', 0, 0, 0, 0, 0, now(), now())")
    done: dict[str, Any] = {}
    def run() -> None:
        try:
            done["report"] = _import(pg_app, _csv(6))
        except Exception as exc:  # shown by the assertion below
            done["error"] = exc

    worker = threading.Thread(target=run)
    worker.start()
    try:
        # Until the import's INSERT waits for the other transaction's row (the unique check).
        waiting = 0
        for _ in range(600):
            # A transaction sees one snapshot of the activity: each look starts afresh.
            other.execute("SELECT pg_stat_clear_snapshot()")
            waiting = other.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event = 'transactionid' "
                "AND datname = current_database() AND pid <> pg_backend_pid()"
            ).fetchone()[0]
            if waiting or not worker.is_alive():
                break
            time.sleep(0.05)
        assert waiting, f"the import never waited for the other writer: {done}"
        other.commit()
        worker.join(60)
    finally:
        other.close()
    report = done["report"]
    assert (report.processed, report.created, report.updated) == (6, 5, 1)
    assert _rows(pg_app)["u-3"][0] == "Name 3"
