"""Jobs survive a broker that is down: the request succeeds, the job waits, a sweep resends it."""

from __future__ import annotations

import json
from datetime import timedelta

import redis

from koc.core.db import utcnow
from koc.core.jobs import Job, requeue_stale_jobs
from koc.extensions import db
from tests.conftest import Api, staff_token_for


def test_job_is_kept_when_the_broker_is_down_and_resent_later(make_app, redis_url,
                                                              caplog) -> None:
    app = make_app(KOC_BROKER_URL="redis://127.0.0.1:9/0")  # nothing listens on port 9
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    response = admin.post("/tiers/recalculate")
    assert response.status_code == 202
    job_id = response.json["job_id"]
    assert admin.get(f"/jobs/{job_id}").json["status"] == "queued"
    assert "it is sent again later" in caplog.text

    with app.app_context():
        job = db.session.get(Job, job_id)
        job.created_at = utcnow() - timedelta(minutes=10)
        db.session.commit()

    # The broker is back: the same database, now with a reachable Redis.
    database_url = app.config["KOC_SETTINGS"].database_url
    recovered = make_app(KOC_DATABASE_URL=database_url, KOC_BROKER_URL=redis_url)
    with recovered.app_context():
        assert requeue_stale_jobs.run() == 1
    queued = redis.Redis.from_url(redis_url).lrange("celery", 0, -1)
    assert len(queued) == 1
    message = json.loads(queued[0])
    assert message["headers"]["task"] == "koc.tiers.tasks.recalculate_tiers_job"
    assert json.loads(message["headers"]["argsrepr"]) == [job_id]
