"""Locale choice for the admin panel: the staff member's setting, else the browser's."""

from __future__ import annotations

from flask import request, session

SUPPORTED_LOCALES = ("zh_CN", "en")
# Shown as-is in the switch: each language names itself, whatever the page's language.
LOCALE_NAMES = {"zh_CN": "简体中文", "en": "English"}


def select_locale() -> str:
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return chosen
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or "zh_CN"
