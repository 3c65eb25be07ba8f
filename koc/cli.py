"""The `koc` command line: operators' entry point (see API.md for the contract)."""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path
from typing import IO

import click
from flask import current_app
from flask.cli import FlaskGroup, with_appcontext
from gunicorn.app.base import BaseApplication

from koc import MIGRATIONS_DIR, create_app
from koc.assets.services import reconciliation
from koc.core import audit
from koc.core.auth import (
    StaffRole,
    create_staff,
    deactivate_staff,
    find_staff,
    find_tokens_by_prefix,
    issue_token,
    reactivate_staff,
    revoke_token,
    set_staff_password,
    set_staff_role,
)
from koc.core.celery import ensure_broker_dirs
from koc.core.check import FAIL, Finding, run_checks
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.storage import get_storage
from koc.demo import load_demo
from koc.extensions import db
from koc.members.services import imports, privacy
from koc.settings import SettingsError
from koc.tiers.services.engine import recalculate


def _app_factory():
    app = create_app()
    # The embedded database lives in the instance folder, which a fresh checkout lacks. Commands
    # create it; the app factory itself never touches the disk.
    database_url = app.config["KOC_SETTINGS"].database_url
    if database_url.startswith("sqlite:///"):
        Path(database_url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    return app


@click.group(cls=FlaskGroup, create_app=_app_factory, add_version_option=False,
             load_dotenv=False, set_debug_flag=False)
def main() -> None:
    """koc: run a KOC programme (API, admin panel, worker and operator commands)."""


# --- staff and tokens --------------------------------------------------------------------------

@main.group()
def staff() -> None:
    """Staff accounts for the admin panel and the API."""


@staff.command("create")
@click.argument("email")
@click.option("--role", type=click.Choice(["admin", "reviewer", "viewer"]), required=True)
@click.option("--password", prompt=True, hide_input=True, confirmation_prompt=True)
@with_appcontext
def staff_create(email: str, role: str, password: str) -> None:
    """Create a staff account."""
    if len(password) < 8:
        raise click.BadParameter("must be at least 8 characters", param_hint="--password")
    if find_staff(email) is not None:
        raise click.ClickException(f"staff account {email} already exists")
    member = create_staff(email=email, role=role, password=password)
    audit.record("staff.create", f"staff:{member.id}", {"email": member.email, "role": role},
                 actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"created {role} {member.email}")


# --- staff lifecycle (issue 13) ----------------------------------------------------------------

def _staff_or_fail(email: str):
    account = find_staff(email)
    if account is None:
        raise click.ClickException(f"no staff account {email}")
    return account


def _refused(exc: DomainError) -> click.ClickException:
    db.session.rollback()
    return click.ClickException(exc.message)


@staff.command("deactivate")
@click.argument("email")
@with_appcontext
def staff_deactivate(email: str) -> None:
    """Deactivate an account: its panel sessions and API tokens end at once."""
    account = _staff_or_fail(email)
    try:
        sessions, tokens = deactivate_staff(account)
    except DomainError as exc:
        raise _refused(exc) from exc
    audit.record("staff.deactivate", f"staff:{account.id}",
                 {"sessions_ended": sessions, "tokens_revoked": tokens}, actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"deactivated {account.email}: {sessions} sessions ended, {tokens} tokens revoked")


@staff.command("activate")
@click.argument("email")
@with_appcontext
def staff_activate(email: str) -> None:
    """Let a deactivated account sign in again (its old sessions and tokens stay ended)."""
    account = _staff_or_fail(email)
    reactivate_staff(account)
    audit.record("staff.activate", f"staff:{account.id}", actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"activated {account.email}")


@staff.command("role")
@click.argument("email")
@click.argument("role", type=click.Choice([r.value for r in StaffRole]))
@with_appcontext
def staff_role(email: str, role: str) -> None:
    """Change an account's role; it applies to its next request."""
    account = _staff_or_fail(email)
    try:
        old = set_staff_role(account, role)
    except DomainError as exc:
        raise _refused(exc) from exc
    audit.record("staff.role", f"staff:{account.id}", {"before": old, "after": role},
                 actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"{account.email}: {old} -> {role}")


@staff.command("password")
@click.argument("email")
@click.option("--password", prompt="New password", hide_input=True, confirmation_prompt=True)
@with_appcontext
def staff_password(email: str, password: str) -> None:
    """Set a new password; every session and token of the account ends."""
    account = _staff_or_fail(email)
    try:
        sessions, tokens = set_staff_password(account, password)
    except DomainError as exc:
        raise click.BadParameter(exc.message.removeprefix("password: "),
                                 param_hint="--password") from exc
    audit.record("staff.password", f"staff:{account.id}",
                 {"sessions_ended": sessions, "tokens_revoked": tokens}, actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"password changed for {account.email}: {sessions} sessions ended, "
               f"{tokens} tokens revoked")


@main.group()
def token() -> None:
    """API tokens."""


@token.command("create")
@click.option("--staff", "email", required=True, help="Email of the staff account.")
@click.option("--days", type=click.IntRange(1, 3650), default=None,
              help="Lifetime in days (default KOC_STAFF_TOKEN_DAYS).")
@with_appcontext
def token_create(email: str, days: int | None) -> None:
    """Print a new staff API token (shown once, alone on the last line)."""
    account = find_staff(email)
    if account is None:
        raise click.ClickException(f"no staff account {email}")
    if not account.active:
        raise click.ClickException(f"staff account {email} is deactivated")
    expires_at = utcnow() + timedelta(days=days) if days else None
    secret = issue_token(staff_id=account.id, expires_at=expires_at)
    audit.record("token.create", f"staff:{account.id}", {"prefix": secret[:12]},
                 actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"token for {account.email} ({account.role}); it is not stored and not shown again:",
               err=True)
    click.echo(secret)


@token.command("revoke")
@click.argument("prefix")
@with_appcontext
def token_revoke(prefix: str) -> None:
    """Revoke the token shown with PREFIX (its first 12 characters); it stops working at once."""
    matches = find_tokens_by_prefix(prefix)
    if not matches:
        raise click.ClickException(f"no token with prefix {prefix}")
    if len(matches) > 1:
        # 12 characters hold 48 random bits: practically never, but never revoke a guess.
        raise click.ClickException(f"{len(matches)} tokens share prefix {prefix}; revoke them "
                                   "by id with DELETE /api/v1/tokens/{id}")
    found = matches[0]
    if not revoke_token(found, reason="revoked by operator"):
        click.echo(f"token {prefix} was already revoked")
        return
    audit.record("token.revoke", f"token:{found.id}", {"prefix": found.display_prefix},
                 actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"revoked token {prefix}")


# --- users -------------------------------------------------------------------------------------

@main.group()
def users() -> None:
    """The wider user base."""


@users.command("import")
@click.argument("path", type=click.Path(allow_dash=True, dir_okay=False))
@click.option("--format", "fmt", type=click.Choice(imports.FORMATS), default=None,
              help="Default: from the file name (.jsonl, else CSV); stdin defaults to CSV.")
@click.option("--encoding", type=click.Choice(sorted(imports.ENCODINGS)), default="utf-8",
              show_default=True, help="The file's text encoding (a UTF-8 BOM is skipped).")
@click.option("--timings", is_flag=True,
              help="Also print the seconds spent in each phase (reading, COPY, merge, commit).")
@with_appcontext
def users_import(path: str, fmt: str | None, encoding: str, timings: bool) -> None:
    """Bulk import users from CSV or JSONL, optionally gzipped (`-` for stdin), streamed."""
    fmt = fmt or ("csv" if path == "-" else imports.import_format(path))
    # Bytes: each line is decoded on its own, so one bad byte refuses one line; gzip is
    # recognised by its first bytes.
    source: IO[bytes] = sys.stdin.buffer if path == "-" else Path(path).open("rb")  # noqa: SIM115
    size = None if path == "-" else Path(path).stat().st_size
    clock = imports.Throughput(size=size)
    figures: dict = {}

    def show(_item: object) -> str:
        if not figures:
            return ""
        eta = figures["eta_seconds"]
        return (f"{figures['lines_read']:,} lines, {figures['rows_per_second']:,} rows/s"
                + ("" if eta is None else f", {eta:,.0f} s left"))

    with source, click.progressbar(length=size or 0, label="importing", file=sys.stderr,
                                   item_show_func=show, show_eta=False) as bar:
        def progress(report: imports.ImportReport) -> None:
            db.session.commit()
            figures.update(clock.figures(report))
            bar.update(report.bytes_read - bar.pos if size else 1, report)

        report = imports.import_users(imports.CountingReader(source), fmt=fmt,
                                      encoding=encoding, on_progress=progress)
        db.session.commit()
    for error in report.errors:
        click.echo(f"line {error['line']}: {error['message']}", err=True)
    if report.failed > len(report.errors):
        click.echo(f"... and {report.failed - len(report.errors)} more refused lines", err=True)
    click.echo(f"imported {report.processed} users, {report.failed} lines refused "
               f"({report.created} created, {report.updated} updated, "
               f"{report.unchanged} unchanged)")
    if timings:
        click.echo("phases: " + ", ".join(f"{name} {seconds:.2f} s"
                                          for name, seconds in report.timings.items()))
    if report.forgotten:
        click.echo(f"{report.forgotten} lines name forgotten people and were skipped", err=True)
    if report.failed:
        sys.exit(1)


@users.command("forget")
@click.argument("external_id")
@with_appcontext
def users_forget(external_id: str) -> None:
    """Forget a person (PIPL): anonymise them everywhere (see DELETE /api/v1/users/{id})."""
    try:
        summary = privacy.forget_user(external_id, now=utcnow())
    except DomainError as exc:
        raise click.ClickException(exc.message) from exc
    audit.record("user.forget", f"user:{external_id}", summary, actor=audit.cli_actor())
    db.session.commit()
    click.echo(f"forgot {external_id}" + (" (already forgotten before)" if summary["again"]
                                          else ""))


# --- tiers -------------------------------------------------------------------------------------

@main.group()
def tiers() -> None:
    """Tier recalculation."""


@tiers.command("recalc")
@click.option("--incremental", is_flag=True,
              help="Only members with activity since the last run (the default is everyone).")
@with_appcontext
def tiers_recalc(incremental: bool) -> None:
    """Run the tier recalculation now and print its summary."""
    summary = recalculate(trigger="cli", incremental=incremental)
    db.session.commit()
    if summary.skipped:
        click.echo("another recalculation is running; nothing done")
        return
    click.echo(f"{summary.kind} run {summary.run_id} (rules v{summary.rules_version}): "
               f"{summary.members_evaluated} members evaluated, "
               f"{summary.promotions} promoted, {summary.demotions} demoted")


# --- kits' objects -----------------------------------------------------------------------------

@main.group()
def assets() -> None:
    """Creative kits' files in object storage."""


@assets.command("reconcile")
@with_appcontext
def assets_reconcile() -> None:
    """List stored objects no row points to, and rows whose object is gone (exit 1 if any)."""
    result = reconciliation.reconcile(get_storage())
    for key in result.orphans:
        click.echo(f"object without a row: {key}")
    for table, row_id, key in result.missing:
        click.echo(f"row without an object: {table} {row_id} {key}")
    click.echo(f"{len(result.orphans)} objects without a row, "
               f"{len(result.missing)} rows without an object")
    if result.orphans or result.missing:
        sys.exit(1)


# --- check ---------------------------------------------------------------------------------------

@main.command("check", with_appcontext=False)
def check() -> None:
    """Validate the settings and reach each part (database, object store, CORS, broker).

    Prints one line per finding, with how to fix each problem; exits 1 if anything failed.
    """
    try:
        app = create_app()
    except SettingsError as exc:
        findings = [Finding("settings", FAIL, problem.strip(), "give the variable a valid value")
                    for problem in str(exc).removeprefix("invalid settings:").split(";")]
    else:
        findings = run_checks(app, str(MIGRATIONS_DIR))
    for finding in findings:
        click.echo(f"{finding.state:<5} {finding.part:<9} {finding.message}")
        if finding.fix:
            click.echo(f"{'':<15} fix: {finding.fix}")
    failed = sum(finding.state == FAIL for finding in findings)
    click.echo(f"{failed} problem(s)" if failed else "all parts answer")
    if failed:
        sys.exit(1)


# --- demo, serving, worker ---------------------------------------------------------------------

@main.group()
def demo() -> None:
    """The demo data set."""


@demo.command("load")
@with_appcontext
def demo_load() -> None:
    """Load the demo data set (safe to run again)."""
    summary = load_demo()
    click.echo(summary)


def _prepare_local_state(app) -> None:
    """Folders the embedded set-up keeps in the instance folder; nothing for S3 or a broker."""
    settings = app.config["KOC_SETTINGS"]
    Path(settings.instance_path).mkdir(parents=True, exist_ok=True)
    ensure_broker_dirs(settings)
    if not settings.uses_s3:
        with app.app_context():
            get_storage().ensure_bucket()


@main.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--workers", default=2, show_default=True, type=int)
def serve(host: str, port: int, workers: int) -> None:
    """Serve the web app (API and admin panel) with gunicorn."""
    class _Server(BaseApplication):
        def load_config(self) -> None:
            self.cfg.set("bind", f"{host}:{port}")
            self.cfg.set("workers", workers)
            self.cfg.set("accesslog", "-")
            self.cfg.set("logger_class", "koc.core.logs.GunicornLogger")

        def load(self):
            return create_app()

    _prepare_local_state(create_app())  # fails here, before forking, on a bad setting
    _Server().run()


@main.command("worker")
@click.option("--concurrency", default=2, show_default=True, type=int)
@click.option("--no-beat", is_flag=True, help="Run without the periodic scheduler.")
@with_appcontext
def worker(concurrency: int, no_beat: bool) -> None:
    """Run the background worker with the periodic scheduler."""
    _prepare_local_state(current_app)
    argv = ["worker", "--loglevel=INFO", f"--concurrency={concurrency}"]
    if not no_beat:
        argv.append("--beat")
    current_app.extensions["celery"].worker_main(argv)
