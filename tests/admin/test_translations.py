"""The message catalogs stay complete: every string in the code is translated and compiled.

The app reads only the compiled .mo files, so a .po edited without `pybabel compile` would
silently show English; these tests catch that, and strings added without updating catalogs.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import DEFAULT_KEYWORDS, extract_from_dir
from babel.messages.frontend import parse_mapping_cfg
from babel.messages.mofile import read_mo
from babel.messages.pofile import read_po

ROOT = Path(__file__).resolve().parents[2]
TRANSLATIONS = ROOT / "koc" / "translations"
# Babel spells zh_CN as zh_Hans_CN, and gettext looks for that directory name.
LOCALES = ("zh_Hans_CN", "en")


def _catalog(locale: str):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.po").open("rb") as po:
        return read_po(po, locale=locale)


def _plain(value: str | list[str] | tuple[str, ...]) -> str | tuple[str, ...]:
    # Plural entries read back from a .mo file are lists; from a .po file, tuples.
    return tuple(value) if isinstance(value, list | tuple) else value


def _source_messages() -> set[str | tuple[str, ...]]:
    with (ROOT / "babel.cfg").open() as cfg:
        method_map, options_map = parse_mapping_cfg(cfg)
    keywords = {**DEFAULT_KEYWORDS, "_l": None, "lazy_gettext": None}
    found = set()
    for _file, _line, message, _comments, _context in extract_from_dir(
        str(ROOT), method_map, options_map, keywords=keywords
    ):
        found.add(message[0] if isinstance(message, tuple) and len(message) == 1 else message)
    return found


@pytest.mark.parametrize("locale", LOCALES)
def test_every_string_in_the_code_is_translated(locale: str):
    catalog = _catalog(locale)
    missing = [
        message for message in _source_messages()
        if not (entry := catalog.get(message)) or not all(
            entry.string if isinstance(entry.string, tuple) else (entry.string,))
    ]
    assert missing == [], "run pybabel extract/update, translate, then pybabel compile"


@pytest.mark.parametrize("locale", LOCALES)
def test_translations_keep_their_placeholders(locale: str):
    problems = [(entry.id, errors) for entry, errors in _catalog(locale).check() if errors]
    assert problems == []


@pytest.mark.parametrize("locale", LOCALES)
def test_compiled_catalog_matches_its_source(locale: str):
    with (TRANSLATIONS / locale / "LC_MESSAGES" / "messages.mo").open("rb") as mo:
        compiled = {_plain(entry.id): _plain(entry.string) for entry in read_mo(mo) if entry.id}
    source = {_plain(entry.id): _plain(entry.string)
              for entry in _catalog(locale) if entry.id and not entry.fuzzy}
    assert compiled == source, "run pybabel compile -d koc/translations"
