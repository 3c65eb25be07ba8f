"""Members HTTP API: thin handlers over members.services."""

from __future__ import annotations

import csv
import functools
import io
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from flask import Response, current_app, request, stream_with_context, url_for
from flask_smorest import abort
from sqlalchemy.orm import selectinload

from koc.core import audit
from koc.core.auth import (
    current_member_id,
    current_principal,
    current_staff_id,
    member_required,
    staff_required,
)
from koc.core.db import StatementTooSlow, time_limited, utcnow
from koc.core.jobs.api import JobCreatedSchema
from koc.core.pagination import Blueprint, SelectPage
from koc.core.ratelimit import invitation_limit
from koc.core.signals import (
    member_detail_requested,
    member_tier_set,
    member_view_requested,
    replies,
)
from koc.core.storage import get_storage
from koc.extensions import db
from koc.members.models import InvitationCampaign, Member
from koc.members.schemas import (
    AcceptInSchema,
    AcceptOutSchema,
    CampaignCreatedSchema,
    CampaignInSchema,
    CampaignSchema,
    CandidatePreviewInSchema,
    CandidatePreviewSchema,
    CandidateQuerySchema,
    CandidateRulesInSchema,
    CandidateRulesOutSchema,
    CandidateSchema,
    ImportCreatedSchema,
    ImportCreateSchema,
    ImportFileSchema,
    ImportStartSchema,
    InvitationInSchema,
    InvitationOutSchema,
    MemberDetailSchema,
    MemberPatchSchema,
    MemberQuerySchema,
    MemberStaffSchema,
    MePatchSchema,
    MeSchema,
    PersonExportSchema,
    RevokedSchema,
    UserOutSchema,
    UserPutSchema,
)
from koc.members.services import (
    campaigns,
    candidate_rules,
    candidates,
    codes,
    import_files,
    invitations,
    privacy,
    roster,
    users,
)
from koc.submissions.services.funnel import campaign_posts

blp = Blueprint("members", __name__, description="The user base, invitations and members")


@blp.put("/users/<key:external_id>")
@blp.arguments(UserPutSchema)
@blp.response(200, UserOutSchema, description="Updated")
@blp.alt_response(201, schema=UserOutSchema, description="Created")
@staff_required("admin")
def put_user(data: dict, external_id: str):
    body_id = data.pop("external_id", None)
    if body_id is not None and body_id != external_id:
        abort(422, message="external_id in the body differs from the path.",
              errors={"json": {"external_id": ["must match the path"]}})
    user, created = users.upsert_user(external_id, data)
    audit.record("user.upsert", f"user:{external_id}", {"created": created, "fields": sorted(data)})
    return user, 201 if created else 200


@blp.get("/users/<key:external_id>")
@blp.response(200, UserOutSchema)
@staff_required("viewer")
def read_user(external_id: str):
    return users.get_user(external_id)


@blp.delete("/users/<key:external_id>")
@blp.response(204, description="Forgotten (also when the person was forgotten before)")
@staff_required("admin")
def forget_user(external_id: str):
    """Forget a person (PIPL): personal fields, social handles and URLs, tokens, badges,
    captions, post URLs and media are erased; the ledger and statistics keep an anonymous
    member row. Safe to repeat; a forgotten external id cannot be written or imported again."""
    summary = privacy.forget_user(external_id, now=utcnow())
    audit.record("user.forget", f"user:{external_id}", summary)
    return ""


@blp.post("/users/import")
@blp.arguments(ImportFileSchema, location="files")
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def import_users(files: dict):
    # The body, file included, was held to KOC_MAX_IMPORT_FILE_BYTES before it was read; a
    # larger file goes through POST /users/imports, straight to the store.
    data = files["file"].read()
    job_id = import_files.store_posted_file(
        data, filename=files["file"].filename or "", storage=get_storage(),
        staff_id=current_principal().staff_id)
    return {"job_id": job_id}


def _import_settings() -> import_files.ImportSettings:
    settings = current_app.config["KOC_SETTINGS"]
    return import_files.ImportSettings(url_ttl=settings.upload_url_ttl,
                                       multipart_threshold=settings.multipart_threshold,
                                       part_size=settings.multipart_part_size)


@blp.post("/users/imports")
@blp.arguments(ImportCreateSchema)
@blp.response(201, ImportCreatedSchema)
@staff_required("admin")
def create_import(data: dict):
    """A bulk import: upload the file where `upload` says, then start it."""
    item, upload = import_files.create_import(
        filename=data["filename"], content_type=data["content_type"], size=data["size"],
        fmt=data["format"], encoding=data["encoding"], staff_id=current_principal().staff_id,
        storage=get_storage(), settings=_import_settings())
    return {"import_id": item.id, "upload": upload}


@blp.post("/users/imports/<id:import_id>/start")
@blp.arguments(ImportStartSchema)
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def start_import(data: dict, import_id: int):
    """The job that streams the uploaded file; follow it at /jobs/{job_id}."""
    item = import_files.get_import(import_id)
    parts = [(p["part_number"], p["etag"]) for p in data["parts"]] if data["parts"] else None
    job_id = import_files.start_import(item, storage=get_storage(), parts=parts,
                                       staff_id=current_principal().staff_id)
    return {"job_id": job_id}


class CandidatePage(SelectPage):
    """The candidate list's total: the planner's estimate on PostgreSQL when it is large."""

    @property
    def item_count(self) -> int:
        return candidates.count_candidates(self.collection)[0]


def _ranked_in_time(view: Callable[..., Any]) -> Callable[..., Any]:
    """The view, its pagination and its count under candidates.TIME_LIMIT_MS: past it, 422
    naming the filters instead of a connection held for minutes."""

    @functools.wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            with time_limited(db.session(), candidates.TIME_LIMIT_MS):
                return view(*args, **kwargs)
        except StatementTooSlow:
            raise candidates.too_slow(request.args) from None

    return wrapper


@blp.get("/candidates")
@_ranked_in_time
@blp.arguments(CandidateQuerySchema, location="query")
@blp.response(200, CandidateSchema(many=True))
@blp.paginate(CandidatePage)
@staff_required("viewer")
def list_candidates(query: dict):
    # More than a page of personal data is a sensitive read.
    if (query.get("limit") or 0) > 20:
        audit.record("candidates.list", None, {"limit": query["limit"]})
    return candidates.candidates_query(**query, now=utcnow())


@blp.get("/candidates/rules")
@blp.response(200, CandidateRulesOutSchema)
@staff_required("viewer")
def get_candidate_rules():
    ruleset = candidate_rules.current_rules()
    return {"version": ruleset.version, "rules": ruleset.rules, "created_at": ruleset.created_at}


@blp.put("/candidates/rules")
@blp.arguments(CandidateRulesInSchema)
@blp.response(200, CandidateRulesOutSchema)
@staff_required("admin")
def put_candidate_rules(data: dict):
    """Save a new rules version, in force at once; every user is rescored under it by the job
    whose id comes back (GET /jobs/{id}), one set-based UPDATE per id range."""
    ruleset, job = candidate_rules.save_rules(data["rules"], staff_id=current_principal().staff_id,
                                              now=utcnow())
    audit.record("candidates.rules", f"candidate_rules:{ruleset.version}",
                 {"rules": ruleset.rules, "job_id": job.id})
    return {"version": ruleset.version, "rules": ruleset.rules,
            "created_at": ruleset.created_at, "job_id": job.id}



@blp.post("/candidates/rules/preview")
@blp.arguments(CandidatePreviewInSchema)
@blp.response(200, CandidatePreviewSchema)
@staff_required("admin")
def preview_candidate_rules(data: dict):
    """How the top of the list would change under these rules; saves nothing."""
    return candidate_rules.preview(data["rules"], now=utcnow(), top=data["top"])


def _invitation_out(invitation: Any, code: str) -> dict[str, Any]:
    return {"code": code, "external_id": invitation.user.external_id,
            "expires_at": invitation.expires_at, "url": codes.join_url(code),
            "qr_url": url_for("join.join_qr", code=code, _external=True)}


@blp.post("/invitations")
@blp.arguments(InvitationInSchema)
@blp.response(201, InvitationOutSchema)
@staff_required("admin")
def create_invitation(data: dict):
    days = data["expires_in_days"] or current_app.config["KOC_SETTINGS"].invitation_days
    invitation, code = invitations.create_invitation(
        data["external_id"], expires_in_days=days, staff_id=current_principal().staff_id
    )
    return _invitation_out(invitation, code)


@blp.post("/invitations/<key:code>/revoke")
@blp.response(200, RevokedSchema)
@staff_required("admin")
def revoke_invitation(code: str):
    invitation = invitations.revoke_invitation(code, now=utcnow())
    audit.record("invitation.revoke", f"invitation:{invitation.id}", None)
    return {"revoked": 1}


def _campaign_out(items: list[InvitationCampaign]) -> list[dict[str, Any]]:
    ids = [c.id for c in items]
    counts = campaigns.funnels(ids)
    posts = campaign_posts(ids)
    out = []
    for campaign in items:
        steps = {**counts[campaign.id], **posts[campaign.id]}
        invited = steps["invited"]
        rates = {name: round(steps[name] / invited, 4) if invited else 0.0
                 for name in ("opened", "accepted", "first_submission", "first_approval")}
        out.append({"id": campaign.id, "name": campaign.name, "filter": campaign.filter,
                    "limit": campaign.limit, "message": campaign.message,
                    "rules_version": campaign.rules_version, "created_at": campaign.created_at,
                    "expires_at": campaign.expires_at, "revoked_at": campaign.revoked_at,
                    "reminded_at": campaign.reminded_at, **steps, "rates": rates})
    return out


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def _cell(value: str | None) -> str:
    text = value or ""
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


class CampaignPage(SelectPage):
    @property
    def items(self) -> list[Any]:
        return _campaign_out(super().items)


@blp.post("/invitation-campaigns")
@blp.arguments(CampaignInSchema)
@blp.response(201, CampaignCreatedSchema)
@staff_required("admin")
def create_campaign(data: dict):
    """Invite the top `limit` candidates of `filter` at once (users holding an open invitation
    are skipped). The codes and join links: GET .../{id}/links (CSV)."""
    days = data["expires_in_days"] or current_app.config["KOC_SETTINGS"].invitation_days
    campaign = campaigns.create_campaign(
        name=data["name"], filter=data["filter"], limit=data["limit"], expires_in_days=days,
        message=data["message"], staff_id=current_principal().staff_id, now=utcnow())
    audit.record("invitation_campaign.create", f"invitation_campaign:{campaign.id}",
                 {"filter": data["filter"], "limit": data["limit"],
                  "invited": campaign.invited})
    return {"id": campaign.id, "invited": campaign.invited,
            "links_url": url_for("members.campaign_links", campaign_id=campaign.id)}


@blp.get("/invitation-campaigns")
@blp.response(200, CampaignSchema(many=True))
@blp.paginate(CampaignPage)
@staff_required("viewer")
def list_campaigns():
    return campaigns.campaigns_query()


@blp.get("/invitation-campaigns/<id:campaign_id>")
@blp.response(200, CampaignSchema)
@staff_required("viewer")
def read_campaign(campaign_id: int):
    return _campaign_out([campaigns.get_campaign(campaign_id)])[0]


@blp.post("/invitation-campaigns/<id:campaign_id>/revoke")
@blp.response(200, RevokedSchema)
@staff_required("admin")
def revoke_campaign(campaign_id: int):
    """Withdraw every invitation of the campaign not accepted yet."""
    campaign = campaigns.get_campaign(campaign_id)
    revoked = campaigns.revoke_campaign(campaign, now=utcnow())
    audit.record("invitation_campaign.revoke", f"invitation_campaign:{campaign_id}",
                 {"revoked": revoked})
    return {"revoked": revoked}


@blp.get("/invitation-campaigns/<id:campaign_id>/links")
@blp.response(200, description="CSV: external_id, display_name, code, url, status",
              content_type="text/csv")
@staff_required("admin")
def campaign_links(campaign_id: int):
    """Every code and join link of the campaign, streamed as CSV (audited: codes are secrets)."""
    campaigns.get_campaign(campaign_id)
    audit.record("invitation_campaign.links", f"invitation_campaign:{campaign_id}", None)
    rows = campaigns.campaign_links(campaign_id)

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        buffer.write("\ufeff")
        writer.writerow(["external_id", "display_name", "code", "url", "status"])
        for count, (external_id, name, code, url, status) in enumerate(rows, start=1):
            # A spreadsheet runs a cell starting with = + - @ as a formula.
            writer.writerow([_cell(external_id), _cell(name), code, url, status])
            if count % 1000 == 0:
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
        yield buffer.getvalue()

    return Response(stream_with_context(lines()), mimetype="text/csv", headers={
        "Content-Disposition": f'attachment; filename="campaign-{campaign_id}-links.csv"'})


@blp.post("/invitations/<key:code>/accept")
@blp.arguments(AcceptInSchema)
@blp.response(201, AcceptOutSchema)
@blp.doc(security=[])
@invitation_limit
def accept_invitation(data: dict, code: str):
    member, token = invitations.accept_invitation(
        code, display_name=data["display_name"], social_accounts=data["social_accounts"]
    )
    return {"member": member, "token": token}


@blp.get("/members")
@blp.arguments(MemberQuerySchema, location="query")
@blp.response(200, MemberStaffSchema(many=True))
@blp.paginate(SelectPage)
@staff_required("viewer")
def list_members(query: dict):
    # What the schema reads of each member on the page, in one query each, not one per row.
    return roster.members_query(**query).options(selectinload(Member.user),
                                                 selectinload(Member.social_accounts))


def _member_detail(member_id: int) -> SimpleNamespace:
    member = roster.get_member(member_id)
    # The schema reads the member's columns and what the domains above add (the tier history),
    # side by side.
    return SimpleNamespace(
        id=member.id, user=member.user, display_name=member.display_name,
        status=member.status, tier_key=member.tier_key, tier_locked=member.tier_locked,
        tier_since=member.tier_since, joined_at=member.joined_at,
        social_accounts=member.social_accounts,
        **replies(member_detail_requested, member=member),
    )


@blp.get("/members/<id:member_id>")
@blp.response(200, MemberDetailSchema)
@staff_required("viewer")
def read_member(member_id: int):
    return _member_detail(member_id)


@blp.get("/members/<id:member_id>/export")
@blp.response(200, PersonExportSchema)
@staff_required("admin")
def export_member(member_id: int):
    """Everything held about the member's person, as JSON (PIPL); audited."""
    member = roster.get_member(member_id)
    audit.record("member.export", f"member:{member_id}")
    return privacy.export_person(member, now=utcnow())


@blp.patch("/members/<id:member_id>")
@blp.arguments(MemberPatchSchema)
@blp.response(200, MemberDetailSchema)
@staff_required("admin")
def patch_member(data: dict, member_id: int):
    member = roster.get_member(member_id)
    staff_id = current_staff_id()
    before = {"status": member.status, "tier": member.tier_key, "tier_locked": member.tier_locked}
    effects = roster.set_member_status(member, data["status"]) if "status" in data else {}
    # What a suspension took away (badges, pending claims, the group seat) is logged with it.
    audit.record("member.update", f"member:{member_id}",
                 {"before": before, "after": data, "effects": effects})
    if "tier" in data or "tier_locked" in data:
        # The tiers package applies it (koc.tiers.api), or refuses an unknown tier.
        member_tier_set.send(
            None,
            member=member,
            tier_key=data.get("tier", member.tier_key),
            locked=data.get("tier_locked", member.tier_locked),
            staff_id=staff_id,
            reason=data.get("reason") or "changed by staff",
        )
    return _member_detail(member_id)


@blp.get("/me")
@blp.response(200, MeSchema)
@member_required
def me():
    return _me_view(roster.get_member(current_principal().member_id))


def _me_view(member: Member) -> dict:
    return {
        "id": member.id,
        "display_name": member.display_name,
        "status": member.status,
        # The tier, points, badges and progress (koc.tiers.api).
        **replies(member_view_requested, member=member),
        "social_accounts": member.social_accounts,
        "show_name_on_badge": member.show_name_on_badge,
    }


@blp.patch("/me")
@blp.arguments(MePatchSchema)
@blp.response(200, MeSchema)
@member_required
def patch_me(data: dict):
    """The member's own choices: whether the public badge page shows their name."""
    member = roster.get_member(current_member_id())
    if member.forgotten_at is None:
        member.show_name_on_badge = data["show_name_on_badge"]
    return _me_view(member)


@blp.get("/me/export")
@blp.response(200, PersonExportSchema)
@member_required
def export_me():
    """Everything held about the signed-in member, as JSON (PIPL)."""
    return privacy.export_person(roster.get_member(current_member_id()),
                                 now=utcnow())
