"""The main flow of the service end to end, through the public contract, on both set-ups:
embedded (SQLite, a storage folder, the filesystem broker) and production parts (PostgreSQL,
SeaweedFS S3, a Celery worker on Redis). The worker is a real `koc worker` process whose beat
scheduler runs the periodic tier recalculation.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from flask import Flask

from koc.cli import main as koc_cli
from tests.conftest import Api

KIT_BYTES = b"\x89PNG\r\n\x1a\n" + os.urandom(4096)


def _run_cli(app: Flask, *args: str, input: str | None = None):
    runner = CliRunner()
    result = runner.invoke(koc_cli, list(args), input=input, obj=_script_info(app),
                           catch_exceptions=False)
    return result


def _script_info(app: Flask):
    from flask.cli import ScriptInfo

    return ScriptInfo(create_app=lambda: app)


@pytest.fixture(params=["embedded", "production"])
def flow_env(request, tmp_path: Path) -> Iterator[dict[str, str]]:
    if request.param == "embedded":
        yield {"KOC_TIER_RECALC_INTERVAL": "10"}
        return
    postgres_url = request.getfixturevalue("postgres_url")
    redis_url = request.getfixturevalue("redis_url")
    seaweed = request.getfixturevalue("seaweedfs")
    bucket = request.getfixturevalue("s3_bucket")
    yield {
        "KOC_DATABASE_URL": postgres_url,
        "KOC_BROKER_URL": redis_url,
        "KOC_STORAGE_URL": f"s3://{bucket}",
        "KOC_S3_ENDPOINT_URL": seaweed.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweed.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweed.secret_key,
        "AWS_DEFAULT_REGION": seaweed.region,
        "KOC_TIER_RECALC_INTERVAL": "10",
    }


def _start_worker(app: Flask, env: dict[str, str], log: Path) -> subprocess.Popen:
    settings = app.config["KOC_SETTINGS"]
    full_env = {
        **os.environ, **env,
        "KOC_ENV": "test",
        "KOC_SECRET_KEY": settings.secret_key,
        # The worker signs badges and reads webhook secrets with the web app's keys.
        "KOC_BADGE_SIGNING_KEY": settings.badge_signing_key,
        "KOC_ENCRYPTION_KEYS": ",".join(settings.encryption_keys),
        "KOC_DATABASE_URL": settings.database_url,
        "KOC_BROKER_DIR": settings.broker_dir,
        "KOC_PUBLIC_URL": settings.public_url or "",
        "FLASK_INSTANCE_PATH": settings.instance_path,
    }
    koc = Path(sys.executable).with_name("koc")
    return subprocess.Popen(
        [str(koc), "worker", "--concurrency", "1"], env=full_env, cwd=settings.instance_path,
        stdout=log.open("w"), stderr=subprocess.STDOUT,
    )


def _stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _upload(app: Flask, client, upload: dict, body: bytes) -> int:
    """PUT the bytes where the presigned request says: S3 directly, or the app's local store."""
    url = upload["url"]
    if url.startswith("http://localhost/"):
        response = client.put(url.removeprefix("http://localhost"), data=body,
                              headers=upload["headers"])
        return response.status_code
    response = requests.put(url, data=body, headers=upload["headers"], timeout=30)
    return response.status_code


def _fetch(client, url: str) -> bytes:
    if url.startswith("http://localhost/"):
        response = client.get(url.removeprefix("http://localhost"))
        assert response.status_code == 200
        return response.get_data()
    response = requests.get(url, timeout=30)
    assert response.status_code == 200, response.text
    return response.content


def test_main_flow_end_to_end(make_app, flow_env: dict[str, str], tmp_path: Path) -> None:
    app = make_app(**flow_env)
    client = app.test_client()
    with app.app_context():
        from koc.core.storage import get_storage

        get_storage().ensure_bucket()

    # 1. An operator creates an admin and a staff token from the command line.
    result = _run_cli(app, "staff", "create", "boss@brand.cn", "--role", "admin",
                      "--password", "s3cret-pass")
    assert result.exit_code == 0, result.output
    result = _run_cli(app, "token", "create", "--staff", "boss@brand.cn")
    assert result.exit_code == 0, result.output
    admin = Api(client, result.stdout.strip().splitlines()[-1])

    # 2. Users of the wider base: one upsert, a CSV import; candidates; invite and accept.
    created = admin.put("/users/crm-1", json={"display_name": "Lin", "city": "Guangzhou",
                                              "tags": ["toys"], "orders_count": 12,
                                              "spend_cents": 250000})
    assert created.status_code == 201, created.json
    assert admin.put("/users/crm-1", json={"orders_count": 13}).status_code == 200
    csv_path = tmp_path / "users.csv"
    csv_path.write_text("external_id,display_name,city,tags,orders_count\n"
                        "crm-2,Wang,Shanghai,toys|beauty,30\n"
                        "crm-3,Zhao,Chengdu,,2\n", encoding="utf-8")
    result = _run_cli(app, "users", "import", str(csv_path))
    assert result.exit_code == 0, result.output
    candidates = admin.get("/candidates?limit=10")
    assert candidates.status_code == 200
    assert [c["external_id"] for c in candidates.json] == ["crm-1", "crm-2", "crm-3"]
    assert {"code": "orders", "value": 13} in candidates.json[0]["reasons"]
    invitation = admin.post("/invitations", json={"external_id": "crm-1"})
    assert invitation.status_code == 201, invitation.json
    accepted = Api(client).post(f"/invitations/{invitation.json['code']}/accept", json={
        "display_name": "Lin the collector", "accept_terms": True,
        "social_accounts": [{"platform": "xiaohongshu", "handle": "lin_c", "followers": 9000}]})
    assert accepted.status_code == 201, accepted.json
    member = Api(client, accepted.json["token"])
    member_id = accepted.json["member"]["id"]
    assert member.get("/me").json["tier"] is None

    # 3. A kit with an asset uploaded straight to storage; the member downloads the same bytes.
    kit = admin.post("/kits", json={"title": "Blind box launch", "notes": "Shoot at eye level",
                                    "segments": [{"city": "Guangzhou"}]})
    assert kit.status_code == 201, kit.json
    kit_id = kit.json["id"]
    asset = admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "hero.png", "content_type": "image/png", "size": len(KIT_BYTES)})
    assert asset.status_code == 201, asset.json
    asset_id = asset.json["asset_id"]
    assert admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete").status_code == 409
    assert _upload(app, client, asset.json["upload"], KIT_BYTES) in (200, 201, 204)
    completed = admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete")
    assert completed.status_code == 200 and completed.json["status"] == "ready"
    assert member.get(f"/kits/{kit_id}").status_code == 404  # still a draft
    assert admin.post(f"/kits/{kit_id}/publish").status_code == 200
    assert [k["id"] for k in member.get("/kits").json] == [kit_id]
    download = member.get(f"/kits/{kit_id}/assets/{asset_id}/download")
    assert download.status_code == 200, download.json
    assert _fetch(client, download.json["url"]) == KIT_BYTES
    with app.app_context():
        from koc.assets.models import Download
        from koc.extensions import db

        assert db.session.query(Download).filter_by(member_id=member_id).count() == 1

    # 4. A submission, retried with the same Idempotency-Key, then approved by a reviewer.
    body = {"kit_id": kit_id, "platform": "xiaohongshu",
            "post_url": "https://www.xiaohongshu.com/discovery/item/64b7f0c2000000001e03a1b2?xsec_token=abc",
            "caption": "开箱啦", "posted_at": "2026-11-20T08:00:00+08:00",
            "metrics": {"views": 5000, "likes": 300, "comments": 40, "saves": 80, "shares": 5}}
    first = member.post("/submissions", json=body, headers={"Idempotency-Key": "post-1"})
    assert first.status_code == 201, first.json
    again = member.post("/submissions", json=body, headers={"Idempotency-Key": "post-1"})
    assert again.json["id"] == first.json["id"]
    other_body = member.post("/submissions", json={**body, "caption": "changed"},
                             headers={"Idempotency-Key": "post-1"})
    assert other_body.status_code == 422
    reviewer_token = _staff_token(app, "reviewer")
    reviewed = Api(client, reviewer_token).post(
        f"/submissions/{first.json['id']}/review", json={"decision": "approve", "rating": 4})
    assert reviewed.status_code == 200, reviewed.json
    score = reviewed.json["score"]
    assert score > 0
    assert sum(reviewed.json["score_breakdown"]["parts"].values()) == pytest.approx(score)
    me = member.get("/me").json
    assert me["points"] == {"balance": score, "lifetime": score}
    assert me["progress"]["next_tier"]["key"] == "certified"
    assert me["progress"]["requirements"][0]["current"] == 1

    # 5. The periodic recalculation, run by a real worker's beat scheduler, promotes the member.
    worker = _start_worker(app, flow_env, tmp_path / "worker.log")
    try:
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            me = member.get("/me").json
            if me["tier"] is not None:
                break
            assert worker.poll() is None, (tmp_path / "worker.log").read_text()
            time.sleep(1)
        else:
            pytest.fail("the beat job never promoted the member:\n"
                        + (tmp_path / "worker.log").read_text()[-3000:])
    finally:
        _stop(worker)
    assert me["tier"] == {"key": "certified", "name": "Certified KOC"}
    assert me["progress"]["next_tier"]["key"] == "early_access"
    assert {"name", "current", "required", "met"} <= set(me["progress"]["requirements"][0])
    history = admin.get(f"/members/{member_id}").json["tier_history"]
    assert [(h["from_tier"], h["to_tier"]) for h in history] == [(None, "certified")]

    # The command-line recalculation finds nothing left to do: running twice changes nothing.
    result = _run_cli(app, "tiers", "recalc")
    assert result.exit_code == 0 and "0 promoted" in result.output


def _staff_token(app: Flask, role: str) -> str:
    from tests.conftest import staff_token_for

    return staff_token_for(app, role)


def test_health_and_docs(client) -> None:
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 200, ready.json
    spec = client.get("/api/v1/openapi.json")
    assert spec.status_code == 200
    assert "/api/v1/submissions" in spec.json["paths"] or "/submissions" in str(spec.json["paths"])
    assert client.get("/api/v1/docs").status_code == 200
    assert io  # keep the import for binary uploads in later tests
