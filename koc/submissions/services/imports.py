"""Bulk imports from trusted sources, line by line: engagement numbers of posts, and follower
counts of social accounts (a platform export, an agency's audited figures)."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from marshmallow import ValidationError

from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import SocialAccount
from koc.submissions.models import (
    METRICS,
    MetricSnapshot,
    Submission,
)
from koc.submissions.schemas import FollowersImportRowSchema, MetricsImportRowSchema
from koc.submissions.services.followers import confirm_followers
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


def _csv_rows(text: str, known: set[str], report: ImportReport, *,
              required: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, non-empty values) of each data line; a header naming unknown columns fails
    the whole file at line 1."""
    reader = csv.DictReader(io.StringIO(text))
    unknown = [name for name in reader.fieldnames or [] if name not in known]
    if not reader.fieldnames or unknown:
        named = ", ".join(unknown) or "none given"
        report.fail(1, f"header must name {required}; unknown: {named}")
        return
    for line, row in enumerate(reader, start=2):
        yield line, {k: v for k, v in ((k, _csv_value(v)) for k, v in row.items() if k)
                     if v is not None}


def _invalid(exc: ValidationError) -> str:
    return "; ".join(f"{k}: {' '.join(map(str, v))}"
                     for k, v in exc.normalized_messages().items())


def import_followers(text: str, *, job_id: int, now: datetime,
                     commit: Callable[[], None] | None = None) -> ImportReport:
    """Follower counts from CSV: social_account_id, or platform and handle; then followers.

    Each count confirms the account's audience with source `import` (logged like a reviewer's
    check, and re-scoring approved posts the same way). A line whose count is already the
    imported one changes nothing, so a job run again after it died half-way, or the same file
    imported twice, books nothing twice.
    """
    schema = FollowersImportRowSchema()
    report = ImportReport()
    known = {"social_account_id", "platform", "handle", "followers", "note"}
    for line, cleaned in _csv_rows(text, known, report,
                                   required="social_account_id or platform and handle, "
                                            "and followers"):
        # A handle or note of digits only is text here, whatever the CSV reader made of it.
        cleaned.update({k: str(cleaned[k]) for k in ("platform", "handle", "note")
                        if isinstance(cleaned.get(k), int)})
        try:
            values = schema.load(cleaned)
        except ValidationError as exc:
            report.fail(line, _invalid(exc))
            continue
        if values["social_account_id"] is not None:
            where = SocialAccount.id == values["social_account_id"]
        else:
            where = sa.and_(SocialAccount.platform == values["platform"],
                            SocialAccount.handle == values["handle"])
        account = db.session.scalar(sa.select(SocialAccount).where(where).with_for_update())
        if account is None:
            report.fail(line, "no such social account")
            continue
        if not (account.followers_source == "import"
                and account.confirmed_followers == values["followers"]):
            confirm_followers(account, values["followers"], source="import", staff_id=None,
                              now=now, note=values["note"] or f"import job {job_id}, line {line}")
        report.processed += 1
        if commit is not None and report.processed % IMPORT_COMMIT_EVERY == 0:
            commit()
    return report


def import_metrics(text: str, *, job_id: int,
                   commit: Callable[[], None] | None = None,
                   tolerance: float = 0.1) -> ImportReport:
    """Engagement snapshots from CSV: submission_id or post_url, then the metric columns.

    Each line's snapshot carries "job<id>:line<n>", so running the job again after it died
    half-way adds only the lines it had not reached.
    """
    schema = MetricsImportRowSchema()
    report = ImportReport()
    for line, cleaned in _csv_rows(text, {"submission_id", "post_url", *METRICS}, report,
                                   required="submission_id or post_url and metric columns"):
        try:
            values = schema.load(cleaned)
        except ValidationError as exc:
            report.fail(line, _invalid(exc))
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
