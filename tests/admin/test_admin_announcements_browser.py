"""素材通知 in Debian's Chromium, in zh-CN, against the fake WeCom server: a manager drafts a
kit announcement (nothing is sent), then confirms it and the KOC groups get one group message.
Screenshots go to screenshots/ (git-ignored)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from flask import Flask

from koc.assets.models import Kit
from koc.core.db import utcnow
from koc.core.wecom.client import forget_tokens
from koc.extensions import db
from tests.admin.conftest import screenshot, sign_in
from tests.tiers.wecom_fake import AES_KEY, CORP_ID, SECRET, TOKEN, FakeWeCom, running_fake

pytestmark = pytest.mark.browser
KOC_CHATS = ("wrKocChat0001", "wrKocChat0002")
MESSAGE = "夏季素材上线，快来领取 <b>新品</b>！"  # noqa: RUF001 (Chinese punctuation)


@pytest.fixture
def fake() -> Iterator[FakeWeCom]:
    forget_tokens()
    with running_fake() as server:
        for chat, owner in zip(KOC_CHATS, ("zhangsan", "lisi"), strict=True):
            server.add_group(chat, owner=owner)
        yield server
    forget_tokens()


@pytest.fixture
def app(make_app: Callable[..., Flask], fake: FakeWeCom) -> Flask:
    """The live server's app, with WeCom pointed at the fake."""
    return make_app(KOC_WECOM_CORP_ID=CORP_ID, KOC_WECOM_AGENT_SECRET=SECRET,
                    KOC_WECOM_CALLBACK_TOKEN=TOKEN, KOC_WECOM_AES_KEY=AES_KEY,
                    KOC_WECOM_API_URL=fake.url, KOC_WECOM_KOC_CHAT_IDS=",".join(KOC_CHATS))


def test_manager_drafts_a_kit_announcement_then_confirms_it_to_the_koc_groups(
        app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
        fake: FakeWeCom) -> None:
    from playwright.sync_api import expect

    with app.app_context():
        # Only published kits are announced (publishing through the panel is its own test).
        db.session.add(Kit(title="夏季新品", status="published", published_at=utcnow()))
        db.session.commit()
    page = zh_page
    _staff_id, email = make_staff("admin", locale="zh_CN")
    sign_in(page, live_server, email, "/admin/announcements")
    expect(page.locator("h1")).to_have_text("素材包群发通知")
    page.select_option("#announcement-form select[name=kit_id]", label="夏季新品")
    page.fill("#announcement-form textarea[name=text]", MESSAGE)
    page.get_by_role("button", name="草稿", exact=True).click()
    row = page.locator("tr[data-announcement]").first
    expect(row).to_have_attribute("data-status", "draft")
    # A message holding markup is shown as text; a draft sends nothing.
    expect(row.locator("td").nth(2)).to_have_text(MESSAGE)
    assert fake.msg_templates == []

    row.get_by_role("button", name="确认并发送").click()
    row = page.locator("tr[data-announcement]").first
    expect(row).to_have_attribute("data-status", "sent")
    expect(row).to_contain_text("已提交企业微信")
    # One group message per group owner, each with the text as written.
    sent = [m["text"]["content"] for m in fake.msg_templates]
    assert sent == [MESSAGE, MESSAGE]
    screenshot(page, "announcements")
    assert page.problems == []
