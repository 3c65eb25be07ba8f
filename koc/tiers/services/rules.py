"""Tier rules as versioned data: the reference programme, saving and checking new versions, and
reading a tier's clauses, demotion settings, rank and name."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, overload

import sqlalchemy as sa
from flask import current_app

from koc.core.auth import forget_request_version, request_version
from koc.core.errors import DomainError
from koc.extensions import db
from koc.tiers.models import TierRuleSet

# Hysteresis, unless a tier says otherwise: a member keeps a tier while each windowed value stays
# above 90% of its threshold, and drops only after 7 days below it and 14 days at the tier.
DEFAULT_DEMOTION = {"low_water": 0.9, "min_days_at_tier": 14, "days_below": 7}

# The reference programme: one approved post makes a certified KOC (the badge); posts in three
# consecutive weeks or five in sixty days give early access; one post with 1,000 likes +
# comments + saves in ninety days makes a senior KOC, or the normalised equivalent: 100 per
# 1,000 followers of the account posted on (1,000 on a 10,000-follower account).
DEFAULT_TIERS: list[dict[str, Any]] = [
    {"key": "certified", "name": "Certified KOC", "rank": 1,
     "rules": {"any": [{"metric": "approved_submissions", "min": 1}]}},
    {"key": "early_access", "name": "Early access", "rank": 2,
     "rules": {"any": [{"metric": "weekly_streak", "min": 3, "window_days": 90},
                       {"metric": "approved_submissions", "min": 5, "window_days": 60}]}},
    {"key": "senior", "name": "Senior KOC", "rank": 3,
     "rules": {"any": [{"metric": "best_post_interactions", "min": 1000, "window_days": 90},
                       {"metric": "best_post_reach", "min": 100, "window_days": 90}]},
     # Several consecutive weak notes take a member out of the senior group.
     "weak_posts": {"count": 3, "below": 100}},
]


@dataclass(frozen=True)
class RuleSet:
    version: int
    tiers: list[dict[str, Any]]

    @property
    def ranks(self) -> dict[str, int]:
        return {tier["key"]: tier["rank"] for tier in self.tiers}

    def tier(self, key: str | None) -> dict[str, Any] | None:
        return next((t for t in self.tiers if t["key"] == key), None)


# Rule versions are never edited once saved, so each process keeps the ones it has read, keyed
# by version, per app. Which version is in force comes with the request's token lookup
# (koc.core.auth VERSION_PROBES: one max() on the unique index, no round trip of its own), or
# from one such query outside a request. A session that saved a version this transaction reads
# around the cache, which must never hold a version that might still roll back.
_CACHE = "koc.tier_rules_cache"
_WROTE = "koc.tier_rules_written"
PROBE = "tier_rules"


def tier_rules_version_probe() -> sa.ScalarSelect[int]:
    return sa.select(sa.func.max(TierRuleSet.version)).scalar_subquery()


def _cached(version: int) -> RuleSet:
    cache: dict[int, RuleSet] = current_app.extensions.setdefault(_CACHE, {})
    found = cache.get(version)
    if found is None:
        found = rules_of_version(version)
        cache[found.version] = found
    return found


def _rules_in_force() -> RuleSet:
    known, version = request_version(PROBE)
    if db.session().info.get(_WROTE) or not known:
        # Outside a request (jobs, commands) one query reads the version in force and its
        # rules together, as cheap as reading the version alone.
        row = db.session.scalar(
            sa.select(TierRuleSet).order_by(TierRuleSet.version.desc()).limit(1))
        return RuleSet(row.version, row.tiers) if row else RuleSet(0, DEFAULT_TIERS)
    return _cached(version or 0)


def current_rules() -> RuleSet:
    rules = _rules_in_force()
    # A copy: callers may change what they are given, never the process-wide cache.
    return RuleSet(version=rules.version, tiers=copy.deepcopy(rules.tiers))


def rules_of_version(version: int) -> RuleSet:
    row = db.session.scalar(sa.select(TierRuleSet).where(TierRuleSet.version == version))
    return RuleSet(version, row.tiers) if row else RuleSet(0, copy.deepcopy(DEFAULT_TIERS))


def rule_versions() -> sa.Select:
    """Saved tier rules versions, newest first (version 0, the default, is never saved)."""
    return sa.select(TierRuleSet).order_by(TierRuleSet.version.desc())


def tier_ranks() -> dict[str, int]:
    return _rules_in_force().ranks


def save_rules(tiers: list[dict[str, Any]], *, staff_id: int | None) -> RuleSet:
    validate_tiers(tiers)
    latest = db.session.scalar(sa.select(sa.func.max(TierRuleSet.version))) or 0
    ordered = sorted(tiers, key=lambda t: t["rank"])
    db.session.add(TierRuleSet(version=latest + 1, tiers=ordered, created_by_staff_id=staff_id))
    db.session.flush()
    db.session().info[_WROTE] = True
    forget_request_version(PROBE)
    return RuleSet(version=latest + 1, tiers=ordered)


def validate_tiers(tiers: list[dict[str, Any]]) -> None:
    """Cross-tier checks the schema cannot make: unique keys and ranks."""
    keys = [t["key"] for t in tiers]
    ranks = [t["rank"] for t in tiers]
    if len(set(keys)) != len(keys):
        raise DomainError(422, "Tier keys must be unique.",
                          errors={"json": {"tiers": ["duplicate tier key"]}})
    if len(set(ranks)) != len(ranks):
        raise DomainError(422, "Tier ranks must be unique.",
                          errors={"json": {"tiers": ["duplicate tier rank"]}})


def clauses(rules: dict[str, Any]) -> list[dict[str, Any]]:
    """A tier's conditions, whether it needs all of them or any one."""
    return rules.get("all") or rules.get("any") or []


def demotion(tier: dict[str, Any]) -> dict[str, float]:
    """The tier's hysteresis settings, the defaults filled in."""
    return {**DEFAULT_DEMOTION, **(tier.get("demotion") or {})}


@overload
def tier_ref(tier_key: str) -> dict[str, str]: ...
@overload
def tier_ref(tier_key: None) -> None: ...
@overload
def tier_ref(tier_key: str | None) -> dict[str, str] | None: ...


def tier_ref(tier_key: str | None) -> dict[str, str] | None:
    """A tier's key and name; a key no rule version knows any more is its own name."""
    if tier_key is None:
        return None
    tier = current_rules().tier(tier_key)
    return {"key": tier_key, "name": tier["name"] if tier else tier_key}
