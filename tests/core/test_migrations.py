"""The migrations are the schema: one head, and upgrading an empty database matches the models."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from flask_migrate import upgrade

from koc import MIGRATIONS_DIR
from koc.extensions import db
from tests.conftest import build_app


def test_migrations_have_a_single_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert len(ScriptDirectory.from_config(config).get_heads()) == 1


@pytest.mark.parametrize("database", ["postgres", "sqlite"])
def test_upgrade_on_an_empty_database_creates_the_schema_the_models_describe(
    request, database: str, tmp_path: Path
) -> None:
    url = (request.getfixturevalue("empty_postgres_url") if database == "postgres"
           else f"sqlite:///{tmp_path / 'm.db'}")
    app = build_app(tmp_path, KOC_DATABASE_URL=url)
    with app.app_context():
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        db.engine.dispose()
    assert diff == []
