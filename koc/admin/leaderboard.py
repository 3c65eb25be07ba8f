"""排行榜: the leaderboard page, the same rows as GET /api/v1/leaderboard over the same service."""

from __future__ import annotations

import math
from typing import Any

from flask import render_template, request
from flask_babel import format_decimal
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from marshmallow import ValidationError

from koc.admin.blueprint import Paged, admin_blueprint, login_required
from koc.admin.i18n import tier_display_name
from koc.core.db import utcnow
from koc.core.pagination import MAX_PAGE
from koc.tiers.schemas import LeaderboardQuerySchema
from koc.tiers.services import insight, rules, standings

PER_PAGE = 50
WINDOWS = (7, 30, 90, 365)
METRIC_NAMES = {
    "points": _l("Points"),
    "engagement": _l("Engagement (likes + comments + saves)"),
    "approved": _l("Approved posts"),
}
FILTERS = ("window_days", "metric", "city", "store_code")


@admin_blueprint.get("/leaderboard")
@login_required("viewer")
def leaderboard() -> tuple[str, int]:
    raw = {name: value for name in FILTERS if (value := request.args.get(name, "").strip())}
    problems: dict[str, Any] = {}
    try:
        query = LeaderboardQuerySchema().load(raw)
    except ValidationError as exc:
        # The filters a manager typed stay in the form; the list falls back to the defaults.
        problems = exc.messages if isinstance(exc.messages, dict) else {}
        query = LeaderboardQuerySchema().load({})
    page = min(max(request.args.get("page", 1, type=int) or 1, 1), MAX_PAGE)
    rows, total = insight.leaderboard_page(insight.leaderboard_query(now=utcnow(), **query),
                                           offset=(page - 1) * PER_PAGE, limit=PER_PAGE)
    paged = Paged(items=rows, page=page, pages=max(math.ceil(total / PER_PAGE), 1), total=total)
    names = {t["key"]: t["name"] for t in rules.current_rules().tiers}
    return render_template(
        "admin/leaderboard.html",
        paged=paged,
        first_rank=(paged.page - 1) * PER_PAGE + 1,
        query=query,
        as_of=standings.as_of(query["window_days"]),
        raw=raw,
        problems={name: _("Not a valid value.") for name in problems},
        windows=WINDOWS,
        metric_names=METRIC_NAMES,
        tier_name=lambda key: tier_display_name(key, names) if key else "",
        number=format_decimal,
    ), 200 if not problems else 422
