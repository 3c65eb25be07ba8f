"""The whole admin panel: the panel's own views and every domain's admin pages on one blueprint.

create_app registers `admin_blueprint` from here, so every page is attached before it is
registered. The domains' admin modules import koc.admin.blueprint, never this module.
"""

from __future__ import annotations

from koc.admin import leaderboard, security, views, webhooks
from koc.admin.blueprint import admin_blueprint
from koc.assets import admin as assets_admin
from koc.members import admin as members_admin
from koc.submissions import admin as submissions_admin
from koc.tiers import admin as tiers_admin

PAGE_MODULES = (views, leaderboard, security, webhooks, assets_admin, members_admin,
                submissions_admin, tiers_admin)

__all__ = ["PAGE_MODULES", "admin_blueprint"]
