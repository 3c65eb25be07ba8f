"""What a member is told about their tier: the next tier's requirements with their current
values, and whether the tier they hold is at risk, with the days of grace left."""

from __future__ import annotations

from typing import Any

from koc.core.db import utcnow
from koc.members.models import Member
from koc.tiers.services import metrics
from koc.tiers.services.metrics import METRICS, MetricValues, metric_key
from koc.tiers.services.rules import RuleSet, clauses, current_rules, demotion


def progress(member: Member) -> dict[str, Any]:
    """The next tier's requirements with the member's current values, and whether the current
    tier is at risk (below its low-water mark) with the days of grace left."""
    rules = current_rules()
    now = utcnow()
    ordered = sorted(rules.tiers, key=lambda t: t["rank"])
    current = rules.tier(member.tier_key)
    current_rank = current["rank"] if current else 0
    higher = [t for t in ordered if t["rank"] > current_rank]
    wanted = higher[:1] + ([current] if current else [])
    values = metrics.compute_for(RuleSet(rules.version, wanted), now=now, member_ids=[member.id])

    result: dict[str, Any] = {"next_tier": None, "mode": None, "requirements": [],
                              "current_tier": None}
    if higher:
        result.update(next_tier={"key": higher[0]["key"], "name": higher[0]["name"]},
                      mode="all" if "all" in higher[0]["rules"] else "any",
                      requirements=_requirements(higher[0], member.id, values))
    if current:
        hysteresis = demotion(current)
        holding = _requirements(current, member.id, values, hysteresis["low_water"])
        combine = all if "all" in current["rules"] else any
        at_risk = not combine(r["met"] for r in holding)
        grace_left = None
        if at_risk:
            spent = ((now - member.tier_below_since).total_seconds() / 86400
                     if member.tier_below_since else 0)
            grace_left = max(0, round(hysteresis["days_below"] - spent, 1))
        result["current_tier"] = {
            "key": current["key"], "name": current["name"], "locked": member.tier_locked,
            "at_risk": at_risk and not member.tier_locked, "below_since": member.tier_below_since,
            "grace_days_left": grace_left, "hold_requirements": holding}
    return result


def _requirements(tier: dict[str, Any], member_id: int, values: MetricValues,
                  factor: float = 1.0) -> list[dict[str, Any]]:
    rows = []
    for condition in clauses(tier["rules"]):
        key = metric_key(condition)
        value = values[key].get(member_id, 0)
        required = condition["min"] * factor
        name = METRICS[condition["metric"]] + (f" in {key[1]} days" if key[1] else "")
        rows.append({"name": name, "metric": condition["metric"], "window_days": key[1],
                     "current": value, "required": required, "met": value >= required})
    return rows
