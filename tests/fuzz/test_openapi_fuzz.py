"""schemathesis over the served OpenAPI document: no input gives a 5xx and every documented
response matches its schema, for each of the four kinds of caller, on SQLite and PostgreSQL.

Each operation gets FUZZ_EXAMPLES cases per caller, drawn from schemathesis' valid and invalid
strategies and from valid ones whose path ids are seeded rows (a kit with an uploaded asset, a
member, a submission, a drop, a webhook, an invitation), so handlers get past the lookup; the
seed is FUZZ_SEED. `make fuzz` runs a longer pass. The schemathesis pytest plugin's
`parametrize` is not used: it runs each operation as a subtest through a pytest internal
(`Function._nodeid`) that pytest 9.2 no longer has.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import hypothesis
import pytest
import schemathesis
from flask import Flask
from hypothesis import HealthCheck, Phase, given
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import response_schema_conformance

from tests.assets.conftest import png_bytes, put
from tests.conftest import Api, new_member, staff_token_for

pytestmark = pytest.mark.fuzz

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "5"))
SEED = int(os.environ.get("FUZZ_SEED", "8"))
ROLES = ("admin", "reviewer", "viewer", "member")
CHECKS = [not_a_server_error, response_schema_conformance]


@dataclass
class Figures:
    operations: int = 0
    cases: int = 0
    failures: dict[str, str] = field(default_factory=dict)

    def record(self, key: str, detail: str) -> None:
        self.failures.setdefault(key, detail)


def seed_rows(app: Flask) -> tuple[dict[str, str], dict[str, Any]]:
    """Tokens for the four callers, and the ids of one real row of each kind."""
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    kit = admin.post("/kits", json={"title": "Spring kit", "notes": "Film outdoors."})
    assert kit.status_code == 201, kit.json
    kit_id = kit.json["id"]
    image = png_bytes()
    asset = admin.post(f"/kits/{kit_id}/assets", json={
        "filename": "look.png", "content_type": "image/png", "size": len(image)})
    assert asset.status_code == 201, asset.json
    upload = asset.json["upload"]
    put(admin.client, upload["url"], image, upload["headers"])
    asset_id = asset.json["asset_id"]
    assert admin.post(f"/kits/{kit_id}/assets/{asset_id}/complete", json={}).status_code == 200
    assert admin.post(f"/kits/{kit_id}/publish").status_code == 200
    member_id, member = new_member(app, admin, "fuzz-member", city="Shanghai")
    now = datetime.now(UTC)
    submission = member.post("/submissions", json={
        "kit_id": kit_id, "platform": "xiaohongshu", "post_url": "https://xhslink.com/a/fuzz1",
        "posted_at": (now - timedelta(days=1)).isoformat(),
        "metrics": {"views": 100, "likes": 10}})
    assert submission.status_code == 201, submission.json
    drop = admin.post("/drops", json={
        "product_name": "Serum", "sku": "SRM-1", "quantity": 5,
        "opens_at": (now - timedelta(days=1)).isoformat(),
        "closes_at": (now + timedelta(days=7)).isoformat()})
    assert drop.status_code == 201, drop.json
    webhook = admin.post("/webhooks", json={"url": "https://hooks.example.com/koc",
                                            "events": ["kit.published"],
                                            "secret": "fuzz-signing-secret-0123"})
    assert webhook.status_code == 201, webhook.json
    assert admin.put("/users/fuzz-invited", json={"city": "Hangzhou"}).status_code == 201
    invitation = admin.post("/invitations", json={"external_id": "fuzz-invited"})
    assert invitation.status_code == 201, invitation.json
    tokens = {role: staff_token_for(app, role) for role in ("admin", "reviewer", "viewer")}
    tokens["member"] = member.token
    return tokens, {
        "kit_id": kit_id, "asset_id": asset_id, "member_id": member_id,
        "submission_id": submission.json["id"], "drop_id": drop.json["id"],
        "webhook_id": webhook.json["id"], "external_id": "fuzz-member",
        "code": invitation.json["code"],
    }


def fuzz_operation(operation: Any, headers: dict[str, str], rows: dict[str, Any],
                   figures: Figures) -> None:
    strategies = [operation.as_strategy(generation_mode=mode) for mode in GenerationMode]
    known = {p.name: rows[p.name] for p in operation.path_parameters if p.name in rows}
    if known:
        strategies.append(operation.as_strategy(path_parameters=known))

    @hypothesis.seed(SEED)
    @hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                         phases=[Phase.generate], suppress_health_check=list(HealthCheck))
    @given(case=st.one_of(strategies))
    def run(case: Any) -> None:
        figures.cases += 1
        try:
            response = case.call(headers=headers)
        except Exception as exc:  # schemathesis re-raises what the app raised
            figures.record(f"{operation.label} -> 500 {type(exc).__name__}: {str(exc)[:160]}",
                           case.as_curl_command(headers))
            return
        try:
            case.validate_response(response, checks=CHECKS, headers=headers)
        except Exception as exc:  # every failure is recorded; the pass goes on
            figures.record(f"{operation.label} -> {response.status_code} {type(exc).__name__}",
                           f"{exc}\n{case.as_curl_command(headers)}")

    run()


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize("setup", ["sqlite", "postgres"])
def test_no_input_gives_a_server_error_or_a_response_off_its_schema(
        setup: str, role: str, request: pytest.FixtureRequest,
        capsys: pytest.CaptureFixture[str]) -> None:
    app: Flask = request.getfixturevalue("app" if setup == "sqlite" else "pg_app")
    tokens, rows = seed_rows(app)
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app)
    headers = {"Authorization": f"Bearer {tokens[role]}"}
    figures = Figures()
    for result in schema.get_all_operations():
        figures.operations += 1
        fuzz_operation(result.ok(), headers, rows, figures)
    with capsys.disabled():
        print(f"\nfuzz {setup}/{role}: {figures.operations} operations, {figures.cases} cases, "
              f"{len(figures.failures)} distinct failures (FUZZ_SEED={SEED}, "
              f"FUZZ_EXAMPLES={EXAMPLES})")
    assert not figures.failures, "\n\n".join(
        f"{key}\n{detail}" for key, detail in sorted(figures.failures.items()))
