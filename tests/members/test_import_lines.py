"""A bad line in a user import refuses that line, with its number and the field; never the job."""

from __future__ import annotations

import gzip
import io

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from flask import Flask
from flask.cli import ScriptInfo

from koc.cli import main as koc_cli
from koc.extensions import db
from koc.members.models import User
from tests.conftest import Api, staff_token_for

HEADER = b"external_id,display_name,orders_count,spend_cents,tags,last_order_at\n"
# (line number, content, what the report must say about it); None: the line imports.
CSV_LINES = [
    (2, b"good-1,Ann,3,100,a|b,2024-05-01T08:00:00+08:00\n", None),
    (3, b"bad-byte,Bo\xffb,1,1,,\n", "not valid UTF-8 (byte 0xff"),
    (4, b"good-2,\xe5\xbc\xa0\xe4\xb8\x89,1,1,,\n", None),
    (5, b"big-count,Al,2147483648,1,,\n",
     "orders_count: Must be greater than or equal to 0 and less than or equal to 2147483647"),
    (6, b"big-spend,Al,1,9223372036854775808,,\n",
     "spend_cents: Must be greater than or equal to 0 and less than or equal to "
     "9223372036854775807"),
    (7, b"nul,Nu\x00l,1,1,,\n", "display_name: holds a control character (U+0000)"),
    (8, b"bad-date,X,1,1,,2024-02-30T00:00:00Z\n", "last_order_at: Not a valid datetime"),
    (9, b"far-date,X,1,1,,0001-01-01T00:00:00+01:00\n",
     "last_order_at: must be between 1900-01-01 and 3000-01-01"),
    (10, b"many-tags,X,1,1," + b"|".join(b"t%d" % i for i in range(51)) + b",\n",
     "tags: Length must be between 0 and 50"),
    (11, b"long-name," + b"x" * 101 + b",1,1,,\n",
     "display_name: Length must be between 0 and 100"),
    (12, b"huge-line," + b"y" * 70_000 + b",1,1,,\n", "longer than 65536 bytes"),
    (13, b"good-3,Cy,0,0,,\n", None),
]
JSONL_LINES = [
    (1, b'{"external_id": "j-good-1", "orders_count": 2, "tags": ["x"]}\n', None),
    (2, b'{"external_id": "j-surrogate", "display_name": "\\ud800"}\n',
     "display_name: holds a lone surrogate (U+D800)"),
    (3, b'{"external_id": "j-fraction", "orders_count": 3.5}\n',
     "orders_count: must be a whole number"),
    (4, b'{"external_id": "j-digits", "orders_count": ' + b"9" * 5000 + b"}\n",
     "a number has too many digits"),
    (5, b"[" * 100_000 + b"\n", "longer than 65536 bytes"),
    (6, b"[" * 30_000 + b"\n", "nested too deeply"),
    (7, b'{"external_id": "j-byte", "city": "\xc3("}\n', "not valid UTF-8 (byte 0xc3"),
    (8, b'{"external_id": "j-shares", "shares_count": 4294967296}\n',
     "shares_count: Must be greater than or equal to 0 and less than or equal to "
     "2147483647"),
    (9, b'{"external_id": "j-control\\u0007"}\n',
     "external_id: holds a control character (U+0007)"),
    (10, b'{"external_id": "j-tag", "tags": ["ok", "bell\\u0007"]}\n',
     "tags: holds a control character (U+0007)"),
    (11, b'{"external_id": "j-good-2"}\n', None),
]


def _file(lines: list[tuple[int, bytes, str | None]], *, header: bytes = b"") -> bytes:
    return header + b"".join(content for _, content, _ in lines)


def _assert_report(lines, errors: list[dict]) -> None:
    expected = {number: message for number, _, message in lines if message is not None}
    reported = {error["line"]: error["message"] for error in errors}
    assert set(reported) == set(expected), reported
    for number, message in expected.items():
        assert message in reported[number], (number, reported[number])


def _imported(app: Flask) -> set[str]:
    with app.app_context():
        return set(db.session.scalars(sa.select(User.external_id)))


def _run_cli(app: Flask, path) -> tuple[int, str]:
    result = CliRunner().invoke(koc_cli, ["users", "import", str(path)],
                                obj=ScriptInfo(create_app=lambda: app))
    return result.exit_code, result.output


def _errors_from_cli(output: str) -> list[dict]:
    errors = []
    for line in output.splitlines():
        if line.startswith("line "):
            number, _, message = line.removeprefix("line ").partition(": ")
            errors.append({"line": int(number), "message": message})
    return errors


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_cli_csv_import_refuses_each_bad_line_and_keeps_the_rest(app, tmp_path, compress) -> None:
    data = _file(CSV_LINES, header=HEADER)
    path = tmp_path / ("users.csv.gz" if compress else "users.csv")
    path.write_bytes(gzip.compress(data) if compress else data)

    exit_code, output = _run_cli(app, path)

    assert exit_code == 1
    assert "imported 3 users, 9 lines refused" in output
    _assert_report(CSV_LINES, _errors_from_cli(output))
    assert _imported(app) == {"good-1", "good-2", "good-3"}
    with app.app_context():
        user = db.session.scalar(sa.select(User).where(User.external_id == "good-2"))
        assert user.display_name == "张三"


@pytest.mark.parametrize("compress", [False, True], ids=["plain", "gzip"])
def test_cli_jsonl_import_refuses_each_bad_line_and_keeps_the_rest(app, tmp_path,
                                                                   compress) -> None:
    data = _file(JSONL_LINES)
    path = tmp_path / ("users.jsonl.gz" if compress else "users.jsonl")
    path.write_bytes(gzip.compress(data) if compress else data)

    exit_code, output = _run_cli(app, path)

    assert exit_code == 1
    assert "imported 2 users, 9 lines refused" in output
    _assert_report(JSONL_LINES, _errors_from_cli(output))
    assert _imported(app) == {"j-good-1", "j-good-2"}


def test_a_multi_line_csv_record_with_a_bad_byte_is_refused_whole(app, tmp_path) -> None:
    path = tmp_path / "users.csv"
    path.write_bytes(b"external_id,display_name\n"
                     b'quoted,"first half\n'
                     b'second \xff half"\n'
                     b"after,Dee\n")

    exit_code, output = _run_cli(app, path)

    assert exit_code == 1
    assert "line 3: not valid UTF-8" in output
    assert _imported(app) == {"after"}


def test_a_truncated_gzip_keeps_the_lines_before_the_damage(app, tmp_path) -> None:
    lines = b"".join(b"cut-%d,Name %d\n" % (i, i) for i in range(5000))
    compressed = gzip.compress(b"external_id,display_name\n" + lines)
    path = tmp_path / "users.csv.gz"
    path.write_bytes(compressed[: len(compressed) // 2])

    exit_code, output = _run_cli(app, path)

    assert exit_code == 1
    assert "the compressed data is damaged from here on" in output
    imported = _imported(app)
    assert 0 < len(imported) < 5000
    # Whatever was read is a prefix of the file: no line after the damage, none skipped before.
    assert imported == {f"cut-{i}" for i in range(len(imported))}


def _import_through_the_api(app: Flask, data: bytes, filename: str) -> dict:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    response = admin.client.post(
        "/api/v1/users/import", data={"file": (io.BytesIO(data), filename)},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    with app.app_context():
        from koc.members.tasks import import_users_task

        import_users_task.run(job_id)
    job = admin.get(f"/jobs/{job_id}").json
    assert job["status"] == "succeeded", job
    return job


@pytest.mark.parametrize("engine", ["sqlite", "postgresql"])
def test_the_import_job_reports_bad_lines_and_imports_the_rest(request, engine) -> None:
    app = request.getfixturevalue("app" if engine == "sqlite" else "pg_app")

    job = _import_through_the_api(app, gzip.compress(_file(CSV_LINES, header=HEADER)),
                                  "users.csv.gz")
    assert (job["processed"], job["failed"]) == (3, 9)
    _assert_report(CSV_LINES, job["errors"])

    job = _import_through_the_api(app, _file(JSONL_LINES), "users.jsonl")
    assert (job["processed"], job["failed"]) == (2, 9)
    _assert_report(JSONL_LINES, job["errors"])

    assert _imported(app) == {"good-1", "good-2", "good-3", "j-good-1", "j-good-2"}


def test_unknown_field_names_from_the_file_are_escaped_in_the_report(app, tmp_path) -> None:
    path = tmp_path / "users.jsonl"
    path.write_bytes(b'{"external_id": "k-1", "\\u0000' + b"z" * 300 + b'": 1}\n')

    exit_code, output = _run_cli(app, path)

    assert exit_code == 1
    message = _errors_from_cli(output)[0]["message"]
    assert message.startswith("\\u0000zzz")
    assert "Unknown field" in message
    assert len(message) < 100
