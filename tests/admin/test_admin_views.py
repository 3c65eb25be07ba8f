"""The admin panel through the Flask test client: login, roles, CSRF, the review queue, i18n."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from flask import Flask
from flask.testing import FlaskClient

from koc.assets.models import Kit
from koc.core.auth import Staff
from koc.core.db import utcnow
from koc.extensions import db
from koc.submissions.models import PointsEntry, Submission
from koc.tiers.models import TierRun
from tests.admin.conftest import csrf_token, login


def _submission(app: Flask, submission_id: int) -> Submission:
    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        db.session.expunge(submission)
        return submission


def _queue_ids(html: str) -> list[int]:
    return [int(found) for found in re.findall(r'data-submission-id="(\d+)"', html)]


def _review(client: FlaskClient, submission_id: int, **body: object):
    """What the queue's script sends: the API's review, with the session and the page's token."""
    queue = client.get("/admin/reviews")
    return client.post(f"/api/v1/submissions/{submission_id}/review",
                       headers={"X-CSRFToken": csrf_token(queue.text)}, json=body)


# --- login -------------------------------------------------------------------------------------

def test_pages_redirect_to_login_when_signed_out(client: FlaskClient):
    response = client.get("/admin/reviews")
    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/login?next=/admin/reviews"


def test_login_with_wrong_password_is_refused_without_saying_which_part(
    app: Flask, make_staff: Callable
):
    _id, email = make_staff("admin")
    client = app.test_client()

    wrong_password = login(client, email, "not the password", **{"Accept-Language": "en"})
    unknown_email = login(client, "nobody@example.com", **{"Accept-Language": "en"})

    for response in (wrong_password, unknown_email):
        assert response.status_code == 200
        assert "Wrong email or password" in response.text
    assert wrong_password.text.count("Wrong email") == unknown_email.text.count("Wrong email")
    with client.session_transaction() as session:
        assert "staff_id" not in session
    assert client.get("/admin/").status_code == 302


def test_inactive_staff_cannot_log_in(app: Flask, make_staff: Callable):
    _id, email = make_staff("admin", active=False)
    client = app.test_client()

    response = login(client, email)

    assert response.status_code == 200
    assert client.get("/admin/").status_code == 302


def test_login_starts_a_fresh_session_holding_the_staff_id(app: Flask, make_staff: Callable):
    staff_id, email = make_staff("viewer")
    client = app.test_client()
    with client.session_transaction() as session:
        session["planted"] = "by someone else"

    response = login(client, email)

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    with client.session_transaction() as session:
        assert session["staff_id"] == staff_id
        assert "planted" not in session


def test_login_follows_a_local_next_but_not_another_site(app: Flask, make_staff: Callable):
    _id, email = make_staff("reviewer")
    for target, expected in (("/admin/reviews", "/admin/reviews"),
                             ("//evil.example/", "/admin/"),
                             ("https://evil.example/", "/admin/")):
        client = app.test_client()
        page = client.get("/admin/login", query_string={"next": target})
        response = client.post(
            "/admin/login", query_string={"next": target},
            data={"csrf_token": csrf_token(page.text), "email": email,
                  "password": "correct horse battery staple"},
        )
        assert response.headers["Location"] == expected


def test_logout_needs_a_post_with_csrf_and_ends_the_session(signed_in: Callable):
    client = signed_in("viewer")
    page = client.get("/admin/")

    assert client.get("/admin/logout").status_code == 405
    assert client.post("/admin/logout").status_code == 400
    assert client.get("/admin/").status_code == 200

    response = client.post("/admin/logout", data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 302


def test_deactivated_staff_is_signed_out_on_the_next_request(
    app: Flask, make_staff: Callable
):
    staff_id, email = make_staff("reviewer")
    client = app.test_client()
    login(client, email)
    assert client.get("/admin/reviews").status_code == 200

    with app.app_context():
        db.session.get(Staff, staff_id).active = False
        db.session.commit()

    assert client.get("/admin/reviews").status_code == 302


# --- roles and CSRF ----------------------------------------------------------------------------

def test_viewer_cannot_open_the_queue_or_approve(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    viewer = signed_in("viewer")
    token = csrf_token(viewer.get("/admin/").text)

    queue = viewer.get("/admin/reviews")
    approve = viewer.post(f"/api/v1/submissions/{submission_id}/review",
                          headers={"X-CSRFToken": token}, json={"decision": "approve",
                                                                "rating": 5})

    assert queue.status_code == 403
    assert "text/html" in queue.headers["Content-Type"]
    assert approve.status_code == 403
    assert _submission(app, submission_id).status == "pending"


def test_a_review_without_the_csrf_header_is_refused(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")
    reviewer.get("/admin/reviews")

    missing = reviewer.post(f"/api/v1/submissions/{submission_id}/review",
                            json={"decision": "approve", "rating": 4})
    forged = reviewer.post(f"/api/v1/submissions/{submission_id}/review",
                           headers={"X-CSRFToken": "forged"},
                           json={"decision": "approve", "rating": 4})

    assert missing.status_code == 403
    assert forged.status_code == 403
    assert "X-CSRFToken" in missing.json["message"]
    assert _submission(app, submission_id).status == "pending"


def test_the_queue_has_no_form_post_of_its_own_for_a_decision(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")
    page = reviewer.get("/admin/reviews").text

    old_route = reviewer.post(f"/admin/reviews/{submission_id}",
                              data={"csrf_token": csrf_token(page), "decision": "approve",
                                    "rating": "4"})

    assert old_route.status_code in (404, 405)
    assert f'data-url="/api/v1/submissions/{submission_id}/review"' in page
    assert f'action="/admin/reviews/{submission_id}?' not in page
    assert _submission(app, submission_id).status == "pending"


def test_csrf_token_of_another_session_is_refused(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    other_token = csrf_token(signed_in("reviewer").get("/admin/reviews").text)
    reviewer = signed_in("reviewer")
    reviewer.get("/admin/reviews")

    response = reviewer.post(f"/api/v1/submissions/{submission_id}/review",
                             headers={"X-CSRFToken": other_token},
                             json={"decision": "approve", "rating": 4})

    assert response.status_code == 403
    assert _submission(app, submission_id).status == "pending"


# --- review queue ------------------------------------------------------------------------------

def test_queue_lists_pending_submissions_oldest_first_with_their_details(
    app: Flask, signed_in: Callable, pending_submission: Callable, member_api: Callable
):
    member = member_api()
    first = pending_submission(member=member, caption="第一条", likes=7)
    second = pending_submission(member=member, caption="second post")
    with app.app_context():
        kit = Kit(title="秋季新品拍摄指南")
        db.session.add(kit)
        db.session.flush()
        db.session.get(Submission, first).kit_id = kit.id
        db.session.commit()
    reviewer = signed_in("reviewer")

    page = reviewer.get("/admin/reviews")

    assert page.status_code == 200
    assert _queue_ids(page.text) == [first, second]
    assert "KOC user-1" in page.text
    assert "第一条" in page.text
    assert "秋季新品拍摄指南" in page.text
    assert 'target="_blank" rel="noopener noreferrer"' in page.text
    assert "https://www.xiaohongshu.com/explore/000000000000000000000001" in page.text
    assert '<span class="metric-value">7</span>' in page.text


def test_approving_from_the_queue_marks_it_approved_and_books_points(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")

    response = _review(reviewer, submission_id, decision="approve", rating=4)

    assert response.status_code == 200, response.json
    assert response.json["status"] == "approved"
    queue = reviewer.get("/admin/reviews")
    assert submission_id not in _queue_ids(queue.text)
    submission = _submission(app, submission_id)
    assert submission.status == "approved"
    assert submission.rating == 4
    assert submission.reviewed_by_staff_id is not None
    with app.app_context():
        entry = db.session.scalar(sa.select(PointsEntry).where(
            PointsEntry.member_id == submission.member_id,
            PointsEntry.reference == str(submission_id)))
    assert entry is not None
    assert entry.points == submission.score > Decimal(0)


def test_rejecting_needs_a_reason(app: Flask, signed_in: Callable, pending_submission: Callable):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")

    blank = _review(reviewer, submission_id, decision="reject", reason="other", note="   ")
    assert blank.status_code == 422
    assert "note" in blank.json["errors"]["json"]
    assert _submission(app, submission_id).status == "pending"

    _review(reviewer, submission_id, decision="reject", reason="other",
            note="Not about our product")
    submission = _submission(app, submission_id)
    assert submission.status == "rejected"
    assert submission.review_reason == "Not about our product"
    assert submission.rating is None


def test_reviewing_an_already_reviewed_submission_is_a_conflict(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")
    _review(reviewer, submission_id, decision="approve", rating=5)

    again = _review(reviewer, submission_id, decision="reject", reason="off_brief")

    assert again.status_code == 409
    assert _submission(app, submission_id).status == "approved"


def test_reviewing_a_missing_submission_is_a_json_404(signed_in: Callable):
    reviewer = signed_in("admin")

    response = _review(reviewer, 999_999, decision="approve", rating=3)

    assert response.status_code == 404
    assert response.json["code"] == 404


def test_rating_outside_one_to_five_is_refused(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    submission_id = pending_submission()
    reviewer = signed_in("reviewer")

    response = _review(reviewer, submission_id, decision="approve", rating=9)

    assert response.status_code == 422
    assert "rating" in response.json["errors"]["json"]
    assert _submission(app, submission_id).status == "pending"


def test_caption_with_script_is_escaped_in_the_queue(
    signed_in: Callable, pending_submission: Callable
):
    pending_submission(caption='<script>alert("x")</script> & <b>bold</b>')
    reviewer = signed_in("reviewer")

    page = reviewer.get("/admin/reviews").text

    assert "<script>alert" not in page
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in page
    # The only script tags are the panel's own files.
    tags = re.findall(r"<script[^>]*>", page)
    assert tags and all(re.fullmatch(r'<script src="/admin/static/[a-z_]+\.js">', t) for t in tags)


def test_queue_pages_by_fifty(app: Flask, signed_in: Callable, pending_submission: Callable,
                              member_api: Callable):
    member = member_api()
    ids = [pending_submission(member=member) for _ in range(51)]
    reviewer = signed_in("reviewer")

    first_page = reviewer.get("/admin/reviews")
    second_page = reviewer.get("/admin/reviews?page=2")

    assert _queue_ids(first_page.text) == ids[:50]
    assert _queue_ids(second_page.text) == ids[50:]
    assert reviewer.get("/admin/reviews?page=3").headers["Location"] == "/admin/reviews?page=2"


# --- dashboard ---------------------------------------------------------------------------------

def test_dashboard_shows_counts_and_when_tiers_were_last_recalculated(
    app: Flask, signed_in: Callable, pending_submission: Callable
):
    pending_submission()
    pending_submission()
    viewer = signed_in("viewer")

    never = viewer.get("/admin/").text
    assert "The tier recalculation has never finished." in never
    assert '<p class="big" id="pending-count">2</p>' in never
    assert "No tier yet" in never

    with app.app_context():
        db.session.add(TierRun(trigger="schedule", rules_version=1, status="succeeded",
                               members_evaluated=2, started_at=utcnow() - timedelta(minutes=6),
                               finished_at=utcnow() - timedelta(minutes=5)))
        db.session.commit()

    recent = viewer.get("/admin/").text
    assert "has never finished" not in recent
    assert "5 minutes ago" in recent
    assert "Succeeded" in recent


# --- languages ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("locale", "expected", "absent"), [
    ("zh_CN", ["审核队列", "通过", "驳回", "评分"], "Review queue"),
    ("en", ["Review queue", "Approve", "Reject", "Rating"], "审核队列"),
])
def test_queue_speaks_the_staff_members_language(
    signed_in: Callable, pending_submission: Callable, locale: str, expected: list[str],
    absent: str
):
    pending_submission()
    reviewer = signed_in("reviewer", locale=locale)

    page = reviewer.get("/admin/reviews").text

    for text in expected:
        assert text in page
    assert absent not in page


def test_login_page_follows_the_browser_language(client: FlaskClient):
    assert "登录" in client.get("/admin/login", headers={"Accept-Language": "zh-CN"}).text
    english = client.get("/admin/login", headers={"Accept-Language": "en-US,en;q=0.9"}).text
    assert "Sign in" in english
    assert "登录" not in english


def test_language_switch_changes_the_page_and_is_remembered(signed_in: Callable):
    client = signed_in("viewer", locale="zh_CN")
    page = client.get("/admin/")
    assert "概览" in page.text

    response = client.post("/admin/locale", data={
        "csrf_token": csrf_token(page.text), "locale": "en", "next": "/admin/"})

    assert response.status_code == 302
    assert response.headers["Location"] == "/admin/"
    assert "Dashboard" in client.get("/admin/").text
    assert client.post("/admin/locale", data={"locale": "zh_CN"}).status_code == 400


def test_language_picked_on_the_login_page_is_kept_after_signing_in(
    app: Flask, make_staff: Callable
):
    staff_id, email = make_staff("viewer", locale="zh_CN")
    client = app.test_client()
    page = client.get("/admin/login", headers={"Accept-Language": "zh-CN"})
    client.post("/admin/locale", data={"csrf_token": csrf_token(page.text), "locale": "en",
                                       "next": "/admin/login"})

    login(client, email)

    assert "Dashboard" in client.get("/admin/").text
    with app.app_context():
        assert db.session.get(Staff, staff_id).locale == "en"


def test_signing_in_uses_the_staff_members_language_over_the_browsers(signed_in: Callable):
    client = signed_in("viewer", locale="zh_CN")

    page = client.get("/admin/", headers={"Accept-Language": "en"}).text

    assert "概览" in page


# --- errors ------------------------------------------------------------------------------------

def test_unknown_admin_url_is_an_html_page_while_the_api_keeps_json(
    client: FlaskClient, signed_in: Callable
):
    admin_page = signed_in("viewer").get("/admin/no-such-page")
    api_error = client.get("/api/v1/no-such-thing")

    assert admin_page.status_code == 404
    assert "text/html" in admin_page.headers["Content-Type"]
    assert api_error.status_code == 404
    assert api_error.json["code"] == 404
