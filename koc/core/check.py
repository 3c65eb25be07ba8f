"""`koc check`: reach every part the settings name and say what is wrong and how to fix it.

Each check answers one question an operator has before sending traffic to a new deployment:
are the settings sane for this environment, is the database reachable and migrated to the head,
can the object store take a write and a delete, does the broker answer, and will a browser be
allowed to PUT an upload straight into the bucket (its CORS rules). A check never raises: it
returns a Finding, so one broken part does not hide the state of the others.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import sqlalchemy as sa
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask import Flask
from kombu import Connection

from koc.core.storage import S3Storage, StorageError, build_storage
from koc.core.storage.base import Storage
from koc.settings import Settings

OK, WARN, FAIL = "ok", "warn", "FAIL"
PROBE_PREFIX = "koc-check/"
TIMEOUT = 5


@dataclass(frozen=True)
class Finding:
    part: str
    state: str  # OK, WARN or FAIL
    message: str
    fix: str = ""


def _redact_url(url: str) -> str:
    """A URL without its password, for printing."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return parts._replace(netloc=netloc).geturl()


def check_settings(settings: Settings) -> Iterator[Finding]:
    """What the settings say about this deployment; production mistakes are failures."""
    production = settings.env == "production"
    database = "SQLite" if settings.database_url.startswith("sqlite") else "PostgreSQL"
    storage = "S3" if settings.uses_s3 else "a local folder"
    broker = urlsplit(settings.broker_url).scheme if settings.broker_url else "filesystem"
    yield Finding("settings", OK, f"{settings.env}: {database}, objects in {storage}, "
                                  f"{broker} broker")
    if not production:
        return
    if database == "SQLite":
        yield Finding("settings", FAIL, "KOC_DATABASE_URL is SQLite in production",
                      "set KOC_DATABASE_URL=postgresql://user:password@host:5432/koc")
    if not settings.uses_s3:
        yield Finding("settings", WARN, "KOC_STORAGE_URL is a local folder: every web and "
                                        "worker host must share it",
                      "set KOC_STORAGE_URL=s3://bucket (and KOC_S3_ENDPOINT_URL off AWS)")
    if not settings.broker_url:
        yield Finding("settings", FAIL, "KOC_BROKER_URL is unset: the filesystem broker only "
                                        "works on one host",
                      "set KOC_BROKER_URL=redis://host:6379/0")
    if not settings.public_url:
        yield Finding("settings", FAIL, "KOC_PUBLIC_URL is unset: links in invitations and "
                                        "the CORS origin for uploads are unknown",
                      "set KOC_PUBLIC_URL=https://koc.example.com (the address users open)")
    elif urlsplit(settings.public_url).scheme != "https":
        yield Finding("settings", WARN, f"KOC_PUBLIC_URL {settings.public_url} is not https: "
                                        "session cookies are marked Secure and will not be sent",
                      "serve koc behind TLS and set an https:// KOC_PUBLIC_URL")
    if len(settings.secret_key) < 32:
        yield Finding("settings", FAIL, "KOC_SECRET_KEY is short (under 32 characters)",
                      "set KOC_SECRET_KEY from `python -c 'import secrets; "
                      "print(secrets.token_urlsafe(48))'`")


def check_database(database_uri: str, migrations_dir: str) -> Iterator[Finding]:
    """The database answers, and its schema is at the migrations' head."""
    connect_args = {"connect_timeout": TIMEOUT} if database_uri.startswith("postgresql") else {}
    engine = sa.create_engine(database_uri, poolclass=sa.pool.NullPool, connect_args=connect_args)
    shown = _redact_url(database_uri)
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
            current = set(MigrationContext.configure(conn).get_current_heads())
    except sa.exc.SQLAlchemyError as exc:
        yield Finding("database", FAIL, f"cannot reach {shown}: {_first_line(exc)}",
                      "check KOC_DATABASE_URL (host, port, user, password, database name) and "
                      "that the server runs and accepts connections from this host")
        return
    finally:
        engine.dispose()
    heads = set(ScriptDirectory(migrations_dir).get_heads())
    if current == heads:
        yield Finding("database", OK, f"{shown} at migration {', '.join(sorted(heads))}")
    elif not current:
        yield Finding("database", FAIL, f"{shown} has no schema (head is "
                                        f"{', '.join(sorted(heads))})",
                      "run `koc db upgrade`")
    else:
        yield Finding("database", FAIL, f"{shown} is at {', '.join(sorted(current))}, the code "
                                        f"expects {', '.join(sorted(heads))}",
                      "run `koc db upgrade` (back up first; see docs/deploy.md, upgrades)")


def check_storage(settings: Settings, storage: Storage | None = None) -> Iterator[Finding]:
    """A probe object is written, read back and deleted."""
    storage = storage or build_storage(settings)
    key = f"{PROBE_PREFIX}probe-{uuid.uuid4().hex}"
    body = b"koc check probe"
    try:
        # First: some stores (SeaweedFS) create a missing bucket on the first write.
        storage.ping()
        storage.put_bytes(key, body, content_type="text/plain")
        try:
            if storage.get_bytes(key) != body:
                yield Finding("storage", FAIL, f"{settings.storage_url}: the probe object read "
                                               "back differs from what was written",
                              "check the store's health and any proxy in front of it")
                return
        finally:
            storage.delete(key)
        if storage.head(key) is not None:
            yield Finding("storage", FAIL, f"{settings.storage_url}: the probe object is still "
                                           "there after a delete",
                          "grant s3:DeleteObject to koc's credentials")
            return
    except (StorageError, OSError) as exc:
        yield Finding("storage", FAIL, f"{settings.storage_url}: {_first_line(exc)}",
                      _storage_fix(settings))
        return
    yield Finding("storage", OK, f"{settings.storage_url}: wrote, read and deleted {key}")


def _storage_fix(settings: Settings) -> str:
    if not settings.uses_s3:
        return "create the folder KOC_STORAGE_URL names and let the koc user write to it"
    return ("check that the bucket exists, KOC_S3_ENDPOINT_URL points at the store, and "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY allow s3:PutObject, s3:GetObject and "
            "s3:DeleteObject on it")


def cors_rules(origin: str) -> str:
    """The bucket CORS configuration browser uploads and downloads need, as JSON."""
    # ETag exposed: the admin panel's multipart upload reads each part's ETag.
    return json.dumps({"CORSRules": [{
        "AllowedOrigins": [origin], "AllowedMethods": ["PUT", "GET", "HEAD"],
        "AllowedHeaders": ["*"], "ExposeHeaders": ["ETag"], "MaxAgeSeconds": 3600}]})


def check_cors(settings: Settings, storage: Storage | None = None) -> Iterator[Finding]:
    """Asks the store the question a browser asks before a presigned PUT (a CORS preflight)."""
    if not settings.uses_s3:
        yield Finding("cors", OK, "uploads go to this app's own /storage route (same origin)")
        return
    if not settings.public_url:
        yield Finding("cors", FAIL, "KOC_PUBLIC_URL is unset, so the origin browsers upload "
                                    "from is unknown",
                      "set KOC_PUBLIC_URL to the address users open the admin panel at")
        return
    parts = urlsplit(settings.public_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    storage = storage or build_storage(settings)
    bucket = urlsplit(settings.storage_url).netloc
    fix = (f"aws s3api put-bucket-cors --bucket {bucket} --cors-configuration "
           f"'{cors_rules(origin)}'"
           + (f" --endpoint-url {settings.s3_endpoint_url}" if settings.s3_endpoint_url else ""))
    try:
        upload = storage.presign_put(f"{PROBE_PREFIX}cors-{uuid.uuid4().hex}",
                                     content_type="image/jpeg", size=1, expires_in=60)
    except StorageError as exc:
        yield Finding("cors", FAIL, f"cannot presign an upload: {_first_line(exc)}",
                      _storage_fix(settings))
        return
    request = urllib.request.Request(upload.url, method="OPTIONS", headers={  # noqa: S310 - the store's URL
        "Origin": origin,
        "Access-Control-Request-Method": "PUT",
        "Access-Control-Request-Headers": "content-type",
    })
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310
            allowed = response.headers.get("Access-Control-Allow-Origin")
            methods = response.headers.get("Access-Control-Allow-Methods", "")
    except urllib.error.HTTPError as exc:
        allowed = exc.headers.get("Access-Control-Allow-Origin")
        methods = exc.headers.get("Access-Control-Allow-Methods", "")
    except OSError as exc:
        yield Finding("cors", FAIL, f"the store did not answer a preflight: {_first_line(exc)}",
                      _storage_fix(settings))
        return
    if allowed not in (origin, "*"):
        yield Finding("cors", FAIL, f"bucket {bucket} does not allow browser uploads from "
                                    f"{origin} (Access-Control-Allow-Origin: {allowed or 'none'})",
                      fix)
    elif methods and "PUT" not in methods.upper():
        yield Finding("cors", FAIL, f"bucket {bucket} allows {origin} but not PUT "
                                    f"(Access-Control-Allow-Methods: {methods})", fix)
    else:
        yield Finding("cors", OK, f"bucket {bucket} allows PUT uploads from {origin}")
        if isinstance(storage, S3Storage) and not _has_cors_rules(storage):
            yield Finding("cors", WARN, f"bucket {bucket} has no CORS rules of its own: the "
                                        "store's default allows the upload, AWS S3 would not",
                          fix)


def _has_cors_rules(storage: S3Storage) -> bool:
    try:
        storage.client.get_bucket_cors(Bucket=storage.bucket)
    except Exception:  # botocore's ClientError: NoSuchCORSConfiguration, or not implemented
        return False
    return True


def check_broker(settings: Settings) -> Iterator[Finding]:
    """The broker accepts a connection (or the filesystem transport's folders exist)."""
    if not settings.broker_url:
        queue = Path(settings.broker_dir) / "queue"
        if queue.is_dir():
            yield Finding("broker", OK, f"filesystem transport in {settings.broker_dir}")
        else:
            yield Finding("broker", FAIL, f"the broker folder {queue} is missing",
                          "run `koc worker` once (it creates it) or set KOC_BROKER_URL")
        return
    shown = _redact_url(settings.broker_url)
    try:
        with Connection(settings.broker_url, connect_timeout=TIMEOUT) as conn:
            conn.ensure_connection(max_retries=1, timeout=TIMEOUT)
    except Exception as exc:  # kombu raises the transport's own errors
        yield Finding("broker", FAIL, f"cannot reach {shown}: {_first_line(exc)}",
                      "check KOC_BROKER_URL and that the broker (Redis) runs and accepts "
                      "connections from this host")
        return
    yield Finding("broker", OK, f"{shown} answers")


def run_checks(app: Flask, migrations_dir: str) -> list[Finding]:
    settings: Settings = app.config["KOC_SETTINGS"]
    storage = build_storage(settings)
    checks: list[Callable[[], Iterator[Finding]]] = [
        lambda: check_settings(settings),
        lambda: check_database(app.config["SQLALCHEMY_DATABASE_URI"], migrations_dir),
        lambda: check_storage(settings, storage),
        lambda: check_cors(settings, storage),
        lambda: check_broker(settings),
    ]
    findings: list[Finding] = []
    for check in checks:
        findings.extend(check())
    return findings


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:300]
