"""The short-link resolver follows real redirects (a local server stands in for the platform)."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from koc.submissions.services import short_links

NOTE_PATH = "/explore/65a1b2c3000000001f00aa01?xsec_token=T"


class _Platform(BaseHTTPRequestHandler):
    def do_HEAD(self) -> None:
        if self.path == "/a/ok":
            self.send_response(302)
            self.send_header("Location", NOTE_PATH)
        elif self.path == NOTE_PATH:
            self.send_response(200)
        else:
            self.send_response(404)
        self.end_headers()

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def platform() -> Iterator[str]:
    server = HTTPServer(("127.0.0.1", 0), _Platform)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_resolver_returns_where_the_link_redirects(platform: str) -> None:
    assert short_links.final_url(f"{platform}/a/ok", timeout=2) == f"{platform}{NOTE_PATH}"


def test_resolver_gives_up_on_a_link_that_leads_nowhere(platform: str) -> None:
    assert short_links.final_url(f"{platform}/a/gone", timeout=2) is None


def test_resolver_is_off_by_default_and_gives_up_quietly() -> None:
    assert short_links.resolver(enabled=False, timeout=1) is None
    assert short_links.final_url("http://127.0.0.1:9/a/x", timeout=0.5) is None
