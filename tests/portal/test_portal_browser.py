"""The member portal on a phone (390 x 844, zh-CN) in Debian's Chromium over a live server.

One KOC's first day: join from the invitation link, see the tier and progress, download a kit
file, submit a post from pasted share text with a screenshot, claim a drop. Full-page
screenshots go to screenshots/portal/ (git-ignored) for a person to look at.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask

from koc.extensions import db
from koc.submissions.models import MediaUpload, Submission
from koc.tiers.models import DropClaim
from tests.admin.conftest import CHROMIUM, CHROMIUM_ARGS, live_server  # noqa: F401
from tests.assets.conftest import png_bytes
from tests.plugins.services import missing_service
from tests.portal.conftest import Programme

pytestmark = pytest.mark.browser

SCREENSHOTS = Path(__file__).resolve().parents[2] / "screenshots" / "portal"
PHONE = {"width": 390, "height": 844}
SHARE_TEXT = ("64 小红发布了一篇小红书笔记，快来看吧！ 😆 nT8mQ 😆 "  # noqa: RUF001 - full-width punctuation, as the apps write it
              "https://www.xiaohongshu.com/discovery/item/65a1b2c3d4e5f60718293a4b"
              "?source=webshare&xsec_token=AB12&xsec_source=pc_share，复制本条信息，打开【小红书】App查看精彩内容！")  # noqa: RUF001 - full-width punctuation, as the apps write it


@pytest.fixture
def phone() -> Iterator:
    if not CHROMIUM.exists():
        missing_service(f"Chromium is not installed at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True,
                                             args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(
                locale="zh-CN", viewport=PHONE, device_scale_factor=2, is_mobile=True,
                has_touch=True, accept_downloads=True,
                user_agent=("Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) "
                            "AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 "
                            "MicroMessenger/8.0.47 wxwork/4.1.20"))
            page = context.new_page()
            page.set_default_timeout(15_000)
            yield page
            context.close()
        finally:
            browser.close()


def shot(page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def test_a_koc_joins_downloads_submits_and_claims_on_a_phone(
    app: Flask, live_server: str, phone, programme: Programme,  # noqa: F811
):
    from playwright.sync_api import expect

    page = phone
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))
    code = programme.invitation("wecom-7", city="广州", tags=["mother-baby"])

    # Join from the invitation link.
    page.goto(f"{live_server}/join/{code}")
    expect(page.locator("h1")).to_have_text("加入 KOC 计划")
    page.get_by_label("你在计划中的名字").fill("小红薯")
    account = page.locator("[data-account]").first
    account.get_by_label("平台").select_option("xiaohongshu")
    account.get_by_label("账号名").fill("xiaohongshu_girl")
    account.get_by_label("主页链接").fill(
        "https://www.xiaohongshu.com/user/profile/5f0e7d2b000000000101c2a3")
    account.get_by_label("粉丝数").fill("2300")
    shot(page, "01-join")
    page.get_by_label("我接受计划条款").check()
    page.get_by_role("button", name="加入").click()

    # Home: tier, progress with current / needed.
    expect(page).to_have_url(f"{live_server}/m/")
    expect(page.locator("[data-tier]")).to_have_text("暂无等级")
    progress = page.locator("[data-progress]")
    expect(progress).to_contain_text("下一级：认证 KOC")  # noqa: RUF001 - full-width punctuation, as the apps write it
    expect(progress.locator(".reqs li").first).to_contain_text("0 / 1")
    shot(page, "02-home")

    # Kits: notes, and a file downloaded through a presigned link.
    page.get_by_role("link", name="素材").click()
    kit = page.locator(f"[data-kit='{programme.kit_id}']")
    expect(kit).to_contain_text("自然光下拍摄")
    shot(page, "03-kits")
    with page.expect_download() as download_info:
        kit.get_by_role("button", name="下载").click()
    download = download_info.value
    assert download.suggested_filename == "brief.txt"
    assert Path(download.path()).read_bytes() == b"brief: shoot outdoors\n"

    # Submit: paste the share text, add a screenshot, the numbers.
    page.goto(f"{live_server}/m/submit")
    form = page.locator("#submit-form")
    form.get_by_label("粘贴小红书或抖音的分享文字或链接").fill(SHARE_TEXT)
    expect(form.locator("[data-found-url]")).to_contain_text(
        "https://www.xiaohongshu.com/discovery/item/65a1b2c3d4e5f60718293a4b")
    expect(form.get_by_label("平台")).to_have_value("xiaohongshu")
    form.get_by_label("截图").set_input_files(files=[
        {"name": "screenshot.png", "mimeType": "image/png", "buffer": png_bytes(390, 844)}])
    form.get_by_label("点赞").fill("860")
    form.get_by_label("评论").fill("75")
    form.get_by_label("收藏").fill("210")
    shot(page, "04a-submit-form")
    form.get_by_role("button", name="提交").click()
    expect(form.locator("[data-upload-progress]")).to_have_js_property("value", 100)
    mine = page.locator(".submission").first
    expect(mine).to_contain_text("审核中")
    expect(mine).to_contain_text("65a1b2c3d4e5f60718293a4b")
    shot(page, "04-submit")

    # Drops: claim (with an Idempotency-Key), then see it among my claims.
    page.get_by_role("link", name="新品发放").click()
    drop = page.locator(f"[data-drop='{programme.drop_id}']")
    expect(drop).to_contain_text("限量香氛")
    drop.get_by_role("button", name="领取").click()
    expect(page.locator("[data-claim]").first).to_contain_text("已领取")
    shot(page, "05-drops")

    page.get_by_role("link", name="社群").click()
    shot(page, "06-group")
    assert problems == []

    with app.app_context():
        submission = db.session.query(Submission).one()
        assert submission.canonical_url == (
            "https://www.xiaohongshu.com/explore/65a1b2c3d4e5f60718293a4b")
        assert submission.status == "pending"
        media = db.session.query(MediaUpload).one()
        assert media.submission_id == submission.id
        assert db.session.query(DropClaim).count() == 1
