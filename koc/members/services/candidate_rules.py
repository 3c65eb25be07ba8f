"""Candidate rules as versioned data, the score they give as one SQL expression, rescoring
every user in one UPDATE, and a preview of how the top of the list would change.

The score of a user who is not excluded is

    sum(weight[signal] * ln(1 + signal))  +  recency.weight * 0.5 ** (days since last order /
                                                                      recency.half_life_days)

rounded to 4 places: each signal on a log scale, so one huge spender does not drown out a
customer who orders, shares and posts steadily; a recent order adds a bonus that halves every
half-life. An excluded user (a member, opted out, staff, outside the required segments, inside
an excluded one) scores -1, which keeps them out of the candidate index. The same expression
serves the one-by-one upsert, the import merges (PostgreSQL and SQLite) and the rescore.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.exc import IntegrityError

from koc.core.db import UTCDateTime
from koc.core.errors import DomainError
from koc.core.jobs import Job, start_job
from koc.extensions import db
from koc.members.models import CandidateRuleSet, Member, User

SIGNALS = ("orders_count", "spend_yuan", "shares_count", "community_posts_count")
SEGMENT_KINDS = ("city", "store_code", "tags")
EXCLUDED_SCORE = -1.0

# Version 0, never saved: the weights the service ranked by before rules were data.
DEFAULT_RULES: dict[str, Any] = {
    "weights": {"orders_count": 3.0, "spend_yuan": 2.0, "shares_count": 2.5,
                "community_posts_count": 2.5},
    "recency": {"weight": 0.0, "half_life_days": 30},
    "required": {"city": [], "store_code": [], "tags": []},
    "excluded": {"city": [], "store_code": [], "tags": []},
    "exclusions": {"members": True, "opted_out_tags": ["opted_out"], "staff_tags": ["staff"]},
}


@dataclass(frozen=True)
class CandidateRules:
    version: int
    rules: dict[str, Any]
    created_at: datetime | None = None


def current_rules() -> CandidateRules:
    row = db.session.scalar(
        sa.select(CandidateRuleSet).order_by(CandidateRuleSet.version.desc()).limit(1))
    if row is None:
        return CandidateRules(0, copy.deepcopy(DEFAULT_RULES))
    return CandidateRules(row.version, row.rules, row.created_at)


def _dialect() -> str:
    return db.session.get_bind().dialect.name


def _any_tag(tags_column: sa.ColumnElement[Any], tags: list[str], dialect: str
             ) -> sa.ColumnElement[bool]:
    if dialect == "postgresql":
        return sa.type_coerce(tags_column, JSONB).has_any(postgresql.array(tags))
    each = sa.func.json_each(tags_column).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value.in_(tags)))


def _in_segment(col: Callable[[str], sa.ColumnElement[Any]], segment: dict[str, list[str]],
                dialect: str) -> list[sa.ColumnElement[bool]]:
    """One condition per kind the segment names (city, store code, tags)."""
    conditions: list[sa.ColumnElement[bool]] = []
    if segment.get("city"):
        conditions.append(col("city").in_(segment["city"]))
    if segment.get("store_code"):
        conditions.append(col("store_code").in_(segment["store_code"]))
    if segment.get("tags"):
        conditions.append(_any_tag(col("tags"), segment["tags"], dialect))
    return conditions


def score_expression(rules: dict[str, Any], *, col: Callable[[str], sa.ColumnElement[Any]],
                     now: sa.ColumnElement[Any], dialect: str,
                     user_id: Any = None) -> sa.ColumnElement[float]:
    """The score under `rules` as SQL over the columns `col(name)` gives, at time `now`.

    `user_id`, when given, is what the member exclusion looks up (a row of users, not a staged
    line that has no id yet: those are excluded by the members check after the merge).
    """
    values = {
        "orders_count": col("orders_count"),
        "spend_yuan": col("spend_cents") / 100.0,
        "shares_count": col("shares_count"),
        "community_posts_count": col("community_posts_count"),
    }
    terms: list[sa.ColumnElement[Any]] = [
        sa.literal(float(weight)) * sa.func.ln(1 + sa.func.coalesce(values[name], 0))
        for name, weight in rules["weights"].items() if weight]
    recency = rules["recency"]
    if recency["weight"]:
        if dialect == "postgresql":
            age = sa.extract("epoch", now - col("last_order_at")) / 86400.0
        else:
            age = sa.func.julianday(now) - sa.func.julianday(col("last_order_at"))
        # 0.5 ** (age / half-life), as exp(); an order dated in the future counts as today's.
        decay = sa.func.exp(sa.literal(-0.6931471805599453 / recency["half_life_days"])
                            * sa.case((age < 0, 0.0), else_=age))
        terms.append(sa.case((col("last_order_at").is_(None), 0.0),
                             else_=sa.literal(float(recency["weight"])) * decay))
    total: sa.ColumnElement[Any] = sa.literal(0.0)
    for term in terms:
        total = total + term
    rounded = sa.cast(sa.func.round(sa.cast(total, sa.Numeric), 4), sa.Float)

    excluded: list[sa.ColumnElement[bool]] = []
    for condition in _in_segment(col, rules["required"], dialect):
        # Required: a user outside any named kind (or with it unknown) is excluded.
        excluded.append(sa.not_(sa.func.coalesce(condition, False)))
    excluded.extend(sa.func.coalesce(c, False)
                    for c in _in_segment(col, rules["excluded"], dialect))
    exclusions = rules["exclusions"]
    for tags in (exclusions["opted_out_tags"], exclusions["staff_tags"]):
        if tags:
            excluded.append(_any_tag(col("tags"), tags, dialect))
    if user_id is not None and exclusions["members"]:
        excluded.append(sa.exists().where(Member.user_id == user_id))
    if not excluded:
        return rounded
    return cast(sa.ColumnElement[float], sa.case((sa.or_(*excluded), EXCLUDED_SCORE),
                                                 else_=rounded))


def users_score(rules: dict[str, Any], now: datetime) -> sa.ColumnElement[float]:
    """The score of a row of users (for UPDATE users and SELECT FROM users)."""
    dialect = _dialect()
    score = score_expression(rules, col=lambda name: getattr(User, name),
                             now=sa.literal(now, type_=UTCDateTime), dialect=dialect,
                             user_id=User.id)
    # A forgotten person is never a candidate again, whatever the rules say.
    return cast(sa.ColumnElement[float], sa.case((User.forgotten_at.is_not(None), EXCLUDED_SCORE),
                                                 else_=score))


def merge_score_sql(rules: dict[str, Any], alias: str, now_param: str) -> str:
    """The score over the columns of `alias` as PostgreSQL text for the import's merge, with
    `now_param` (a psycopg placeholder) as the time. Members are set apart by the merge."""
    expression = score_expression(
        rules, col=lambda name: sa.literal_column(f"{alias}.{name}"),
        now=sa.literal_column(f"{now_param}::timestamptz"), dialect="postgresql")
    text = str(expression.compile(dialect=postgresql.dialect(),
                                  compile_kwargs={"literal_binds": True}))
    # The placeholder stays one; any other % (a tag such as "50%") is escaped for psycopg.
    return text.replace("%", "%%").replace(f"%{now_param}", now_param)


def rescore(now: datetime, *, where: sa.ColumnElement[bool] | None = None,
            rules: dict[str, Any] | None = None) -> int:
    """Every user's score (or those `where` selects) under the rules in force: ONE set-based
    UPDATE, rewriting only the rows whose score changes. Returns the rows changed."""
    if rules is None:
        rules = current_rules().rules
    score = users_score(rules, now)
    stmt = sa.update(User).values(candidate_score=score).where(
        User.candidate_score.is_distinct_from(score))
    if where is not None:
        stmt = stmt.where(where)
    result = cast(sa.CursorResult, db.session.execute(
        stmt.execution_options(synchronize_session=False)))
    return int(result.rowcount or 0)


def save_rules(rules: dict[str, Any], *, staff_id: int | None, now: datetime
               ) -> tuple[CandidateRules, Job]:
    """Save a new version (validated by CandidateRulesSchema), in force at once for every user
    scored from now on, and start the job that rescores the others (`rescore_in_parts`): at
    tens of millions of users that takes far longer than a request may."""
    validate_rules(rules)
    latest = db.session.scalar(sa.select(sa.func.max(CandidateRuleSet.version))) or 0
    row = CandidateRuleSet(version=latest + 1, rules=rules, created_by_staff_id=staff_id,
                           created_at=now)
    try:
        with db.session.begin_nested():
            db.session.add(row)
    except IntegrityError as exc:
        raise DomainError(409, "Another rules version was saved at the same moment; "
                               "reload and try again.") from exc
    job = start_job("koc.members.tasks.rescore_candidates_job", kind="candidates.rescore",
                    payload={"version": row.version}, staff_id=staff_id)
    return CandidateRules(row.version, rules, row.created_at), job


# Users per rescoring statement: one set-based UPDATE each, committed one by one, so a table of
# 40 million is rewritten in parts that each hold their locks briefly, and a job that dies
# half-way starts again harmlessly (a part already done changes no row the second time).
RESCORE_PART = 500_000


def rescore_in_parts(now: datetime, *, commit: Callable[[], None] | None = None,
                     part_size: int = RESCORE_PART) -> int:
    """Every user rescored under the rules in force, one id range per UPDATE (each read anew,
    so a version saved meanwhile is applied by the parts still to come). Returns the rows
    changed."""
    low, high = db.session.execute(sa.select(sa.func.min(User.id), sa.func.max(User.id))).one()
    if low is None:
        return 0
    changed = 0
    for start in range(low, high + 1, part_size):
        changed += rescore(now, where=User.id.between(start, start + part_size - 1))
        if commit is not None:
            commit()
    return changed


def validate_rules(rules: dict[str, Any]) -> None:
    """What the schema cannot see alone: a segment both required and excluded."""
    for kind in SEGMENT_KINDS:
        both = set(rules["required"].get(kind) or ()) & set(rules["excluded"].get(kind) or ())
        if both:
            raise DomainError(422, f"{kind} {sorted(both)[0]!r} is both required and excluded.",
                              errors={"json": {"rules": {"excluded": {kind: [
                                  "also required"]}}}})


def _not_member() -> sa.ColumnElement[bool]:
    return ~sa.exists().where(Member.user_id == User.id)


def preview(rules: dict[str, Any], *, now: datetime, top: int = 20) -> dict[str, Any]:
    """How the top `top` would change under `rules`; saves nothing.

    The proposed ranking computes the score of every user (a full scan: a preview is rare and
    bounded by the top it keeps); the current one reads the index."""
    validate_rules(rules)
    score = users_score(rules, now).label("score")
    proposed_rows = db.session.execute(
        sa.select(User.external_id, User.display_name, User.candidate_score, score)
        .where(_not_member(), score >= 0)
        .order_by(score.desc(), User.id).limit(top)).all()
    current_rows = db.session.execute(
        sa.select(User.external_id, User.display_name, User.candidate_score)
        .where(_not_member(), User.candidate_score >= 0)
        .order_by(User.candidate_score.desc(), User.id).limit(top)).all()
    current_rank = {r.external_id: n for n, r in enumerate(current_rows, start=1)}
    proposed_ids = {r.external_id for r in proposed_rows}
    return {
        "current": [{"rank": n, "external_id": r.external_id, "display_name": r.display_name,
                     "score": r.candidate_score} for n, r in enumerate(current_rows, start=1)],
        "proposed": [{"rank": n, "external_id": r.external_id, "display_name": r.display_name,
                      "score": r.score, "previous_score": r.candidate_score,
                      "previous_rank": current_rank.get(r.external_id)}
                     for n, r in enumerate(proposed_rows, start=1)],
        "entered": [r.external_id for r in proposed_rows if r.external_id not in current_rank],
        "left": [r.external_id for r in current_rows if r.external_id not in proposed_ids],
    }
