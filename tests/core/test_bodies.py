"""Request bodies: the caller is authenticated before a byte is read, and bodies are bounded
by kind of route (JSON and forms small, file imports a bigger but still small cap)."""

from __future__ import annotations

import io
import json

import flask_smorest
import pytest
from flask import Flask

from koc.core.auth import install_api_guards, staff_required
from koc.settings import SettingsError, load_settings
from tests.conftest import Api

MiB = 1024 * 1024


class LazyBody(io.RawIOBase):
    """A body of `size` bytes made as it is read, counting how many the app consumed."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.position = 0
        self.consumed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True  # the test client measures the body by seeking to its end

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self.position = self.size + offset if whence == io.SEEK_END else offset
        return self.position

    def tell(self) -> int:
        return self.position

    def readinto(self, buffer) -> int:
        n = max(0, min(len(buffer), self.size - self.position))
        buffer[:n] = b" " * n
        self.position += n
        self.consumed += n
        return n


def _send(client, method: str, path: str, body: io.RawIOBase | io.BytesIO, *,
          token: str | None = None, content_type: str = "application/json",
          chunked: bool = False):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    overrides = {}
    if chunked:
        # What gunicorn hands over for `Transfer-Encoding: chunked`: no length, a stream that
        # ends by itself.
        headers["Transfer-Encoding"] = "chunked"
        overrides["wsgi.input_terminated"] = True
    return client.open(path, method=method, input_stream=body, content_type=content_type,
                       headers=headers, environ_overrides=overrides)


BODY_ROUTES = [
    ("PUT", "/api/v1/users/u-1", "application/json"),
    ("POST", "/api/v1/users/import", "multipart/form-data; boundary=xyz"),
    ("POST", "/api/v1/kits", "application/json"),
    ("POST", "/api/v1/submissions", "application/json"),
    ("POST", "/api/v1/submissions/bulk-review", "application/json"),
]


@pytest.mark.parametrize(("method", "path", "content_type"), BODY_ROUTES)
@pytest.mark.parametrize("token", [None, "koc_not-a-real-token"], ids=["no-token", "bad-token"])
def test_a_100_mib_body_without_a_valid_token_is_refused_unread(
    client, method, path, content_type, token
) -> None:
    body = LazyBody(100 * MiB)
    response = _send(client, method, path, body, token=token, content_type=content_type)
    assert response.status_code == 401, response.json
    assert response.json["message"] == "A valid bearer token is required."
    assert body.consumed == 0


def test_a_streamed_body_without_a_token_is_never_consumed(client) -> None:
    body = LazyBody(10**12)  # as good as endless
    response = _send(client, "PUT", "/api/v1/users/u-1", body, chunked=True)
    assert response.status_code == 401
    assert body.consumed == 0


def test_a_token_without_the_role_is_refused_before_the_body_is_read(client, staff_api) -> None:
    viewer = staff_api("viewer")
    body = LazyBody(100 * MiB)
    response = _send(client, "PUT", "/api/v1/users/u-1", body, token=viewer.token)
    assert response.status_code == 403
    assert body.consumed == 0


def test_an_oversized_json_body_with_a_valid_token_is_413_naming_the_limit(staff_api) -> None:
    admin = staff_api("admin")
    big_name = "x" * MiB
    response = admin.put("/users/u-1", json={"display_name": big_name})
    assert response.status_code == 413
    assert response.json == {
        "code": 413, "status": "Request Entity Too Large",
        "message": "The request body is over the 1 MiB this route accepts.",
    }
    assert admin.get("/users/u-1").status_code == 404


def test_a_declared_oversized_body_with_a_valid_token_is_refused_unread(staff_api) -> None:
    admin = staff_api("admin")
    body = LazyBody(100 * MiB)
    response = _send(admin.client, "PUT", "/api/v1/users/u-1", body, token=admin.token)
    assert response.status_code == 413
    assert body.consumed == 0


def test_a_streamed_body_with_a_valid_token_is_cut_off_at_the_limit(staff_api) -> None:
    admin = staff_api("admin")
    body = LazyBody(10**12)
    response = _send(admin.client, "PUT", "/api/v1/users/u-1", body, token=admin.token,
                     chunked=True)
    assert response.status_code == 413
    assert "1 MiB" in response.json["message"]
    assert MiB <= body.consumed <= 2 * MiB


@pytest.mark.parametrize(("size", "status"), [(MiB, 201), (MiB + 1, 413)])
def test_a_streamed_body_is_served_up_to_the_limit_and_not_one_byte_more(
    staff_api, size, status
) -> None:
    admin = staff_api("admin")
    document = json.dumps({"display_name": "Ann"}).encode()
    body = io.BytesIO(document + b" " * (size - len(document)))
    response = _send(admin.client, "PUT", "/api/v1/users/u-1", body, token=admin.token,
                     chunked=True)
    # Cut at the limit, this body would still be valid JSON: only the count tells them apart.
    assert response.status_code == status, response.json


def test_a_json_body_under_the_limit_is_served(staff_api) -> None:
    admin = staff_api("admin")
    response = admin.put("/users/u-1", json={"display_name": "Ann", "tags": ["a" * 64] * 50})
    assert response.status_code == 201, response.json


def test_a_file_import_may_exceed_the_json_limit_up_to_the_file_cap(app, staff_api) -> None:
    admin = staff_api("admin")
    rows = b"".join(b"f-%07d,%s\n" % (i, b"n" * 40) for i in range(60_000))
    assert len(rows) > 2 * MiB
    response = admin.client.post(
        "/api/v1/users/import",
        data={"file": (io.BytesIO(b"external_id,display_name\n" + rows), "users.csv")},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")
    assert response.status_code == 202, response.json


def test_a_file_import_over_the_cap_is_413_and_names_the_way_for_big_files(staff_api) -> None:
    admin = staff_api("admin")
    body = LazyBody(33 * MiB)
    response = _send(admin.client, "POST", "/api/v1/users/import", body, token=admin.token,
                     content_type="multipart/form-data; boundary=xyz")
    assert response.status_code == 413
    assert response.json["message"] == (
        "The request body is over the 32 MiB this route accepts. "
        "Larger import files go through POST /api/v1/users/imports (a presigned upload) or "
        "`koc users import PATH`.")
    assert body.consumed == 0


def test_the_limits_are_settings(make_app) -> None:
    app = make_app(KOC_MAX_BODY_BYTES="2048", KOC_MAX_IMPORT_FILE_BYTES="4096")
    from tests.conftest import staff_token_for

    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    response = admin.put("/users/u-1", json={"display_name": "x" * 3000})
    assert response.status_code == 413
    assert "2 KiB" in response.json["message"]
    response = admin.client.post(
        "/api/v1/users/import", data={"file": (io.BytesIO(b"external_id\n" + b"a\n" * 3000),
                                               "users.csv")},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")
    assert response.status_code == 413
    assert "4 KiB" in response.json["message"]


def test_a_public_route_still_bounds_its_body(client) -> None:
    body = LazyBody(100 * MiB)
    response = _send(client, "POST", "/api/v1/invitations/some-code/accept", body)
    assert response.status_code == 413
    assert body.consumed == 0


def test_admin_forms_are_bounded_too(client) -> None:
    body = LazyBody(100 * MiB)
    response = _send(client, "POST", "/admin/login", body,
                     content_type="application/x-www-form-urlencoded")
    assert response.status_code == 413
    assert "1 MiB" in response.json["message"]
    assert body.consumed == 0


@pytest.mark.parametrize("value", ["lots", "0", str(2 * 1024**3)])
def test_a_bad_body_limit_stops_start_up_naming_the_variable(tmp_path, value) -> None:
    with pytest.raises(SettingsError, match="KOC_MAX_BODY_BYTES"):
        load_settings(str(tmp_path), {"KOC_MAX_BODY_BYTES": value})


def _toy_app(*views) -> Flask:
    app = Flask(__name__)
    blp = flask_smorest.Blueprint("toy", __name__)
    for path, view in views:
        blp.route(path, methods=["POST"])(view)
    app.register_blueprint(blp)
    return app


def test_an_api_route_that_declares_no_access_stops_start_up() -> None:
    def open_door():
        return json.dumps({})

    @staff_required("admin")
    def guarded():
        return json.dumps({})

    app = _toy_app(("/open", open_door), ("/guarded", guarded))
    with pytest.raises(RuntimeError, match=r"no guard and no @blp.doc\(security=\[\]\) on "
                                           r"\['toy.open_door'\]"):
        install_api_guards(app, ["toy"])


def test_a_guarded_route_documented_as_public_stops_start_up() -> None:
    blp = flask_smorest.Blueprint("toy", __name__)

    @blp.doc(security=[])
    @staff_required("admin")
    def confused():
        return "{}"

    app = Flask(__name__)
    blp.route("/confused", methods=["POST"])(confused)
    app.register_blueprint(blp)
    with pytest.raises(RuntimeError, match=r"documented as public on \['toy.confused'\]"):
        install_api_guards(app, ["toy"])


def test_requests_made_inside_one_app_context_are_each_authenticated(app, staff_api) -> None:
    admin, viewer = staff_api("admin"), staff_api("viewer")
    with app.app_context():
        assert viewer.get("/users/u-1").status_code == 404
        assert viewer.put("/users/u-1", json={}).status_code == 403
        assert admin.put("/users/u-1", json={}).status_code == 201
        assert Api(app.test_client()).get("/users/u-1").status_code == 401
