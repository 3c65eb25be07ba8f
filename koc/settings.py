"""Settings: one table, read from the environment, parsed strictly, validated at start-up.

Every setting has a default that makes the embedded set-up (SQLite, a storage directory, no broker
server) work with no configuration at all. A value that does not parse is an error naming the
variable, never a silent fallback.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from limits import parse_many
from marshmallow import Schema, ValidationError, validate, validates_schema
from marshmallow import fields as mf

MiB = 1024 * 1024
# Key files generated into the instance folder when the environment names no key (development
# and test only): random per installation, so no key in the repository is ever usable.
SECRET_KEY_FILE = "secret_key"  # noqa: S105 - a file name
BADGE_KEY_FILE = "badge_signing_key"
ENCRYPTION_KEY_FILE = "encryption_key"


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
    # The programme's time zone (IANA name): the panel and the portal show times in it, and the
    # panel's date-and-time fields are read in it. Stored times are UTC whatever it is.
    timezone: str
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
    # Base64 of a 32-byte Ed25519 seed: its own key (never derived from the secret key), so
    # rotating the secret leaves badges valid; generated into the instance folder if unset.
    badge_signing_key: str = field(repr=False)
    senior_group_url: str | None
    instance_path: str
    log_level: str
    # --- security (issue 13) ---
    # Base64 Ed25519 public keys of retired badge signing keys, still published and verified.
    badge_retired_keys: tuple[str, ...]
    staff_token_days: int
    member_token_idle_days: int
    staff_session_hours: int
    audit_retention_days: int
    ratelimit_enabled: bool
    ratelimit_storage_url: str
    ratelimit_key_prefix: str
    ratelimit_login_attempts: str
    ratelimit_login_failures_address: str
    ratelimit_login_failures_account: str
    ratelimit_invitations: str
    ratelimit_claims: str
    ratelimit_member_writes: str
    ratelimit_staff_writes: str
    # Fernet keys (base64, 32 bytes) for secrets at rest: the first encrypts, all decrypt, so a
    # key is rotated by putting a new one first.
    encryption_keys: tuple[str, ...] = field(repr=False)
    webhook_allow_private: bool
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
    # --- personal data and member uploads (issue 13) ---
    # Days a finished import job keeps its per-line error report (which quotes the file).
    import_report_retention_days: int = 30
    # Member media (POST /uploads): caps by kind, and a quota per member over the last 24 hours.
    max_image_upload_bytes: int = 30 * MiB
    max_video_upload_bytes: int = 1024 * MiB
    upload_daily_count: int = 100
    upload_daily_bytes: int = 5 * 1024 * MiB
    # --- WeCom (issue 15): customer groups; off unless the corp id and the secret are set ---
    wecom_corp_id: str | None = None
    # The secret of the app allowed to use customer contact (客户联系); never logged.
    wecom_agent_secret: str | None = field(default=None, repr=False)
    wecom_callback_token: str | None = field(default=None, repr=False)
    # The callback's EncodingAESKey: 43 characters, base64 of 32 bytes without the '='.
    wecom_aes_key: str | None = field(default=None, repr=False)
    wecom_api_url: str = "https://qyapi.weixin.qq.com"
    # The senior group's chats (chat_id, at most 5) that join methods point at.
    wecom_senior_chat_ids: tuple[str, ...] = ()
    # The KOC groups kit announcements go to.
    wecom_koc_chat_ids: tuple[str, ...] = ()
    # Group messages one group may receive per day (China time); WeCom's own limit is one.
    wecom_group_daily_limit: int = 1

    @property
    def uses_s3(self) -> bool:
        return self.storage_url.startswith("s3://")

    @property
    def celery_broker_url(self) -> str:
        # With no broker server configured, kombu's filesystem transport passes messages through
        # a directory, so a real worker and scheduler still run on a laptop.
        return self.broker_url or "filesystem://"

    @property
    def wecom_enabled(self) -> bool:
        return bool(self.wecom_corp_id and self.wecom_agent_secret)


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


def _time_zone(value: str) -> None:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError("not a known time zone (an IANA name such as Asia/Shanghai)") from exc


def _aes_key(value: str) -> None:
    try:
        raw = base64.b64decode(value + "=", validate=True)
    except ValueError as exc:
        raise ValidationError("must be the 43-character EncodingAESKey (base64)") from exc
    if len(value) != 43 or len(raw) != 32:
        raise ValidationError("must be the 43-character EncodingAESKey (base64 of 32 bytes)")


def _chat_ids(value: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in value.split(",") if part.strip())


def _rate_limits(value: str) -> None:
    try:
        parse_many(value)
    except ValueError as exc:
        raise ValidationError("must be limits such as '10/minute;100/day'") from exc


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
    KOC_SECRET_KEY = mf.String(load_default=None, validate=validate.Length(min=16))
    KOC_PUBLIC_URL = mf.String(load_default=None, validate=_url_with_scheme("http", "https"))
    KOC_TIMEZONE = mf.String(load_default="Asia/Shanghai", validate=_time_zone)
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

    # --- WeCom ---
    KOC_WECOM_CORP_ID = mf.String(load_default=None, validate=validate.Length(max=64))
    KOC_WECOM_AGENT_SECRET = mf.String(load_default=None, validate=validate.Length(max=128))
    KOC_WECOM_CALLBACK_TOKEN = mf.String(load_default=None, validate=validate.Length(max=32))
    KOC_WECOM_AES_KEY = mf.String(load_default=None, validate=_aes_key)
    KOC_WECOM_API_URL = mf.String(load_default="https://qyapi.weixin.qq.com",
                                  validate=_url_with_scheme("http", "https"))
    KOC_WECOM_SENIOR_CHAT_IDS = mf.String(load_default="")
    KOC_WECOM_KOC_CHAT_IDS = mf.String(load_default="")
    KOC_WECOM_GROUP_DAILY_LIMIT = mf.Integer(load_default=1, validate=validate.Range(min=1,
                                                                                      max=10))

    @validates_schema
    def _wecom_callback_complete(self, data: dict, **_: object) -> None:
        if bool(data.get("KOC_WECOM_CALLBACK_TOKEN")) != bool(data.get("KOC_WECOM_AES_KEY")):
            raise ValidationError("KOC_WECOM_CALLBACK_TOKEN and KOC_WECOM_AES_KEY go together",
                                  "KOC_WECOM_AES_KEY")
        if len(_chat_ids(data.get("KOC_WECOM_SENIOR_CHAT_IDS", ""))) > 5:
            raise ValidationError("at most 5 chats (a join method's limit)",
                                  "KOC_WECOM_SENIOR_CHAT_IDS")

    @validates_schema
    def _metrics_token_when_asked(self, data: dict, **_: object) -> None:
        if data["KOC_METRICS"] == "token" and not data.get("KOC_METRICS_TOKEN"):
            raise ValidationError("must be set when KOC_METRICS=token", "KOC_METRICS_TOKEN")
    # --- security (issue 13) ---
    KOC_BADGE_RETIRED_KEYS = mf.String(load_default="")
    KOC_STAFF_TOKEN_DAYS = mf.Integer(load_default=90, validate=validate.Range(min=1, max=3650))
    KOC_MEMBER_TOKEN_IDLE_DAYS = mf.Integer(load_default=90,
                                            validate=validate.Range(min=1, max=3650))
    KOC_STAFF_SESSION_HOURS = mf.Integer(load_default=12, validate=validate.Range(min=1, max=720))
    KOC_AUDIT_RETENTION_DAYS = mf.Integer(load_default=730,
                                          validate=validate.Range(min=30, max=36500))
    KOC_RATELIMIT_ENABLED = _Boolean(load_default=True)
    KOC_RATELIMIT_STORAGE_URL = mf.String(
        load_default=None, validate=_url_with_scheme("redis", "rediss", "memory"))
    KOC_RATELIMIT_KEY_PREFIX = mf.String(load_default="koc", validate=validate.Regexp(
        r"^[A-Za-z0-9_.-]{1,40}$", error="letters, digits, '_', '.', '-' (at most 40)"))
    KOC_RATELIMIT_LOGIN_ATTEMPTS = mf.String(load_default="30/minute", validate=_rate_limits)
    KOC_RATELIMIT_LOGIN_FAILURES_ADDRESS = mf.String(load_default="20/15 minutes;100/day",
                                                     validate=_rate_limits)
    KOC_RATELIMIT_LOGIN_FAILURES_ACCOUNT = mf.String(load_default="5/15 minutes;20/day",
                                                     validate=_rate_limits)
    KOC_RATELIMIT_INVITATIONS = mf.String(load_default="10/minute;60/hour", validate=_rate_limits)
    KOC_RATELIMIT_CLAIMS = mf.String(load_default="20/minute", validate=_rate_limits)
    KOC_RATELIMIT_MEMBER_WRITES = mf.String(load_default="120/minute", validate=_rate_limits)
    # Staff tokens drive integrations (a CRM upserting users one by one): only a runaway guard.
    KOC_RATELIMIT_STAFF_WRITES = mf.String(load_default="6000/minute", validate=_rate_limits)

    # --- personal data and member uploads ---
    KOC_IMPORT_REPORT_RETENTION_DAYS = mf.Integer(load_default=30,
                                                  validate=validate.Range(min=1, max=3650))
    KOC_MAX_IMAGE_UPLOAD_BYTES = mf.Integer(load_default=30 * MiB, strict=False,
                                            validate=validate.Range(min=1024))
    KOC_MAX_VIDEO_UPLOAD_BYTES = mf.Integer(load_default=1024 * MiB, strict=False,
                                            validate=validate.Range(min=1024))
    KOC_UPLOAD_DAILY_COUNT = mf.Integer(load_default=100, validate=validate.Range(min=1))
    KOC_UPLOAD_DAILY_BYTES = mf.Integer(load_default=5 * 1024 * MiB, strict=False,
                                        validate=validate.Range(min=1024))

    KOC_ENCRYPTION_KEYS = mf.String(load_default=None)
    KOC_WEBHOOK_ALLOW_PRIVATE = _Boolean(load_default=False)

    @validates_schema
    def _encryption_keys_are_fernet_keys(self, data: dict, **_: object) -> None:
        for key in (k.strip() for k in (data.get("KOC_ENCRYPTION_KEYS") or "").split(",")):
            if not key:
                continue
            try:
                raw = base64.urlsafe_b64decode(key.encode())
            except ValueError as exc:
                raise ValidationError("must be url-safe base64 keys, comma-separated",
                                      "KOC_ENCRYPTION_KEYS") from exc
            if len(raw) != 32:
                raise ValidationError("each must be 32 bytes (a Fernet key)",
                                      "KOC_ENCRYPTION_KEYS")

    @validates_schema
    def _retired_keys_are_public_keys(self, data: dict, **_: object) -> None:
        for key in filter(None, (k.strip() for k in data["KOC_BADGE_RETIRED_KEYS"].split(","))):
            try:
                raw = base64.b64decode(key, validate=True)
            except ValueError as exc:
                raise ValidationError("must be base64 keys, comma-separated",
                                      "KOC_BADGE_RETIRED_KEYS") from exc
            if len(raw) != 32:
                raise ValidationError("each must be 32 bytes (an Ed25519 public key)",
                                      "KOC_BADGE_RETIRED_KEYS")

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
    def _production_needs_its_keys(self, data: dict, **_: object) -> None:
        # Generated key files belong to one host; several web hosts and workers must share keys.
        if data["KOC_ENV"] != "production":
            return
        missing = {name: ["must be set in production"]
                   for name in ("KOC_SECRET_KEY", "KOC_BADGE_SIGNING_KEY", "KOC_ENCRYPTION_KEYS")
                   if not data.get(name)}
        if missing:
            raise ValidationError(missing)


def instance_key(instance: Path, name: str, make: Callable[[], str]) -> str:
    """The key kept in the instance folder's file `name`, created (mode 0600) on first use.

    O_EXCL makes concurrent first starts (gunicorn workers, a worker process) agree: the loser
    of the race reads the winner's file instead of writing its own.
    """
    path = instance / name
    if not path.exists():
        instance.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as out:
                out.write(make() + "\n")
    value = path.read_text().strip()
    if not value:
        raise SettingsError(f"the key file {path} is empty; delete it to generate a new key")
    return value


def log_format_of(environ: Mapping[str, str]) -> str:
    """KOC_LOG_FORMAT as load_settings reads it, for gunicorn's logger, which starts before any
    app and must not create key files in whatever folder it was started from."""
    raw = environ.get("KOC_LOG_FORMAT", "")
    if raw not in ("", "json", "text"):
        raise SettingsError("invalid settings: KOC_LOG_FORMAT: Must be one of: json, text.")
    return raw or ("json" if environ.get("KOC_ENV") == "production" else "text")


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
    secret_key = data["KOC_SECRET_KEY"] or instance_key(
        instance, SECRET_KEY_FILE, lambda: secrets.token_urlsafe(48))
    badge_key = data["KOC_BADGE_SIGNING_KEY"] or instance_key(
        instance, BADGE_KEY_FILE, lambda: base64.b64encode(secrets.token_bytes(32)).decode())
    encryption_keys = data["KOC_ENCRYPTION_KEYS"] or instance_key(
        instance, ENCRYPTION_KEY_FILE,
        lambda: base64.urlsafe_b64encode(secrets.token_bytes(32)).decode())
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
        secret_key=secret_key,
        public_url=data["KOC_PUBLIC_URL"],
        timezone=data["KOC_TIMEZONE"],
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
        badge_signing_key=badge_key,
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
        wecom_corp_id=data["KOC_WECOM_CORP_ID"],
        wecom_agent_secret=data["KOC_WECOM_AGENT_SECRET"],
        wecom_callback_token=data["KOC_WECOM_CALLBACK_TOKEN"],
        wecom_aes_key=data["KOC_WECOM_AES_KEY"],
        wecom_api_url=data["KOC_WECOM_API_URL"].rstrip("/"),
        wecom_senior_chat_ids=_chat_ids(data["KOC_WECOM_SENIOR_CHAT_IDS"]),
        wecom_koc_chat_ids=_chat_ids(data["KOC_WECOM_KOC_CHAT_IDS"]),
        wecom_group_daily_limit=data["KOC_WECOM_GROUP_DAILY_LIMIT"],
        badge_retired_keys=tuple(
            k.strip() for k in data["KOC_BADGE_RETIRED_KEYS"].split(",") if k.strip()),
        staff_token_days=data["KOC_STAFF_TOKEN_DAYS"],
        member_token_idle_days=data["KOC_MEMBER_TOKEN_IDLE_DAYS"],
        staff_session_hours=data["KOC_STAFF_SESSION_HOURS"],
        audit_retention_days=data["KOC_AUDIT_RETENTION_DAYS"],
        ratelimit_enabled=data["KOC_RATELIMIT_ENABLED"],
        # Counters shared by every web host: the Redis broker's server when there is one.
        ratelimit_storage_url=data["KOC_RATELIMIT_STORAGE_URL"] or (
            data["KOC_BROKER_URL"] if (data["KOC_BROKER_URL"] or "").startswith("redis")
            else "memory://"),
        ratelimit_key_prefix=data["KOC_RATELIMIT_KEY_PREFIX"],
        ratelimit_login_attempts=data["KOC_RATELIMIT_LOGIN_ATTEMPTS"],
        ratelimit_login_failures_address=data["KOC_RATELIMIT_LOGIN_FAILURES_ADDRESS"],
        ratelimit_login_failures_account=data["KOC_RATELIMIT_LOGIN_FAILURES_ACCOUNT"],
        ratelimit_invitations=data["KOC_RATELIMIT_INVITATIONS"],
        ratelimit_claims=data["KOC_RATELIMIT_CLAIMS"],
        ratelimit_member_writes=data["KOC_RATELIMIT_MEMBER_WRITES"],
        ratelimit_staff_writes=data["KOC_RATELIMIT_STAFF_WRITES"],
        encryption_keys=tuple(k.strip() for k in encryption_keys.split(",") if k.strip()),
        webhook_allow_private=data["KOC_WEBHOOK_ALLOW_PRIVATE"],
        import_report_retention_days=data["KOC_IMPORT_REPORT_RETENTION_DAYS"],
        max_image_upload_bytes=data["KOC_MAX_IMAGE_UPLOAD_BYTES"],
        max_video_upload_bytes=data["KOC_MAX_VIDEO_UPLOAD_BYTES"],
        upload_daily_count=data["KOC_UPLOAD_DAILY_COUNT"],
        upload_daily_bytes=data["KOC_UPLOAD_DAILY_BYTES"],
    )
    return settings


SETTING_NAMES = tuple(f.name for f in fields(Settings))
