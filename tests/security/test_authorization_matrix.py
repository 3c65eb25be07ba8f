"""Every operation of the served OpenAPI document x every kind of caller gets the answer the
document promises: 401 without a valid token, 403 for the wrong role, never either for a caller
it admits; and a member asking for another member's resource gets 404.

The document states who may call an operation in `x-koc-access` (written from the route's own
guard), or `security: []` for a public one. A new route is in the document, so it is in this
matrix the day it is added.
"""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from flask import Flask

from koc.core.db import utcnow
from tests.conftest import Api, new_member, staff_token_for

CALLERS = ("no token", "bad token", "member A", "member B", "viewer", "reviewer", "admin")
ROLES = ("viewer", "reviewer", "admin")
METHODS = ("get", "post", "put", "patch", "delete")


def _admits(access: str, caller: str) -> bool:
    if caller in ("no token", "bad token"):
        return False
    if access == "any":
        return True
    for part in access.split("|"):
        if part == "member" and caller.startswith("member"):
            return True
        if part.startswith("staff:") and caller in ROLES:
            return ROLES.index(caller) >= ROLES.index(part.removeprefix("staff:"))
    return False


def _concrete(path: str) -> str:
    # Ids nobody holds: an admitted caller gets past the guard and then a 404 or 422, so any
    # 401 or 403 it gets comes from the guard.
    return re.sub(r"\{[^}]*\}", lambda m: "999999" if "id" in m.group(0) else "nope",
                  path.removeprefix("/api/v1"))


@pytest.fixture
def callers(app: Flask) -> dict[str, Api]:
    admin = Api(app.test_client(), staff_token_for(app, "admin"))
    _a, member_a = new_member(app, admin, "matrix-a")
    _b, member_b = new_member(app, admin, "matrix-b")
    return {"no token": Api(app.test_client()),
            "bad token": Api(app.test_client(), "koc_not-a-real-token-at-all"),
            "member A": member_a, "member B": member_b,
            "viewer": Api(app.test_client(), staff_token_for(app, "viewer")),
            "reviewer": Api(app.test_client(), staff_token_for(app, "reviewer")),
            "admin": admin}


def _call(api: Api, method: str, path: str):
    headers = {"Authorization": f"Bearer {api.token}"} if api.token else {}
    kwargs = {"json": {}} if method in ("post", "put", "patch") else {}
    return getattr(api.client, method)(f"/api/v1{path}", headers=headers, **kwargs)


def test_every_operation_answers_every_caller_as_the_document_says(
        app: Flask, callers: dict[str, Api]):
    spec = app.test_client().get("/api/v1/openapi.json").json
    wrong: list[str] = []
    checked = 0
    for path, operations in spec["paths"].items():
        for method in METHODS:
            operation = operations.get(method)
            if operation is None:
                continue
            public = operation.get("security") == []
            access = operation.get("x-koc-access")
            if not public and access is None:
                wrong.append(f"{method.upper()} {path}: says neither who may call it nor public")
                continue
            for caller in CALLERS:
                status = _call(callers[caller], method, _concrete(path)).status_code
                checked += 1
                if public:
                    ok = status not in (401, 403)
                    expected = "neither 401 nor 403"
                elif _admits(access, caller):
                    ok = status not in (401, 403) and status < 500
                    expected = "admitted (not 401/403/5xx)"
                else:
                    expected_status = 401 if caller in ("no token", "bad token") else 403
                    ok = status == expected_status
                    expected = str(expected_status)
                if not ok:
                    wrong.append(f"{method.upper()} {path} as {caller}: {status}, "
                                 f"expected {expected} ({access or 'public'})")
    assert not wrong, "\n".join(wrong)
    # Every operation, every caller: the document lists dozens of operations.
    assert checked >= 50 * len(CALLERS)


def test_a_member_gets_404_for_another_members_submission(callers: dict[str, Api]):
    member_a, member_b = callers["member A"], callers["member B"]
    created = member_a.post("/submissions", json={
        "platform": "weibo", "post_url": "https://weibo.com/1/matrix",
        "posted_at": (utcnow() - timedelta(hours=1)).isoformat(), "metrics": {"likes": 1}})
    assert created.status_code == 201, created.json
    submission = created.json["id"]

    assert member_a.get(f"/submissions/{submission}").status_code == 200
    assert member_b.get(f"/submissions/{submission}").status_code == 404
    assert member_b.get(f"/submissions/{submission}/metrics").status_code == 404
    assert member_b.post(f"/submissions/{submission}/metrics",
                         json={"likes": 5}).status_code == 404
    assert submission not in [s["id"] for s in member_b.get("/submissions").json]
    assert callers["viewer"].get(f"/submissions/{submission}").status_code == 200
