"""Engagement snapshots from members, admins and CSV imports, and the anomalies they raise."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest

from koc.core.db import utcnow


def _flags(staff_api, submission_id: int) -> list[str]:
    return [f["kind"] for f in staff_api("viewer").get(f"/submissions/{submission_id}/flags").json]


def test_likes_above_views_are_flagged_not_rejected(member_api, staff_api,
                                                    post_submission) -> None:
    _, member = member_api()
    created = post_submission(member, metrics={"views": 100, "likes": 400})
    assert _flags(staff_api, created["id"]) == ["likes_above_views"]
    assert created["status"] == "pending"
    flagged = staff_api("viewer").get("/submissions?flagged=true").json
    assert [s["id"] for s in flagged] == [created["id"]]
    # Xiaohongshu shows no views: zero views with likes is not an anomaly.
    quiet = post_submission(member, metrics={"views": 0, "likes": 400})
    assert _flags(staff_api, quiet["id"]) == []
    # Members do not see flags, nor filter by them.
    assert member.get(f"/submissions/{created['id']}/flags").status_code == 403
    assert len(member.get("/submissions?flagged=true").json) == 2


@pytest.mark.clock
def test_a_jump_many_times_the_members_usual_daily_engagement_is_flagged(
    member_api, staff_api, post_submission
) -> None:
    _, member = member_api()
    posted = (utcnow() - timedelta(days=10)).isoformat()
    for _ in range(3):  # about 20 interactions a day is this member's usual
        post_submission(member, posted_at=posted, metrics={"likes": 150, "saves": 50})
    steady = post_submission(member, posted_at=posted, metrics={"likes": 180})
    assert _flags(staff_api, steady["id"]) == []
    # One snapshot later the same day: 5,000 more interactions in what counts as one day.
    member.post(f"/submissions/{steady['id']}/metrics", json={"likes": 5180})
    assert _flags(staff_api, steady["id"]) == ["engagement_jump"]
    detail = staff_api("viewer").get(f"/submissions/{steady['id']}/flags").json[0]["detail"]
    assert detail["daily_gain"] == 5000


def _run_history_checks(app) -> None:
    """What the worker's periodic sweep does after new submissions commit."""
    from koc.submissions.tasks import check_history_anomalies

    with app.app_context():
        assert check_history_anomalies.run() > 0
        assert check_history_anomalies.run() == 0  # each snapshot is checked once

@pytest.mark.clock
def test_engagement_rate_far_above_the_members_baseline_is_flagged(app, member_api, staff_api,
                                                                   post_submission) -> None:
    _, member = member_api()
    posted = (utcnow() - timedelta(days=30)).isoformat()
    for _ in range(3):  # 2% of viewers engage, usually
        post_submission(member, posted_at=posted,
                        metrics={"views": 5000, "likes": 80, "comments": 10, "saves": 10})
    normal = post_submission(member, posted_at=posted,
                             metrics={"views": 5000, "likes": 100, "comments": 10, "saves": 10})
    odd = post_submission(member, posted_at=posted,
                          metrics={"views": 1000, "likes": 400, "comments": 50, "saves": 50})
    # The checks against the member's history run after the commit, in a task.
    assert _flags(staff_api, odd["id"]) == []
    _run_history_checks(app)
    assert _flags(staff_api, normal["id"]) == []
    assert _flags(staff_api, odd["id"]) == ["engagement_rate"]


def _import(admin, data: bytes):
    return admin.client.post(
        "/api/v1/submissions/metrics/import", data={"file": (io.BytesIO(data), "m.csv")},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")


def test_csv_import_adds_snapshots_reports_bad_lines_and_is_safe_to_rerun(
    app, member_api, staff_api, post_submission
) -> None:
    admin = staff_api("admin")
    _, member = member_api()
    first = post_submission(member)
    second = post_submission(member)
    csv = (f"submission_id,post_url,views,likes,comments,saves,shares\n"
           f"{first['id']},,1000,90,9,12,3\n"
           f",{second['post_url']}?xsec_source=pc_share,2000,150,,20,\n"
           f"{first['id']},,lots,1,1,1,1\n"
           f"999999,,1,1,1,1,1\n"
           f",,1,1,1,1,1\n").encode()
    response = _import(admin, csv)
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    with app.app_context():
        from koc.extensions import db
        from koc.submissions.services.imports import import_metrics
        from koc.submissions.tasks import import_metrics_task

        # A first attempt that committed its lines and died before finishing the job: the
        # job runs from the start again and adds no line twice.
        import_metrics(csv.decode(), job_id=job_id)
        db.session.commit()
        import_metrics_task.run(job_id)
        import_metrics_task.run(job_id)  # a re-delivered task changes nothing
    job = admin.get(f"/jobs/{job_id}").json
    assert (job["processed"], job["failed"]) == (2, 3)
    assert [(e["line"], e["message"].split(":")[0]) for e in job["errors"]] == [
        (4, "views"), (5, "no such submission"), (6, "submission_id")]
    history = admin.get(f"/submissions/{first['id']}/metrics").json
    assert [(s["likes"], s["source"]) for s in history] == [(90, "import"), (40, "member")]
    assert admin.get(f"/submissions/{second['id']}").json["metrics"]["likes"] == 150


def test_csv_with_an_unknown_column_is_refused_as_a_whole(app, staff_api) -> None:
    admin = staff_api("admin")
    response = _import(admin, b"submission_id,hearts\n1,5\n")
    with app.app_context():
        from koc.submissions.tasks import import_metrics_task

        import_metrics_task.run(response.json["job_id"])
    job = admin.get(f"/jobs/{response.json['job_id']}").json
    assert job["failed"] == 1 and "hearts" in job["errors"][0]["message"]


def test_only_admins_import_metrics(staff_api) -> None:
    assert _import(staff_api("reviewer"), b"submission_id,likes\n").status_code == 403


@pytest.mark.parametrize(("body", "field"), [
    ({"views": -1}, "views"),
    ({"likes": 1.5}, "likes"),
    ({"comments": "3"}, "comments"),
    ({"saves": None}, "saves"),
    ({"shares": True}, "shares"),
    ({"hearts": 3}, "hearts"),
])
def test_bad_metrics_are_422_naming_the_field(member_api, post_submission, body, field) -> None:
    _, member = member_api()
    created = post_submission(member)
    response = member.post(f"/submissions/{created['id']}/metrics", json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert len(member.get(f"/submissions/{created['id']}/metrics").json) == 1
