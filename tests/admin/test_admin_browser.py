"""The review queue in a real browser: Debian's Chromium driven by Playwright over a live server."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from flask import Flask

from koc.extensions import db
from koc.submissions.models import PointsEntry, Submission
from tests.admin.conftest import CHROMIUM, CHROMIUM_ARGS, PASSWORD
from tests.plugins.services import missing_service

pytestmark = pytest.mark.browser

@pytest.fixture
def browser_page() -> Iterator:
    if not CHROMIUM.exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            context = browser.new_context(locale="en-US")
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            context.close()
        finally:
            browser.close()


def test_reviewer_signs_in_and_approves_a_submission_by_clicking(
    app: Flask, live_server: str, browser_page, make_staff: Callable,
    pending_submission: Callable,
):
    from playwright.sync_api import expect

    page = browser_page
    problems: list[str] = []
    # A CSP violation or a missing stylesheet shows up as a console error.
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    _staff_id, email = make_staff("reviewer", locale="en")
    keep_id = pending_submission(caption="keep me waiting")
    submission_id = pending_submission(caption="approve me <b>please</b>")

    page.goto(f"{live_server}/admin/reviews")
    expect(page).to_have_url(f"{live_server}/admin/login?next=/admin/reviews")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()

    expect(page).to_have_url(f"{live_server}/admin/reviews")
    row = page.locator(f"#submission-{submission_id}")
    expect(row).to_be_visible()
    expect(row.locator(".caption")).to_have_text("approve me <b>please</b>")
    row.locator("select").select_option("5")
    row.get_by_role("button", name="Approve").click()

    expect(page.locator(".flash-ok")).to_have_text(
        f"Submission {submission_id} approved with rating 5."
    )
    expect(page.locator(f"#submission-{submission_id}")).to_have_count(0)
    expect(page.locator(f"#submission-{keep_id}")).to_be_visible()
    assert problems == []

    with app.app_context():
        submission = db.session.get(Submission, submission_id)
        assert submission.status == "approved"
        assert submission.rating == 5
        assert db.session.get(Submission, keep_id).status == "pending"
        assert db.session.query(PointsEntry).filter_by(
            member_id=submission.member_id, reference=str(submission_id)
        ).count() == 1
