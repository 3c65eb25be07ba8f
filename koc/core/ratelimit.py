"""Rate limits (Flask-Limiter): counters in Redis when the broker is Redis, so every web host
shares them, in memory otherwise.

Limits, each a setting (see koc.settings):
- every write with a token, per token owner: KOC_RATELIMIT_MEMBER_WRITES for a member,
  KOC_RATELIMIT_STAFF_WRITES (a runaway-script guard, integrations write a lot) for staff;
- invitation acceptance, which hands out a member token, per address: KOC_RATELIMIT_INVITATIONS;
- drop claims, per member: KOC_RATELIMIT_CLAIMS;
- admin sign-in: attempts per address (KOC_RATELIMIT_LOGIN_ATTEMPTS), and failures per address
  and per account (..._FAILURES_ADDRESS, ..._FAILURES_ACCOUNT). The failure limits are the
  lock-out: several windows of growing length ("5/15 minutes;20/day") make it back off, a
  quarter of an hour after a few failures, a day after many.

A refused request answers 429 in the API's error shape with `Retry-After` (seconds).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, current_app, jsonify, request
from flask_limiter import Limiter, RateLimitExceeded
from limits import RateLimitItem, parse_many

from koc.core.auth import request_caller
from koc.core.errors import error_body

log = logging.getLogger(__name__)


def _prefix() -> str:
    # In the keys rather than Limiter(key_prefix=...): that one is fixed by the first app, and
    # two deployments (staging, production) may share one Redis.
    return current_app.config["KOC_SETTINGS"].ratelimit_key_prefix


def address_key() -> str:
    return f"{_prefix()}:ip:{request.remote_addr or 'unknown'}"


def caller_key() -> str:
    """The token's owner when the request has a valid token, else the address."""
    caller = request_caller()
    if caller is not None and caller.member_id is not None:
        return f"{_prefix()}:member:{caller.member_id}"
    if caller is not None and caller.staff_id is not None:
        return f"{_prefix()}:staff:{caller.staff_id}"
    return address_key()


def _not_a_token_write() -> bool:
    return (request.method not in {"POST", "PUT", "PATCH", "DELETE"}
            or not request.path.startswith("/api/")
            or (not request.headers.get("Authorization") and request_caller() is None))


def _setting(name: str) -> Callable[[], str]:
    return lambda: getattr(current_app.config["KOC_SETTINGS"], name)


def _token_write_limit() -> str:
    caller = request_caller()
    settings = current_app.config["KOC_SETTINGS"]
    if caller is not None and caller.staff_id is not None:
        return settings.ratelimit_staff_writes
    return settings.ratelimit_member_writes


limiter = Limiter(
    key_func=caller_key,
    application_limits=[_token_write_limit],
    application_limits_exempt_when=_not_a_token_write,
    headers_enabled=True,
    strategy="moving-window",
)

# Route decorators: `@invitation_limit` on the acceptance route, `@claim_limit` on drop claims.
invitation_limit = limiter.limit(_setting("ratelimit_invitations"), key_func=address_key,
                                 override_defaults=False)
claim_limit = limiter.limit(_setting("ratelimit_claims"), key_func=caller_key,
                            override_defaults=False)
login_attempt_limit = limiter.limit(_setting("ratelimit_login_attempts"), key_func=address_key,
                                    methods=["POST"], override_defaults=False)


def _retry_after(limit: RateLimitItem, *keys: str) -> int:
    reset_at, _remaining = limiter.limiter.get_window_stats(limit, *keys)
    return max(1, math.ceil(reset_at - time.time()))


def _too_many(exc: RateLimitExceeded) -> Response:
    response = jsonify(error_body(429, f"Too many requests: the limit is {exc.description}; "
                                       "try again later."))
    response.status_code = 429
    return response


class Lockout:
    """Failed sign-ins counted per address and per account; a locked key refuses every try,
    right or wrong, until its windows free up."""

    def __init__(self, email: str) -> None:
        settings = current_app.config["KOC_SETTINGS"]
        self.keys = [] if not settings.ratelimit_enabled else [
            (parse_many(settings.ratelimit_login_failures_address), ("login-fail", address_key())),
            (parse_many(settings.ratelimit_login_failures_account),
             ("login-fail", f"{_prefix()}:account:{email.strip().lower()}")),
        ]

    def retry_after(self) -> int | None:
        """Seconds until a try is allowed again, or None when none of the keys is locked."""
        waits = [_retry_after(limit, *key) for limits_, key in self.keys for limit in limits_
                 if not limiter.limiter.test(limit, *key)]
        return max(waits) if waits else None

    def failed(self) -> None:
        for limits_, key in self.keys:
            for limit in limits_:
                limiter.limiter.hit(limit, *key)


def install(app: Flask) -> None:
    settings = app.config["KOC_SETTINGS"]
    # Always set: the extension keeps the last app's value otherwise.
    app.config["RATELIMIT_ENABLED"] = settings.ratelimit_enabled
    app.config.setdefault("RATELIMIT_STORAGE_URI", settings.ratelimit_storage_url)
    # A Redis outage must not take sign-in and claims down with it: each host counts on its
    # own meanwhile (and logs that it does).
    app.config.setdefault("RATELIMIT_IN_MEMORY_FALLBACK_ENABLED", True)
    limiter.init_app(app)

    @app.errorhandler(RateLimitExceeded)
    def _rate_limited(exc: RateLimitExceeded) -> Any:
        log.warning("rate limit %s hit by %s on %s", exc.description, caller_key(), request.path)
        if request.blueprint == "admin" and not request.path.startswith("/admin/api"):
            return exc.get_response()
        return _too_many(exc)
