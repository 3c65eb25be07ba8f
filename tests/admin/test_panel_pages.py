"""The panel's pages without a browser: who may open them, bad query strings, bounded lists."""

from __future__ import annotations

from collections.abc import Callable

from flask import Flask
from flask.testing import FlaskClient

from koc.assets.models import Kit
from koc.core.db import utcnow
from koc.extensions import db


def test_settings_pages_are_for_admins_only(signed_in: Callable[..., FlaskClient]):
    viewer, reviewer = signed_in("viewer"), signed_in("reviewer")
    for client in (viewer, reviewer):
        assert client.get("/admin/webhooks").status_code == 403
        assert client.get("/admin/webhooks/1").status_code == 403
    admin = signed_in("admin")
    assert admin.get("/admin/webhooks").status_code == 200
    assert admin.get("/admin/webhooks/999999").status_code == 404


def test_rules_pages_show_write_controls_to_admins_only(signed_in: Callable[..., FlaskClient]):
    viewer, admin = signed_in("viewer"), signed_in("admin")
    for path, control in (("/admin/scoring", 'id="scoring-save"'),
                          ("/admin/tiers", 'id="rules-save"')):
        seen = viewer.get(path)
        assert seen.status_code == 200 and control not in seen.text
        assert control in admin.get(path).text


def test_bad_queue_filters_are_dropped_not_a_500(signed_in: Callable[..., FlaskClient],
                                                pending_submission: Callable):
    pending_submission()
    reviewer = signed_in("reviewer")
    page = reviewer.get("/admin/reviews?platform=myspace&kit_id=abc&flagged=maybe&view=x")
    assert page.status_code == 200
    assert 'class="card submission"' in page.text
    assert signed_in("viewer").get("/admin/reviews").status_code == 403


def test_a_kit_funnel_step_must_be_known(app: Flask, signed_in: Callable[..., FlaskClient]):
    with app.app_context():
        kit = Kit(title="k", status="published", published_at=utcnow())
        db.session.add(kit)
        db.session.commit()
        kit_id = kit.id
    viewer = signed_in("viewer")
    assert viewer.get(f"/admin/kits/{kit_id}/funnel/eligible").status_code == 200
    assert viewer.get(f"/admin/kits/{kit_id}/funnel/bought").status_code == 404
    assert viewer.get("/admin/kits/999999/funnel/eligible").status_code == 404


def test_member_page_lists_are_bounded(app: Flask, signed_in: Callable[..., FlaskClient],
                                       member_api: Callable, count_queries: Callable):
    member_id, _member = member_api()
    viewer = signed_in("viewer")
    with count_queries(app) as queries:
        page = viewer.get(f"/admin/members/{member_id}")
    assert page.status_code == 200
    assert 'id="member-actions"' not in page.text
    assert len(queries) < 40


def test_roster_reads_the_same_statements_for_a_full_page_as_for_one_member(
        app: Flask, signed_in: Callable[..., FlaskClient], staff_api: Callable,
        member_api: Callable, count_queries: Callable):
    """Each member's CRM id, city and accounts come in one query for the page, not per row."""
    viewer, api = signed_in("viewer"), staff_api("viewer")

    def statements() -> tuple[int, int]:
        with count_queries(app) as page_queries:
            page = viewer.get("/admin/members")
        with count_queries(app) as api_queries:
            listed = api.get("/members")
        assert page.status_code == 200 and listed.status_code == 200
        # The token's last use is written at most once a while: not the list's own reading.
        listing = [q for q in api_queries if not q.startswith("UPDATE api_tokens")]
        return len(page_queries), len(listing)

    member_api(city="杭州")
    one = statements()
    for _ in range(7):
        member_api(city="成都")
    page = viewer.get("/admin/members")
    assert page.text.count("成都") >= 7 and "杭州" in page.text
    assert sorted(m["external_id"] for m in api.get("/members").json) == [
        f"user-{n}" for n in range(1, 9)]
    assert statements() == one
