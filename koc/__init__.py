"""koc: run a KOC programme. `create_app` builds the web app; nothing connects at import."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from koc.settings import Settings, load_settings

__all__ = ["create_app"]

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"


def _sqlalchemy_url(url: str) -> str:
    # One driver for PostgreSQL everywhere: psycopg 3.
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def create_app(
    environ: Mapping[str, str] | None = None, *, instance_path: str | None = None
) -> Flask:
    """Build the app from the environment (or `environ`). Fails fast on a bad setting."""
    from koc.core.sqlite import BusyRetryingFlask

    # On PostgreSQL the retry never fires: it only answers SQLite's "database is locked".
    app = BusyRetryingFlask(__name__, instance_path=instance_path,
                            instance_relative_config=False)
    settings: Settings = load_settings(app.instance_path, environ)
    from koc.core import logs

    logs.configure_logging(settings)

    app.config.update(
        KOC_SETTINGS=settings,
        SECRET_KEY=settings.secret_key,
        SQLALCHEMY_DATABASE_URI=_sqlalchemy_url(settings.database_url),
        SQLALCHEMY_ENGINE_OPTIONS=_engine_options(settings),
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        SESSION_COOKIE_SECURE=settings.env == "production",
        API_TITLE="koc",
        API_VERSION="v1",
        OPENAPI_VERSION="3.0.3",
        OPENAPI_URL_PREFIX="/api/v1",
        OPENAPI_JSON_PATH="openapi.json",
        OPENAPI_SWAGGER_UI_PATH="docs",
        # Local, pinned files (koc.core.apidocs), not a CDN.
        OPENAPI_SWAGGER_UI_URL="/api/v1/docs/assets/",
        API_SPEC_OPTIONS={
            "security": [{"bearerAuth": []}],
            "components": {
                "securitySchemes": {
                    "bearerAuth": {"type": "http", "scheme": "bearer"},
                    # The member portal's session (/m): member routes only, and a write also
                    # needs the X-CSRF-Token header its page carries (koc.core.auth).
                    "memberSession": {"type": "apiKey", "in": "cookie", "name": "koc_member",
                                      "description": "Member portal session; member routes "
                                      "only; writes need the X-CSRF-Token header."},
                }
            },
        },
        BABEL_DEFAULT_LOCALE="zh_CN",
        # Times shown in the programme's zone (KOC_TIMEZONE), not in UTC.
        BABEL_DEFAULT_TIMEZONE=settings.timezone,
        WTF_CSRF_TIME_LIMIT=None,
        # Where no route is matched; koc.core.bodies sets each request's limit by its route.
        MAX_CONTENT_LENGTH=settings.max_body_bytes,
    )

    _init_extensions(app)
    _install_security(app, settings)
    _register_converters(app)
    api_blueprints = _register_blueprints(app)
    from koc.core.auth import install_api_guards
    from koc.core.bodies import install_body_limits

    # After every route is registered: both read the routes' declarations.
    install_api_guards(app, api_blueprints)
    install_body_limits(app, settings)
    # Operations: request ids (first before_request hook) and /metrics.
    logs.install_request_ids(app)
    from koc import domain_metrics
    from koc.core import metrics, outages

    outages.install(app)
    metrics.install(app)
    domain_metrics.install()
    if settings.proxy_hops:
        # Behind that many proxies, X-Forwarded-* name the client and https: the audit log
        # and rate limits see the real address, cookies stay Secure.
        from werkzeug.middleware.proxy_fix import ProxyFix

        hops = settings.proxy_hops
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=hops, x_proto=hops,  # type: ignore[method-assign]
                                x_host=hops, x_port=hops)
    return app


def _engine_options(settings: Settings) -> dict:
    if settings.database_url.startswith("sqlite"):
        # The busy timeout, WAL and BEGIN IMMEDIATE are set up in koc.core.sqlite.
        return {}
    return {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 20}


def _init_extensions(app: Flask) -> None:
    from koc.core import sqlite, unit_of_work
    from koc.core.celery import celery_init_app
    from koc.core.errors import register_error_handlers
    from koc.core.jobs import dispatch
    from koc.extensions import api, babel, csrf, db, migrate

    db.init_app(app)
    sqlite.install_pragmas()
    migrate.init_app(app, db, directory=str(MIGRATIONS_DIR), render_as_batch=True)
    api.init_app(app)
    csrf.init_app(app)
    from koc.admin.i18n import select_locale

    babel.init_app(app, locale_selector=select_locale)
    register_error_handlers(app)
    from koc.core.auth import MEMBER_ACCESS_RULE, MEMBER_LOADER, VERSION_PROBES
    from koc.members.models import load_member_with_token, member_may_use_tokens
    from koc.submissions.services.rules import scoring_version_probe
    from koc.tiers.services.rules import tier_rules_version_probe

    app.extensions[MEMBER_ACCESS_RULE] = member_may_use_tokens
    app.extensions[MEMBER_LOADER] = load_member_with_token
    app.extensions[VERSION_PROBES] = {"tier_rules": tier_rules_version_probe,
                                      "scoring_rules": scoring_version_probe}
    unit_of_work.install(app)
    dispatch.install()
    celery_init_app(app)


def _install_security(app: Flask, settings: Settings) -> None:
    """Rate limits, the audit log's request hook, proxy headers, the panel session lifetime."""
    from datetime import timedelta

    from koc.core import audit, ratelimit

    ratelimit.install(app)
    # After unit_of_work.install: after-request hooks run last-registered first, so the audit
    # row is added before the commit.
    audit.install(app)
    app.config["PERMANENT_SESSION_LIFETIME"] = timedelta(hours=settings.staff_session_hours)


def _register_converters(app: Flask) -> None:
    # Before the blueprints: their rules are compiled against the converters known then.
    # (koc.extensions tells the OpenAPI document how to describe them.)
    from koc.core.fields import IdConverter, KeyConverter

    app.url_map.converters["id"] = IdConverter
    app.url_map.converters["key"] = KeyConverter


def _register_blueprints(app: Flask) -> list[str]:
    """Register every blueprint; returns the names of the bearer-token API ones."""
    from koc.admin.panel import admin_blueprint
    from koc.assets.api import blp as assets_blp
    from koc.core.access_api import blp as access_blp
    from koc.core.events.api import blp as webhooks_blp
    from koc.core.health import health_blueprint
    from koc.core.jobs.api import blp as jobs_blp
    from koc.core.storage.views import storage_blueprint
    from koc.extensions import api, csrf
    from koc.members.api import blp as members_blp
    from koc.submissions.api import blp as submissions_blp
    from koc.tiers.api import blp as tiers_blp

    api_blueprints = (members_blp, assets_blp, submissions_blp, tiers_blp, jobs_blp, webhooks_blp,
                      access_blp)
    for blp in api_blueprints:
        api.register_blueprint(blp, url_prefix="/api/v1")
        # Bearer-token API: no cookies, so no CSRF; the admin panel keeps CSRF on its forms.
        csrf.exempt(blp)
    app.register_blueprint(health_blueprint)
    from koc.core.apidocs import apidocs_blueprint

    app.register_blueprint(apidocs_blueprint)
    app.register_blueprint(storage_blueprint)
    csrf.exempt(storage_blueprint)
    app.register_blueprint(admin_blueprint, url_prefix="/admin")
    from koc.portal.views import portal_blueprint
    from koc.tiers.wecom import wecom_blueprint

    app.register_blueprint(portal_blueprint)
    # WeCom signs its callbacks (msg_signature); they carry no cookie, so no CSRF.
    app.register_blueprint(wecom_blueprint)
    csrf.exempt(wecom_blueprint)
    from koc.members.join import join_blueprint

    app.register_blueprint(join_blueprint)
    return [blp.name for blp in api_blueprints]
