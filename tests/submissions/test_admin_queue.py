"""The admin review queue shows what a reviewer needs: flags, media, metrics history, the kit."""

from __future__ import annotations

import io

from flask import Flask
from PIL import Image

from koc.core.auth import create_staff
from koc.extensions import db
from tests.admin.conftest import PASSWORD, csrf_token, login


def _reviewer(app: Flask):
    with app.app_context():
        create_staff(email="queue@example.com", role="reviewer", password=PASSWORD).locale = "en"
        db.session.commit()
    client = app.test_client()
    assert login(client, "queue@example.com").status_code == 302
    return client


def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (200, 30, 90)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_queue_shows_flags_media_history_and_kit_with_user_text_escaped(
    app: Flask, member_api, staff_api, post_submission
) -> None:
    admin = staff_api("admin")
    kit = admin.post("/kits", json={"title": "Blind box <i>launch</i>"}).json
    _, member = member_api()
    body = _png()
    upload = member.post("/uploads", json={"filename": "shot.png", "content_type": "image/png",
                                           "size": len(body)}).json
    put = app.test_client().put(upload["upload"]["url"].removeprefix("http://localhost"),
                                data=body, headers=upload["upload"]["headers"])
    assert put.status_code in (200, 204)
    created = post_submission(member, metrics={"views": 10, "likes": 90},
                              caption="<img src=x onerror=alert(1)>",
                              media_upload_ids=[upload["upload_id"]])
    member.post(f"/submissions/{created['id']}/metrics", json={"views": 20, "likes": 95})
    with app.app_context():
        from koc.submissions.models import Submission

        db.session.get(Submission, created["id"]).kit_id = kit["id"]
        db.session.commit()

    page = _reviewer(app).get("/admin/reviews")
    html = page.text
    assert page.status_code == 200
    assert "More likes than views" in html
    assert "Metrics history (2)" in html
    assert 'alt="shot.png"' in html and "/storage/media/" in html
    assert "Blind box &lt;i&gt;launch&lt;/i&gt;" in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "<img src=x" not in html
    assert 'name="reason_code" value="duplicate"' in html
    assert 'accesskey="a"' in html
    assert "img-src 'self' data: http://localhost" in page.headers["Content-Security-Policy"]


def test_rejecting_from_the_queue_keeps_the_reason_code_and_the_text(
    app: Flask, member_api, post_submission
) -> None:
    _, member = member_api()
    created = post_submission(member)
    reviewer = _reviewer(app)
    token = csrf_token(reviewer.get("/admin/reviews").text)
    # What the queue's script sends: the API's review with the session and the page's token.
    response = reviewer.post(f"/api/v1/submissions/{created['id']}/review",
                             headers={"X-CSRFToken": token}, json={
                                 "decision": "reject", "reason": "off_brief",
                                 "note": "no product in the shot"})
    assert response.status_code == 200, response.json
    mine = member.get(f"/submissions/{created['id']}").json
    assert (mine["status"], mine["reason"], mine["note"]) == ("rejected", "off_brief",
                                                             "no product in the shot")
    unknown = post_submission(member)
    refused = reviewer.post(f"/api/v1/submissions/{unknown['id']}/review",
                            headers={"X-CSRFToken": token}, json={
                                "decision": "reject", "reason": "vibes", "note": "x"})
    assert refused.status_code == 422
    assert "reason" in refused.json["errors"]["json"]
    assert member.get(f"/submissions/{unknown['id']}").json["status"] == "pending"
