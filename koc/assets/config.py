"""Settings of the kits domain, parsed as strictly as koc.settings and checked at start-up.

They belong in koc.settings' one table; until they move there they are read here, from the
process environment, when the kits blueprint is registered (inside create_app), so a bad value
stops the app from starting instead of surfacing on the first upload.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from flask import current_app
from marshmallow import Schema, ValidationError, validate
from marshmallow import fields as mf

from koc.settings import SettingsError

EXTENSION_KEY = "koc.assets.settings"
MiB = 1024 * 1024


@dataclass(frozen=True)
class AssetsSettings:
    multipart_threshold: int = 64 * MiB
    part_size: int = 16 * MiB
    # Placeholders: {code} (what the leak lookup takes), {member_id}.
    watermark_text: str = "KOC {member_id} #{code}"


class _EnvSchema(Schema):
    KOC_MULTIPART_THRESHOLD = mf.Integer(
        load_default=64 * MiB, strict=False, validate=validate.Range(min=5 * MiB))
    # S3 wants parts of 5 MiB or more, and at most 10,000 of them: 16 MiB parts reach 156 GiB.
    KOC_MULTIPART_PART_SIZE = mf.Integer(
        load_default=16 * MiB, strict=False, validate=validate.Range(min=5 * MiB, max=512 * MiB))
    KOC_WATERMARK_TEXT = mf.String(load_default="KOC {member_id} #{code}",
                                   validate=validate.Length(min=1, max=120))


def load_assets_settings(environ: Mapping[str, str] | None = None) -> AssetsSettings:
    environ = os.environ if environ is None else environ
    schema = _EnvSchema()
    raw = {name: environ[name] for name in schema.fields if environ.get(name, "") != ""}
    try:
        data = schema.load(raw)
        if "{code}" not in data["KOC_WATERMARK_TEXT"]:
            raise ValidationError({"KOC_WATERMARK_TEXT": ["must contain {code}"]})
        data["KOC_WATERMARK_TEXT"].format(code="x", member_id=1)
    except (ValidationError, KeyError, IndexError, ValueError) as exc:
        messages = getattr(exc, "messages", {"KOC_WATERMARK_TEXT": [f"bad placeholder {exc}"]})
        problems = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in messages.items())
        raise SettingsError(f"invalid settings: {problems}") from exc
    return AssetsSettings(
        multipart_threshold=data["KOC_MULTIPART_THRESHOLD"],
        part_size=data["KOC_MULTIPART_PART_SIZE"],
        watermark_text=data["KOC_WATERMARK_TEXT"],
    )


def assets_settings() -> AssetsSettings:
    settings = current_app.extensions.get(EXTENSION_KEY)
    if settings is None:
        settings = current_app.extensions.setdefault(EXTENSION_KEY, load_assets_settings())
    return settings
