"""Scoring a post from versioned rules: pure arithmetic, no session, so it is easy to read and test.

A score is a list of named parts in cents, and the score is their sum: whatever `score_breakdown`
shows adds up to `score` exactly.

- base: points for an approved post.
- one engagement part per metric: weight * points_per_log * ln(1 + count * audience_factor).
  The log scale stops one viral post from outweighing everything; the audience factor scales
  counts to a reference audience (reference_followers / the account's followers, with a floor),
  so 50 likes on a 500-follower account count like 100 on a 1,000-follower one. A fixed likes
  threshold would shut out small creators, which are the point of a KOC programme.
- engagement_cap: brings the engagement parts down to the cap, when they pass it.
- rating: (base + engagement) * (the rating's multiplier - 1); no rating means multiplier 1.
- in_window: a bonus when the post went up inside its kit's availability window.
- cap: brings the total down to the total cap.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from koc.submissions.models import METRICS

CENT = Decimal("0.01")

DEFAULT_RULES: dict[str, Any] = {
    "base": 10,
    "engagement": {
        "points_per_log": 4,
        "weights": {"views": 0.2, "likes": 1.0, "comments": 1.5, "saves": 1.5, "shares": 2.0},
        "cap": 80,
    },
    "audience": {"reference_followers": 1000, "min_followers": 100},
    "rating_multipliers": {"1": 0.5, "2": 0.8, "3": 1.0, "4": 1.2, "5": 1.5},
    "in_window_bonus": 5,
    "total_cap": 150,
    "points_expire_after_days": None,
    "anomalies": {
        "likes_above_views": True,
        # A day's gain in likes + comments + saves this many times the member's usual one.
        "jump_factor": 10,
        # Usual daily engagement never counts as less than this, so a new member's first
        # modest post does not look like a jump.
        "jump_min_daily": 50,
        # Engagement rate (interactions / views) this many times the member's median.
        "rate_factor": 5,
        "rate_min_history": 3,
        # Hamming distance between 64-bit perceptual hashes that counts as the same image.
        "media_max_distance": 8,
    },
}


def default_rules() -> dict[str, Any]:
    return copy.deepcopy(DEFAULT_RULES)


@dataclass(frozen=True)
class ScoreInputs:
    metrics: dict[str, int]
    rating: int | None
    # Followers of the member's account on the post's platform; None when no account is known.
    followers: int | None
    posted_at: datetime
    window: tuple[datetime | None, datetime | None] | None  # the kit's window; None: no kit
    # Whether `followers` is a checked count (False: a declared one, already raised to the
    # unconfirmed floor); None when no account is known.
    followers_confirmed: bool | None = None


def _dec(value: float | int) -> Decimal:
    # Through str, so 0.2 is 0.2 and not 0.2000000000000000111...
    return Decimal(str(value))


def audience_factor(followers: int | None, rules: dict[str, Any]) -> Decimal:
    if followers is None:
        return Decimal(1)
    audience = rules["audience"]
    return _dec(audience["reference_followers"]) / max(_dec(followers),
                                                      _dec(audience["min_followers"]))


def in_window(posted_at: datetime,
              window: tuple[datetime | None, datetime | None] | None) -> bool:
    if window is None:
        return False
    start, end = window
    return (start is None or posted_at >= start) and (end is None or posted_at <= end)


def score(inputs: ScoreInputs, rules: dict[str, Any], version: int
          ) -> tuple[Decimal, dict[str, Any]]:
    """Return (score, breakdown); the breakdown's parts add up to the score exactly."""
    parts: dict[str, Decimal] = {"base": _dec(rules["base"]).quantize(CENT)}
    engagement = rules["engagement"]
    factor = audience_factor(inputs.followers, rules)
    per_log = _dec(engagement["points_per_log"])
    engagement_total = Decimal(0)
    for name in METRICS:
        count = Decimal(inputs.metrics.get(name, 0)) * factor
        value = (per_log * _dec(engagement["weights"][name])
                 * _dec(math.log1p(float(count)))).quantize(CENT)
        parts[name] = value
        engagement_total += value
    cap = engagement.get("cap")
    if cap is not None and engagement_total > _dec(cap):
        parts["engagement_cap"] = _dec(cap).quantize(CENT) - engagement_total
        engagement_total = _dec(cap).quantize(CENT)

    multiplier = (_dec(rules["rating_multipliers"][str(inputs.rating)])
                  if inputs.rating is not None else Decimal(1))
    parts["rating"] = ((parts["base"] + engagement_total) * (multiplier - 1)).quantize(CENT)

    window_hit = in_window(inputs.posted_at, inputs.window)
    if window_hit and rules["in_window_bonus"]:
        parts["in_window"] = _dec(rules["in_window_bonus"]).quantize(CENT)

    total = sum(parts.values(), Decimal(0))
    total_cap = rules.get("total_cap")
    if total_cap is not None and total > _dec(total_cap):
        parts["cap"] = _dec(total_cap).quantize(CENT) - total
        total = _dec(total_cap).quantize(CENT)
    breakdown = {
        "rules_version": version,
        "parts": {name: float(value) for name, value in parts.items()},
        "inputs": {
            "metrics": {name: inputs.metrics.get(name, 0) for name in METRICS},
            "followers": inputs.followers,
            "followers_confirmed": inputs.followers_confirmed,
            "audience_factor": float(factor.quantize(Decimal("0.0001"))),
            "rating": inputs.rating,
            "rating_multiplier": float(multiplier),
            "in_window": window_hit,
        },
    }
    return total.quantize(CENT), breakdown


def interactions_of(metrics: dict[str, int]) -> int:
    """The reference programme's measure of a post: likes + comments + saves."""
    return metrics.get("likes", 0) + metrics.get("comments", 0) + metrics.get("saves", 0)
