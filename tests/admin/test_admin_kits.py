"""Kits admin pages: list, kit page, form, publish/archive, and the upload JSON endpoints."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from koc.assets.models import Asset, Kit
from koc.core.auth import create_staff
from koc.extensions import db
from koc.settings import SettingsError, load_settings
from tests.admin.conftest import PASSWORD, csrf_token, login
from tests.admin.test_admin_browser import browser_page  # noqa: F401
from tests.assets.conftest import LOCAL_PREFIX, Kits, png_bytes


@pytest.fixture
def kits(app: Flask) -> Kits:
    return Kits(app)


def _kit(app: Flask, kit_id: int) -> Kit:
    with app.app_context():
        kit = db.session.get(Kit, kit_id)
        db.session.expunge(kit)
        return kit


def _post_form(client: FlaskClient, page_url: str, url: str, **form: str):
    token = csrf_token(client.get(page_url).text)
    return client.post(url, data={"csrf_token": token, **form})


# --- list and kit page -------------------------------------------------------------------------

def test_viewer_sees_kit_list_with_asset_count_and_funnel(signed_in: Callable, kits: Kits):
    kit_id = kits.kit(title="Spring drop", product_name="Bear figure")
    kits.upload(kit_id, png_bytes())
    kits.upload(kit_id, png_bytes(color=(0, 0, 200)), filename="second.png")
    viewer = signed_in("viewer")

    response = viewer.get("/admin/kits")

    assert response.status_code == 200
    assert f'href="/admin/kits/{kit_id}"' in response.text
    row = re.search(rf'<tr data-kit-id="{kit_id}">(.*?)</tr>', response.text, re.S).group(1)
    assert "Spring drop" in row and "Bear figure" in row and "Draft" in row
    assert re.findall(r'<td class="num">(\d+)</td>', row) == ["2", "0", "0", "0", "0"]
    assert "New kit" not in response.text


def test_viewer_opens_a_kit_but_cannot_publish_it(app: Flask, signed_in: Callable, kits: Kits):
    kit_id = kits.kit(title="Viewer kit")
    kits.upload(kit_id, png_bytes())
    viewer = signed_in("viewer")

    page = viewer.get(f"/admin/kits/{kit_id}")
    assert page.status_code == 200
    assert "Publish" not in page.text and 'id="kit-upload"' not in page.text

    response = viewer.post(f"/admin/kits/{kit_id}/publish",
                           data={"csrf_token": csrf_token(page.text)})
    assert response.status_code == 403
    assert _kit(app, kit_id).status == "draft"
    assert viewer.post(f"/admin/kits/{kit_id}/archive",
                       data={"csrf_token": csrf_token(page.text)}).status_code == 403


def test_admin_publishes_then_archives_a_kit(app: Flask, signed_in: Callable, kits: Kits):
    kit_id = kits.kit(title="To publish")
    kits.upload(kit_id, png_bytes())
    admin = signed_in("admin")
    page_url = f"/admin/kits/{kit_id}"

    published = _post_form(admin, page_url, f"/admin/kits/{kit_id}/publish")
    assert published.status_code == 302 and published.headers["Location"] == page_url
    assert _kit(app, kit_id).status == "published"
    assert "The kit is published." in admin.get(page_url).text

    archived = _post_form(admin, page_url, f"/admin/kits/{kit_id}/archive")
    assert archived.status_code == 302
    kit = _kit(app, kit_id)
    assert kit.status == "archived" and kit.archived_at is not None


def test_publishing_without_a_ready_file_shows_the_reason(app: Flask, signed_in: Callable,
                                                         kits: Kits):
    kit_id = kits.kit(title="Empty kit")
    admin = signed_in("admin")

    response = _post_form(admin, f"/admin/kits/{kit_id}", f"/admin/kits/{kit_id}/publish")

    assert response.status_code == 302
    assert "at least one uploaded asset" in admin.get(f"/admin/kits/{kit_id}").text
    assert _kit(app, kit_id).status == "draft"


def test_publish_without_csrf_token_is_refused(app: Flask, signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    kits.upload(kit_id, png_bytes())
    admin = signed_in("admin")

    assert admin.post(f"/admin/kits/{kit_id}/publish").status_code == 400
    assert _kit(app, kit_id).status == "draft"


def test_notes_render_markdown_with_raw_html_escaped(signed_in: Callable, kits: Kits):
    kit_id = kits.kit(title="Notes", notes=(
        "# Shooting\n\n**Natural light** only.\n\n<script>alert('x')</script>\n\n"
        'Inline <img src=x onerror="alert(1)"> and [a link](javascript:alert(1)).'))
    viewer = signed_in("viewer")

    html = viewer.get(f"/admin/kits/{kit_id}").text

    notes = re.search(r'<div class="markdown">(.*?)</div>', html, re.S).group(1)
    assert "<h1>Shooting</h1>" in notes and "<strong>Natural light</strong>" in notes
    assert "&lt;script&gt;" in notes and "<script" not in notes
    assert "&lt;img src=x" in notes and "<img" not in notes
    assert 'href="javascript' not in notes


def test_kit_page_keeps_the_strict_content_security_policy(signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    admin = signed_in("admin")

    response = admin.get(f"/admin/kits/{kit_id}")

    policy = response.headers["Content-Security-Policy"]
    assert "script-src 'self';" in policy and "unsafe-inline" not in policy
    assert "connect-src 'self'" in policy
    assert '<script src="/admin/static/kit_upload.js" defer></script>' in response.text
    assert "<script>" not in response.text
    assert admin.get("/admin/static/kit_upload.js").status_code == 200


def test_unknown_kit_is_404(signed_in: Callable):
    assert signed_in("viewer").get("/admin/kits/999999").status_code == 404


# --- create and edit ---------------------------------------------------------------------------

def test_admin_creates_and_edits_a_kit_through_the_form(app: Flask, signed_in: Callable):
    admin = signed_in("admin")

    created = _post_form(admin, "/admin/kits/new", "/admin/kits/new", title="Form kit",
                         notes="Hello *there*", product_name="Mug",
                         segments="tag: vip\ncity: 上海",
                         available_from="2026-12-01T09:00", available_until="2026-12-31T09:00")

    assert created.status_code == 302, created.text
    kit_id = int(created.headers["Location"].rsplit("/", 1)[1])
    kit = _kit(app, kit_id)
    assert (kit.title, kit.product_name, kit.status) == ("Form kit", "Mug", "draft")
    assert kit.segments == [{"tag": "vip"}, {"city": "上海"}]
    # Typed in the programme's time zone (Asia/Shanghai by default), stored in UTC.
    assert kit.available_from.isoformat() == "2026-12-01T01:00:00+00:00"

    edit_page = admin.get(f"/admin/kits/{kit_id}/edit")
    assert "tag: vip" in edit_page.text and 'value="2026-12-01T09:00"' in edit_page.text
    assert "(UTC+08:00)" in edit_page.text
    edited = admin.post(f"/admin/kits/{kit_id}/edit", data={
        "csrf_token": csrf_token(edit_page.text), "title": "Renamed", "notes": "",
        "segments": ""})
    assert edited.status_code == 302
    kit = _kit(app, kit_id)
    assert kit.title == "Renamed" and kit.segments == [] and kit.available_from is None


def test_kit_form_times_follow_the_programmes_time_zone(make_app: Callable) -> None:
    app = make_app(KOC_TIMEZONE="Europe/Paris")
    with app.app_context():
        create_staff(email="paris@example.com", role="admin", password=PASSWORD)
        db.session.commit()
    admin = app.test_client()
    assert login(admin, "paris@example.com").status_code == 302
    created = _post_form(admin, "/admin/kits/new", "/admin/kits/new", title="Paris kit",
                         notes="", segments="", launch_at="2026-07-01T10:00")
    assert created.status_code == 302, created.text
    kit = _kit(app, int(created.headers["Location"].rsplit("/", 1)[1]))
    assert kit.launch_at.isoformat() == "2026-07-01T08:00:00+00:00"  # CEST, UTC+2
    page = admin.get(f"/admin/kits/{kit.id}")
    assert "10:00" in page.text and "08:00" not in page.text


def test_an_unknown_time_zone_stops_start_up_naming_the_variable(tmp_path) -> None:
    with pytest.raises(SettingsError, match="KOC_TIMEZONE"):
        load_settings(str(tmp_path), {"KOC_TIMEZONE": "Mars/Olympus"})


def test_kit_form_shows_field_errors(signed_in: Callable):
    admin = signed_in("admin")

    response = _post_form(admin, "/admin/kits/new", "/admin/kits/new", title="",
                          segments="colour: red", available_from="2026-12-31T09:00",
                          available_until="2026-12-01T09:00")

    assert response.status_code == 200
    assert response.text.count('class="field-error"') == 3


def test_viewer_cannot_open_the_kit_form(signed_in: Callable):
    assert signed_in("viewer").get("/admin/kits/new").status_code == 403


# --- uploads from the kit page: /api/v1 with the panel session and its CSRF token ------------

def _json_headers(client: FlaskClient, kit_id: int) -> dict[str, str]:
    page = client.get(f"/admin/kits/{kit_id}")
    token = re.search(r'data-csrf-token="([^"]+)"', page.text)
    return {"X-CSRFToken": token.group(1) if token else csrf_token(page.text)}


def test_the_kit_page_uploads_through_the_api(signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    page = signed_in("admin").get(f"/admin/kits/{kit_id}").text
    assert f'data-create-url="/api/v1/kits/{kit_id}/assets"' in page


def test_upload_endpoints_create_put_and_complete_an_asset(app: Flask, signed_in: Callable,
                                                           kits: Kits):
    kit_id = kits.kit()
    admin = signed_in("admin")
    headers = _json_headers(admin, kit_id)
    body = png_bytes()

    created = admin.post(f"/api/v1/kits/{kit_id}/assets", headers=headers, json={
        "filename": "hero.png", "content_type": "image/png", "size": len(body)})
    assert created.status_code == 201, created.json
    upload = created.json["upload"]
    assert upload["multipart"] is False and upload["url"].startswith(LOCAL_PREFIX + "/storage/")
    put = admin.put(upload["url"].removeprefix(LOCAL_PREFIX), data=body,
                    headers={"Content-Type": upload["headers"]["Content-Type"]})
    assert put.status_code == 200

    done = admin.post(f"/api/v1/kits/{kit_id}/assets/{created.json['asset_id']}/complete",
                      headers=headers, json={})
    assert done.status_code == 200, done.json
    assert done.json["status"] == "ready"
    with app.app_context():
        assert db.session.get(Asset, created.json["asset_id"]).status == "ready"


@pytest.mark.parametrize("path", ["/assets", "/assets/1/complete"])
def test_upload_endpoints_require_the_csrf_header(app: Flask, signed_in: Callable, kits: Kits,
                                                  path: str):
    kit_id = kits.kit()
    admin = signed_in("admin")

    missing = admin.post(f"/api/v1/kits/{kit_id}{path}", json={
        "filename": "a.png", "content_type": "image/png", "size": 10})
    wrong = admin.post(f"/api/v1/kits/{kit_id}{path}", headers={"X-CSRFToken": "forged"},
                       json={"filename": "a.png", "content_type": "image/png", "size": 10})

    for response in (missing, wrong):
        assert response.status_code == 403
        assert response.is_json and "CSRF" in response.json["message"]
    with app.app_context():
        assert db.session.query(Asset).count() == 0


def test_upload_endpoints_need_an_admin_session(app: Flask, signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    anonymous = app.test_client()
    viewer = signed_in("viewer")
    body = {"filename": "a.png", "content_type": "image/png", "size": 10}

    signed_out = anonymous.post(f"/api/v1/kits/{kit_id}/assets", json=body)
    as_viewer = viewer.post(f"/api/v1/kits/{kit_id}/assets", json=body,
                            headers=_json_headers(viewer, kit_id))

    assert signed_out.status_code == 401 and signed_out.is_json
    assert as_viewer.status_code == 403 and as_viewer.is_json
    # The panel keeps no upload endpoints of its own.
    assert viewer.post(f"/admin/kits/{kit_id}/assets", json=body).status_code in (404, 405)


def test_upload_endpoint_rejects_bad_input_as_json(signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    admin = signed_in("admin")

    response = admin.post(f"/api/v1/kits/{kit_id}/assets", headers=_json_headers(admin, kit_id),
                          json={"filename": "../evil.png", "content_type": "text/html",
                                "size": 10, "extra": 1})

    assert response.status_code == 422
    errors = response.json["errors"]["json"]
    assert {"filename", "content_type", "extra"} <= set(errors)


def test_completing_an_asset_never_uploaded_is_409(signed_in: Callable, kits: Kits):
    kit_id = kits.kit()
    admin = signed_in("admin")
    headers = _json_headers(admin, kit_id)
    created = admin.post(f"/api/v1/kits/{kit_id}/assets", headers=headers, json={
        "filename": "a.png", "content_type": "image/png", "size": 10})

    done = admin.post(f"/api/v1/kits/{kit_id}/assets/{created.json['asset_id']}/complete",
                      headers=headers, json={})

    assert done.status_code == 409 and done.is_json


# --- in a browser ------------------------------------------------------------------------------

@pytest.mark.browser
def test_admin_uploads_a_file_with_the_progress_bar_in_a_browser(
    app: Flask, live_server: str, browser_page, make_staff: Callable,  # noqa: F811
    kits: Kits,
):
    from playwright.sync_api import expect

    page = browser_page
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    _staff_id, email = make_staff("admin", locale="en")
    kit_id = kits.kit(title="Browser kit", notes="Shoot **outdoors**")

    page.goto(f"{live_server}/admin/kits/{kit_id}")
    page.fill("#email", email)
    page.fill("#password", PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(f"{live_server}/admin/kits/{kit_id}")
    expect(page.locator(".markdown strong")).to_have_text("outdoors")

    page.set_input_files("#upload-file", files=[
        {"name": "hero.png", "mimeType": "image/png", "buffer": png_bytes(320, 240)}])
    page.get_by_role("button", name="Upload", exact=True).click()

    asset = page.locator(".asset", has_text="hero.png")
    expect(asset).to_have_attribute("data-status", "ready")
    expect(asset.locator(".asset-status")).to_have_text("Ready")
    expect(page.locator("#upload-progress")).to_have_js_property("value", 100)
    expect(page.locator("#upload-status")).to_have_text("Uploaded hero.png.")
    assert problems == []

    with app.app_context():
        stored = db.session.query(Asset).filter_by(kit_id=kit_id).one()
        assert (stored.filename, stored.status) == ("hero.png", "ready")


@pytest.mark.browser
@pytest.mark.s3
def test_browser_uploads_in_parts_straight_to_s3(make_app: Callable, seaweedfs, s3_bucket: str,
                                                 browser_page):  # noqa: F811
    """Against SeaweedFS: the browser PUTs each part to the store; the app never sees bytes."""
    import threading

    from playwright.sync_api import expect
    from werkzeug.serving import make_server

    from koc.core.auth import create_staff
    from tests.assets.conftest import s3_env

    mib = 1024 * 1024
    s3_app = make_app(**s3_env(seaweedfs, s3_bucket), KOC_MULTIPART_THRESHOLD=str(5 * mib),
                      KOC_MULTIPART_PART_SIZE=str(5 * mib))
    with s3_app.app_context():
        create_staff(email="s3admin@example.com", role="admin", password=PASSWORD).locale = "en"
        db.session.commit()
    kit_id = Kits(s3_app).kit(title="S3 kit")
    server = make_server("127.0.0.1", 0, s3_app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{server.server_port}"
    page = browser_page
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    try:
        page.goto(f"{base}/admin/kits/{kit_id}")
        page.fill("#email", "s3admin@example.com")
        page.fill("#password", PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page).to_have_url(f"{base}/admin/kits/{kit_id}")
        body = b"%PDF-1.7\n" + bytes(11 * mib)
        page.set_input_files("#upload-file", files=[
            {"name": "guide.pdf", "mimeType": "application/pdf", "buffer": body}])
        page.get_by_role("button", name="Upload", exact=True).click()

        asset = page.locator(".asset", has_text="guide.pdf")
        expect(asset).to_have_attribute("data-status", "ready", timeout=60_000)
        expect(page.locator("#upload-progress")).to_have_js_property("value", 100)
        assert problems == []
    finally:
        server.shutdown()
        thread.join(timeout=10)
        server.server_close()
    with s3_app.app_context():
        stored = db.session.query(Asset).filter_by(kit_id=kit_id).one()
        assert (stored.size, stored.status, stored.upload_id) == (len(body), "ready", None)
