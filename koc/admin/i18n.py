"""Locale choice for the admin panel: the staff member's setting, else the browser's."""

from __future__ import annotations

from flask import request, session

SUPPORTED_LOCALES = ("zh_CN", "en")


def select_locale() -> str:
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return chosen
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or "zh_CN"
