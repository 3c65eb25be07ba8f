"""The daily tier snapshot: members per tier (and at risk) on each UTC day, for the dashboard's
members-per-tier-over-time chart.

Written by the tier job after each finished run; a later run the same day overwrites that day's
rows (an upsert per tier, and tiers now empty set to zero), so re-runs and concurrent runs
converge on the counts of the last one. A handful of grouped counts: no loop over members.
"""

from __future__ import annotations

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


def take_snapshot(now: datetime) -> date:
    """Write today's (UTC) rows from the members as they are now; returns the day written."""
    day = now.date()
    counts = _counts()
    earlier = set(db.session.scalars(sa.select(TierSnapshot.tier_key)
                                     .where(TierSnapshot.day == day)))
    rows = [{"day": day, "tier_key": key, "members": counts.get(key, (0, 0))[0],
             "at_risk": counts.get(key, (0, 0))[1], "taken_at": now}
            for key in sorted(set(counts) | earlier)]
    if not rows:
        return day
    dialect = db.session.get_bind().dialect.name
    insert = pg_insert if dialect == "postgresql" else sqlite_insert
    statement = insert(TierSnapshot).values(rows)
    db.session.execute(statement.on_conflict_do_update(
        index_elements=[TierSnapshot.day, TierSnapshot.tier_key],
        set_={"members": statement.excluded.members, "at_risk": statement.excluded.at_risk,
              "taken_at": statement.excluded.taken_at}))
    return day


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
