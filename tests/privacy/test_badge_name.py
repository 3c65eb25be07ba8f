"""The public badge page shows the tier and dates; the member's name only if they chose so."""

from __future__ import annotations

import pytest
from flask import Flask

from tests.conftest import Api
from tests.privacy.conftest import make_person

pytestmark = pytest.mark.clock


def test_badge_shows_the_name_only_after_the_member_chose_to(app: Flask) -> None:
    person = make_person(app)
    public = Api(app.test_client())
    badge = public.get(f"/badges/{person.badge_id}").json
    assert badge["member"] == {"id": person.member_id, "display_name": None}
    assert badge["tier"] and badge["tier_name"] and badge["issued_at"]
    assert badge["valid"] is True
    assert person.member.get("/me").json["show_name_on_badge"] is False

    chose = person.member.patch("/me", json={"show_name_on_badge": True})
    assert chose.status_code == 200 and chose.json["show_name_on_badge"] is True
    assert public.get(f"/badges/{person.badge_id}").json["member"]["display_name"] == "小明爱分享"
    # The name is not signed into the badge: choosing changes no signature.
    assert public.get(f"/badges/{person.badge_id}").json["valid"] is True
    svg = app.test_client().get(f"/api/v1/badges/{person.badge_id}/badge.svg")
    assert "小明" not in svg.get_data(as_text=True)

    assert person.member.patch("/me", json={"show_name_on_badge": False}).status_code == 200
    assert public.get(f"/badges/{person.badge_id}").json["member"]["display_name"] is None


def test_me_patch_rejects_unknown_or_bad_fields(app: Flask) -> None:
    person = make_person(app)
    bad = person.member.patch("/me", json={"show_name_on_badge": "maybe"})
    assert bad.status_code == 422 and "show_name_on_badge" in bad.json["errors"]["json"]
    unknown = person.member.patch("/me", json={"display_name": "x", "show_name_on_badge": True})
    assert unknown.status_code == 422 and "display_name" in unknown.json["errors"]["json"]
    assert person.admin.patch("/me", json={"show_name_on_badge": True}).status_code == 403
