"""Fixtures for the member portal: a programme with an invitation, a kit with a file and a drop."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from koc.core.db import utcnow
from tests.assets.conftest import Kits

_API_CSRF = re.compile(r'name="koc-api-csrf" content="([^"]*)"')
_FORM_CSRF = re.compile(r'name="koc-form-csrf" content="([^"]*)"')


def api_csrf(html: str) -> str:
    match = _API_CSRF.search(html)
    assert match, "no API CSRF token in the page"
    return match.group(1)


def form_csrf(html: str) -> str:
    match = _FORM_CSRF.search(html)
    assert match, "no form CSRF token in the page"
    return match.group(1)


@dataclass
class Programme:
    kits: Kits
    kit_id: int
    asset_id: int
    drop_id: int

    @property
    def admin(self):
        return self.kits.admin

    def invitation(self, external_id: str, **user: Any) -> str:
        assert self.admin.put(f"/users/{external_id}", json=user).status_code in (200, 201)
        invite = self.admin.post("/invitations", json={"external_id": external_id})
        assert invite.status_code == 201, invite.json
        return invite.json["code"]


@pytest.fixture
def programme(app: Flask) -> Programme:
    kits = Kits(app)
    kit_id = kits.kit(title="春季新品开箱", notes="自然光下拍摄，先拍全景再拍细节。",  # noqa: RUF001 - full-width punctuation, as the apps write it
                      product_name="春季限定礼盒")
    asset_id = kits.upload(kit_id, b"brief: shoot outdoors\n", filename="brief.txt",
                           content_type="text/plain")
    kits.publish(kit_id)
    now = utcnow()
    drop = kits.admin.post("/drops", json={
        "product_name": "限量香氛", "sku": "SKU-1", "quantity": 5, "per_member_limit": 1,
        "min_tier": None, "opens_at": (now - timedelta(hours=1)).isoformat(),
        "closes_at": (now + timedelta(days=3)).isoformat()})
    assert drop.status_code == 201, drop.json
    return Programme(kits=kits, kit_id=kit_id, asset_id=asset_id, drop_id=drop.json["id"])


def join_with_client(client: FlaskClient, code: str, name: str = "小红") -> str:
    """Accept an invitation the way the join page's script does; returns the home page HTML."""
    page = client.get(f"/join/{code}")
    assert page.status_code == 200
    accepted = client.post(f"/api/v1/invitations/{code}/accept", json={
        "display_name": name, "accept_terms": True, "social_accounts": [
            {"platform": "xiaohongshu", "handle": name,
             "url": "https://www.xiaohongshu.com/user/profile/5f0e7d2b000000000101c2a3",
             "followers": 1200}]})
    assert accepted.status_code == 201, accepted.json
    started = client.post("/m/session", json={"token": accepted.json["token"]},
                          headers={"X-CSRFToken": form_csrf(page.text)})
    assert started.status_code == 200, started.text
    home = client.get("/m/")
    assert home.status_code == 200, home.text
    return home.text
