"""The domains' figures for `/metrics`, read from their tables when Prometheus scrapes.

Tier runs, imports and drop claims already leave rows behind (tier_runs, jobs, drop_claims);
reading those at scrape time gives figures that survive the worker that did the work, and needs
no call inside the domains' code. An edge module: it may read any domain's models, and
`koc.core.metrics` (which knows no domain) only holds the registration.
"""

from __future__ import annotations

from collections.abc import Iterator

import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric

from koc.core import metrics
from koc.core.jobs.models import Job, JobStatus
from koc.extensions import db
from koc.tiers.models import DropClaim, TierRun

IMPORT_KINDS = ("users.import", "submissions.metrics_import")


def _latest_finished(model, kind_column, kinds=None):
    """The newest finished row per kind."""
    newest = (sa.select(kind_column.label("kind"), sa.func.max(model.id).label("id"))
              .where(model.finished_at.is_not(None)))
    if kinds is not None:
        newest = newest.where(kind_column.in_(kinds))
    newest_sq = newest.group_by(kind_column).subquery()
    return db.session.scalars(sa.select(model).join(newest_sq, model.id == newest_sq.c.id)).all()


def tier_runs() -> Iterator[Metric]:
    runs = GaugeMetricFamily("koc_tier_runs", "Tier recalculation runs, by kind and status.",
                             labels=["kind", "status"])
    for kind, status, count in db.session.execute(
            sa.select(TierRun.kind, TierRun.status, sa.func.count())
            .group_by(TierRun.kind, TierRun.status)):
        runs.add_metric([kind, status], float(count))
    yield runs
    duration = GaugeMetricFamily("koc_tier_last_run_duration_seconds",
                                 "How long the newest finished tier run took.", labels=["kind"])
    changed = GaugeMetricFamily("koc_tier_last_run_members_changed",
                                "Members promoted or demoted by the newest finished tier run.",
                                labels=["kind"])
    evaluated = GaugeMetricFamily("koc_tier_last_run_members_evaluated",
                                  "Members evaluated by the newest finished tier run.",
                                  labels=["kind"])
    for run in _latest_finished(TierRun, TierRun.kind):
        duration.add_metric([run.kind], (run.finished_at - run.started_at).total_seconds())
        changed.add_metric([run.kind], float(run.promotions + run.demotions))
        evaluated.add_metric([run.kind], float(run.members_evaluated))
    yield from (duration, changed, evaluated)


def imports() -> Iterator[Metric]:
    rate = GaugeMetricFamily("koc_import_rows_per_second",
                             "Rows per second of the newest finished import job.",
                             labels=["kind"])
    for job in _latest_finished(Job, Job.kind, IMPORT_KINDS):
        if job.started_at is None or job.finished_at is None:
            continue
        seconds = (job.finished_at - job.started_at).total_seconds()
        if seconds > 0:
            rate.add_metric([job.kind], (job.processed + job.failed) / seconds)
    yield rate
    rows = GaugeMetricFamily("koc_import_rows", "Rows taken or refused by import jobs.",
                             labels=["kind", "outcome"])
    for kind, processed, failed in db.session.execute(
            sa.select(Job.kind, sa.func.sum(Job.processed), sa.func.sum(Job.failed))
            .where(Job.kind.in_(IMPORT_KINDS), Job.status != JobStatus.queued.value)
            .group_by(Job.kind)):
        rows.add_metric([kind, "taken"], float(processed or 0))
        rows.add_metric([kind, "refused"], float(failed or 0))
    yield rows


def drops() -> Iterator[Metric]:
    claims = GaugeMetricFamily("koc_drop_claims", "Drop claims, by status.", labels=["status"])
    for status, count in db.session.execute(
            sa.select(DropClaim.status, sa.func.count()).group_by(DropClaim.status)):
        claims.add_metric([status], float(count))
    yield claims


def install() -> None:
    for collect in (tier_runs, imports, drops):
        metrics.add_scrape_collector(collect)
