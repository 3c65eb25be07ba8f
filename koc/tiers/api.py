"""Tiers HTTP API: thin handlers over tiers.services, and the tiers' part of the members' views.

GET /me and GET/PATCH /members/{id} are members routes; the fields they show from above the
members domain (tier, badges, progress, points, tier history) and staff tier changes come from
the receivers at the end of this module.
"""

from __future__ import annotations

from html import escape
from typing import Any

import sqlalchemy as sa
from flask import Response, current_app, url_for
from flask_smorest import Page

from koc.assets.services.kits import get_kit
from koc.core import audit
from koc.core.auth import (
    any_token_required,
    current_principal,
    current_staff_id,
    member_required,
    staff_or_member,
    staff_required,
)
from koc.core.db import utcnow
from koc.core.errors import DomainError
from koc.core.idempotency import idempotent
from koc.core.jobs import start_job
from koc.core.jobs.api import JobCreatedSchema
from koc.core.pagination import Blueprint, SelectPage
from koc.core.ratelimit import claim_limit
from koc.core.signals import member_detail_requested, member_tier_set, member_view_requested
from koc.members.models import Member
from koc.members.services.roster import get_member
from koc.submissions.services import ledger
from koc.tiers.models import Drop
from koc.tiers.schemas import (
    AnnouncementInSchema,
    AnnouncementSchema,
    BadgeAssertionSchema,
    ClaimSchema,
    DropInSchema,
    DropSchema,
    LeaderboardQuerySchema,
    LeaderboardRowSchema,
    LotterySchema,
    MembershipSchema,
    MyGroupsSchema,
    PreviewSchema,
    PublicKeySchema,
    RosterSchema,
    SeedingSchema,
    TierCountSchema,
    TierRulesVersionSchema,
    TiersInSchema,
    TiersOutSchema,
    WeComSyncSchema,
)
from koc.tiers.services import (
    badges,
    drops,
    engine,
    groups,
    history,
    insight,
    privacy,  # noqa: F401 - connects the person_forgotten / person_export_requested receivers
    progress,
    rules,
    wecom_groups,
)
from koc.tiers.wecom import wecom_client

blp = Blueprint("tiers", __name__, description="Tier rules and recalculation")


@blp.get("/tiers")
@blp.response(200, TiersOutSchema)
@any_token_required
def get_tiers():
    current = rules.current_rules()
    return {"version": current.version, "tiers": current.tiers}


@blp.put("/tiers/rules")
@blp.arguments(TiersInSchema)
@blp.response(200, TiersOutSchema)
@staff_required("admin")
def put_rules(data: dict):
    saved = rules.save_rules(data["tiers"], staff_id=current_principal().staff_id)
    return {"version": saved.version, "tiers": saved.tiers}


@blp.post("/tiers/rules/preview")
@blp.arguments(TiersInSchema)
@blp.response(200, PreviewSchema)
@staff_required("admin")
def preview_rules(data: dict):
    return engine.preview(data["tiers"])


@blp.get("/tiers/rules/versions")
@blp.response(200, TierRulesVersionSchema(many=True))
@blp.paginate(SelectPage)
@staff_required("viewer")
def tier_rules_versions():
    """Every saved tier rules version, newest first, for the history and its restore.

    Restoring an older version is saving its tiers again with PUT /tiers/rules."""
    return rules.rule_versions()


@blp.post("/tiers/recalculate")
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def recalculate():
    job = start_job("koc.tiers.tasks.recalculate_tiers_job", kind="tiers.recalculate",
                    staff_id=current_principal().staff_id)
    return {"job_id": job.id}


@blp.get("/stats/tiers")
@blp.response(200, TierCountSchema)
@staff_required("viewer")
def tier_stats():
    return {"tiers": history.members_per_tier()}


class _LeaderboardPage(SelectPage):
    """Leaderboard rows with their tier's name; the page and the total come from one query."""

    def __init__(self, collection: sa.Select, page_params: Any) -> None:
        self._rows, self._total = insight.leaderboard_page(
            collection, offset=page_params.first_item, limit=page_params.page_size)
        super().__init__(collection, page_params)

    @property
    def items(self) -> list[Any]:
        names = {t["key"]: t["name"] for t in rules.current_rules().tiers}
        return [{**row, "tier_name": names.get(row["tier"], row["tier"])} for row in self._rows]

    @property
    def item_count(self) -> int:
        return self._total


@blp.get("/leaderboard")
@blp.arguments(LeaderboardQuerySchema, location="query")
@blp.response(200, LeaderboardRowSchema(many=True),
              description="Active members with points or approved posts in the window, best "
                          "first by `metric`; ties go to the earlier member.")
@blp.paginate(_LeaderboardPage)
@staff_required("viewer")
def leaderboard(query: dict):
    return insight.leaderboard_query(now=utcnow(), **query)


# --- badges (public) ---------------------------------------------------------------------------

@blp.get("/badges/public-key")
@blp.response(200, PublicKeySchema)
@blp.doc(security=[])
def badge_public_key():
    keys = badges.public_keys()
    # `public_key` is the key signing new badges; `keys` adds the retired ones, still honoured.
    return {"algorithm": "Ed25519", "public_key": keys[0]["public_key"],
            "key_id": keys[0]["key_id"], "keys": keys}


def _badge_view(badge_id: str) -> dict:
    badge = badges.get_badge(badge_id)
    member = get_member(badge.member_id)
    revoked = badge.revoked_at is not None
    return {"badge_id": badge.badge_id,
            # The name only when the member chose to show it (PATCH /me).
            "member": {"id": member.id, "display_name": member.display_name
                       if member.show_name_on_badge and member.forgotten_at is None else None},
            "tier": badge.tier_key, "tier_name": rules.tier_ref(badge.tier_key)["name"],
            "issued_at": badge.issued_at, "revoked": revoked,
            "revoked_at": badge.revoked_at,
            "valid": badges.verify_badge(badge) and not revoked,
            "payload": badges.badge_payload(badge).decode(), "signature": badge.signature,
            "key_id": badge.key_id, "public_key": badges.public_key_of(badge)}


@blp.get("/badges/<key:badge_id>")
@blp.response(200, BadgeAssertionSchema)
@blp.doc(security=[])
def get_badge(badge_id: str):
    return _badge_view(badge_id)


@blp.get("/badges/<key:badge_id>/badge.svg")
@blp.doc(security=[], responses={"200": {"description": "SVG image",
                                         "content": {"image/svg+xml": {}}}})
def badge_image(badge_id: str):
    view = _badge_view(badge_id)
    name = rules.tier_ref(view["tier"])["name"]
    colour = "#2e7d32" if view["valid"] else "#9e9e9e"
    label = escape(f"{name}" + ("" if view["valid"] else " (revoked)"))
    width = 40 + 8 * len(str(label))
    svg = (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="28" role="img" '
           f'aria-label="{label}"><rect width="{width}" height="28" rx="6" fill="{colour}"/>'
           f'<text x="{width // 2}" y="19" fill="#fff" font-family="sans-serif" '
           f'font-size="14" text-anchor="middle">{label}</text></svg>')
    return Response(svg, mimetype="image/svg+xml",
                    headers={"Cache-Control": "public, max-age=300"})


# --- early-access drops ------------------------------------------------------------------------

@blp.post("/drops")
@blp.arguments(DropInSchema)
@blp.response(201, DropSchema)
@staff_required("admin")
def create_drop(data: dict):
    drop = drops.create_drop(data, tier_ranks=rules.tier_ranks())
    audit.record("drop.create", f"drop:{drop.id}", {"after": data})
    return drop


@blp.get("/drops")
@blp.response(200, DropSchema(many=True),
              description="Members see the open drops they qualify for; staff see all.")
@blp.paginate()
@staff_or_member("viewer")
def list_drops(pagination_parameters):
    principal = current_principal()
    if principal.is_staff:
        page = SelectPage(sa.select(Drop).order_by(Drop.id.desc()), pagination_parameters)
        return page.items
    open_drops = drops.open_drops_for(get_member(principal.member_id), rules.tier_ranks())
    return Page(open_drops, pagination_parameters).items


@blp.post("/drops/<id:drop_id>/claims")
@blp.doc(parameters=[{"in": "header", "name": "Idempotency-Key", "schema": {"type": "string"},
                      "description": "A retried claim with the same key is one claim."}])
@member_required
@claim_limit
@idempotent
@blp.response(201, ClaimSchema)
def claim_drop(drop_id: int):
    member_id = current_principal().member_id
    assert member_id is not None  # member_required let only a member in
    return drops.claim(drop_id, get_member(member_id), rules.tier_ranks())


@blp.post("/drops/<id:drop_id>/draw")
@blp.response(200, LotterySchema)
@staff_required("admin")
def draw_drop(drop_id: int):
    drops.draw_lottery(drops.get_drop(drop_id))
    audit.record("drop.draw", f"drop:{drop_id}")
    return _lottery_view(drop_id)


def _lottery_view(drop_id: int) -> dict:
    drop = drops.get_drop(drop_id)
    entries = drops.lottery_entries(drop.id)
    return {"drop_id": drop.id, "seed": drop.lottery_seed, "quantity": drop.quantity,
            "entry_ids": sorted(e for e, _ in entries),
            "winner_ids": sorted(e for e, status in entries if status == "won"),
            "drawn_at": drop.drawn_at}


@blp.get("/drops/<id:drop_id>/lottery")
@blp.response(200, LotterySchema,
              description="The seed and entries, so anyone can re-run the draw.")
@any_token_required
def lottery(drop_id: int):
    return _lottery_view(drop_id)


@blp.get("/drops/<id:drop_id>/seeding")
@blp.response(200, SeedingSchema(many=True),
              description="Who got the product, whether they posted, who is overdue.")
@staff_required("viewer")
def seeding(drop_id: int):
    return drops.seeding_report(drops.get_drop(drop_id))


# --- the senior group --------------------------------------------------------------------------

@blp.get("/me/groups")
@blp.response(200, MyGroupsSchema)
@member_required
def my_groups():
    membership = groups.my_group(current_principal().member_id)
    if membership is None:
        return {"groups": []}
    join_url = current_app.config["KOC_SETTINGS"].senior_group_url
    return {"groups": [{"group": membership.group_key, "invited_at": membership.invited_at,
                        "join_url": join_url,
                        "code": None if join_url or membership.wecom_qr_url else membership.code,
                        "qr_code_url": membership.wecom_qr_url, "state": membership.state}]}


@blp.get("/groups/senior/roster")
@blp.response(200, RosterSchema)
@staff_required("viewer")
def senior_roster():
    return groups.roster()


@blp.post("/groups/senior/roster/<id:member_id>/removed")
@blp.response(200, MembershipSchema)
@staff_required("admin")
def confirm_removed(member_id: int):
    staff_id = current_principal().staff_id
    assert staff_id is not None  # staff_required let only staff in
    row = groups.confirm_removed(member_id, staff_id=staff_id)
    return row


# --- WeCom: join methods, reconciling the senior group, kit announcements ----------------------

def _wecom() -> Any:
    if not current_app.config["KOC_SETTINGS"].wecom_enabled:
        raise DomainError(409, "WeCom is not configured.")
    return wecom_client()


@blp.post("/groups/senior/wecom/sync")
@blp.response(200, WeComSyncSchema, description="Creates a join method (QR code) for each "
              "invited member without one and reconciles the roster with each senior chat.")
@staff_required("admin")
def sync_senior_wecom():
    client = _wecom()
    chat_ids = list(current_app.config["KOC_SETTINGS"].wecom_senior_chat_ids)
    created = wecom_groups.create_join_ways(client, chat_ids)
    chats = {chat_id: wecom_groups.reconcile_chat(client, chat_id) for chat_id in chat_ids}
    return {"join_ways_created": created, "chats": chats}


@blp.post("/kits/<id:kit_id>/announcements")
@blp.arguments(AnnouncementInSchema)
@blp.response(201, AnnouncementSchema, description="A draft: nothing is sent until "
              "POST /announcements/{id}/send confirms it.")
@staff_required("admin")
def draft_announcement(data: dict, kit_id: int):
    kit = get_kit(kit_id)
    chat_ids = data["chat_ids"] or list(current_app.config["KOC_SETTINGS"].wecom_koc_chat_ids)
    return wecom_groups.draft_announcement(kit.id, text=data["text"], chat_ids=chat_ids,
                                           staff_id=current_staff_id())


@blp.get("/announcements/<id:announcement_id>")
@blp.response(200, AnnouncementSchema)
@staff_required("viewer")
def read_announcement(announcement_id: int):
    return wecom_groups.get_announcement(announcement_id)


@blp.post("/announcements/<id:announcement_id>/send")
@blp.response(200, AnnouncementSchema, description="The confirmation step: group-message "
              "tasks (add_msg_template) for the groups with a slot left today; WeCom then asks "
              "each group owner to confirm sending.")
@staff_required("admin")
def send_announcement(announcement_id: int):
    announcement = wecom_groups.get_announcement(announcement_id)
    return wecom_groups.send_announcement(
        _wecom(), announcement, staff_id=current_staff_id(),
        daily_limit=current_app.config["KOC_SETTINGS"].wecom_group_daily_limit)


# --- the tiers' part of the members' routes ----------------------------------------------------

@member_view_requested.connect
def _my_tier_points_badges_and_progress(_sender: object, *, member: Member,
                                        **_: object) -> dict[str, Any]:
    return {
        "tier": rules.tier_ref(member.tier_key),
        "points": ledger.points_totals(member.id),
        "badges": [{"badge_id": b.badge_id, "tier": b.tier_key,
                    "name": rules.tier_ref(b.tier_key)["name"], "issued_at": b.issued_at,
                    "url": url_for("tiers.get_badge", badge_id=b.badge_id, _external=True)}
                   for b in badges.live_badges(member.id)],
        "progress": progress.progress(member),
    }


@member_detail_requested.connect
def _tier_history_of(_sender: object, *, member: Member, **_: object) -> dict[str, Any]:
    return {"tier_history": history.tier_history(member.id)}


@member_tier_set.connect
def _set_tier_by_staff(_sender: object, *, member: Member, tier_key: str | None, locked: bool,
                       staff_id: int, reason: str, **_: object) -> None:
    engine.set_tier_manually(member, tier_key=tier_key, locked=locked, staff_id=staff_id,
                             reason=reason)
