"""`koc demo load`: the data set `make demo` shows, loaded twice without harm."""

from __future__ import annotations

from click.testing import CliRunner
from flask.cli import ScriptInfo

from koc.cli import main as koc_cli


def test_demo_load_gives_a_login_and_is_safe_to_repeat(app) -> None:
    info = ScriptInfo(create_app=lambda: app)
    first = CliRunner().invoke(koc_cli, ["demo", "load"], obj=info)
    assert first.exit_code == 0, first.output
    assert "admin@demo.koc / demo-admin-pass" in first.output
    assert "20 members" in first.output
    again = CliRunner().invoke(koc_cli, ["demo", "load"], obj=info)
    assert again.exit_code == 0 and "already loaded" in again.output
    client = app.test_client()
    with app.app_context():
        from koc.core.auth import find_staff

        assert find_staff("admin@demo.koc").check_password("demo-admin-pass")
    assert client.get("/readyz").status_code == 200
