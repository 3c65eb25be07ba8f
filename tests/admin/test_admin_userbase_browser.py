"""用户库 → 候选人 → 邀请活动 in Debian's Chromium, in zh-CN, as a manager runs it: a CRM file
uploaded with its progress and refused lines, a customer looked up, the candidate rules
previewed and saved, the filter invited as a campaign, the campaign's funnel. Screenshots go to
screenshots/ (git-ignored)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from flask import Flask

from koc.core.jobs import Job
from koc.extensions import db
from koc.members.models import InvitationCampaign
from koc.members.tasks import import_users_task, rescore_candidates_job
from tests.admin.conftest import screenshot, sign_in

pytestmark = pytest.mark.browser

CRM_FILE = (
    "external_id,display_name,city,orders_count,shares_count,spend_cents,tags\n"
    "crm-1,王小明,广州,12,3,150000,toys\n"
    "crm-2,李娜,广州,40,9,880000,mother-baby\n"
    "crm-3,张伟,上海,7,1,20000,\n"
    "crm-4,刘洋,广州,oops,2,1000,\n"
    "crm-5,陈静,广州,3,30,5000,toys\n"
)


def _run_queued_import(app: Flask) -> None:
    """The worker's part: run the import job the page started (no worker runs in tests)."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with app.app_context():
            job_id = db.session.scalar(sa.select(Job.id).where(Job.kind == "users.import",
                                                               Job.status == "queued"))
            if job_id is not None:
                import_users_task.run(job_id)
                return
        time.sleep(0.1)
    raise AssertionError("the page started no import job")


def test_a_manager_imports_ranks_and_invites_in_chinese(
        app: Flask, live_server: str, zh_page: Any, make_staff: Callable,
        tmp_path: Path) -> None:
    from playwright.sync_api import expect

    page = zh_page
    _staff_id, email = make_staff("admin", locale="zh_CN")
    sign_in(page, live_server, email, "/admin/users")
    expect(page.locator("h1")).to_have_text("用户库")

    crm = tmp_path / "crm.csv"
    crm.write_text(CRM_FILE, encoding="utf-8")
    page.set_input_files("#import-file", str(crm))
    page.get_by_role("button", name="上传并导入").click()
    _run_queued_import(app)
    expect(page.locator("#import-status")).to_have_text("完成：导入 4，拒绝 1。")  # noqa: RUF001
    expect(page.locator("#upload-progress")).to_have_attribute("value", "100")
    expect(page.locator("#import-errors tbody tr")).to_have_count(1)
    expect(page.locator("#import-errors tbody td").first).to_have_text("5")
    expect(page.locator("#import-report")).to_be_visible()
    screenshot(page, "userbase-import")

    page.fill("#lookup", "crm-2")
    page.get_by_role("button", name="查找").click()
    expect(page.locator("#user-facts")).to_contain_text("李娜")
    expect(page.locator("#user-facts")).to_contain_text("¥8800.00")

    page.goto(f"{live_server}/admin/candidates?city=广州")
    rows = page.locator("#candidates tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.first).to_have_attribute("data-external-id", "crm-2")
    expect(rows.first.locator(".reasons")).to_contain_text("40 笔订单")
    expect(rows.first.locator(".reasons")).to_contain_text("消费 ¥8,800")

    # Shares are what this brand wants: preview first (nothing saved), then save.
    page.fill("#w-orders", "0")
    page.fill("#w-spend", "0")
    page.fill("#w-shares", "10")
    page.get_by_role("button", name="预览").click()
    preview = page.locator("#rules-preview-table tbody tr")
    expect(preview.first).to_have_attribute("data-external-id", "crm-5")
    expect(rows.first).to_have_attribute("data-external-id", "crm-2")
    screenshot(page, "userbase-candidates-preview")
    page.get_by_role("button", name="另存为新版本").click()
    expect(page.locator(".flash-ok")).to_contain_text("规则版本 1 已保存")
    # The worker runs the rescoring job the save started; the list follows on the next load.
    with app.app_context():
        job = db.session.scalars(sa.select(Job).where(Job.kind == "candidates.rescore")).one()
        rescore_candidates_job.run(job.id)
    page.reload()
    expect(page.locator("#candidates tbody tr").first).to_have_attribute(
        "data-external-id", "crm-5")
    expect(page.locator("#candidate-total")).to_contain_text("规则第 1 版")

    page.fill("#c-name", "广州首批种草")
    page.fill("#c-limit", "2")
    page.fill("#c-message", "欢迎加入我们的 KOC 计划。")
    page.get_by_role("button", name="创建邀请").click()
    expect(page.locator(".flash-ok")).to_contain_text("已创建 2 个邀请")
    row = page.locator("#campaigns tbody tr").first
    expect(row).to_contain_text("广州首批种草")
    expect(row.locator(".step-invited")).to_have_text("2")
    with app.app_context():
        campaign = db.session.scalars(sa.select(InvitationCampaign)).one()
        assert campaign.filter == {"city": "广州"}

    # One customer ticked on the list: that one is invited, not the top of the filter.
    page.goto(f"{live_server}/admin/candidates?city=广州")
    page.check('#candidates tr[data-external-id="crm-1"] input[type=checkbox]')
    page.fill("#c-name", "精选一位")
    page.get_by_role("button", name="创建邀请").click()
    expect(page.locator(".flash-ok")).to_contain_text("已创建 1 个邀请")
    with app.app_context():
        picked = db.session.scalars(sa.select(InvitationCampaign).where(
            InvitationCampaign.name == "精选一位")).one()
        assert (picked.filter, picked.invited) == ({"external_ids": ["crm-1"]}, 1)
    screenshot(page, "userbase-campaigns")
    assert page.problems == []
