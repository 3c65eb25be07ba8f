"""A real `koc serve` on the embedded set-up (SQLite, storage folder, filesystem broker), started
the way an operator starts it, and concurrent clients speaking HTTP to it.

The instance is migrated with `koc db upgrade`, its staff and tokens made with `koc staff create`
and `koc token create`, and it is served by gunicorn with its default two workers, so requests
really run in two processes against one database file, next to CLI commands run alongside.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

KOC = Path(sys.executable).with_name("koc")
REQUEST_TIMEOUT = 60  # seconds: long enough for a queue of writers, short enough to end a hang
STARTUP_TIMEOUT = 60


def _free_port() -> int:
    with closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class HttpApi:
    """One client's view of the API: its own connection pool and bearer token."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url
        self.token = token
        self.session = requests.Session()

    def request(self, method: str, path: str, *, json: Any = None,
                headers: dict[str, str] | None = None) -> requests.Response:
        merged = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        return self.session.request(method, f"{self.base_url}/api/v1{path}", json=json,
                                    headers={**merged, **(headers or {})},
                                    timeout=REQUEST_TIMEOUT)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.request("GET", path, **kw)

    def post(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("POST", path, json=json, **kw)

    def put(self, path: str, json: Any = None, **kw: Any) -> requests.Response:
        return self.request("PUT", path, json=json, **kw)

    def fresh(self) -> HttpApi:
        """The same token on a new connection, as a second device of the same user."""
        return HttpApi(self.base_url, self.token)


@dataclass
class Served:
    url: str
    env: dict[str, str]
    instance: Path
    log: Path
    process: subprocess.Popen
    admin: HttpApi = field(init=False)
    reviewer: HttpApi = field(init=False)

    @property
    def database(self) -> Path:
        return self.instance / "koc.db"

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        result = subprocess.run([str(KOC), *args], env=self.env, cwd=self.instance,
                                capture_output=True, text=True, timeout=300, check=False)
        if check:
            assert result.returncode == 0, f"koc {' '.join(args)}:\n{result.stderr[-3000:]}"
        return result

    def cli_in_background(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([str(KOC), *args], env=self.env, cwd=self.instance,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    @contextmanager
    def cli_repeatedly(self, *args: str) -> Iterator[list[subprocess.CompletedProcess]]:
        """Run a command again and again in the background while the block runs; the list
        holds every finished run, the one running when the block ends included."""
        finished: list[subprocess.CompletedProcess] = []
        stop = threading.Event()

        def loop() -> None:
            while not stop.is_set():
                finished.append(self.cli(*args, check=False))

        thread = threading.Thread(target=loop, daemon=True)
        thread.start()
        try:
            yield finished
        finally:
            stop.set()
            thread.join(timeout=300)

    def staff_token(self, role: str) -> str:
        email = f"{role}-{uuid.uuid4().hex[:8]}@brand.example"
        self.cli("staff", "create", email, "--role", role, "--password", "long enough pw")
        return self.cli("token", "create", "--staff", email).stdout.strip().splitlines()[-1]

    def new_member(self, external_id: str) -> tuple[int, HttpApi]:
        """Upsert a user, invite and accept, as the API contract describes it."""
        assert self.admin.put(f"/users/{external_id}", json={}).status_code in (200, 201)
        invite = self.admin.post("/invitations", json={"external_id": external_id})
        assert invite.status_code == 201, invite.text
        accepted = HttpApi(self.url).post(
            f"/invitations/{invite.json()['code']}/accept",
            json={"display_name": f"KOC {external_id}", "accept_terms": True})
        assert accepted.status_code == 201, accepted.text
        body = accepted.json()
        return body["member"]["id"], HttpApi(self.url, body["token"])

    def query(self, sql: str, *params: Any) -> list[tuple]:
        """Read the database file directly, read-only, as one more concurrent reader."""
        with closing(sqlite3.connect(f"file:{self.database}?mode=ro", uri=True,
                                     timeout=30)) as connection:
            return connection.execute(sql, params).fetchall()

    def server_errors(self) -> list[str]:
        """Tracebacks and 5xx lines gunicorn logged: none is the goal."""
        lines = self.log.read_text(errors="replace").splitlines()
        return [line for line in lines
                if "Traceback" in line or "OperationalError" in line or '" 50' in line]


def _wait_until_up(served: Served) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if served.process.poll() is not None:
            pytest.fail(f"koc serve exited:\n{served.log.read_text()[-3000:]}")
        try:
            if requests.get(f"{served.url}/healthz", timeout=2).status_code == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    pytest.fail(f"koc serve did not answer in {STARTUP_TIMEOUT} s:\n"
                f"{served.log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    instance = tmp_path_factory.mktemp("embedded")
    env = {
        **os.environ,
        "KOC_ENV": "test",
        "KOC_SECRET_KEY": "concurrency-test-secret-0123456789",
        # Many members from one address within seconds: what the limits exist to stop.
        "KOC_RATELIMIT_ENABLED": "false",
        "KOC_DATABASE_URL": f"sqlite:///{instance / 'koc.db'}",
        "KOC_STORAGE_URL": f"file://{instance / 'storage'}",
        "KOC_BROKER_DIR": str(instance / "broker"),
    }
    env.pop("KOC_BROKER_URL", None)
    port = _free_port()
    env["KOC_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
    subprocess.run([str(KOC), "db", "upgrade"], env=env, cwd=instance, check=True,
                   capture_output=True, timeout=120)
    log = instance / "serve.log"
    with log.open("w") as sink:
        process = subprocess.Popen([str(KOC), "serve", "--port", str(port)], env=env,
                                   cwd=instance, stdout=sink, stderr=subprocess.STDOUT)
    served = Served(url=f"http://127.0.0.1:{port}", env=env, instance=instance, log=log,
                    process=process)
    try:
        _wait_until_up(served)
        served.admin = HttpApi(served.url, served.staff_token("admin"))
        served.reviewer = HttpApi(served.url, served.staff_token("reviewer"))
        yield served
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def race(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run every call at once (released together by a barrier); results in call order.

    Each call is an HTTP request with a timeout, so the race ends by itself."""
    barrier = threading.Barrier(len(calls), timeout=REQUEST_TIMEOUT)

    def run(call: Callable[[], Any]) -> Any:
        barrier.wait()
        return call()

    with ThreadPoolExecutor(max_workers=len(calls)) as pool:
        return list(pool.map(run, calls))
