"""The user base, candidates and campaign pages (zh-CN), without a browser: what each role sees
and what each form writes."""

from __future__ import annotations

import csv
import io

import sqlalchemy as sa
from flask import Flask

from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import Invitation, InvitationCampaign
from tests.admin.conftest import csrf_token
from tests.conftest import Api, staff_token_for


def _users(app: Flask) -> None:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    for n, city in enumerate(["广州", "广州", "上海", "广州"], start=1):
        assert admin.put(f"/users/crm-{n}", json={
            "display_name": f"顾客{n}", "city": city, "orders_count": n * 5,
            "shares_count": n, "spend_cents": n * 10_000}).status_code == 201


def test_viewers_see_candidates_with_reasons_in_chinese_but_no_forms(app: Flask, signed_in
                                                                     ) -> None:
    _users(app)
    viewer = signed_in("viewer", locale="zh_CN")
    page = viewer.get("/admin/candidates?city=广州")
    assert page.status_code == 200
    text = page.get_data(as_text=True)
    assert "候选人" in text
    assert text.index("crm-4") < text.index("crm-2") < text.index("crm-1")
    assert "crm-3" not in text
    assert "20 笔订单" in text
    assert 'id="rules-form"' not in text and 'id="campaign-form"' not in text
    assert viewer.get("/admin/candidates?ordered_within_days=0").status_code == 422
    users = viewer.get("/admin/users?external_id=crm-2")
    assert users.status_code == 200
    assert "顾客2" in users.get_data(as_text=True)
    assert 'id="user-import"' not in users.get_data(as_text=True)
    assert viewer.get("/admin/users?external_id=nobody").status_code == 404
    assert viewer.get("/admin/campaigns").status_code == 200
    # The rules form writes through the API with the session; a viewer is refused there too.
    token = csrf_token(page.get_data(as_text=True))
    refused = viewer.post("/api/v1/candidates/rules/preview", json={"rules": {}},
                          headers={"X-CSRFToken": token})
    assert refused.status_code == 403


def test_an_admin_invites_a_filter_as_a_campaign_and_downloads_its_links(
        app: Flask, signed_in) -> None:
    _users(app)
    admin = signed_in("admin", locale="zh_CN")
    page = admin.get("/admin/candidates?city=广州")
    token = csrf_token(page.get_data(as_text=True))
    created = admin.post("/admin/campaigns?city=广州", data={
        "csrf_token": token, "name": "广州首批", "limit": 2, "expires_in_days": 10,
        "message": "欢迎"})
    assert created.status_code == 302
    listing = admin.get(created.headers["Location"]).get_data(as_text=True)
    assert "广州首批" in listing and "已创建 2 个邀请" in listing
    with app.app_context():
        campaign = db.session.scalars(sa.select(InvitationCampaign)).one()
        assert (campaign.filter, campaign.invited) == ({"city": "广州"}, 2)
        campaign_id = campaign.id
    links = admin.get(f"/admin/campaigns/{campaign_id}/links.csv")
    assert links.status_code == 200
    rows = list(csv.reader(io.StringIO(links.get_data(as_text=True).lstrip("\ufeff"))))
    assert [row[0] for row in rows[1:]] == ["crm-4", "crm-2"]
    assert rows[1][3].endswith(f"/join/{rows[1][2]}")
    assert admin.get(f"/join/{rows[1][2]}").status_code == 200

    # Two customers ticked on the list: those two, not the top of the filter nor the limit.
    picked = admin.post("/admin/campaigns?city=广州", data={
        "csrf_token": token, "name": "挑选的两位", "limit": 50, "expires_in_days": 10,
        "external_id": ["crm-1", "crm-3"]})
    assert picked.status_code == 302
    with app.app_context():
        chosen = db.session.scalars(sa.select(InvitationCampaign).where(
            InvitationCampaign.name == "挑选的两位")).one()
        assert (chosen.filter, chosen.limit, chosen.invited) == (
            {"external_ids": ["crm-1", "crm-3"]}, 2, 2)
    too_many = admin.post("/admin/campaigns", data={
        "csrf_token": token, "name": "太多", "limit": 1, "expires_in_days": 10,
        "external_id": [f"crm-{n}" for n in range(1001)]}, follow_redirects=True)
    assert "一次活动最多挑选 1,000 位顾客" in too_many.get_data(as_text=True)
    forged = admin.post("/admin/campaigns", data={
        "csrf_token": token, "name": "伪造", "limit": 1, "expires_in_days": 10,
        "external_id": ["x" * 65]}, follow_redirects=True)
    assert "勾选的顾客编号无效" in forged.get_data(as_text=True)

    revoked = admin.post(f"/admin/campaigns/{campaign_id}/revoke", data={"csrf_token": token})
    assert revoked.status_code == 302
    with app.app_context():
        assert db.session.scalar(sa.select(sa.func.count()).where(
            Invitation.revoked_at.is_not(None), Invitation.campaign_id == campaign_id)) == 2
    assert admin.get(f"/join/{rows[1][2]}").status_code == 410

    rules = {"rules": {
        "weights": {"orders_count": 0, "spend_yuan": 0, "shares_count": 1,
                    "community_posts_count": 0},
        "recency": {"weight": 0, "half_life_days": 30}}}
    # Without the page's CSRF token the session alone writes nothing.
    no_token = admin.put("/api/v1/candidates/rules", json=rules)
    assert no_token.status_code == 403 and "X-CSRFToken" in no_token.json["message"]
    saved = admin.put("/api/v1/candidates/rules", json=rules, headers={"X-CSRFToken": token})
    assert saved.status_code == 200, saved.json
    assert saved.json["version"] == 1
    # The page names the version saved and its rescoring job when the form comes back.
    back = admin.get(f"/admin/candidates?rules_saved=1&rescore_job={saved.json['job_id']}")
    assert "规则版本 1 已保存" in back.get_data(as_text=True)
    # The panel keeps no JSON endpoint of its own for what the API does.
    assert admin.post("/admin/candidates/rules", json=rules,
                      headers={"X-CSRFToken": token}).status_code == 404
    assert admin.post("/admin/users/imports", json={},
                      headers={"X-CSRFToken": token}).status_code == 404


def test_the_refused_lines_report_holds_every_refused_line_chunk_by_chunk(
        app: Flask, signed_in, monkeypatch) -> None:
    from koc.members.services import imports
    from tests.members.test_user_imports import _upload_and_start

    # Small chunks: the report is several objects beside the job, read in line order.
    monkeypatch.setattr(imports, "IMPORT_BATCH_SIZE", 3)
    lines = ["external_id,orders_count"]
    lines += [f"ok-{n},{n}" if n % 2 else f"bad-{n},x{n}" for n in range(1, 21)]
    job = _upload_and_start(app, ("\n".join(lines) + "\n").encode(), "crm.csv")
    assert (job["processed"], job["failed"]) == (10, 10)
    with app.app_context():
        parts = list(get_storage().list_keys(imports.refusals_prefix(job["id"])))
    assert len(parts) > 2
    admin = signed_in("admin", locale="zh_CN")
    report = admin.get(f"/admin/users/imports/jobs/{job['id']}/report.csv")
    assert report.status_code == 200
    rows = list(csv.reader(io.StringIO(report.get_data(as_text=True).lstrip("\ufeff"))))
    assert rows[0] == ["行", "理由"]
    # Line 1 is the header: bad-2 is on line 3, bad-20 on line 21.
    assert [int(row[0]) for row in rows[1:]] == list(range(3, 22, 2))
    assert all("orders_count" in row[1] for row in rows[1:])
