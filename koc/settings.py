"""Settings: one table, read from the environment, parsed strictly, validated at start-up.

Every setting has a default that makes the embedded set-up (SQLite, a storage directory, no broker
server) work with no configuration at all. A value that does not parse is an error naming the
variable, never a silent fallback.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse

from marshmallow import Schema, ValidationError, validate, validates_schema
from marshmallow import fields as mf

MiB = 1024 * 1024
DEV_SECRET_KEY = "koc-dev-insecure-secret-key-change-me"  # noqa: S105 - refused in production


class SettingsError(ValueError):
    """Raised at start-up when the environment holds a value that does not parse."""


@dataclass(frozen=True)
class Settings:
    env: str
    database_url: str
    storage_url: str
    s3_endpoint_url: str | None
    s3_region: str
    # Optional: without them boto3's own chain (profiles, instance roles) is used.
    s3_access_key_id: str | None = field(repr=False)
    s3_secret_access_key: str | None = field(repr=False)
    broker_url: str | None
    broker_dir: str
    secret_key: str
    public_url: str | None
    download_url_ttl: int
    upload_url_ttl: int
    max_upload_bytes: int
    # Request bodies the web process reads: every route (JSON API writes, admin forms) ...
    max_body_bytes: int
    # ... except the multipart file imports, which get this larger, still small, cap.
    max_import_file_bytes: int
    invitation_days: int
    multipart_threshold: int
    multipart_part_size: int
    # Placeholders: {code} (what the leak lookup takes), {member_id}.
    watermark_text: str
    tier_recalc_interval: int
    tier_part_size: int
    # Base64 of a 32-byte Ed25519 seed; without it the key is derived from the secret key.
    badge_signing_key: str | None = field(repr=False)
    senior_group_url: str | None
    instance_path: str
    log_level: str
    # --- integrity (issue 10) ---
    # The audience an unconfirmed (member-declared) follower count counts as at least, in score
    # normalisation and tier reach alike: declaring a tiny audience lifts nothing past it.
    unconfirmed_followers_floor: int = 1000
    # How far (a fraction) a trusted import may differ from a member's own figures and still
    # confirm them.
    import_agreement_tolerance: float = 0.1
    # Follow short links (xhslink.com, v.douyin.com) to the post they name; off by default,
    # for deployments that cannot reach the platforms.
    resolve_short_links: bool = False
    short_link_timeout: float = 5.0
    # --- operations (logs, metrics) ---
    # "json" (one object per line) or "text"; json by default in production.
    log_format: str = "text"
    # /metrics: "off", "token" (a bearer token on the app's port) or "port" (its own listener).
    metrics: str = "off"
    metrics_token: str | None = field(default=None, repr=False)
    metrics_port: int = 9100
    # Reverse proxies in front of the app whose X-Forwarded-For/-Proto/-Host are trusted.
    proxy_hops: int = 0

    @property
    def uses_s3(self) -> bool:
        return self.storage_url.startswith("s3://")

    @property
    def celery_broker_url(self) -> str:
        # With no broker server configured, kombu's filesystem transport passes messages through
        # a directory, so a real worker and scheduler still run on a laptop.
        return self.broker_url or "filesystem://"


class _Boolean(mf.Boolean):
    # Strict: only these spellings; "yes please" or "" is an error, not False.
    truthy: set[object] = {"1", "true", "yes", "on"}  # noqa: RUF012 - marshmallow's own attribute
    falsy: set[object] = {"0", "false", "no", "off"}  # noqa: RUF012


def _url_with_scheme(*schemes: str) -> Callable[[str], None]:
    def check(value: str) -> None:
        scheme = urlparse(value).scheme.split("+")[0]
        if scheme not in schemes:
            raise ValidationError(f"must start with one of {', '.join(s + '://' for s in schemes)}")

    return check


class _EnvSchema(Schema):
    """Environment variable name -> setting, with the parse rules for each."""

    KOC_ENV = mf.String(
        load_default="development", validate=validate.OneOf(["development", "production", "test"])
    )
    KOC_DATABASE_URL = mf.String(
        load_default=None, validate=_url_with_scheme("sqlite", "postgresql", "postgres")
    )
    KOC_STORAGE_URL = mf.String(load_default=None, validate=_url_with_scheme("file", "s3"))
    KOC_S3_ENDPOINT_URL = mf.String(load_default=None, validate=_url_with_scheme("http", "https"))
    AWS_DEFAULT_REGION = mf.String(load_default="us-east-1")
    AWS_ACCESS_KEY_ID = mf.String(load_default=None)
    AWS_SECRET_ACCESS_KEY = mf.String(load_default=None)
    KOC_BROKER_URL = mf.String(
        load_default=None, validate=_url_with_scheme("redis", "rediss", "amqp", "amqps")
    )
    KOC_BROKER_DIR = mf.String(load_default=None)
    KOC_SECRET_KEY = mf.String(load_default=DEV_SECRET_KEY, validate=validate.Length(min=16))
    KOC_PUBLIC_URL = mf.String(load_default=None, validate=_url_with_scheme("http", "https"))
    KOC_DOWNLOAD_URL_TTL = mf.Integer(
        load_default=900, strict=False, validate=validate.Range(min=10, max=7 * 24 * 3600)
    )
    KOC_UPLOAD_URL_TTL = mf.Integer(
        load_default=3600, strict=False, validate=validate.Range(min=60, max=7 * 24 * 3600)
    )
    KOC_MAX_UPLOAD_BYTES = mf.Integer(
        load_default=5 * 1024**3, strict=False, validate=validate.Range(min=1)
    )
    KOC_MAX_BODY_BYTES = mf.Integer(
        load_default=1 * MiB, strict=False, validate=validate.Range(min=1024, max=64 * MiB))
    # The web process holds an imported file in memory and copies it to the object store; files
    # past this go through the command line (or object storage), not through a web worker.
    KOC_MAX_IMPORT_FILE_BYTES = mf.Integer(
        load_default=32 * MiB, strict=False, validate=validate.Range(min=1024, max=1024 * MiB))
    KOC_MULTIPART_THRESHOLD = mf.Integer(
        load_default=64 * MiB, strict=False, validate=validate.Range(min=5 * MiB))
    # S3 wants parts of 5 MiB or more, and at most 10,000 of them: 16 MiB parts reach 156 GiB.
    KOC_MULTIPART_PART_SIZE = mf.Integer(
        load_default=16 * MiB, strict=False, validate=validate.Range(min=5 * MiB, max=512 * MiB))
    KOC_WATERMARK_TEXT = mf.String(load_default="KOC {member_id} #{code}",
                                   validate=validate.Length(min=1, max=120))
    KOC_INVITATION_DAYS = mf.Integer(load_default=14, validate=validate.Range(min=1, max=365))
    KOC_TIER_RECALC_INTERVAL = mf.Integer(
        load_default=300, validate=validate.Range(min=10, max=7 * 24 * 3600)
    )
    KOC_BADGE_SIGNING_KEY = mf.String(load_default=None)
    KOC_SENIOR_GROUP_URL = mf.String(load_default=None, validate=_url_with_scheme("http", "https"))
    KOC_TIER_PART_SIZE = mf.Integer(load_default=50_000, validate=validate.Range(min=100))
    KOC_LOG_LEVEL = mf.String(
        load_default="INFO", validate=validate.OneOf(["DEBUG", "INFO", "WARNING", "ERROR"])
    )
    # --- integrity (issue 10) ---
    KOC_UNCONFIRMED_FOLLOWERS_FLOOR = mf.Integer(
        load_default=1000, strict=False, validate=validate.Range(min=1, max=10**9))
    KOC_IMPORT_AGREEMENT_TOLERANCE = mf.Float(
        load_default=0.1, validate=validate.Range(min=0, max=1))
    KOC_RESOLVE_SHORT_LINKS = _Boolean(load_default=False)
    KOC_SHORT_LINK_TIMEOUT = mf.Float(load_default=5.0, validate=validate.Range(min=0.5, max=60))

    # --- operations (logs, metrics) ---
    KOC_LOG_FORMAT = mf.String(load_default=None, validate=validate.OneOf(["json", "text"]))
    KOC_METRICS = mf.String(load_default="off", validate=validate.OneOf(["off", "token", "port"]))
    KOC_METRICS_TOKEN = mf.String(load_default=None, validate=validate.Length(min=32, max=256))
    KOC_METRICS_PORT = mf.Integer(load_default=9100, validate=validate.Range(min=1, max=65535))
    KOC_PROXY_HOPS = mf.Integer(load_default=0, validate=validate.Range(min=0, max=5))

    @validates_schema
    def _metrics_token_when_asked(self, data: dict, **_: object) -> None:
        if data["KOC_METRICS"] == "token" and not data.get("KOC_METRICS_TOKEN"):
            raise ValidationError("must be set when KOC_METRICS=token", "KOC_METRICS_TOKEN")

    @validates_schema
    def _watermark_names_the_code(self, data: dict, **_: object) -> None:
        text = data["KOC_WATERMARK_TEXT"]
        try:
            text.format(code="x", member_id=1)
        except (KeyError, IndexError, ValueError) as exc:
            raise ValidationError(f"bad placeholder {exc}", "KOC_WATERMARK_TEXT") from exc
        if "{code}" not in text:
            raise ValidationError("must contain {code}", "KOC_WATERMARK_TEXT")

    @validates_schema
    def _signing_key_is_a_seed(self, data: dict, **_: object) -> None:
        key = data.get("KOC_BADGE_SIGNING_KEY")
        if key is None:
            return
        try:
            seed = base64.b64decode(key, validate=True)
        except ValueError as exc:
            raise ValidationError("must be base64", "KOC_BADGE_SIGNING_KEY") from exc
        if len(seed) != 32:
            raise ValidationError("must be 32 bytes (an Ed25519 seed)", "KOC_BADGE_SIGNING_KEY")

    @validates_schema
    def _production_needs_a_secret(self, data: dict, **_: object) -> None:
        if data["KOC_ENV"] == "production" and data["KOC_SECRET_KEY"] == DEV_SECRET_KEY:
            raise ValidationError("must be set in production", "KOC_SECRET_KEY")


def load_settings(instance_path: str, environ: Mapping[str, str] | None = None) -> Settings:
    """Parse the environment into Settings, or raise SettingsError naming each bad variable."""
    environ = os.environ if environ is None else environ
    schema = _EnvSchema()
    raw = {name: environ[name] for name in schema.fields if environ.get(name, "") != ""}
    try:
        data = schema.load(raw)
    except ValidationError as exc:
        messages = exc.normalized_messages()
        problems = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in messages.items())
        raise SettingsError(f"invalid settings: {problems}") from exc

    instance = Path(instance_path)
    settings = Settings(
        env=data["KOC_ENV"],
        database_url=data["KOC_DATABASE_URL"] or f"sqlite:///{instance / 'koc.db'}",
        storage_url=data["KOC_STORAGE_URL"] or f"file://{instance / 'storage'}",
        s3_endpoint_url=data["KOC_S3_ENDPOINT_URL"],
        s3_region=data["AWS_DEFAULT_REGION"],
        s3_access_key_id=data["AWS_ACCESS_KEY_ID"],
        s3_secret_access_key=data["AWS_SECRET_ACCESS_KEY"],
        broker_url=data["KOC_BROKER_URL"],
        broker_dir=data["KOC_BROKER_DIR"] or str(instance / "broker"),
        secret_key=data["KOC_SECRET_KEY"],
        public_url=data["KOC_PUBLIC_URL"],
        download_url_ttl=data["KOC_DOWNLOAD_URL_TTL"],
        upload_url_ttl=data["KOC_UPLOAD_URL_TTL"],
        max_upload_bytes=data["KOC_MAX_UPLOAD_BYTES"],
        max_body_bytes=data["KOC_MAX_BODY_BYTES"],
        max_import_file_bytes=data["KOC_MAX_IMPORT_FILE_BYTES"],
        invitation_days=data["KOC_INVITATION_DAYS"],
        multipart_threshold=data["KOC_MULTIPART_THRESHOLD"],
        multipart_part_size=data["KOC_MULTIPART_PART_SIZE"],
        watermark_text=data["KOC_WATERMARK_TEXT"],
        tier_recalc_interval=data["KOC_TIER_RECALC_INTERVAL"],
        tier_part_size=data["KOC_TIER_PART_SIZE"],
        badge_signing_key=data["KOC_BADGE_SIGNING_KEY"],
        senior_group_url=data["KOC_SENIOR_GROUP_URL"],
        instance_path=str(instance),
        log_level=data["KOC_LOG_LEVEL"],
        unconfirmed_followers_floor=data["KOC_UNCONFIRMED_FOLLOWERS_FLOOR"],
        import_agreement_tolerance=data["KOC_IMPORT_AGREEMENT_TOLERANCE"],
        resolve_short_links=data["KOC_RESOLVE_SHORT_LINKS"],
        short_link_timeout=data["KOC_SHORT_LINK_TIMEOUT"],
        log_format=data["KOC_LOG_FORMAT"] or ("json" if data["KOC_ENV"] == "production"
                                              else "text"),
        metrics=data["KOC_METRICS"],
        metrics_token=data["KOC_METRICS_TOKEN"],
        metrics_port=data["KOC_METRICS_PORT"],
        proxy_hops=data["KOC_PROXY_HOPS"],
    )
    return settings


SETTING_NAMES = tuple(f.name for f in fields(Settings))
