"""The member page, the review queue, the rules forms and the settings in Debian's Chromium, in
zh-CN: each page's main flow, writes going through /api/v1 with the session and X-CSRFToken.

Full-page screenshots go to screenshots/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.assets.models import Download, Kit
from koc.core.audit import AuditEvent
from koc.core.db import utcnow
from koc.core.events import deliver_due
from koc.extensions import db
from koc.members.models import Member
from koc.submissions.models import Submission
from koc.tiers.models import Drop, DropClaim, TierChange
from tests.admin.conftest import screenshot, sign_in
from tests.security.test_webhooks import Receiver, receiver  # noqa: F401 - a fixture

pytestmark = pytest.mark.browser

PATCH_FROM_PAGE = """async ([url, withToken]) => {
  const headers = {"Content-Type": "application/json"};
  if (withToken) {
    headers["X-CSRFToken"] = document.querySelector('meta[name="csrf-token"]').content;
  }
  const answer = await fetch(url, {method: "PATCH", headers, credentials: "same-origin",
                                   body: JSON.stringify({status: "suspended", reason: "x"})});
  return answer.status;
}"""


def test_manager_locks_a_members_tier_with_a_reason_from_the_member_page(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
    pending_submission: Callable,
):
    from playwright.sync_api import expect

    member_id, member = member_api(city="上海")
    pending_submission(member=(member_id, member), caption="<script>alert(1)</script>")
    _staff_id, email = make_staff("admin")
    page = zh_page
    sign_in(page, live_server, email, f"/admin/members/{member_id}")

    expect(page.locator("#social-accounts, #submissions").first).to_be_visible()
    # The caption is not on this page, but the member's submission is, and nothing ran.
    expect(page.locator("#submissions tbody tr")).to_have_count(1)
    page.select_option("#member-tier", "senior")
    page.check("#member-locked")
    page.fill("#member-reason", "门店推荐 手动升级")
    page.click("#member-save")
    page.wait_for_load_state("load")
    expect(page.locator("#current-tier")).to_contain_text("资深")
    expect(page.locator("#timeline")).to_contain_text("门店推荐 手动升级")
    expect(page.locator("#staff-actions .staff-action").first).to_contain_text("member.update")
    screenshot(page, "member_page")
    assert not page.problems, page.problems
    with app.app_context():
        member_row = db.session.get(Member, member_id)
        assert member_row.tier_key == "senior" and member_row.tier_locked
        change = db.session.scalars(sa.select(TierChange).where(
            TierChange.member_id == member_id)).one()
        assert change.reason == "门店推荐 手动升级" and change.changed_by_staff_id == _staff_id

    # The same session without the CSRF header is refused by the API.
    status = page.evaluate(PATCH_FROM_PAGE, [f"/api/v1/members/{member_id}", False])
    assert status == 403
    with app.app_context():
        assert db.session.get(Member, member_id).status == "active"


def test_a_viewer_sees_no_member_actions_and_is_refused_when_posting_anyway(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
):
    from playwright.sync_api import expect

    member_id, _member = member_api()
    _staff_id, email = make_staff("viewer")
    page = zh_page
    sign_in(page, live_server, email, f"/admin/members/{member_id}")

    expect(page.locator("#timeline")).to_be_visible()
    expect(page.locator("#member-actions")).to_have_count(0)
    expect(page.locator("form[method=post] button", has_text="应用")).to_have_count(0)
    status = page.evaluate(PATCH_FROM_PAGE, [f"/api/v1/members/{member_id}", True])
    assert status == 403
    with app.app_context():
        assert db.session.get(Member, member_id).status == "active"
        assert not db.session.scalars(sa.select(AuditEvent).where(
            AuditEvent.action == "member.update")).all()
    screenshot(page, "member_page_viewer")


def test_reviewer_works_the_queue_by_keyboard_in_bulk_and_reopens_a_decision(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
    pending_submission: Callable,
):
    from playwright.sync_api import expect

    first = pending_submission(caption="<script>alert(1)</script>")
    others = [pending_submission(caption=f"第{n}篇") for n in (2, 3)]
    _staff_id, email = make_staff("reviewer")
    page = zh_page
    sign_in(page, live_server, email, "/admin/reviews")

    # A caption holding a script tag shows as text.
    expect(page.locator(f"#submission-{first} .caption")).to_have_text(
        "<script>alert(1)</script>")
    expect(page.locator(f"#submission-{first} .history")).to_contain_text("成员")
    screenshot(page, "review_queue")
    # j selects the oldest, a approves it with the rating its form shows.
    page.keyboard.press("j")
    expect(page.locator(f"#submission-{first}")).to_have_class(re.compile(r"\bcurrent\b"))
    page.keyboard.press("a")
    expect(page.locator(f"#submission-{first}")).to_have_count(0)
    expect(page.locator(".flash-ok")).to_be_visible()

    page.check("#select-all")
    expect(page.locator("#bulk-count")).to_contain_text("2")
    page.click("#bulk-approve")
    expect(page.locator(".submission")).to_have_count(0)
    with app.app_context():
        statuses = {s.id: s.status for s in db.session.scalars(sa.select(Submission))}
    assert statuses == dict.fromkeys([first, *others], "approved")

    # The decided view offers re-opening; the submission comes back to the queue.
    page.select_option("#filter-view", "decided")
    page.click("#queue-filters button[type=submit]")
    expect(page.locator(".submission")).to_have_count(3)
    page.fill(f"#reopen-note-{others[0]}", "评分有误 重新审核")
    page.locator(f"#submission-{others[0]} .reopen-form button").click()
    expect(page.locator(f"#submission-{others[0]}")).to_have_count(0)
    screenshot(page, "review_queue_decided")
    page.goto(f"{live_server}/admin/reviews?short_link=1")
    expect(page.locator(".submission")).to_have_count(0)
    page.goto(f"{live_server}/admin/reviews?unconfirmed_followers=1&platform=douyin")
    expect(page.locator(".submission")).to_have_count(0)
    page.goto(f"{live_server}/admin/reviews?platform=xiaohongshu")
    expect(page.locator(".submission")).to_have_count(1)
    assert not page.problems, page.problems
    with app.app_context():
        assert db.session.get(Submission, others[0]).status == "pending"


def test_reviewer_confirms_an_accounts_followers_and_held_figures_from_the_queue(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, staff_api: Callable,
    pending_submission: Callable,
):
    from playwright.sync_api import expect

    from koc.members.models import SocialAccount
    from tests.conftest import Api

    admin = staff_api("admin")
    admin.put("/users/lin-red", json={})
    code = admin.post("/invitations", json={"external_id": "lin-red"}).json["code"]
    joined = Api(app.test_client()).post(f"/invitations/{code}/accept", json={
        "display_name": "小林", "accept_terms": True, "social_accounts": [{
            "platform": "xiaohongshu", "handle": "lin_red", "followers": 3}]}).json
    member = (joined["member"]["id"], Api(app.test_client(), joined["token"]))
    account_id = joined["member"]["social_accounts"][0]["id"]
    submission = pending_submission(member=member)
    _staff_id, email = make_staff("reviewer")
    page = zh_page
    sign_in(page, live_server, email, "/admin/reviews")

    # The follower check goes through the API; the reloaded card shows the confirmed count.
    expect(page.locator(f"#account-{account_id} .unconfirmed")).to_be_visible()
    page.fill(f"#followers-{account_id}", "1250")
    page.fill(f"#followers-note-{account_id}", "看过主页")
    page.locator(f"#account-{account_id} .followers-form button").click()
    expect(page.locator(f"#account-{account_id} .confirmed")).to_contain_text("1250")
    with app.app_context():
        account = db.session.get(SocialAccount, account_id)
        assert (account.confirmed_followers, account.followers_source) == (1250, "reviewer")

    # Approved, then the member reports a jump: held, and confirmed from the queue.
    staff_api("reviewer").post(f"/submissions/{submission}/review",
                               json={"decision": "approve"})
    member[1].post(f"/submissions/{submission}/metrics", json={
        "views": 900_000, "likes": 100_000, "comments": 2_000, "saves": 5_000})
    before = member[1].get("/me").json["points"]["balance"]
    page.reload()
    held = page.locator(f"#submission-{submission} .metrics-form")
    expect(held).to_have_count(1)
    screenshot(page, "review_queue_held")
    held.locator("textarea").fill("已核对")
    held.locator('button[value="confirm"]').click()
    expect(page.locator(f"#submission-{submission}")).to_have_count(0)
    assert member[1].get("/me").json["points"]["balance"] > before
    assert not page.problems, page.problems


def test_admin_edits_tier_rules_as_a_form_previews_saves_and_restores_an_old_version(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
    staff_api: Callable, pending_submission: Callable,
):
    from playwright.sync_api import expect

    member = member_api()
    approved = pending_submission(member=member)
    assert staff_api("reviewer").post(f"/submissions/{approved}/review", json={
        "decision": "approve", "rating": 4}).status_code == 200
    _staff_id, email = make_staff("admin")
    page = zh_page
    sign_in(page, live_server, email, "/admin/tiers")

    first_tier = page.locator(".tier-card").first
    expect(first_tier.locator('[data-field="metric"]').first).to_have_value("approved_submissions")
    # The metric chooser shows display names, not keys.
    chosen = first_tier.locator('[data-field="metric"] option:checked').first
    expect(chosen).to_have_text("通过的帖子")
    page.locator(".tier-card").first.locator('[data-field="min"]').first.fill("1")
    expect(page.locator("#preview-promotions")).to_have_text("1")
    expect(page.locator("#preview-sample")).to_contain_text("认证 KOC")
    page.locator(".tier-card").first.locator('[data-field="min"]').first.fill("2")
    expect(page.locator("#preview-promotions")).to_have_text("0")
    first_tier.locator('[data-field="days_below"]').fill("10")
    # The JSON view follows the form.
    assert '"days_below": 10' in page.input_value("#rules")
    page.click("#rules-save")
    expect(page.locator("#rules-version")).to_contain_text("1")
    page.locator(".tier-card").first.locator('[data-field="min"]').first.fill("3")
    page.click("#rules-save")
    expect(page.locator("tr.version")).to_have_count(2)

    page.locator('tr.version[data-version="1"] .show-diff').click()
    expect(page.locator("#rules-diff .diff-del")).to_contain_text('"min": 2')
    expect(page.locator("#rules-diff .diff-add")).to_contain_text('"min": 3')
    screenshot(page, "tier_rules")
    page.locator('tr.version[data-version="1"] .restore').click()
    expect(page.locator("tr.version")).to_have_count(3)
    assert not [p for p in page.problems if "status of 4" not in p], page.problems
    with app.app_context():
        from koc.tiers.services.rules import current_rules

        rules = current_rules()
        assert rules.version == 3
        assert rules.tiers[0]["rules"]["any"][0]["min"] == 2
        assert rules.tiers[0]["demotion"]["days_below"] == 10


def test_admin_edits_scoring_rules_sees_a_sample_posts_breakdown_saves_and_restores(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
):
    from playwright.sync_api import expect

    _staff_id, email = make_staff("admin")
    page = zh_page
    sign_in(page, live_server, email, "/admin/scoring")

    expect(page.locator("#preview-breakdown tbody tr")).not_to_have_count(0)
    expect(page.locator('#preview-breakdown tr[data-part="base"]')).to_contain_text("10")
    page.fill('[data-path="base"]', "20")
    expect(page.locator('#preview-breakdown tr[data-part="base"]')).to_contain_text("20")
    page.fill('[data-path="audience.min_followers"]', "5000")
    expect(page.locator("#preview-errors")).to_contain_text("min_followers")
    page.fill('[data-path="audience.min_followers"]', "100")
    expect(page.locator("#preview-errors li")).to_have_count(0)
    screenshot(page, "scoring_rules")
    page.click("#scoring-save")
    expect(page.locator("tr.version")).to_have_count(1)
    page.fill('[data-path="in_window_bonus"]', "8")
    page.click("#scoring-save")
    expect(page.locator("tr.version")).to_have_count(2)
    page.locator('tr.version[data-version="1"] .show-diff').click()
    expect(page.locator("#rules-diff .diff-add")).to_contain_text('"in_window_bonus": 8')
    page.locator('tr.version[data-version="1"] .restore').click()
    expect(page.locator("tr.version")).to_have_count(3)
    assert not [p for p in page.problems if "status of 422" not in p], page.problems
    with app.app_context():
        from koc.submissions.services.rules import current_scoring

        version, rules = current_scoring()
        assert version == 3 and rules["base"] == 20 and rules["in_window_bonus"] == 5


def test_a_viewer_reads_the_scoring_rules_without_write_controls(
    live_server: str, zh_page: Any, make_staff: Callable,
):
    from playwright.sync_api import expect

    _staff_id, email = make_staff("viewer")
    page = zh_page
    sign_in(page, live_server, email, "/admin/scoring")
    expect(page.locator('[data-path="base"]')).to_be_disabled()
    expect(page.locator("#scoring-save")).to_have_count(0)
    expect(page.locator("#scoring-preview")).to_have_count(0)
    status = page.evaluate("""async () => {
      const answer = await fetch("/api/v1/scoring/rules", {
        method: "PUT", credentials: "same-origin",
        headers: {"Content-Type": "application/json",
                  "X-CSRFToken": document.querySelector('meta[name="csrf-token"]').content},
        body: JSON.stringify({rules: {}})});
      return answer.status;
    }""")
    assert status == 403


class TestWebhooksPage:
    @pytest.fixture
    def app(self, make_app: Callable[..., Flask]) -> Flask:
        # The receiver listens on 127.0.0.1, which the SSRF guard refuses unless told.
        return make_app(KOC_WEBHOOK_ALLOW_PRIVATE="true")

    def test_admin_creates_a_webhook_sends_a_test_event_reads_the_log_and_replays(
        self, app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
        receiver: Receiver,  # noqa: F811 - the fixture imported above
    ):
        from playwright.sync_api import expect

        _staff_id, email = make_staff("admin")
        page = zh_page
        sign_in(page, live_server, email, "/admin/webhooks")

        page.fill("#webhook-url", "ftp://example.com/hook")
        page.click("#generate-secret")
        page.click("#webhook-create")
        expect(page.locator("#webhook-result")).to_contain_text("url")
        page.fill("#webhook-url", receiver.url)
        page.click("#webhook-create")
        expect(page.locator("tr.webhook")).to_have_count(1)
        page.locator("tr.webhook .send-test").click()
        expect(page.locator("tr.webhook td.num").first).to_have_text("1")
        with app.app_context():
            assert deliver_due.run() == 1
        assert json.loads(receiver.requests[0][1])["type"] == "webhook.test"

        page.locator("tr.webhook a").first.click()
        expect(page.locator("tr.delivery")).to_have_count(1)
        expect(page.locator("tr.delivery")).to_contain_text("已送达")
        page.locator("tr.delivery .replay").click()
        expect(page.locator("tr.delivery .status-pending")).to_have_count(1)
        with app.app_context():
            assert deliver_due.run() == 1
        assert len(receiver.requests) == 2
        # The same webhook-id both times, so the receiver can drop the repeat.
        assert receiver.requests[0][0]["webhook-id"] == receiver.requests[1][0]["webhook-id"]
        page.reload()
        screenshot(page, "webhook_log")
        assert not [p for p in page.problems if "status of 422" not in p], page.problems


def test_admin_draws_a_closed_lottery_and_the_page_shows_its_proof(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
):
    from playwright.sync_api import expect

    members = [member_api()[0] for _ in range(3)]
    now = utcnow()
    with app.app_context():
        drop = Drop(product_name="限量盲盒", sku="BOX-1", quantity=2, allocation="lottery",
                    opens_at=now - timedelta(days=3), closes_at=now - timedelta(hours=1))
        db.session.add(drop)
        db.session.flush()
        db.session.add_all([DropClaim(drop_id=drop.id, member_id=m, status="entered")
                            for m in members])
        db.session.commit()
        drop_id = drop.id
    _staff_id, email = make_staff("admin")
    page = zh_page
    sign_in(page, live_server, email, "/admin/drops")

    page.locator(f"#lottery-{drop_id} .draw-lottery").click()
    proof = page.locator(f"#lottery-{drop_id}")
    expect(proof.locator(".lottery-entrants")).to_have_text("3")
    expect(proof.locator(".lottery-rerun")).to_contain_text("✓")
    expect(proof.locator(".lottery-winners a")).to_have_count(2)
    expect(page.locator(f"#drop-{drop_id} .seeded-not-posted")).to_contain_text("2")
    screenshot(page, "drops_lottery")
    assert not page.problems, page.problems
    with app.app_context():
        row = db.session.get(Drop, drop_id)
        assert row.drawn_at is not None and row.allocated == 2
        seed = row.lottery_seed
    expect(proof.locator(".lottery-seed")).to_have_text(seed)


def test_manager_opens_the_members_behind_each_step_of_a_kits_funnel(
    app: Flask, live_server: str, zh_page: Any, make_staff: Callable, member_api: Callable,
):
    from playwright.sync_api import expect

    downloader, member_a = member_api(city="广州")
    _other, _member_b = member_api()
    now = utcnow()
    with app.app_context():
        kit = Kit(title="夏季新品", status="published", published_at=now)
        db.session.add(kit)
        db.session.flush()
        db.session.add(Download(member_id=downloader, kit_id=kit.id,
                                expires_at=now + timedelta(hours=1)))
        db.session.commit()
        kit_id = kit.id
    posted = member_a.post("/submissions", json={
        "kit_id": kit_id, "platform": "douyin", "post_url": "https://www.douyin.com/video/7301",
        "posted_at": "2026-11-01T10:00:00+00:00", "metrics": {"likes": 5}})
    assert posted.status_code == 201, posted.json
    _staff_id, email = make_staff("viewer")
    page = zh_page
    sign_in(page, live_server, email, f"/admin/kits/{kit_id}")

    page.click("#funnel-lists")
    expect(page.locator("tr.funnel-member")).to_have_count(2)
    page.locator(".funnel-steps a").nth(1).click()
    expect(page.locator("tr.funnel-member")).to_have_count(1)
    expect(page.locator("tr.funnel-member")).to_contain_text("广州")
    page.locator(".funnel-steps a").nth(2).click()
    expect(page.locator(f'tr.funnel-member[data-member-id="{downloader}"]')).to_have_count(1)
    screenshot(page, "kit_funnel")
    page.locator(".funnel-steps a").nth(3).click()
    expect(page.locator("tr.funnel-member")).to_have_count(0)
    assert not page.problems, page.problems
