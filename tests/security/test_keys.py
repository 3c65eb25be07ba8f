"""Keys: no usable key in the repository, production refuses to start without its own, badges
survive a rotation of the session secret and of their own signing key."""

from __future__ import annotations

import base64
import re
import secrets
import stat
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from flask import Flask

import koc.settings
from koc import create_app
from koc.core.db import utcnow
from koc.extensions import db
from koc.settings import SettingsError, load_settings
from tests.conftest import Api, new_member, staff_token_for


def _seed() -> str:
    return base64.b64encode(secrets.token_bytes(32)).decode()


def _public(seed: str) -> str:
    key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(seed)).public_key()
    return base64.b64encode(key.public_bytes(serialization.Encoding.Raw,
                                             serialization.PublicFormat.Raw)).decode()


def test_without_a_key_development_generates_one_per_installation_readable_by_owner_only(
        tmp_path: Path):
    first = load_settings(str(tmp_path / "one"), {})
    again = load_settings(str(tmp_path / "one"), {"KOC_ENV": "development"})
    other = load_settings(str(tmp_path / "two"), {})

    assert first.secret_key == again.secret_key
    assert first.badge_signing_key == again.badge_signing_key
    assert first.secret_key != other.secret_key
    assert first.badge_signing_key != other.badge_signing_key
    for name in ("secret_key", "badge_signing_key"):
        mode = stat.S_IMODE((tmp_path / "one" / name).stat().st_mode)
        assert mode == 0o600, oct(mode)
    # No key constant is left in the settings module for anyone to reuse.
    assert not hasattr(koc.settings, "DEV_SECRET_KEY")


def test_production_refuses_to_start_without_its_own_keys(tmp_path: Path):
    with pytest.raises(SettingsError) as refused:
        create_app({"KOC_ENV": "production"}, instance_path=str(tmp_path))
    assert "KOC_SECRET_KEY: must be set in production" in str(refused.value)
    assert "KOC_BADGE_SIGNING_KEY: must be set in production" in str(refused.value)
    assert "KOC_ENCRYPTION_KEYS: must be set in production" in str(refused.value)
    assert not (tmp_path / "secret_key").exists()  # nothing generated behind the operator's back

    with pytest.raises(SettingsError, match="KOC_BADGE_SIGNING_KEY"):
        create_app({"KOC_ENV": "production", "KOC_SECRET_KEY": "s" * 40},
                   instance_path=str(tmp_path))
    app = create_app({"KOC_ENV": "production", "KOC_SECRET_KEY": "s" * 40,
                      "KOC_BADGE_SIGNING_KEY": _seed(), "KOC_ENCRYPTION_KEYS": "q" * 43 + "="},
                     instance_path=str(tmp_path))
    assert app.config["SESSION_COOKIE_SECURE"] is True


def _badge_of_new_member(app: Flask) -> str:
    from koc.members.models import Member
    from koc.tiers.services.badges import sync_badges

    admin = Api(app.test_client(), staff_token_for(app))
    member_id, member = new_member(app, admin, f"b-{secrets.token_hex(4)}")
    with app.app_context():
        db.session.get(Member, member_id).tier_key = "certified"
        sync_badges(member_ids=[member_id], now=utcnow() - timedelta(days=1))
        db.session.commit()
    return member.get("/me").json["badges"][0]["badge_id"]


def test_rotating_the_session_secret_keeps_badges_valid(make_app: Callable[..., Flask],
                                                        tmp_path: Path):
    badge_key = _seed()
    before = make_app(KOC_SECRET_KEY="secret-one-0123456789", KOC_BADGE_SIGNING_KEY=badge_key)
    badge_id = _badge_of_new_member(before)
    database = before.config["KOC_SETTINGS"].database_url

    after = make_app(KOC_DATABASE_URL=database, KOC_SECRET_KEY="secret-two-9876543210",
                     KOC_BADGE_SIGNING_KEY=badge_key)

    badge = Api(after.test_client()).get(f"/badges/{badge_id}").json
    assert badge["valid"] is True


def test_rotating_the_badge_key_keeps_old_badges_verifiable_through_the_retired_key(
        make_app: Callable[..., Flask]):
    old_key, new_key = _seed(), _seed()
    before = make_app(KOC_BADGE_SIGNING_KEY=old_key)
    old_badge = _badge_of_new_member(before)
    database = before.config["KOC_SETTINGS"].database_url

    rotated = make_app(KOC_DATABASE_URL=database, KOC_BADGE_SIGNING_KEY=new_key,
                       KOC_BADGE_RETIRED_KEYS=_public(old_key))
    forgotten = make_app(KOC_DATABASE_URL=database, KOC_BADGE_SIGNING_KEY=new_key)

    anonymous = Api(rotated.test_client())
    keys = anonymous.get("/badges/public-key").json
    assert keys["public_key"] == _public(new_key)
    assert [(k["public_key"], k["status"]) for k in keys["keys"]] == [
        (_public(new_key), "active"), (_public(old_key), "retired")]
    shown = anonymous.get(f"/badges/{old_badge}").json
    assert shown["valid"] is True
    assert shown["public_key"] == _public(old_key)
    assert f'"kid":"{shown["key_id"]}"' in shown["payload"]  # the key id is signed with it
    new_badge = _badge_of_new_member(rotated)
    assert anonymous.get(f"/badges/{new_badge}").json["key_id"] == keys["key_id"]
    # Without the retired key published, the old badge no longer verifies: nothing else does.
    assert Api(forgotten.test_client()).get(f"/badges/{old_badge}").json["valid"] is False


def test_a_retired_key_that_is_not_a_public_key_stops_start_up(tmp_path: Path):
    with pytest.raises(SettingsError, match="KOC_BADGE_RETIRED_KEYS"):
        load_settings(str(tmp_path), {"KOC_BADGE_RETIRED_KEYS": "bm90IGEga2V5"})


def test_the_api_docs_load_swagger_ui_from_this_origin_only(app: Flask):
    client = app.test_client()
    page = client.get("/api/v1/docs")

    assert page.status_code == 200
    sources = re.findall(r'(?:src|href)="([^"]+)"', page.text)
    assert sources and all(src.startswith("/api/v1/docs/assets/") for src in sources), sources
    for src in sources:
        served = client.get(src)
        assert served.status_code == 200 and len(served.data) > 1000, src
    assert client.get("/api/v1/docs/assets/index.html").status_code == 404
    assert client.get("/api/v1/docs/assets/..%2Fsecret_key").status_code == 404
