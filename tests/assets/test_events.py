"""Publishing a kit emits `kit.published` through the outbox; a real worker delivers it to
webhooks, signed, retrying a receiver that fails; WeCom robots get batched text messages."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from flask import Flask
from standardwebhooks.webhooks import Webhook as StandardWebhook

from koc.core.events import (
    WECOM_MAX_BYTES,
    OutboxEvent,
    WebhookDelivery,
    deliver_due,
    wecom_batches,
)
from koc.extensions import db
from tests.assets.conftest import Kits, png_bytes, s3_env

SECRET = "whsec-0123456789abcdef"


@pytest.fixture
def app(make_app) -> Flask:
    # The receivers here listen on 127.0.0.1, which webhooks may reach only when allowed.
    return make_app(KOC_WEBHOOK_ALLOW_PRIVATE="true")


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    answer: bytes = b"ok"
    requests: list[tuple[dict[str, str], bytes, int]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP endpoint that answers 500 to its first `fail_first` requests, then 200."""
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            with state.lock:
                status = 500 if len(state.requests) < state.fail_first else 200
                # Header names are case-insensitive (urllib sends X-koc-signature).
                state.requests.append(({k.lower(): v for k, v in self.headers.items()},
                                       body, status))
            self.send_response(status)
            self.send_header("Content-Length", str(len(state.answer)))
            self.end_headers()
            self.wfile.write(state.answer)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


def _start_worker(app, env: dict[str, str], log: Path) -> subprocess.Popen:
    settings = app.config["KOC_SETTINGS"]
    full_env = {**os.environ, **env, "KOC_ENV": "test", "KOC_SECRET_KEY": settings.secret_key,
                "KOC_BADGE_SIGNING_KEY": settings.badge_signing_key,
                "KOC_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
                "KOC_DATABASE_URL": settings.database_url, "KOC_PUBLIC_URL": "http://localhost",
                "FLASK_INSTANCE_PATH": settings.instance_path}
    koc = Path(sys.executable).with_name("koc")
    return subprocess.Popen([str(koc), "worker", "--concurrency", "2"], env=full_env,
                            cwd=settings.instance_path, stdout=log.open("w"),
                            stderr=subprocess.STDOUT)


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _wait_for(check, worker: subprocess.Popen, log: Path, what, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        assert worker.poll() is None, log.read_text()[-3000:]
        time.sleep(0.5)
    what = what() if callable(what) else what
    pytest.fail(f"{what} did not happen; worker log:\n{log.read_text()[-4000:]}")


def _deliveries(app) -> str:
    with app.app_context():
        rows = db.session.query(WebhookDelivery).all()
        return repr([(d.status, d.attempts, d.next_attempt_at, d.last_error) for d in rows])


def test_worker_delivers_kit_published_signed_after_two_failures_and_hashes_the_upload(
    make_app, postgres_url, redis_url, seaweedfs, s3_bucket, receiver, tmp_path
) -> None:
    env = {"KOC_DATABASE_URL": postgres_url, "KOC_BROKER_URL": redis_url,
           "KOC_WEBHOOK_ALLOW_PRIVATE": "true", **s3_env(seaweedfs, s3_bucket)}
    app = make_app(**env)
    kits = Kits(app)
    hook = kits.admin.post("/webhooks", json={"url": receiver.url + "/hooks/koc",
                                              "events": ["kit.published"], "secret": SECRET})
    assert hook.status_code == 201, hook.json
    assert "secret" not in hook.json
    receiver.fail_first = 2
    kit_id = kits.kit(title="新品开箱 kit", product_name="Blind box S3")
    image = png_bytes(1200, 800)
    asset_id = kits.upload(kit_id, image)
    kits.publish(kit_id)

    log = tmp_path / "worker.log"
    worker = _start_worker(app, env, log)
    try:
        delivered = _wait_for(
            lambda: [r for r in receiver.requests if r[2] == 200], worker, log,
            lambda: f"a successful webhook delivery (receiver got "
                    f"{[r[2] for r in receiver.requests]}; deliveries {_deliveries(app)})")
        asset = _wait_for(
            lambda: next((a for a in kits.admin.get(f"/kits/{kit_id}").json["assets"]
                          if a["sha256"] and a["width"]), None),
            worker, log, "the checksum and preview tasks")
    finally:
        _stop(worker)

    assert [status for _, _, status in receiver.requests] == [500, 500, 200]
    headers, body, _ = delivered[0]
    # Standard Webhooks, checked with its reference library as a receiver would.
    event = StandardWebhook(SECRET.encode()).verify(body, headers)
    assert event["type"] == "kit.published" == headers["x-koc-event"]
    assert event["data"]["kit_id"] == kit_id and event["data"]["title"] == "新品开箱 kit"
    # The three attempts were of one event: receivers can drop repeats by its id.
    assert {h["x-koc-event-id"] for h, _, _ in receiver.requests} == {str(event["id"])}
    assert len({h["webhook-id"] for h, _, _ in receiver.requests}) == 1
    with app.app_context():
        delivery = db.session.query(WebhookDelivery).one()
        assert (delivery.status, delivery.attempts) == ("delivered", 3)
    listed = kits.admin.get("/webhooks").json
    assert [(w["pending"], w["failed"]) for w in listed] == [(0, 0)]
    assert asset["id"] == asset_id
    assert asset["sha256"] == hashlib.sha256(image).hexdigest()
    assert (asset["width"], asset["height"]) == (1200, 800)


def test_publish_emits_one_event_in_its_own_transaction(kits, app) -> None:
    kit_id = kits.kit()
    # Refused (no file yet): the request rolls back, so no event either.
    assert kits.admin.post(f"/kits/{kit_id}/publish").status_code == 409
    kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    kits.publish(kit_id)
    with app.app_context():
        events = db.session.query(OutboxEvent).all()
        assert [(e.event_type, e.payload["kit_id"]) for e in events] == [
            ("kit.published", kit_id)]


def test_a_receiver_that_stays_down_loses_nothing(kits, app, receiver) -> None:
    receiver.fail_first = 10**6
    kits.admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                       "secret": SECRET})
    kit_id = kits.kit()
    kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    with app.app_context():
        deliver_due.run()
        delivery = db.session.query(WebhookDelivery).one()
        assert (delivery.status, delivery.attempts) == ("pending", 1)
        assert "HTTP 500" in delivery.last_error
        # Not due again before its backoff: a second run right away sends nothing.
        deliver_due.run()
        db.session.refresh(delivery)
        assert delivery.attempts == 1
    assert len(receiver.requests) == 1


def test_wecom_robot_gets_one_batched_message_and_its_key_is_never_shown(kits, app,
                                                                         receiver) -> None:
    receiver.answer = b'{"errcode": 0, "errmsg": "ok"}'
    url = receiver.url + "/cgi-bin/webhook/send?key=693a91f6-7xxx-4bc4-97a0-0ec2sifa5aaa"
    created = kits.admin.post("/webhooks", json={"url": url, "events": ["kit.published"],
                                                 "format": "wecom"})
    assert created.status_code == 201, created.json
    for shown in (created.json, kits.admin.get("/webhooks").json[0]):
        assert "693a91f6" not in json.dumps(shown)
        assert shown["url"].endswith("key=****5aaa")
    for title in ("夏季新品", "Blind box", "店员拍摄指南"):
        kit_id = kits.kit(title=title)
        kits.upload(kit_id, png_bytes())
        kits.publish(kit_id)
    with app.app_context():
        assert deliver_due.run() == 3
    assert len(receiver.requests) == 1
    message = json.loads(receiver.requests[0][1])
    assert message["msgtype"] == "text"
    assert all(t in message["text"]["content"] for t in ("夏季新品", "Blind box", "店员拍摄指南"))


def test_wecom_says_no_through_errcode_and_the_events_wait(kits, app, receiver) -> None:
    receiver.answer = b'{"errcode": 45009, "errmsg": "api freq out of limit"}'
    kits.admin.post("/webhooks", json={
        "url": receiver.url + "/cgi-bin/webhook/send?key=k-1234", "events": ["kit.published"],
        "format": "wecom"})
    kit_id = kits.kit()
    kits.upload(kit_id, png_bytes())
    kits.publish(kit_id)
    with app.app_context():
        assert deliver_due.run() == 0
        delivery = db.session.query(WebhookDelivery).one()
        assert delivery.status == "pending" and "45009" in delivery.last_error


def test_wecom_messages_stay_within_2048_utf8_bytes() -> None:
    lines = [f"新素材包 {i}: " + "拍摄要点" * (i % 40) for i in range(300)]
    lines.append("超" * 3000)  # alone over the cap: cut, not dropped
    batches = wecom_batches(lines)
    assert all(len(content.encode("utf-8")) <= WECOM_MAX_BYTES for content, _ in batches)
    assert sum(count for _, count in batches) == len(lines)
    assert batches[0][0].startswith("新素材包 0")
    assert len(batches) < len(lines) / 5


@pytest.mark.parametrize(("body", "field"), [
    ({"url": "ftp://example.com/x", "events": ["kit.published"], "secret": SECRET}, "url"),
    ({"url": "https://example.com/x", "events": ["kit.deleted"], "secret": SECRET}, "events"),
    ({"url": "https://example.com/x", "events": ["kit.published"]}, "secret"),
    ({"url": "https://example.com/x", "events": ["kit.published"], "format": "wecom"}, "url"),
    ({"url": "https://example.com/x", "events": ["kit.published"], "secret": "short"},
     "secret"),
])
def test_bad_webhook_is_422_naming_the_field(kits, body, field) -> None:
    response = kits.admin.post("/webhooks", json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert kits.admin.get("/webhooks").json == []
