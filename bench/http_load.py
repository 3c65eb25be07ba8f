"""What the HTTP benchmarks share: gunicorn serving an app, and `wrk` driving it from a Lua script.

`wrk` (the Debian package, installed by `make chromium`) is a C load generator: its 16
connections cost a fraction of a core, where Python client threads would take as much CPU as the
servers they measure and hide most of the gap between two apps. Each run's figures come from the
script's `done()` hook as one JSON line (requests, seconds, non-2xx answers, latency percentiles),
so nothing parses wrk's human summary.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent

# Appended to every script: the figures as one JSON line on stdout.
_DONE = r"""
function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'KOC_WRK {"requests": %d, "micros": %d, "non2xx": %d, "socket_errors": %d, '
    .. '"p50": %d, "p90": %d, "p99": %d, "mean": %.1f}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk_path() -> str:
    found = shutil.which("wrk")
    if found is None:
        raise SystemExit("wrk is not installed: `make chromium` installs it (apt-get install wrk)")
    return found


@contextmanager
def gunicorn(target: str, env: dict[str, str], *, workers: int, threads: int, log: Path,
             probe: str = "/") -> Iterator[str]:
    """Serve `target` ("module:factory()") on a free port until the block ends."""
    port = free_port()
    command = [str(Path(sys.executable).with_name("gunicorn")), "--workers", str(workers),
               "--threads", str(threads), "--bind", f"127.0.0.1:{port}",
               "--log-level", "warning", "--backlog", "256", target]
    with log.open("w") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out,
                                   stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn for {target} exited; see {log}")
            try:
                requests.get(base + probe, timeout=5)
                break
            except (requests.ConnectionError, requests.Timeout):
                if time.monotonic() > deadline:
                    raise RuntimeError(f"gunicorn for {target} did not start; see {log}") from None
                time.sleep(0.2)
        yield base
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@dataclass
class WrkResult:
    label: str
    requests: int
    seconds: float
    non2xx: int
    socket_errors: int
    p50_ms: float
    p90_ms: float
    p99_ms: float

    @property
    def rps(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0


def run_wrk(label: str, base: str, script: str, *, duration: float, connections: int = 16,
            threads: int = 2, env: dict[str, str] | None = None,
            workdir: Path) -> WrkResult:
    """Drive `base` for `duration` seconds with `script` (Lua defining `request`, maybe `init`
    and `delay`): a closed loop of `connections`, each sending its next request on an answer."""
    path = workdir / f"wrk-{abs(hash((label, script))) % 10**8}.lua"
    path.write_text(script + _DONE)
    command = [wrk_path(), "-t", str(threads), "-c", str(connections), "-d",
               f"{max(1, round(duration))}s", "--timeout", "10s", "-s", str(path), base]
    done = subprocess.run(command, env={**os.environ, **(env or {})}, capture_output=True,
                          text=True, check=False, timeout=duration + 120)
    line = next((ln for ln in done.stdout.splitlines() if ln.startswith("KOC_WRK ")), None)
    if done.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({done.returncode}): {done.stdout}\n{done.stderr}")
    data = json.loads(line.removeprefix("KOC_WRK "))
    return WrkResult(label, data["requests"], data["micros"] / 1e6, data["non2xx"],
                     data["socket_errors"], data["p50"] / 1000, data["p90"] / 1000,
                     data["p99"] / 1000)


def print_table(results: list[WrkResult]) -> None:
    rows = [("", "requests", "non-2xx", "seconds", "req/s", "p50 ms", "p90 ms", "p99 ms")]
    for r in results:
        rows.append((r.label, f"{r.requests:,}", str(r.non2xx + r.socket_errors),
                     f"{r.seconds:.1f}", f"{r.rps:,.0f}", f"{r.p50_ms:.1f}", f"{r.p90_ms:.1f}",
                     f"{r.p99_ms:.1f}"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for index, row in enumerate(rows):
        print("  " + "   ".join(cell.rjust(w) if i else cell.ljust(w)
                                for i, (cell, w) in enumerate(zip(row, widths, strict=True))))
        if index == 0:
            print("  " + "   ".join("-" * w for w in widths))


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here
