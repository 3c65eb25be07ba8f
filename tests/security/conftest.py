"""Apps with the rate limits on (the shared fixtures turn them off), and a CLI runner."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from click.testing import CliRunner, Result
from flask import Flask
from flask.cli import ScriptInfo

from koc.cli import main as koc_cli
from koc.core.audit import AuditEvent
from koc.extensions import db


@pytest.fixture
def limited_app(make_app: Callable[..., Flask]) -> Callable[..., Flask]:
    """An app with rate limits on, its counters under a prefix of its own."""

    def factory(**env: str) -> Flask:
        return make_app(KOC_RATELIMIT_ENABLED="true",
                        KOC_RATELIMIT_KEY_PREFIX=f"t{uuid.uuid4().hex[:10]}", **env)

    return factory


def run_cli(app: Flask, *args: str, **kwargs: Any) -> Result:
    return CliRunner().invoke(koc_cli, list(args), obj=ScriptInfo(create_app=lambda: app),
                              **kwargs)


def audit_rows(app: Flask, **where: Any) -> list[AuditEvent]:
    with app.app_context():
        rows = db.session.scalars(db.select(AuditEvent).filter_by(**where)
                                  .order_by(AuditEvent.id)).all()
        for row in rows:
            db.session.expunge(row)
        return list(rows)
