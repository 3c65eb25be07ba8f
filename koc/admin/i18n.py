"""The panel in the reader's terms: the locale choice (the staff member's setting, else the
browser's), display names of tiers, metrics and platforms, and the programme's time zone."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

from flask import current_app, request, session
from flask_babel import lazy_gettext as _l

SUPPORTED_LOCALES = ("zh_CN", "en")
# Shown as-is in the switch: each language names itself, whatever the page's language.
LOCALE_NAMES = {"zh_CN": "简体中文", "en": "English"}


def select_locale() -> str:
    chosen = session.get("locale")
    if chosen in SUPPORTED_LOCALES:
        return chosen
    return request.accept_languages.best_match(SUPPORTED_LOCALES) or "zh_CN"


# The reference programme's tier names (koc.tiers.services.rules.DEFAULT_TIERS) in the panel's
# language; a name a brand wrote itself is shown as written.
_DEFAULT_TIER_NAMES = {
    "Certified KOC": _l("Certified KOC"),
    "Early access": _l("Early access"),
    "Senior KOC": _l("Senior KOC"),
}


def tier_display_name(tier_key: str | None, names: Mapping[str, str]) -> str:
    """A tier for people: its name in the rules (`names`: key -> name), never the raw key."""
    if tier_key is None or tier_key == "none":
        return str(_l("No tier yet"))
    name = names.get(tier_key, tier_key)
    return str(_DEFAULT_TIER_NAMES.get(name, name))


# What each tier metric measures, for the rules forms' metric chooser and summaries
# (koc.tiers.services.metrics.METRICS holds the same keys).
TIER_METRIC_NAMES = {
    "approved_submissions": _l("Approved posts"),
    "points_earned": _l("Points earned"),
    "weekly_streak": _l("Consecutive weeks with an approved post"),
    "best_post_interactions": _l("Likes + comments + saves of the best post"),
    "best_post_reach": _l("Best post's likes + comments + saves per 1,000 followers"),
    "average_rating": _l("Average reviewer rating"),
    "distinct_kits": _l("Different kits used"),
}


def metric_display_name(key: str) -> str:
    return str(TIER_METRIC_NAMES.get(key, key))


# The platforms a post or an account is on (koc.members.models.PLATFORMS), as the panel says them.
PLATFORM_NAMES = {
    "xiaohongshu": _l("Xiaohongshu"),
    "douyin": _l("Douyin"),
    "wechat_channels": _l("WeChat Channels"),
    "weibo": _l("Weibo"),
    "other": _l("Other platform"),
}


def platform_display_name(key: str) -> str:
    return str(PLATFORM_NAMES.get(key, key))


# --- the programme's time zone (KOC_TIMEZONE) ---------------------------------------------------
# Times are stored in UTC and shown in the programme's zone (Babel's default time zone); the
# panel's date-and-time fields (<input type="datetime-local">, no zone of their own) are read
# and filled in that zone too, so what a manager types is what the page shows back.

def _zone() -> ZoneInfo:
    # zoneinfo, not Babel's pytz zone: replace(tzinfo=) with a pytz zone takes its first
    # historical offset (Shanghai's local mean time, +08:06).
    return ZoneInfo(current_app.config["KOC_SETTINGS"].timezone)


def zone_label(at: datetime) -> str:
    """The zone's offset at `at`, as fields' labels say it: "UTC+08:00"."""
    offset = at.astimezone(_zone()).utcoffset()
    minutes = int(offset.total_seconds() // 60) if offset is not None else 0
    sign = "+" if minutes >= 0 else "-"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def from_local(value: datetime) -> datetime:
    """A field's value (naive, in the programme's zone) as an aware UTC time; an aware value
    keeps its own zone."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=_zone())
    return value.astimezone(UTC)


def to_local(value: datetime) -> datetime:
    """A stored time as a field shows it: naive, in the programme's zone."""
    return value.astimezone(_zone()).replace(tzinfo=None)
