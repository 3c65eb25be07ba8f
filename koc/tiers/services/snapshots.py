"""The daily tier snapshot: members per tier (and at risk) on each UTC day, for the dashboard's
members-per-tier-over-time chart.

Written by the tier job after each finished run; a later run the same day overwrites that day's
rows (an upsert per tier, and tiers now empty set to zero), so re-runs and concurrent runs
converge on the counts of the last one. A handful of grouped counts: no loop over members.
An incremental run, which reads only the members with new activity, moves today's counts by
the changes it made instead, and recounts at most hourly (RECOUNT_AFTER).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from koc.extensions import db
from koc.members.models import Member, MemberStatus
from koc.tiers.models import TierSnapshot

NO_TIER = "none"


def _counts() -> dict[str, tuple[int, int]]:
    """Active members per tier: (members, of whom at risk)."""
    tier = sa.func.coalesce(Member.tier_key, NO_TIER)
    rows = db.session.execute(
        sa.select(tier, sa.func.count(),
                  sa.func.count().filter(Member.tier_below_since.is_not(None),
                                         Member.tier_key.is_not(None)))
        .where(Member.status == MemberStatus.active.value)
        .group_by(tier))
    return {key: (members, at_risk) for key, members, at_risk in rows}


# An incremental run adds its own changes to today's counts instead of recounting every member,
# unless they were last counted this long ago: signups, suspensions and staff changes since show
# up within the hour.
RECOUNT_AFTER = timedelta(hours=1)


def take_snapshot(now: datetime) -> date:
    """Write today's (UTC) rows from the members as they are now; returns the day written."""
    day = now.date()
    counts = _counts()
    earlier = set(db.session.scalars(sa.select(TierSnapshot.tier_key)
                                     .where(TierSnapshot.day == day)))
    _write([{"day": day, "tier_key": key, "members": counts.get(key, (0, 0))[0],
             "at_risk": counts.get(key, (0, 0))[1], "taken_at": now}
            for key in sorted(set(counts) | earlier)])
    return day


def add_to_snapshot(now: datetime, members: Mapping[str, int], at_risk: Mapping[str, int]
                    ) -> date:
    """An incremental run: today's rows moved by the members it changed (`members`: tier ->
    members gained or lost, `at_risk`: tier -> members who started or ended a spell below).

    A recount reads every member, so it is left to full runs, the first run of a day and any
    run finding today's rows counted more than RECOUNT_AFTER ago; this reads today's few rows.
    """
    day = now.date()
    today = {key: (count, risk, taken) for key, count, risk, taken in db.session.execute(
        sa.select(TierSnapshot.tier_key, TierSnapshot.members, TierSnapshot.at_risk,
                  TierSnapshot.taken_at).where(TierSnapshot.day == day))}
    counted = min((taken for _, _, taken in today.values()), default=None)
    if counted is None or now - counted >= RECOUNT_AFTER:
        return take_snapshot(now)
    rows = []
    for key in sorted(set(members) | set(at_risk)):
        count, risk, taken = today.get(key, (0, 0, counted))
        new_count = max(0, count + members.get(key, 0))
        new_risk = min(new_count, max(0, risk + at_risk.get(key, 0)))
        if key not in today or (new_count, new_risk) != (count, risk):
            # taken_at stays the time of the last recount, which the next run compares.
            rows.append({"day": day, "tier_key": key, "members": new_count,
                         "at_risk": new_risk, "taken_at": taken})
    _write(rows)
    return day


def _write(rows: list[dict[str, object]]) -> None:
    if not rows:
        return
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(TierSnapshot).values(rows)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[TierSnapshot.day, TierSnapshot.tier_key],
        set_={"members": statement.excluded.members, "at_risk": statement.excluded.at_risk,
              "taken_at": statement.excluded.taken_at}))


def history(now: datetime, days: int) -> tuple[list[date], dict[str, list[int | None]]]:
    """The last `days` days up to `now`: (days, members per tier for each day, None where no
    snapshot was taken that day)."""
    first = now.date() - timedelta(days=days - 1)
    span = [first + timedelta(days=n) for n in range(days)]
    found: dict[str, dict[date, int]] = {}
    for day, key, members in db.session.execute(
        sa.select(TierSnapshot.day, TierSnapshot.tier_key, TierSnapshot.members)
        .where(TierSnapshot.day >= first, TierSnapshot.day <= now.date())):
        found.setdefault(key, {})[day] = members
    taken = {day for per_day in found.values() for day in per_day}
    return span, {key: [per_day.get(day, 0 if day in taken else None) for day in span]
                  for key, per_day in found.items()}
