"""Helpers for the kits tests: apps on SeaweedFS, uploads through the presigned requests."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import Any

import pytest
import requests
from flask import Flask
from flask.testing import FlaskClient

from tests.conftest import Api, new_member, staff_token_for

LOCAL_PREFIX = "http://localhost"


def png_bytes(width: int = 64, height: int = 48, color: tuple[int, int, int] = (200, 30, 30),
              fmt: str = "PNG") -> bytes:
    from PIL import Image

    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, fmt)
    return out.getvalue()


def s3_env(seaweedfs: Any, bucket: str) -> dict[str, str]:
    return {
        "KOC_STORAGE_URL": f"s3://{bucket}",
        "KOC_S3_ENDPOINT_URL": seaweedfs.endpoint_url,
        "AWS_ACCESS_KEY_ID": seaweedfs.access_key,
        "AWS_SECRET_ACCESS_KEY": seaweedfs.secret_key,
        "AWS_DEFAULT_REGION": seaweedfs.region,
    }


def put(client: FlaskClient, url: str, body: bytes, headers: dict[str, str]) -> Any:
    """PUT where a presigned URL points: SeaweedFS over HTTP, or the app's local store."""
    if url.startswith(LOCAL_PREFIX + "/"):
        return client.put(url.removeprefix(LOCAL_PREFIX), data=body, headers=headers)
    return requests.put(url, data=body, headers=headers, timeout=60)


def fetch(client: FlaskClient, url: str) -> bytes:
    if url.startswith(LOCAL_PREFIX + "/"):
        response = client.get(url.removeprefix(LOCAL_PREFIX))
        assert response.status_code == 200, response.get_data(as_text=True)
        return response.get_data()
    response = requests.get(url, timeout=60)
    assert response.status_code == 200, response.text
    return response.content


class StaffApi(Api):
    def delete(self, path: str, **kw: Any):
        return self.client.delete(f"/api/v1{path}",
                                  headers=self._headers(kw.pop("headers", None)), **kw)


def status_of(response: Any) -> int:
    return getattr(response, "status_code", None) or response.status


class Kits:
    """An admin driving the kits API, with shortcuts for the usual steps."""

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.client = app.test_client()
        self.admin = StaffApi(self.client, staff_token_for(app, "admin"))
        self._members = 0

    def kit(self, **fields: Any) -> int:
        response = self.admin.post("/kits", json={"title": "Kit", **fields})
        assert response.status_code == 201, response.json
        return response.json["id"]

    def upload(self, kit_id: int, body: bytes, *, filename: str = "hero.png",
               content_type: str = "image/png", complete: bool = True) -> int:
        created = self.admin.post(f"/kits/{kit_id}/assets", json={
            "filename": filename, "content_type": content_type, "size": len(body)})
        assert created.status_code == 201, created.json
        upload = created.json["upload"]
        assert status_of(put(self.client, upload["url"], body, upload["headers"])) in (200, 204)
        asset_id = created.json["asset_id"]
        if complete:
            done = self.admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete")
            assert done.status_code == 200, done.json
        return asset_id

    def publish(self, kit_id: int) -> None:
        response = self.admin.post(f"/kits/{kit_id}/publish")
        assert response.status_code == 200, response.json

    def member(self, *, tier: str | None = None, **user: Any) -> tuple[int, Api]:
        self._members += 1
        member_id, api = new_member(self.app, self.admin, f"m{self._members}", **user)
        if tier is not None:
            patched = self.admin.patch(f"/members/{member_id}", json={"tier": tier})
            assert patched.status_code == 200, patched.json
        return member_id, api


@pytest.fixture
def kits(app: Flask) -> Kits:
    return Kits(app)


@pytest.fixture
def s3_app(make_app: Callable[..., Flask], seaweedfs, s3_bucket: str) -> Flask:
    return make_app(**s3_env(seaweedfs, s3_bucket))
