"""The review queue's one-submission decisions and the audit log's details in Debian's Chromium,
in zh-CN: approve and reject write through POST /api/v1/submissions/{id}/review with the session
and X-CSRFToken (no form POST of the panel's own), the API's refusal is shown on the card, and
the audit log shows each entry's details as labelled lines with tier names, not raw JSON.

Full-page screenshots go to screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.extensions import db
from koc.submissions.models import Submission
from tests.admin.conftest import screenshot, sign_in
from tests.conftest import Api, staff_token_for

pytestmark = pytest.mark.browser


def _posts(page: Any) -> list[str]:
    """Every POST the page sends, as "path" (recorded from here on)."""
    sent: list[str] = []
    page.on("request", lambda request: sent.append(request.url.split("//", 1)[1].split("/", 1)[1])
            if request.method == "POST" else None)
    return sent


def test_reviewer_rejects_and_approves_one_submission_through_the_api(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
    pending_submission: Callable,
):
    from playwright.sync_api import expect

    rejected, approved, waiting = (pending_submission(caption=f"第{n}篇") for n in (1, 2, 3))
    _staff_id, email = make_staff("reviewer")
    page = zh_page
    sign_in(page, live_server, email, "/admin/reviews")
    sent = _posts(page)

    # "Other" without a word of explanation: the API refuses, the card says why, nothing changes.
    card = page.locator(f"#submission-{rejected}")
    card.locator(".reject-form button[type=submit]").click()
    expect(card.locator(".review-result")).to_contain_text("未能审核：")  # noqa: RUF001
    expect(card.locator(".review-result")).to_contain_text("note")
    with app.app_context():
        assert db.session.get(Submission, rejected).status == "pending"

    card.locator('input[name="reason_code"][value="off_brief"]').check()
    card.locator('textarea[name="reason"]').fill("画面里没有产品")
    card.locator(".reject-form button[type=submit]").click()
    expect(page.locator(f"#submission-{rejected}")).to_have_count(0)
    expect(page.locator("#review-status")).to_have_text(f"投稿 {rejected} 已驳回。")

    second = page.locator(f"#submission-{approved}")
    second.locator('select[name="rating"]').select_option("4")
    second.get_by_role("button", name="通过").click()
    expect(page.locator(f"#submission-{approved}")).to_have_count(0)
    expect(page.locator("#review-status")).to_have_text(
        f"投稿 {approved} 已通过，评分 4。")  # noqa: RUF001
    # The cursor moved on to what is left.
    expect(page.locator(f"#submission-{waiting}")).to_have_class("card submission current")
    screenshot(page, "review_queue_single_decisions")
    # Chromium logs the refused request itself; nothing else went wrong.
    assert [p for p in page.problems if "status of 422" not in p] == [], page.problems

    assert sent == [f"api/v1/submissions/{rejected}/review"] * 2 + [
        f"api/v1/submissions/{approved}/review"]
    with app.app_context():
        found = {s.id: (s.status, s.rating, s.reject_reason, s.review_reason)
                 for s in db.session.scalars(sa.select(Submission))}
    assert found == {rejected: ("rejected", None, "off_brief", "画面里没有产品"),
                     approved: ("approved", 4, None, None),
                     waiting: ("pending", None, None, None)}


def test_the_audit_log_shows_details_as_labelled_lines_with_tier_names(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
):
    from playwright.sync_api import expect

    member_id, _member = member_api()
    admin_api = Api(app.test_client(), staff_token_for(app, "admin"))
    changed = admin_api.patch(f"/members/{member_id}",
                              json={"tier": "senior", "tier_locked": True,
                                    "reason": "<b>门店推荐</b>"})
    assert changed.status_code == 200, changed.json
    _staff_id, email = make_staff("admin")
    page = zh_page
    sign_in(page, live_server, email, "/admin/audit?action=member.update")

    row = page.locator("tr[data-audit-id]").first
    details = row.locator("dl.details")
    expect(details.get_by_text("之后 · 等级", exact=True)).to_have_count(1)
    expect(details).to_contain_text("资深 KOC")
    expect(details.get_by_text("之后 · 等级锁定", exact=True)).to_have_count(1)
    expect(details).to_contain_text("是")
    # The reason is text as typed, not markup, and nothing is shown as raw JSON.
    expect(details).to_contain_text("<b>门店推荐</b>")
    expect(details).not_to_contain_text('{"')
    expect(details).not_to_contain_text("senior")
    screenshot(page, "audit_log")
    assert not page.problems, page.problems
