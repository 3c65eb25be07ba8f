"""A Redis server of the test's own for the tests that run Celery workers.

The shared Redis hands each pytest process a database number, but several suites on one machine
can still land on the same one, and then one suite's worker takes another's tasks. A worker test
here asserts on which task ran and when, so it gets a server nobody else talks to.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.services import missing_service


@pytest.fixture
def own_redis() -> Iterator[str]:
    server = shutil.which("redis-server")
    if server is None:
        missing_service("redis-server not found (Debian package redis-server)")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    workdir = Path(tempfile.mkdtemp(prefix="koc-redis-"))
    process = subprocess.Popen(
        [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
         "--dir", str(workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        import redis

        client = redis.Redis(port=port, socket_connect_timeout=1)
        for _ in range(100):
            try:
                client.ping()
                break
            except redis.exceptions.ConnectionError:
                time.sleep(0.05)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)
