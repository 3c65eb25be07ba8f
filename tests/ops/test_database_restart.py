"""PostgreSQL restarted under a running web tier: 503 while it is down, nothing half-written,
service back without restarting gunicorn.

The shared test server cannot be stopped, so this test runs its own PostgreSQL cluster (initdb
in a temporary folder, as the postgres user when run as root) on a free port.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import requests

from tests.ops.test_gunicorn import REPO, _free_port
from tests.ops.test_web_faults import _body, _member_token, _wait_until_up
from tests.plugins.services import missing_service

pytestmark = pytest.mark.postgres


def _pg_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(found).parent
    versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return versions[-1].parent if versions else None


class Cluster:
    def __init__(self, bin_dir: Path, data: Path, port: int) -> None:
        self.bin_dir, self.data, self.port = bin_dir, data, port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"

    def _run(self, *command: str) -> None:
        prefix = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        subprocess.run([*prefix, *command], check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                  str(self.data / "server.log"), "-o",
                  f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run(str(self.bin_dir / "pg_ctl"), "-D", str(self.data), "-w", "-m", "fast",
                  "stop")


@pytest.fixture
def own_postgres() -> Iterator[Cluster]:
    bin_dir = _pg_bin()
    if bin_dir is None:
        missing_service("PostgreSQL server binaries (pg_ctl, initdb) not found")
    root = Path(tempfile.mkdtemp(prefix="koc-pg-"))
    data = root / "data"
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(root, "postgres")
        shutil.chown(data, "postgres")
    cluster = Cluster(bin_dir, data, _free_port())
    cluster._run(str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust")
    cluster.start()
    try:
        yield cluster
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


def test_requests_get_503_while_postgres_is_down_and_succeed_once_it_is_back(
        make_app, own_postgres, tmp_path):
    from flask_migrate import upgrade

    from koc.extensions import db

    with psycopg.connect(own_postgres.url, autocommit=True) as conn:
        conn.execute("CREATE DATABASE koc")
    url = own_postgres.url.rsplit("/", 1)[0] + "/koc"
    app = make_app(KOC_DATABASE_URL=url)
    with app.app_context():
        upgrade(directory=str(REPO / "migrations"), revision="heads")
        db.engine.dispose()
    token = _member_token(app)
    with app.app_context():
        db.engine.dispose()

    settings = app.config["KOC_SETTINGS"]
    port = _free_port()
    env = {**os.environ, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
           "KOC_DATABASE_URL": url, "KOC_STORAGE_URL": settings.storage_url,
           "KOC_BROKER_DIR": settings.broker_dir, "KOC_PUBLIC_URL": "http://localhost",
           "KOC_BIND": f"127.0.0.1:{port}", "KOC_WEB_WORKERS": "1", "KOC_WEB_THREADS": "2",
           "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics")}
    log = tmp_path / "gunicorn.log"
    with log.open("wb") as out:
        web = subprocess.Popen(
            [str(Path(sys.executable).with_name("gunicorn")), "-c",
             str(REPO / "deploy" / "gunicorn.conf.py"), "koc:create_app()"],
            env=env, cwd=settings.instance_path, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    auth = {"Authorization": f"Bearer {token}"}
    try:
        _wait_until_up(base, web, log)

        def post(n: int, key: str) -> requests.Response:
            return requests.post(f"{base}/api/v1/submissions", json=_body(n), timeout=30,
                                 headers={**auth, "Idempotency-Key": key})

        assert post(1, "before").status_code == 201  # the pool now holds a live connection

        own_postgres.stop()
        down = post(2, "during")
        assert down.status_code == 503, down.text
        assert down.json()["message"] == "The database is not answering; try again shortly."
        assert down.headers["Retry-After"]
        ready = requests.get(f"{base}/readyz", timeout=30)
        assert ready.status_code == 503 and "database" in ready.json()["failing"]

        own_postgres.start()  # gunicorn is not restarted
        retried = post(2, "during")
        assert retried.status_code == 201, retried.text
        assert post(3, "after").status_code == 201
        assert requests.get(f"{base}/readyz", timeout=30).json()["checks"]["database"] == "ok"
    finally:
        web.send_signal(signal.SIGTERM)
        web.wait(timeout=40)
    with psycopg.connect(url, autocommit=True) as conn:
        assert conn.execute("SELECT count(*) FROM submissions").fetchone()[0] == 3
