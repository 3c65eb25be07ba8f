"""Scoring rules as versioned data, and a submission's score under a version of them."""

from __future__ import annotations

import copy
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from flask import current_app
from sqlalchemy.exc import IntegrityError

from koc.assets.models import Kit
from koc.core.auth import forget_request_version, request_version
from koc.core.errors import DomainError
from koc.extensions import db
from koc.submissions.models import (
    ScoringRuleSet,
    Submission,
)
from koc.submissions.services import scoring
from koc.submissions.services.audience import audience_of, followers_floor

# As for tier rules (koc.tiers.services.rules): saved versions never change, so each process
# keeps those it read, per app, and learns which is in force from the request's token lookup.
_CACHE = "koc.scoring_rules_cache"
_WROTE = "koc.scoring_rules_written"
PROBE = "scoring_rules"


def scoring_version_probe() -> sa.ScalarSelect[int]:
    return sa.select(sa.func.max(ScoringRuleSet.version)).scalar_subquery()


def _in_force() -> tuple[int, dict[str, Any]]:
    known, version = request_version(PROBE)
    if db.session().info.get(_WROTE) or not known:
        # Outside a request one query reads the version in force with its rules.
        row = scoring_rules_row()
        return (0, scoring.default_rules()) if row is None else (row.version, row.rules)
    version = version or 0
    cache: dict[int, dict[str, Any]] = current_app.extensions.setdefault(_CACHE, {})
    rules = cache.get(version)
    if rules is None:
        rules = cache[version] = scoring_rules_version(version)
    return version, rules


def current_scoring() -> tuple[int, dict[str, Any]]:
    """(version, rules) in force; version 0 is the built-in default, never saved."""
    version, rules = _in_force()
    return version, copy.deepcopy(rules)


def scoring_rules_to_read() -> dict[str, Any]:
    """The rules in force, shared with the process's cache: read them, never change them."""
    return _in_force()[1]


def scoring_rules_row() -> ScoringRuleSet | None:
    return db.session.scalar(
        sa.select(ScoringRuleSet).order_by(ScoringRuleSet.version.desc()).limit(1)
    )


def scoring_rules_version(version: int) -> dict[str, Any]:
    if version == 0:
        return scoring.default_rules()
    row = db.session.scalar(sa.select(ScoringRuleSet).where(ScoringRuleSet.version == version))
    if row is None:  # cannot happen while rule sets are never deleted; fall back to current
        return current_scoring()[1]
    return row.rules


def save_scoring_rules(rules: dict[str, Any], *, staff_id: int | None) -> ScoringRuleSet:
    """Save a new version (already validated by ScoringRulesSchema). Decided scores keep theirs."""
    audience = rules["audience"]
    if audience["min_followers"] > audience["reference_followers"]:
        raise DomainError(422, "min_followers must not exceed reference_followers.", errors={
            "json": {"rules": {"audience": {"min_followers": [
                "must not exceed reference_followers"]}}}})
    latest = db.session.scalar(sa.select(sa.func.max(ScoringRuleSet.version))) or 0
    row = ScoringRuleSet(version=latest + 1, rules=rules, created_by_staff_id=staff_id)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError as exc:
        raise DomainError(409, "Another rules version was saved at the same moment; "
                               "reload and try again.") from exc
    db.session().info[_WROTE] = True
    forget_request_version(PROBE)
    return row


def scoring_versions() -> sa.Select:
    """Saved scoring rule versions, newest first (version 0, the default, is never saved)."""
    return sa.select(ScoringRuleSet).order_by(ScoringRuleSet.version.desc())


def preview_score(rules: dict[str, Any], *, metrics: dict[str, int], rating: int | None,
                  followers: int | None, followers_confirmed: bool, in_window: bool,
                  posted_at: datetime) -> tuple[Decimal, dict[str, Any]]:
    """The worked breakdown of a sample post under `rules` (validated), saving nothing.

    A declared (unconfirmed) follower count counts through the floor, as it does for real posts.
    """
    if followers is not None and not followers_confirmed:
        followers = max(followers, followers_floor())
    window = (None, None) if in_window else None
    inputs = scoring.ScoreInputs(metrics=metrics, rating=rating, followers=followers,
                                 followers_confirmed=followers_confirmed if followers is not None
                                 else None, posted_at=posted_at, window=window)
    return scoring.score(inputs, rules, 0)


def _kit_window(kit_id: int | None) -> tuple[datetime | None, datetime | None] | None:
    if kit_id is None:
        return None

    row = db.session.execute(
        sa.select(Kit.available_from, Kit.available_until).where(Kit.id == kit_id)
    ).first()
    return None if row is None else (row[0], row[1])


def score_of(submission: Submission, version: int | None = None
             ) -> tuple[Decimal, dict[str, Any], int]:
    """Score a submission under rules `version` (default: the rules in force)."""
    if version is None:
        version, rules = current_scoring()
    else:
        rules = scoring_rules_version(version)
    followers, confirmed = audience_of(submission.member_id, submission.platform)
    inputs = scoring.ScoreInputs(
        metrics=submission.latest_metrics, rating=submission.rating, followers=followers,
        followers_confirmed=confirmed,
        posted_at=submission.posted_at, window=_kit_window(submission.kit_id),
    )
    total, breakdown = scoring.score(inputs, rules, version)
    return total, breakdown, version
