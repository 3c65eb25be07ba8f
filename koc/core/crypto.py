"""Secrets at rest (webhook secrets, URLs holding a WeCom robot key), encrypted with Fernet
(AES-128-CBC + HMAC-SHA256) under KOC_ENCRYPTION_KEYS.

`EncryptedText` is a column type: values are encrypted as they are written and decrypted as they
are read, so a database dump or a replica holds no usable secret. A stored value without the
`fernet:` mark is one written before encryption existed; it reads as it is and is encrypted the
next time the row is written (migration 0007 encrypts them all).
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from flask import current_app

MARK = "fernet:"


def _fernet() -> MultiFernet:
    cached = current_app.extensions.get("koc.fernet")
    if cached is None:
        keys = current_app.config["KOC_SETTINGS"].encryption_keys
        cached = current_app.extensions.setdefault(
            "koc.fernet", MultiFernet([Fernet(key) for key in keys]))
    return cached


def encrypt(text: str) -> str:
    return MARK + _fernet().encrypt(text.encode("utf-8")).decode("ascii")


def decrypt(stored: str) -> str:
    if not stored.startswith(MARK):
        return stored
    try:
        return _fernet().decrypt(stored[len(MARK):].encode("ascii")).decode("utf-8")
    except InvalidToken as exc:
        raise RuntimeError("a stored secret does not decrypt with any key in "
                           "KOC_ENCRYPTION_KEYS (was a key dropped too early?)") from exc


class EncryptedText(sa.types.TypeDecorator):
    impl = sa.Text
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else encrypt(str(value))

    def process_result_value(self, value: Any, dialect: sa.Dialect) -> str | None:
        return None if value is None else decrypt(value)
