"""Reviewers confirming or correcting a social account's follower count, and its log."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa

from koc.core.errors import DomainError
from koc.extensions import db
from koc.members.models import SocialAccount
from koc.submissions.models import FollowerCheck, Submission, SubmissionStatus
from koc.submissions.services.ledger import sync_points
from koc.submissions.services.rules import score_of


def get_account(account_id: int) -> SocialAccount:
    account = db.session.get(SocialAccount, account_id)
    if account is None:
        raise DomainError(404, "No such social account.")
    return account


def confirm_followers(account: SocialAccount, count: int, *, source: str, staff_id: int | None,
                      now: datetime, submission_id: int | None = None,
                      note: str | None = None) -> FollowerCheck:
    """Record a checked follower count (confirming the declared one, or correcting it).

    Approved posts on that platform are re-scored at once (their points follow through a ledger
    adjustment); the tier follows at the next recalculation, through the normal demotion grace.
    """
    if submission_id is not None:
        submission = db.session.get(Submission, submission_id)
        if submission is None or submission.member_id != account.member_id:
            raise DomainError(422, "That submission is not this account's member's.", errors={
                "json": {"submission_id": ["not a submission of this account's member"]}})
    check = FollowerCheck(social_account_id=account.id, member_id=account.member_id,
                          source=source, declared=account.followers,
                          previous=account.confirmed_followers, confirmed=count,
                          staff_id=staff_id, submission_id=submission_id, note=note,
                          created_at=now)
    account.confirmed_followers = count
    account.followers_source = source
    account.followers_confirmed_at = now
    account.followers_confirmed_by_staff_id = staff_id
    db.session.add(check)
    db.session.flush()
    approved = db.session.scalars(
        sa.select(Submission)
        .where(Submission.member_id == account.member_id,
               Submission.platform == account.platform,
               Submission.status == SubmissionStatus.approved.value)
        .order_by(Submission.id).with_for_update()
    ).all()
    for post in approved:
        total, breakdown, _version = score_of(post, post.scoring_version)
        post.score, post.score_breakdown = total, breakdown
        sync_points(post, event=f"followers:{check.id}",
                    description=f"followers of {account.platform} account checked: "
                                f"{count} (declared {account.followers})")
    return check


def checks_of(account_id: int) -> list[FollowerCheck]:
    return list(db.session.scalars(
        sa.select(FollowerCheck).where(FollowerCheck.social_account_id == account_id)
        .order_by(FollowerCheck.id)))


def accounts_on(pairs: set[tuple[int, str]]) -> dict[tuple[int, str], list[SocialAccount]]:
    """Social accounts by (member id, platform), for the review queue: one query."""
    if not pairs:
        return {}
    found: dict[tuple[int, str], list[SocialAccount]] = {}
    for account in db.session.scalars(
        sa.select(SocialAccount)
        .where(SocialAccount.member_id.in_({member for member, _ in pairs}))
        .order_by(SocialAccount.id)
    ):
        key = (account.member_id, account.platform)
        if key in pairs:
            found.setdefault(key, []).append(account)
    return found
