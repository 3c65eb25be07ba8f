"""Tiers HTTP API: thin handlers over tiers.services."""

from __future__ import annotations

from koc.core.auth import any_token_required, current_principal, staff_required
from koc.core.jobs import start_job
from koc.core.jobs_api import JobCreatedSchema
from koc.core.pagination import Blueprint
from koc.extensions import db
from koc.tiers import services
from koc.tiers.schemas import (
    PreviewSchema,
    TierCountSchema,
    TiersInSchema,
    TiersOutSchema,
)
from koc.tiers.tasks import recalculate_tiers_job

blp = Blueprint("tiers", __name__, description="Tier rules and recalculation")


@blp.get("/tiers")
@blp.response(200, TiersOutSchema)
@any_token_required
def get_tiers():
    rules = services.current_rules()
    return {"version": rules.version, "tiers": rules.tiers}


@blp.put("/tiers/rules")
@blp.arguments(TiersInSchema)
@blp.response(200, TiersOutSchema)
@staff_required("admin")
def put_rules(data: dict):
    rules = services.save_rules(data["tiers"], staff_id=current_principal().staff_id)
    db.session.commit()
    return {"version": rules.version, "tiers": rules.tiers}


@blp.post("/tiers/rules/preview")
@blp.arguments(TiersInSchema)
@blp.response(200, PreviewSchema)
@staff_required("admin")
def preview_rules(data: dict):
    return services.preview(data["tiers"])


@blp.post("/tiers/recalculate")
@blp.response(202, JobCreatedSchema)
@staff_required("admin")
def recalculate():
    job = start_job(recalculate_tiers_job, kind="tiers.recalculate",
                    staff_id=current_principal().staff_id)
    db.session.commit()
    return {"job_id": job.id}


@blp.get("/stats/tiers")
@blp.response(200, TierCountSchema)
@staff_required("viewer")
def tier_stats():
    return {"tiers": services.members_per_tier()}
