"""员工与安全 in Debian's Chromium, in zh-CN: an admin invites a colleague, who chooses a password
through the link and signs in; the admin then changes the colleague's role, deactivates the
account and revokes an API token. Screenshots go to screenshots/ (git-ignored)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import pytest
from flask import Flask

from koc.core.auth import find_staff, issue_token
from koc.extensions import db
from tests.admin.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser


def test_admin_invites_a_colleague_changes_the_role_deactivates_and_revokes_a_token(
        app: Flask, live_server: str, zh_page: Any, make_staff: Callable) -> None:
    from playwright.sync_api import expect

    page = zh_page
    _admin_id, admin_email = make_staff("admin", locale="zh_CN")
    sign_in(page, live_server, admin_email, "/admin/staff")
    expect(page.locator("h1")).to_have_text("工作人员")
    # Roles by their names, never the keys.
    expect(page.locator("#invite-role option")).to_have_text(["查看者", "审核员", "管理员"])

    page.fill("#invite-email", "xiaoli@brand.example")
    page.select_option("#invite-role", "reviewer")
    page.get_by_role("button", name="邀请", exact=True).click()
    flash = page.locator(".flash-ok")
    expect(flash).to_contain_text("已邀请 xiaoli@brand.example 成为审核员")
    link = re.search(r"http://\S+/admin/invitation/\S+", flash.inner_text()).group(0)
    screenshot(page, "staff_invited")

    # The colleague, in a browser of their own (no admin session), opens the link.
    page.context.clear_cookies()
    page.goto(link)
    expect(page.locator("h1")).to_have_text("设置你的密码")
    expect(page.locator("section.card")).to_contain_text("xiaoli@brand.example")
    page.fill("#password", "chun-tian-lai-le")
    page.fill("#confirm", "chun-tian-lai-le")
    page.get_by_role("button", name="保存密码").click()
    expect(page.locator(".flash-ok")).to_contain_text("密码已设置")
    page.fill("#email", "xiaoli@brand.example")
    page.fill("#password", "chun-tian-lai-le")
    page.locator("button[type=submit]").last.click()
    page.goto(f"{live_server}/admin/reviews")
    expect(page.locator("h1")).to_have_text("审核队列")
    # The link is spent.
    page.goto(link)
    expect(page.locator("#invitation-gone")).to_contain_text("已过期或已被使用")

    with app.app_context():
        colleague = find_staff("xiaoli@brand.example")
        assert colleague is not None and colleague.role == "reviewer"
        colleague_id = colleague.id
        issue_token(staff_id=colleague_id)
        db.session.commit()

    page.context.clear_cookies()
    sign_in(page, live_server, admin_email, "/admin/staff")
    row = page.locator(f'tr[data-staff-id="{colleague_id}"]')
    row.locator("select[name=role]").select_option("viewer")
    row.get_by_role("button", name="修改角色").click()
    expect(page.locator(".flash-ok")).to_contain_text("xiaoli@brand.example 的角色已改为 查看者")
    row = page.locator(f'tr[data-staff-id="{colleague_id}"]')
    expect(row.locator("td").nth(4)).to_have_text("1")  # one live token
    row.get_by_role("button", name="停用").click()
    row = page.locator(f'tr[data-staff-id="{colleague_id}"]')
    expect(row).to_contain_text("已停用")
    expect(row.locator("td").nth(4)).to_have_text("0")  # deactivation ended the token
    screenshot(page, "staff")

    with app.app_context():
        other = issue_token(staff_id=_admin_id)
        db.session.commit()
    page.goto(f"{live_server}/admin/tokens?kind=staff")
    live = page.locator("tbody tr", has=page.get_by_role("button", name="吊销"))
    expect(live).to_have_count(1)
    expect(live).to_contain_text(f"{admin_email} (管理员)")
    live.get_by_role("button", name="吊销").click()
    expect(page.locator(".flash-ok")).to_contain_text("已吊销")
    expect(page.locator("tbody tr", has=page.get_by_role("button", name="吊销"))).to_have_count(0)
    screenshot(page, "tokens")
    # The one console message is the spent link's 410, which the page was meant to answer.
    assert other and [p for p in page.problems if "410" not in p] == []
