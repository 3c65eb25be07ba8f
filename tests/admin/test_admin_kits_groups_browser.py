"""素材包 and 资深群 in Debian's Chromium, in zh-CN: a manager creates a kit, uploads a file to it
with the progress bar and publishes it; then works the senior group's removal list. Screenshots
go to screenshots/ (git-ignored)."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.assets.models import Asset, Kit
from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Member
from koc.tiers.models import GroupMembership
from tests.admin.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


def test_manager_creates_a_kit_uploads_a_file_with_progress_and_publishes_it(
        app: Flask, live_server: str, zh_page: Any, make_staff: Callable, tmp_path: Path) -> None:
    from PIL import Image
    from playwright.sync_api import expect

    page = zh_page
    _staff_id, email = make_staff("admin", locale="zh_CN")
    sign_in(page, live_server, email, "/admin/kits")
    expect(page.locator("h1")).to_have_text("素材包")
    page.get_by_role("link", name="新建素材包").click()
    page.fill("#title", "春季新品 <b>开箱</b>")
    page.fill("#segments", "city: 广州")
    # Tiers are chosen and shown by their names, segment kinds too.
    page.select_option("#min_tier", label="认证 KOC")
    page.get_by_role("button", name="创建素材包").click()
    # A title holding markup is shown as text; the kit starts as a draft.
    expect(page.locator("h1")).to_have_text("春季新品 <b>开箱</b> 草稿")

    picture = io.BytesIO()
    Image.new("RGB", (320, 240), (220, 40, 60)).save(picture, "PNG")
    hero = tmp_path / "hero.png"
    hero.write_bytes(picture.getvalue())
    page.set_input_files("#upload-file", str(hero))
    page.get_by_role("button", name="上传", exact=True).click()
    asset = page.locator("li.asset")
    expect(asset).to_have_count(1)
    expect(asset).to_have_attribute("data-status", "ready")
    expect(asset).to_contain_text("hero.png")
    page.get_by_role("button", name="发布").click()
    expect(page.locator(".flash-ok")).to_be_visible()
    facts = page.locator("dl.facts").first
    expect(facts).to_contain_text("认证 KOC")
    expect(facts).to_contain_text("城市: 广州")
    expect(page.locator("section.funnel")).to_contain_text("已发帖")
    # The funnel as a chart too (ECharts, drawn from the page's own numbers).
    expect(page.locator("#chart-kit_funnel canvas").first).to_be_visible()
    expect(page.locator("main")).not_to_contain_text("certified")
    screenshot(page, "kit_detail")
    with app.app_context():
        kit = db.session.scalars(sa.select(Kit)).one()
        assert (kit.title, kit.status, kit.min_tier) == ("春季新品 <b>开箱</b>", "published",
                                                         "certified")
        stored = db.session.scalars(sa.select(Asset).where(Asset.kit_id == kit.id)).one()
        assert (stored.filename, stored.size) == ("hero.png", len(picture.getvalue()))
    assert page.problems == []


def test_manager_marks_a_demoted_member_as_removed_from_the_senior_group(
        app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
        member_api: Callable[..., Any]) -> None:
    from playwright.sync_api import expect

    page = zh_page
    now = utcnow()
    staying, demoted, left = (member_api()[0] for _ in range(3))
    with app.app_context():
        for member_id, name in ((staying, "留下的资深"), (demoted, "降级的会员"),
                                (left, "主动退群的会员")):
            db.session.get(Member, member_id).display_name = name
        db.session.add_all([
            GroupMembership(group_key="senior", member_id=staying, code="c-stay",
                            invited_at=now - timedelta(days=30),
                            joined_at=now - timedelta(days=29)),
            GroupMembership(group_key="senior", member_id=demoted, code="c-down",
                            invited_at=now - timedelta(days=60),
                            removal_due_at=now - timedelta(days=1)),
            GroupMembership(group_key="senior", member_id=left, code="c-left",
                            invited_at=now - timedelta(days=40), joined_at=now - timedelta(days=39),
                            left_at=now - timedelta(days=2), quit_scene=0),
        ])
        db.session.commit()
    _staff_id, email = make_staff("admin", locale="zh_CN")
    sign_in(page, live_server, email, "/admin/groups/senior")
    # (The page title once held the "left" and "removed" tables.)
    expect(page).to_have_title("资深群 · KOC 管理后台")
    expect(page.locator("#to-remove tbody tr")).to_have_count(1)
    expect(page.locator("#to-remove")).to_contain_text("降级的会员")
    expect(page.locator("#members")).to_contain_text("留下的资深")
    expect(page.locator("#left")).to_contain_text("主动退群的会员")

    page.locator(f'#to-remove tr[data-member-id="{demoted}"]').get_by_role(
        "button", name="已移出").click()
    expect(page.locator(".flash-ok")).to_be_visible()
    expect(page.locator("#to-remove")).to_contain_text("没有需要移出的成员。")
    removed = page.locator(f'#removed tr[data-member-id="{demoted}"]')
    expect(removed).to_contain_text("降级的会员")
    expect(removed).to_contain_text("工作人员标记")
    screenshot(page, "senior_group")
    with app.app_context():
        seat = db.session.scalars(sa.select(GroupMembership).where(
            GroupMembership.member_id == demoted)).one()
        assert seat.removed_at is not None and seat.removed_by_staff_id == _staff_id
    assert page.problems == []
