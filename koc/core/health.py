"""`/healthz` (the process is up) and `/readyz` (the database, object store and broker answer)."""

from __future__ import annotations

import logging
from pathlib import Path

import sqlalchemy as sa
from flask import Blueprint, current_app, jsonify
from kombu import Connection

from koc.core.storage import get_storage
from koc.extensions import db

log = logging.getLogger(__name__)
health_blueprint = Blueprint("health", __name__)


@health_blueprint.get("/healthz")
def healthz():
    return jsonify(status="ok")


def _check_database() -> None:
    db.session.execute(sa.text("SELECT 1"))


def _check_storage() -> None:
    get_storage().ping()


def _check_broker() -> None:
    settings = current_app.config["KOC_SETTINGS"]
    if not settings.broker_url:
        if not (Path(settings.broker_dir) / "queue").is_dir():
            raise RuntimeError(f"broker folder {settings.broker_dir} is missing")
        return
    with Connection(settings.broker_url, connect_timeout=2) as conn:
        conn.ensure_connection(max_retries=1, timeout=2)


@health_blueprint.get("/readyz")
def readyz():
    checks = {"database": _check_database, "storage": _check_storage, "broker": _check_broker}
    results: dict[str, str] = {}
    for name, check in checks.items():
        try:
            check()
            results[name] = "ok"
        except Exception as exc:
            log.warning("readiness check %s failed: %s", name, exc)
            results[name] = f"failing: {type(exc).__name__}"
    failing = [name for name, state in results.items() if state != "ok"]
    status = 503 if failing else 200
    return jsonify(status="ok" if not failing else "unavailable", failing=failing,
                   checks=results), status
