"""Bulk metrics import: a CSV of engagement numbers from a trusted source, line by line."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError

from koc.core.errors import DomainError
from koc.extensions import db
from koc.submissions.models import (
    METRICS,
    MetricSnapshot,
    Submission,
)
from koc.submissions.schemas import MetricsImportRowSchema
from koc.submissions.services.post_urls import NotAUrl, canonical_post_url
from koc.submissions.services.posts import add_metrics, get_submission

MAX_IMPORT_ERRORS = 100
IMPORT_COMMIT_EVERY = 200


@dataclass
class ImportReport:
    processed: int = 0
    failed: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)

    def fail(self, line: int, message: str) -> None:
        self.failed += 1
        if len(self.errors) < MAX_IMPORT_ERRORS:
            self.errors.append({"line": line, "message": message})


def _csv_value(value: str | None) -> Any:
    if value is None:
        return None
    value = value.strip()
    if value == "":
        return None
    return int(value) if value.isascii() and value.isdigit() else value


def import_metrics(text: str, *, job_id: int,
                   commit: Callable[[], None] | None = None,
                   tolerance: float = 0.1) -> ImportReport:
    """Engagement snapshots from CSV: submission_id or post_url, then the metric columns.

    Each line's snapshot carries "job<id>:line<n>", so running the job again after it died
    half-way adds only the lines it had not reached.
    """
    schema = MetricsImportRowSchema()
    report = ImportReport()
    reader = csv.DictReader(io.StringIO(text))
    known = {"submission_id", "post_url", *METRICS}
    unknown = [name for name in reader.fieldnames or [] if name not in known]
    if not reader.fieldnames or unknown:
        report.fail(1, f"header must name submission_id or post_url and metric columns; "
                       f"unknown: {', '.join(unknown) or 'none given'}")
        return report
    for line, row in enumerate(reader, start=2):
        cleaned = {k: v for k, v in ((k, _csv_value(v)) for k, v in row.items() if k)
                   if v is not None}
        try:
            values = schema.load(cleaned)
        except ValidationError as exc:
            report.fail(line, "; ".join(f"{k}: {' '.join(map(str, v))}"
                                        for k, v in exc.normalized_messages().items()))
            continue
        submission_id = values["submission_id"]
        if submission_id is None:
            try:
                canonical = canonical_post_url(values["post_url"])
            except NotAUrl as exc:
                report.fail(line, f"post_url: {exc}")
                continue
            submission_id = db.session.scalar(
                sa.select(Submission.id).where(Submission.canonical_url == canonical))
        reference = f"job{job_id}:line{line}"
        try:
            submission = get_submission(submission_id or 0, lock=True)
        except DomainError:
            report.fail(line, "no such submission")
            continue
        done = db.session.scalar(sa.select(MetricSnapshot.id)
                                 .where(MetricSnapshot.import_ref == reference))
        if done is None:
            add_metrics(submission, {name: values[name] for name in METRICS}, source="import",
                        import_ref=reference, tolerance=tolerance)
        report.processed += 1
        if commit is not None and report.processed % IMPORT_COMMIT_EVERY == 0:
            commit()
    return report
