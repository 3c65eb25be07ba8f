"""Webhooks: Standard Webhooks signatures a receiver checks with the reference library, secrets
and robot keys encrypted at rest, no private targets, no redirects, failed deliveries replayed."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import sqlalchemy as sa
from flask import Flask
from standardwebhooks.webhooks import Webhook as StandardWebhook
from standardwebhooks.webhooks import WebhookVerificationError

from koc.core.db import utcnow
from koc.core.events import (
    MAX_ATTEMPTS,
    DeliveryStatus,
    Webhook,
    WebhookDelivery,
    deliver_due,
    emit,
    standard_headers,
)
from koc.extensions import db
from tests.conftest import Api, staff_token_for
from tests.security.conftest import audit_rows

SECRET = "whsec_" + "c2VjcmV0LWJ5dGVzLWZvci10ZXN0cy0wMTIzNDU2Nzg5"


class Receiver:
    def __init__(self) -> None:
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.status = 200
        self.location: str | None = None
        self.url = ""


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            state.requests.append(({k.lower(): v for k, v in self.headers.items()}, body))
            self.send_response(state.status)
            if state.location:
                self.send_header("Location", state.location)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_port}/hook"
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()


@pytest.fixture
def open_app(make_app: Callable[..., Flask]) -> Flask:
    return make_app(KOC_WEBHOOK_ALLOW_PRIVATE="true")


def _emit(app: Flask) -> None:
    with app.app_context():
        emit("kit.published", {"kit_id": 7, "title": "Spring"})
        db.session.commit()


def test_deliveries_verify_with_the_standard_webhooks_library_and_replays_are_refused(
        open_app: Flask, receiver: Receiver):
    admin = Api(open_app.test_client(), staff_token_for(open_app))
    assert admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                         "secret": SECRET}).status_code == 201
    _emit(open_app)
    with open_app.app_context():
        assert deliver_due.run() == 1

    (headers, body), = receiver.requests
    event = StandardWebhook(SECRET).verify(body, headers)
    assert event["type"] == "kit.published" and event["data"]["kit_id"] == 7
    assert headers["webhook-id"] == f"koc-evt-{event['id']}"
    assert "x-koc-signature" not in headers  # the old, replayable signature is gone
    with pytest.raises(WebhookVerificationError):
        StandardWebhook(SECRET).verify(body.replace(b"Spring", b"Autumn"), headers)
    # The same bytes and signature, replayed ten minutes later, fail the timestamp check.
    with open_app.app_context():
        old = standard_headers(SECRET, event["id"], body, utcnow() - timedelta(minutes=10))
    with pytest.raises(WebhookVerificationError, match="too old"):
        StandardWebhook(SECRET).verify(body, old)


def test_a_plain_secret_signs_with_its_utf8_bytes(open_app: Flask, receiver: Receiver):
    admin = Api(open_app.test_client(), staff_token_for(open_app))
    admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                  "secret": "a plain secret of some length"})
    _emit(open_app)
    with open_app.app_context():
        deliver_due.run()
    (headers, body), = receiver.requests
    StandardWebhook(b"a plain secret of some length").verify(body, headers)


def test_secrets_and_robot_keys_are_encrypted_at_rest(open_app: Flask):
    admin = Api(open_app.test_client(), staff_token_for(open_app))
    robot = "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=693a91f6-robot-key-5aaa"
    admin.post("/webhooks", json={"url": robot, "events": ["kit.published"], "format": "wecom"})
    admin.post("/webhooks", json={"url": "https://hooks.example.com/x",
                                  "events": ["kit.published"], "secret": SECRET})

    with open_app.app_context():
        raw = db.session.execute(sa.text("SELECT url, secret FROM webhooks ORDER BY id")).all()
        stored = db.session.scalars(sa.select(Webhook).order_by(Webhook.id)).all()
        assert [w.url for w in stored] == [robot, "https://hooks.example.com/x"]
        assert stored[1].secret == SECRET
    dump = json.dumps([list(row) for row in raw])
    assert "693a91f6" not in dump and SECRET not in dump and "hooks.example.com" not in dump
    assert all(row.url.startswith("fernet:") for row in raw)


def test_an_app_without_the_key_cannot_read_the_secrets(make_app: Callable[..., Flask]):
    first = make_app()
    Api(first.test_client(), staff_token_for(first)).post("/webhooks", json={
        "url": "https://hooks.example.com/x", "events": ["kit.published"], "secret": SECRET})
    other = make_app(KOC_DATABASE_URL=first.config["KOC_SETTINGS"].database_url)

    with other.app_context(), pytest.raises(RuntimeError, match="KOC_ENCRYPTION_KEYS"):
        db.session.scalars(sa.select(Webhook)).all()


def test_a_rotated_key_still_reads_what_the_old_one_wrote(make_app: Callable[..., Flask]):
    first = make_app()
    Api(first.test_client(), staff_token_for(first)).post("/webhooks", json={
        "url": "https://hooks.example.com/x", "events": ["kit.published"], "secret": SECRET})
    old_key = first.config["KOC_SETTINGS"].encryption_keys[0]
    new_key = "q" * 43 + "="
    rotated = make_app(KOC_DATABASE_URL=first.config["KOC_SETTINGS"].database_url,
                       KOC_ENCRYPTION_KEYS=f"{new_key},{old_key}")
    with rotated.app_context():
        assert db.session.scalars(sa.select(Webhook)).one().secret == SECRET


@pytest.mark.parametrize("url", [
    "http://127.0.0.1:8080/hook", "http://localhost/hook", "http://10.0.0.5/hook",
    "http://169.254.169.254/latest/meta-data/", "http://[::1]/hook", "http://192.168.1.1/x",
    "http://[::ffff:127.0.0.1]/x", "http://100.64.0.1/x", "http://0.0.0.0/x",
])
def test_private_loopback_and_link_local_targets_are_refused(app: Flask, url: str):
    admin = Api(app.test_client(), staff_token_for(app))
    response = admin.post("/webhooks", json={"url": url, "events": ["kit.published"],
                                             "secret": SECRET})
    assert response.status_code == 422
    assert "url" in response.json["errors"]["json"]
    assert admin.get("/webhooks").json == []


def test_a_target_that_turns_private_after_registration_is_not_reached(
        app: Flask, receiver: Receiver):
    with app.app_context():
        # As if the name had resolved to a public address when registered (DNS rebinding).
        db.session.add(Webhook(url=receiver.url, events=["kit.published"], secret=SECRET,
                               format="json"))
        db.session.commit()
    _emit(app)
    with app.app_context():
        assert deliver_due.run() == 0
        delivery = db.session.scalars(sa.select(WebhookDelivery)).one()
        assert "private, loopback or link-local" in delivery.last_error
    assert receiver.requests == []


def test_redirects_are_not_followed(open_app: Flask, receiver: Receiver):
    admin = Api(open_app.test_client(), staff_token_for(open_app))
    admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                  "secret": SECRET})
    receiver.status = 307
    receiver.location = receiver.url + "/elsewhere"
    _emit(open_app)
    with open_app.app_context():
        assert deliver_due.run() == 0
        delivery = db.session.scalars(sa.select(WebhookDelivery)).one()
        assert "HTTP 307" in delivery.last_error
    assert len(receiver.requests) == 1


def test_a_failed_delivery_is_listed_and_replayed(open_app: Flask, receiver: Receiver):
    admin = Api(open_app.test_client(), staff_token_for(open_app, email="ops@example.com"))
    hook = admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                         "secret": SECRET}).json
    _emit(open_app)
    with open_app.app_context():
        delivery = db.session.scalars(sa.select(WebhookDelivery)).one()
        delivery.status, delivery.attempts = DeliveryStatus.failed.value, MAX_ATTEMPTS
        db.session.commit()
        delivery_id = delivery.id

    failed = admin.get(f"/webhooks/{hook['id']}/deliveries", query_string={"status": "failed"})
    replayed = admin.post(f"/webhooks/{hook['id']}/deliveries/{delivery_id}/replay")
    with open_app.app_context():
        assert deliver_due.run() == 1

    assert [d["id"] for d in failed.json] == [delivery_id]
    assert replayed.status_code == 200
    assert (replayed.json["status"], replayed.json["attempts"]) == ("pending", 0)
    assert len(receiver.requests) == 1
    assert receiver.requests[0][0]["webhook-id"] == failed.json[0]["webhook_message_id"]
    delivered = admin.get(f"/webhooks/{hook['id']}/deliveries").json[0]
    assert delivered["status"] == "delivered"
    assert admin.post(f"/webhooks/{hook['id']}/deliveries/999999/replay").status_code == 404
    assert admin.post(f"/webhooks/999999/deliveries/{delivery_id}/replay").status_code == 404
    assert [r.action for r in audit_rows(open_app, action="webhook.replay")] == [
        "webhook.replay"]


def test_the_migration_encrypts_webhooks_stored_in_plain_text(make_app: Callable[..., Flask],
                                                                tmp_path):
    from flask_migrate import upgrade

    app = make_app(KOC_DATABASE_URL=f"sqlite:///{tmp_path / 'old.db'}")
    with app.app_context():
        upgrade(revision="0004_tiers")
        db.session.execute(sa.text(
            "INSERT INTO webhooks (url, events, format, secret, active, created_at) VALUES "
            "('https://hooks.example.com/x', '[\"kit.published\"]', 'json', :s, 1, "
            "'2026-01-01 00:00:00')"), {"s": SECRET})
        db.session.commit()
        upgrade()
        raw = db.session.execute(sa.text("SELECT url, secret FROM webhooks")).one()
        assert raw.url.startswith("fernet:") and raw.secret.startswith("fernet:")
        hook = db.session.scalars(sa.select(Webhook)).one()
        assert (hook.url, hook.secret) == ("https://hooks.example.com/x", SECRET)


def test_a_test_event_reaches_only_that_webhook_signed_and_logged(
    open_app: Flask, receiver: Receiver
):
    admin = Api(open_app.test_client(), staff_token_for(open_app, email="ops@example.com"))
    hook = admin.post("/webhooks", json={"url": receiver.url, "events": ["kit.published"],
                                         "secret": SECRET}).json
    other = admin.post("/webhooks", json={"url": receiver.url + "?other", "events":
                                          ["kit.published"], "secret": SECRET}).json

    sent = admin.post(f"/webhooks/{hook['id']}/test")
    with open_app.app_context():
        assert deliver_due.run() == 1

    assert sent.status_code == 201 and sent.json["event_type"] == "webhook.test"
    headers, body = receiver.requests[0]
    StandardWebhook(SECRET).verify(body, headers)
    assert json.loads(body)["type"] == "webhook.test"
    assert admin.get(f"/webhooks/{hook['id']}/deliveries").json[0]["status"] == "delivered"
    assert admin.get(f"/webhooks/{other['id']}/deliveries").json == []
    assert admin.post("/webhooks/999999/test").status_code == 404
    assert [r.action for r in audit_rows(open_app, action="webhook.test")] == ["webhook.test"]
