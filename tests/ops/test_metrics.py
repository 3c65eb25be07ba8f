"""/metrics: who may read it, and the figures it shows after real work."""

from __future__ import annotations

import time

import pytest

TOKEN = "m" * 40


def _value(text: str, series: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(series + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


def test_metrics_are_off_by_default(client):
    assert client.get("/metrics").status_code == 404


def test_token_mode_wants_the_token(make_app):
    app = make_app(KOC_METRICS="token", KOC_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    assert client.get("/metrics").status_code == 401
    wrong = {"Authorization": "Bearer " + "x" * 40}
    assert client.get("/metrics", headers=wrong).status_code == 401
    answer = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
    assert answer.status_code == 200
    assert answer.content_type.startswith("text/plain")


def test_token_mode_without_a_token_is_refused_at_start_up(make_app):
    from koc.settings import SettingsError

    with pytest.raises(SettingsError, match="KOC_METRICS_TOKEN"):
        make_app(KOC_METRICS="token")


def test_port_mode_hides_metrics_from_the_public_port(make_app):
    app = make_app(KOC_METRICS="port", KOC_METRICS_PORT="9187")
    client = app.test_client()
    assert client.get("/metrics").status_code == 404
    assert client.get("/metrics", base_url="http://localhost:9187").status_code == 200


def test_requests_are_counted_per_route_not_per_path(make_app):
    app = make_app(KOC_METRICS="token", KOC_METRICS_TOKEN=TOKEN)
    client = app.test_client()
    for code in ("AAAA1111", "BBBB2222", "CCCC3333"):
        client.post(f"/api/v1/invitations/{code}/accept", json={})
    text = client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert "AAAA1111" not in text
    prefix = 'koc_http_requests_total{endpoint="/api/v1/invitations/<key:code>/accept"'
    counted = [line for line in text.splitlines() if line.startswith(prefix)]
    # Counters are per process and other tests in this process count too: at least ours.
    assert sum(float(line.rsplit(" ", 1)[1]) for line in counted) >= 3
    assert "koc_outbox_backlog" in text and "koc_tier_runs" in text
    assert _value(text, 'koc_metrics_source_up{source="tier_runs"}') == 1.0


@pytest.mark.postgres
def test_tier_runs_are_read_from_their_table(make_app, postgres_url):
    from datetime import UTC, datetime, timedelta

    import sqlalchemy as sa

    from koc.extensions import db

    app = make_app(KOC_DATABASE_URL=postgres_url, KOC_METRICS="token", KOC_METRICS_TOKEN=TOKEN)
    with app.app_context():
        start = datetime(2027, 3, 1, 12, 0, tzinfo=UTC)
        db.session.execute(sa.text(
            "INSERT INTO tier_runs (trigger, kind, rules_version, status, members_evaluated, "
            "promotions, demotions, started_at, finished_at) VALUES "
            "('schedule', 'full', 1, 'finished', 50000, 120, 30, :s, :f)"),
            {"s": start, "f": start + timedelta(seconds=42)})
        db.session.commit()
    text = app.test_client().get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"}).text
    assert _value(text, 'koc_tier_last_run_duration_seconds{kind="full"}') == 42.0
    assert _value(text, 'koc_tier_last_run_members_changed{kind="full"}') == 150.0
    assert _value(text, 'koc_tier_runs{kind="full",status="finished"}') == 1.0


@pytest.mark.redis
def test_celery_tasks_and_queue_depth_are_counted(make_app, own_redis):
    from celery.contrib.testing.worker import start_worker

    app = make_app(KOC_BROKER_URL=own_redis, KOC_METRICS="token", KOC_METRICS_TOKEN=TOKEN)
    celery_app = app.extensions["celery"]

    @celery_app.task(name="tests.ops.fails")
    def fails() -> None:
        raise RuntimeError("boom")

    @celery_app.task(name="tests.ops.works")
    def works() -> None:
        return None

    client = app.test_client()
    auth = {"Authorization": f"Bearer {TOKEN}"}
    for _ in range(3):
        works.delay()
    text = client.get("/metrics", headers=auth).text
    assert _value(text, 'koc_celery_queue_depth{queue="celery"}') == 3.0
    fails.delay()
    with start_worker(celery_app, pool="solo", perform_ping_check=False, loglevel="CRITICAL"):
        for _ in range(200):
            text = client.get("/metrics", headers=auth).text
            done = _value(text, 'koc_celery_tasks_total{state="success",task="tests.ops.works"}')
            failed = _value(text, 'koc_celery_tasks_total{state="failure",task="tests.ops.fails"}')
            if done == 3.0 and failed == 1.0:
                break
            time.sleep(0.05)
    assert done == 3.0 and failed == 1.0, text
    assert _value(text, 'koc_celery_task_duration_seconds_count{task="tests.ops.works"}') == 3.0
    assert _value(text, 'koc_celery_queue_depth{queue="celery"}') == 0.0
