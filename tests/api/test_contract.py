"""The public contract: auth, errors naming fields, who sees what, the OpenAPI document, the CLI."""

from __future__ import annotations

import io
import re
import threading

import pytest
from click.testing import CliRunner

from koc.cli import main as koc_cli
from koc.settings import SettingsError, load_settings
from tests.conftest import Api, new_member, staff_token_for

XHS = "https://www.xiaohongshu.com/explore/{:024x}"


def _submission(n: int = 1, **extra) -> dict:
    return {"platform": "xiaohongshu", "post_url": XHS.format(n),
            "posted_at": "2026-11-01T10:00:00+00:00",
            "metrics": {"views": 100, "likes": 10, "comments": 1, "saves": 2, "shares": 0},
            **extra}


def test_missing_or_bad_token_is_401_and_wrong_role_is_403(client, staff_api) -> None:
    assert Api(client).get("/members").status_code == 401
    assert Api(client, "koc_not-a-token").get("/members").status_code == 401
    viewer = staff_api("viewer")
    assert viewer.get("/members").status_code == 200
    forbidden = viewer.put("/users/x1", json={})
    assert forbidden.status_code == 403
    assert set(forbidden.json) >= {"code", "status", "message"}


@pytest.mark.parametrize(("path", "body", "field"), [
    ("/users/u1", {"orders_count": -1}, "orders_count"),
    ("/users/u1", {"tags": "not-a-list"}, "tags"),
    ("/users/u1", {"last_order_at": "2026-01-01T00:00:00"}, "last_order_at"),
    ("/users/u1", {"surprise": 1}, "surprise"),
    ("/invitations", {"external_id": "nobody", "expires_in_days": 0}, "expires_in_days"),
    ("/kits", {"title": ""}, "title"),
    ("/kits", {"title": "t", "segments": [{"planet": "Mars"}]}, "segments"),
    ("/kits", {"title": "t", "available_from": "2026-02-01T00:00:00Z",
               "available_until": "2026-01-01T00:00:00Z"}, "available_until"),
    ("/kits", {"title": "t", "min_tier": "platinum"}, "min_tier"),
])
def test_bad_staff_input_is_422_naming_the_field(staff_api, path, body, field) -> None:
    admin = staff_api("admin")
    response = admin.put(path, json=body) if path.startswith("/users") else admin.post(
        path, json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])


@pytest.mark.parametrize(("body", "field"), [
    (_submission(platform="myspace"), "platform"),
    (_submission(post_url="not a url at all"), "post_url"),
    (_submission(posted_at="yesterday"), "posted_at"),
    (_submission(metrics={"likes": -5}), "likes"),
    (_submission(kit_id=999), "kit_id"),
    (_submission(media_upload_ids=[12345]), "media_upload_ids"),
])
def test_bad_submission_is_422_naming_the_field_and_writes_nothing(member_api, staff_api,
                                                                    body, field) -> None:
    _, member = member_api()
    response = member.post("/submissions", json=body, headers={"Idempotency-Key": "k1"})
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    assert staff_api("viewer").get("/submissions").json == []
    # The failed attempt did not burn the key: a corrected retry with it succeeds.
    fixed = member.post("/submissions", json=_submission(), headers={"Idempotency-Key": "k1"})
    assert fixed.status_code == 201


def test_members_see_only_their_own_submissions(member_api, staff_api) -> None:
    _, alice = member_api()
    _, bob = member_api()
    mine = alice.post("/submissions", json=_submission(1)).json
    assert bob.get(f"/submissions/{mine['id']}").status_code == 404
    assert bob.get("/submissions").json == []
    assert bob.post(f"/submissions/{mine['id']}/metrics", json={"likes": 1}).status_code == 404
    assert [s["id"] for s in alice.get("/submissions").json] == [mine["id"]]
    assert staff_api("viewer").get(f"/submissions/{mine['id']}").status_code == 200


def test_same_post_in_other_spellings_is_409_naming_the_existing_submission(member_api) -> None:
    _, alice = member_api()
    _, bob = member_api()
    note = "64b7f0c2000000001e03a1b2"
    first = alice.post("/submissions", json=_submission(
        post_url=f"https://www.xiaohongshu.com/explore/{note}"))
    assert first.status_code == 201
    for spelling in (f"https://xiaohongshu.com/discovery/item/{note}?xsec_token=zz#c",
                     f"看看 HTTPS://WWW.XIAOHONGSHU.COM/explore/{note}/ 好物"):
        again = bob.post("/submissions", json=_submission(post_url=spelling))
        assert again.status_code == 409
        assert str(first.json["id"]) in again.json["message"]


def test_reviewed_submission_cannot_be_reviewed_again_and_points_book_once(
    app, member_api, staff_api
) -> None:
    _, member = member_api()
    reviewer = staff_api("reviewer")
    created = member.post("/submissions", json=_submission()).json
    assert staff_api("viewer").post(f"/submissions/{created['id']}/review",
                                    json={"decision": "approve"}).status_code == 403
    assert reviewer.post(f"/submissions/{created['id']}/review",
                         json={"decision": "reject"}).status_code == 422  # reason required
    ok = reviewer.post(f"/submissions/{created['id']}/review",
                       json={"decision": "approve", "rating": 5})
    assert ok.status_code == 200
    again = reviewer.post(f"/submissions/{created['id']}/review",
                          json={"decision": "approve", "rating": 5})
    assert again.status_code == 409
    ledger = member.get("/me/points")
    assert len(ledger.json) == 1
    assert member.get("/me").json["points"]["balance"] == ok.json["score"]


def test_invitation_used_expired_unknown(app, staff_api) -> None:
    admin = staff_api("admin")
    admin.put("/users/inv-1", json={})
    admin.put("/users/inv-2", json={})
    code = admin.post("/invitations", json={"external_id": "inv-1"}).json["code"]
    accept = {"display_name": "A", "accept_terms": True}
    assert Api(app.test_client()).post(f"/invitations/{code}/accept",
                                       json=accept).status_code == 201
    assert Api(app.test_client()).post(f"/invitations/{code}/accept",
                                       json=accept).status_code == 409
    assert Api(app.test_client()).post("/invitations/nope/accept",
                                       json=accept).status_code == 404
    refused = Api(app.test_client()).post(f"/invitations/{code}/accept",
                                          json={**accept, "accept_terms": False})
    assert refused.status_code == 422 and "accept_terms" in str(refused.json["errors"])
    with app.app_context():
        from datetime import timedelta

        from koc.core.db import utcnow
        from koc.extensions import db
        from koc.members.models import Invitation

        late = admin.post("/invitations", json={"external_id": "inv-2"}).json["code"]
        db.session.query(Invitation).filter_by(id=int(late.partition(".")[0])).update(
            {"expires_at": utcnow() - timedelta(seconds=1)})
        db.session.commit()
    assert Api(app.test_client()).post(f"/invitations/{late}/accept",
                                       json=accept).status_code == 410


def test_kits_outside_tier_or_segment_are_404_for_members(app, staff_api, member_api) -> None:
    admin = staff_api("admin")
    _, shanghai = member_api(city="Shanghai")
    kit = admin.post("/kits", json={"title": "GZ only", "segments": [{"city": "Guangzhou"}]}).json
    with app.app_context():
        from koc.core.storage import get_storage

        storage = get_storage()
    asset = admin.post(f"/kits/{kit['id']}/assets",
                       json={"filename": "a.txt", "content_type": "text/plain", "size": 3}).json
    put = app.test_client().put(asset["upload"]["url"].removeprefix("http://localhost"),
                                data=b"abc", headers=asset["upload"]["headers"])
    assert put.status_code in (200, 201, 204)
    assert admin.post(f"/kits/{kit['id']}/assets/{asset['asset_id']}/complete").status_code == 200
    assert admin.post(f"/kits/{kit['id']}/publish").status_code == 200
    assert shanghai.get("/kits").json == []
    assert shanghai.get(f"/kits/{kit['id']}").status_code == 404
    download = shanghai.get(f"/kits/{kit['id']}/assets/{asset['asset_id']}/download")
    assert download.status_code == 404
    assert storage is not None


def test_asset_with_unsafe_filename_or_oversize_is_refused(staff_api) -> None:
    admin = staff_api("admin")
    kit = admin.post("/kits", json={"title": "k"}).json
    bad_name = admin.post(f"/kits/{kit['id']}/assets", json={
        "filename": "../../etc/passwd", "content_type": "text/plain", "size": 3})
    assert bad_name.status_code == 422 and "filename" in str(bad_name.json["errors"])
    too_big = admin.post(f"/kits/{kit['id']}/assets", json={
        "filename": "v.mp4", "content_type": "video/mp4", "size": 6 * 1024**3})
    assert too_big.status_code == 422 and "size" in str(too_big.json["errors"])


def test_import_through_the_api_reports_bad_lines(app, staff_api) -> None:
    admin = staff_api("admin")
    data = b"external_id,orders_count,tags\nok-1,3,a|b\nbad one,x,\nok-2,1,\n"
    response = admin.client.post(
        "/api/v1/users/import", data={"file": (io.BytesIO(data), "users.csv")},
        headers={"Authorization": f"Bearer {admin.token}"}, content_type="multipart/form-data")
    assert response.status_code == 202, response.json
    job_id = response.json["job_id"]
    assert admin.get(f"/jobs/{job_id}").json["status"] == "queued"
    with app.app_context():
        from koc.members.tasks import import_users_task

        import_users_task.run(job_id)
        import_users_task.run(job_id)  # a re-delivered task changes nothing
    job = admin.get(f"/jobs/{job_id}").json
    assert (job["processed"], job["failed"]) == (2, 1)
    assert job["errors"][0]["line"] == 3
    assert "external_id" in job["errors"][0]["message"]
    assert admin.get("/users/ok-1").json["tags"] == ["a", "b"]


def test_cli_import_exits_non_zero_with_a_per_line_report(app, tmp_path) -> None:
    from flask.cli import ScriptInfo

    path = tmp_path / "users.jsonl"
    path.write_text('{"external_id": "j-1", "orders_count": 2}\n{"external_id": ""}\nnot json\n')
    result = CliRunner().invoke(koc_cli, ["users", "import", str(path)],
                                obj=ScriptInfo(create_app=lambda: app))
    assert result.exit_code == 1
    assert "line 2: external_id" in result.output
    assert "line 3: not valid JSON" in result.output
    assert "imported 1 users" in result.output


def test_openapi_lists_every_api_route(app, client) -> None:
    paths = client.get("/api/v1/openapi.json").json["paths"]
    served = {
        re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        for rule in app.url_map.iter_rules() if rule.rule.startswith("/api/v1/")
        and rule.endpoint != "api-docs.openapi_json" and "docs" not in rule.rule
    }
    documented = set(paths)
    assert served <= documented, served - documented


def test_koc_help_lists_the_contract_commands() -> None:
    output = CliRunner().invoke(koc_cli, ["--help"]).output
    for command in ("db", "staff", "token", "users", "tiers", "demo", "serve", "worker"):
        assert f"  {command} " in output


@pytest.mark.parametrize(("name", "value"), [
    ("KOC_DATABASE_URL", "mysql://x"),
    ("KOC_DOWNLOAD_URL_TTL", "soon"),
    ("KOC_STORAGE_URL", "ftp://bucket"),
    ("KOC_BROKER_URL", "kafka://x"),
])
def test_bad_settings_stop_start_up_naming_the_variable(tmp_path, name, value) -> None:
    with pytest.raises(SettingsError, match=name):
        load_settings(str(tmp_path), {name: value})


def test_production_refuses_the_development_secret(tmp_path) -> None:
    with pytest.raises(SettingsError, match="KOC_SECRET_KEY"):
        load_settings(str(tmp_path), {"KOC_ENV": "production"})


@pytest.mark.postgres
def test_concurrent_retries_with_one_idempotency_key_make_one_submission(pg_app) -> None:
    admin = Api(pg_app.test_client(), staff_token_for(pg_app, "admin"))
    _, member = new_member(pg_app, admin, "racer")
    results: list[tuple[int, int]] = []

    def attempt() -> None:
        client = Api(pg_app.test_client(), member.token)
        response = client.post("/submissions", json=_submission(77),
                               headers={"Idempotency-Key": "same-key"})
        results.append((response.status_code, response.json.get("id")))

    threads = [threading.Thread(target=attempt) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert {status for status, _ in results} <= {200, 201}
    assert len({submission_id for _, submission_id in results}) == 1
    assert len(admin.get("/submissions").json) == 1


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("patch", "/members/{member}", {"status": "banned"}, "status"),
    ("patch", "/members/{member}", {"tier_locked": "sometimes"}, "tier_locked"),
    ("post", "/submissions/{submission}/review", {"decision": "maybe"}, "decision"),
    ("post", "/submissions/{submission}/review", {"decision": "approve", "rating": 6}, "rating"),
    ("post", "/submissions/{submission}/metrics", {"views": "many"}, "views"),
    ("put", "/tiers/rules", {"tiers": []}, "tiers"),
    ("post", "/tiers/rules/preview", {}, "tiers"),
])
def test_bad_input_on_staff_writes_is_422_and_changes_nothing(
    staff_api, member_api, method, path, body, field
) -> None:
    admin = staff_api("admin")
    member_id, member = member_api()
    submission = member.post("/submissions", json=_submission(5)).json["id"]
    before = (admin.get(f"/members/{member_id}").json, admin.get(f"/submissions/{submission}").json)
    url = path.format(member=member_id, submission=submission)
    response = getattr(admin, method)(url, json=body)
    assert response.status_code == 422, response.json
    assert field in str(response.json["errors"])
    after = (admin.get(f"/members/{member_id}").json, admin.get(f"/submissions/{submission}").json)
    assert after == before


def test_bad_media_upload_is_422_naming_the_field(member_api) -> None:
    _, member = member_api()
    for body, field in [
        ({"filename": "a.exe", "content_type": "application/x-msdownload", "size": 3},
         "content_type"),
        ({"filename": "a/b.png", "content_type": "image/png", "size": 3}, "filename"),
        ({"filename": "a.png", "content_type": "image/png", "size": 0}, "size"),
    ]:
        response = member.post("/uploads", json=body)
        assert response.status_code == 422 and field in str(response.json["errors"])


def test_readyz_names_the_part_that_is_down(make_app) -> None:
    broker_down = make_app(KOC_BROKER_URL="redis://127.0.0.1:9/0").test_client().get("/readyz")
    assert broker_down.status_code == 503 and broker_down.json["failing"] == ["broker"]
    store_down = make_app(KOC_STORAGE_URL="s3://nobucket", KOC_S3_ENDPOINT_URL="http://127.0.0.1:9",
                          AWS_ACCESS_KEY_ID="k", AWS_SECRET_ACCESS_KEY="s")
    response = store_down.test_client().get("/readyz")
    assert response.status_code == 503 and response.json["failing"] == ["storage"]
