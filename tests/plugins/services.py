"""pytest plugin: PostgreSQL (a fresh database per test) and Redis, as real servers.

Each PostgreSQL test gets its own database, cloned from a template that the Alembic migrations
built once per session, and dropped afterwards even when the test fails. Without a server these
tests are skipped, unless KOC_REQUIRE_SERVICES=1, where a skip would hide a broken set-up.
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator

import pytest

PG_ADMIN_URL = os.environ.get("KOC_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres")


def _redis_db() -> int:
    """A database number per test process, so two suites on one machine, or the workers of one
    (pytest-xdist: gw0, gw1, ... share their parent), do not flush or consume each other's
    queues."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw"):
        return 1 + (os.getppid() + int(worker[2:])) % 15
    return 1 + os.getpid() % 15


REDIS_URL = os.environ.get("KOC_TEST_REDIS_URL", f"redis://127.0.0.1:6379/{_redis_db()}")


def services_required() -> bool:
    return os.environ.get("KOC_REQUIRE_SERVICES") == "1"


def missing_service(message: str) -> None:
    if services_required():
        pytest.fail(f"{message} (KOC_REQUIRE_SERVICES=1)", pytrace=False)
    pytest.skip(message)


def _pg_url(dbname: str) -> str:
    """A test database's URL. Its sessions commit without waiting for the WAL flush: no test
    is about surviving a server crash, and a sync per commit made the suite the disk's pace."""
    base, _, _ = PG_ADMIN_URL.rpartition("/")
    return f"{base}/{dbname}?options=-c%20synchronous_commit%3Doff"


def _admin_execute(*statements: str) -> None:
    import psycopg

    with psycopg.connect(PG_ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        for statement in statements:
            conn.execute(statement)


def _require_postgres() -> None:
    import psycopg

    try:
        _admin_execute("SELECT 1")
    except psycopg.OperationalError as exc:
        missing_service(f"PostgreSQL is not reachable at {PG_ADMIN_URL}: {exc}")


@pytest.fixture(scope="session")
def postgres_template() -> Iterator[str]:
    """Name of a database holding the migrated schema, to clone per test."""
    _require_postgres()
    name = f"koc_tpl_{uuid.uuid4().hex[:10]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        from flask_migrate import upgrade

        from koc import create_app

        with tempfile.TemporaryDirectory() as instance:
            app = create_app({"KOC_DATABASE_URL": _pg_url(name), "KOC_ENV": "test"},
                             instance_path=instance)
            with app.app_context():
                upgrade(revision="heads")
                from koc.extensions import db

                db.engine.dispose()
        yield name
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def postgres_url(postgres_template: str) -> Iterator[str]:
    name = f"koc_t_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}" TEMPLATE "{postgres_template}"')
    try:
        yield _pg_url(name)
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    _require_postgres()
    name = f"koc_e_{uuid.uuid4().hex[:12]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield _pg_url(name)
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis database emptied before and after the test."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        client.ping()
    except redis.exceptions.ConnectionError as exc:
        missing_service(f"Redis is not reachable at {REDIS_URL}: {exc}")
    client.flushdb()
    try:
        yield REDIS_URL
    finally:
        client.flushdb()
        client.close()
