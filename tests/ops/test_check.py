"""`koc check` against real PostgreSQL, Redis and SeaweedFS, whole and with one part down."""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import socket
from pathlib import Path

import pytest
from click.testing import CliRunner

from koc.cli import main

ORIGIN = "https://koc.example.com"


def _closed_port() -> int:
    # A port that was free a moment ago: nothing listens there.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _put_cors(seaweedfs, bucket: str, origin: str) -> None:
    client = seaweedfs.client()
    client.put_bucket_cors(Bucket=bucket, CORSConfiguration={"CORSRules": [{
        "AllowedOrigins": [origin], "AllowedMethods": ["PUT", "GET", "HEAD"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 600}]})
    client.close()


def _migrations_head() -> str:
    from alembic.script import ScriptDirectory

    from koc import MIGRATIONS_DIR

    return ScriptDirectory(str(MIGRATIONS_DIR)).get_current_head()


@pytest.fixture
def production_env(tmp_path: Path, postgres_url: str, redis_url: str, seaweedfs, s3_bucket):
    return {
        "KOC_ENV": "production",
        "KOC_SECRET_KEY": "a-production-secret-key-of-forty-characters",
        # Production needs its own badge and encryption keys too (koc.settings).
        "KOC_BADGE_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
        "KOC_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
        "KOC_PUBLIC_URL": ORIGIN,
        "KOC_DATABASE_URL": postgres_url,
        "KOC_BROKER_URL": redis_url,
        "KOC_BROKER_DIR": str(tmp_path / "broker"),
        "KOC_STORAGE_URL": f"s3://{s3_bucket}",
        "KOC_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "AWS_DEFAULT_REGION": seaweedfs.region,
    }


def _check(env: dict[str, str]):
    result = CliRunner().invoke(main, ["check"], env=env, catch_exceptions=False)
    lines = {}
    for line in result.output.splitlines():
        state, _, rest = line.partition(" ")
        if state in ("ok", "warn", "FAIL"):
            part, _, message = rest.strip().partition(" ")
            lines.setdefault(part, []).append((state, message.strip()))
    return result, lines


def _states(lines, part: str) -> set[str]:
    return {state for state, _ in lines.get(part, [])}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.s3
def test_a_complete_production_deployment_passes_every_check(production_env, seaweedfs,
                                                             s3_bucket):
    _put_cors(seaweedfs, s3_bucket, ORIGIN)
    result, lines = _check(production_env)
    assert result.exit_code == 0, result.output
    for part in ("settings", "database", "storage", "cors", "broker"):
        assert _states(lines, part) == {"ok"}, result.output
    assert f"at migration {_migrations_head()}" in result.output
    assert "all parts answer" in result.output
    # The probe object was deleted again.
    client = seaweedfs.client()
    assert client.list_objects_v2(Bucket=s3_bucket).get("KeyCount", 0) == 0
    client.close()


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.s3
def test_cors_rules_for_another_origin_fail_and_the_printed_rules_fix_them(
        production_env, seaweedfs, s3_bucket):
    _put_cors(seaweedfs, s3_bucket, "https://elsewhere.example.com")
    result, lines = _check(production_env)
    assert result.exit_code == 1
    assert _states(lines, "cors") == {"FAIL"}
    assert f"does not allow browser uploads from {ORIGIN}" in result.output
    fix = next(line for line in result.output.splitlines() if "put-bucket-cors" in line)
    rules = json.loads(fix.split("--cors-configuration '")[1].split("'")[0])
    client = seaweedfs.client()
    client.put_bucket_cors(Bucket=s3_bucket, CORSConfiguration=rules)
    client.close()
    result, lines = _check(production_env)
    assert result.exit_code == 0, result.output
    assert _states(lines, "cors") == {"ok"}


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.s3
def test_a_bucket_with_no_cors_rules_warns_that_only_the_server_default_allows_uploads(
        production_env, s3_bucket):
    # SeaweedFS answers preflights for buckets without rules; AWS S3 refuses them.
    result, lines = _check(production_env)
    assert result.exit_code == 0, result.output
    assert _states(lines, "cors") == {"ok", "warn"}
    assert "no CORS rules of its own" in result.output


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.s3
def test_each_part_down_is_named_and_the_others_still_checked(production_env, seaweedfs,
                                                              s3_bucket):
    _put_cors(seaweedfs, s3_bucket, ORIGIN)
    port = _closed_port()
    cases = {
        "database": {"KOC_DATABASE_URL": f"postgresql://postgres:hunter2@127.0.0.1:{port}/koc"},
        "broker": {"KOC_BROKER_URL": f"redis://127.0.0.1:{port}/0"},
        "storage": {"KOC_S3_ENDPOINT_URL": f"http://127.0.0.1:{port}"},
    }
    for part, override in cases.items():
        result, lines = _check({**production_env, **override})
        assert result.exit_code == 1, (part, result.output)
        assert _states(lines, part) == {"FAIL"}, (part, result.output)
        healthy = {"database", "broker", "storage"} - {part}
        for other in healthy:
            assert _states(lines, other) == {"ok"}, (part, other, result.output)
        assert "fix:" in result.output
    # A password in a URL is never printed.
    result, _ = _check({**production_env, **cases["database"]})
    assert "hunter2" not in result.output


@pytest.mark.postgres
@pytest.mark.redis
@pytest.mark.s3
def test_a_missing_bucket_and_wrong_credentials_fail_storage(production_env, seaweedfs):
    result, lines = _check({**production_env, "KOC_STORAGE_URL": "s3://no-such-bucket-koc"})
    assert result.exit_code == 1
    assert _states(lines, "storage") == {"FAIL"}
    result, lines = _check({**production_env, "AWS_SECRET_ACCESS_KEY": "wrong-secret"})
    assert result.exit_code == 1
    assert _states(lines, "storage") == {"FAIL"}


@pytest.mark.postgres
def test_a_database_behind_the_migrations_asks_for_an_upgrade(tmp_path, empty_postgres_url):
    env = {"KOC_ENV": "test", "KOC_DATABASE_URL": empty_postgres_url,
           "KOC_STORAGE_URL": f"file://{tmp_path / 'storage'}",
           "KOC_BROKER_DIR": str(tmp_path / "broker")}
    (tmp_path / "broker" / "queue").mkdir(parents=True)
    (tmp_path / "storage").mkdir()
    result, lines = _check(env)
    assert result.exit_code == 1
    assert _states(lines, "database") == {"FAIL"}
    assert "koc db upgrade" in result.output
    assert _states(lines, "broker") == {"ok"}
    assert _states(lines, "storage") == {"ok"}


def test_unparseable_settings_are_each_named(tmp_path):
    env = {"KOC_ENV": "test", "KOC_DOWNLOAD_URL_TTL": "soon", "KOC_BROKER_URL": "http://x"}
    result, lines = _check(env)
    assert result.exit_code == 1
    messages = " ".join(message for _, message in lines["settings"])
    assert "KOC_DOWNLOAD_URL_TTL" in messages
    assert "KOC_BROKER_URL" in messages


def test_production_settings_mistakes_fail(tmp_path):
    env = {"KOC_ENV": "production", "KOC_SECRET_KEY": "sixteen-chars-ok!",
           "KOC_BADGE_SIGNING_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
           "KOC_ENCRYPTION_KEYS": base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
           "KOC_DATABASE_URL": f"sqlite:///{tmp_path / 'koc.db'}",
           "KOC_PUBLIC_URL": "",  # unset, whatever the Makefile exports
           "KOC_STORAGE_URL": f"file://{tmp_path / 'storage'}",
           "KOC_BROKER_DIR": str(tmp_path / "broker")}
    result, lines = _check(env)
    assert result.exit_code == 1
    failures = " ".join(message for state, message in lines["settings"] if state == "FAIL")
    for name in ("KOC_DATABASE_URL", "KOC_BROKER_URL", "KOC_PUBLIC_URL", "KOC_SECRET_KEY"):
        assert name in failures
    with contextlib.suppress(FileNotFoundError):
        (tmp_path / "koc.db").unlink()
