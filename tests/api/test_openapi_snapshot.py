"""The served OpenAPI document is the contract's machine-readable form: it changes only on purpose.

A refactoring must leave it exactly as it was. A change to the API updates the stored copy in the
same commit, so the diff shows reviewers what clients will see:
`KOC_WRITE_OPENAPI=1 .venv/bin/pytest tests/api/test_openapi_snapshot.py`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

STORED = Path(__file__).with_name("openapi_v1.json")


def test_served_openapi_document_is_the_stored_one(client) -> None:
    served = client.get("/api/v1/openapi.json").json
    if os.environ.get("KOC_WRITE_OPENAPI") == "1":
        STORED.write_text(json.dumps(served, indent=1, sort_keys=True, ensure_ascii=False) + "\n",
                          encoding="utf-8")
    stored = json.loads(STORED.read_text(encoding="utf-8"))
    assert served == stored, "the OpenAPI document changed: see this module's docstring"
