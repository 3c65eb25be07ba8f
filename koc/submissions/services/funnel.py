"""A kit's funnel: who could see it, downloaded it, posted about it and got the post approved.

It reads kits' downloads and the submissions made for them, so it lives with submissions, the
domain above kits.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import sqlalchemy as sa

from koc.assets.models import Download, Kit
from koc.assets.services import kits
from koc.core.db import utcnow
from koc.extensions import db
from koc.members.models import Invitation, Member
from koc.submissions.models import METRICS, MetricSnapshot, Submission, SubmissionStatus


@dataclass
class Funnel:
    eligible: int
    downloaded: int
    submitted: int
    approved: int
    engagement: dict[str, int] = field(default_factory=dict)


def funnel(kit: Kit, tier_ranks: Mapping[str, int]) -> Funnel:
    eligible = db.session.scalar(sa.select(sa.func.count()).select_from(
        kits.eligible_members(kit, tier_ranks, utcnow()).subquery()))
    downloaded = db.session.scalar(sa.select(sa.func.count(sa.distinct(Download.member_id)))
                                   .where(Download.kit_id == kit.id))
    submitted, approved = db.session.execute(
        sa.select(sa.func.count(sa.distinct(Submission.member_id)),
                  sa.func.count(sa.distinct(sa.case(
                      (Submission.status == SubmissionStatus.approved.value,
                       Submission.member_id)))))
        .where(Submission.kit_id == kit.id)).one()
    latest = (sa.select(sa.func.max(MetricSnapshot.id).label("id"))
              .join(Submission, Submission.id == MetricSnapshot.submission_id)
              .where(Submission.kit_id == kit.id,
                     Submission.status == SubmissionStatus.approved.value)
              .group_by(MetricSnapshot.submission_id).subquery())
    sums = db.session.execute(
        sa.select(*(sa.func.coalesce(sa.func.sum(getattr(MetricSnapshot, name)), 0)
                    for name in METRICS))
        .where(MetricSnapshot.id.in_(sa.select(latest.c.id)))).one()
    return Funnel(eligible=eligible or 0, downloaded=downloaded or 0, submitted=submitted,
                  approved=approved,
                  engagement={name: int(value) for name, value in zip(METRICS, sums,
                                                                       strict=True)})


def campaign_posts(campaign_ids: list[int]) -> dict[int, dict[str, int]]:
    """Per invitation campaign: the members it brought in who have posted at least once
    (`first_submission`) and who have had a post approved (`first_approval`). One grouped
    query over the campaigns' accepted invitations."""
    if not campaign_ids:
        return {}
    approved = SubmissionStatus.approved.value
    posted = (sa.select(Submission.member_id,
                        sa.func.max(sa.case((Submission.status == approved, 1), else_=0))
                        .label("approved"))
              .where(Submission.member_id.in_(
                  sa.select(Invitation.member_id).where(
                      Invitation.campaign_id.in_(campaign_ids),
                      Invitation.member_id.is_not(None))))
              .group_by(Submission.member_id).subquery())
    rows = db.session.execute(
        sa.select(Invitation.campaign_id, sa.func.count(posted.c.member_id),
                  sa.func.coalesce(sa.func.sum(posted.c.approved), 0))
        .join(posted, posted.c.member_id == Invitation.member_id)
        .where(Invitation.campaign_id.in_(campaign_ids))
        .group_by(Invitation.campaign_id)).all()
    found = {row[0]: {"first_submission": int(row[1]), "first_approval": int(row[2])}
             for row in rows}
    return {cid: found.get(cid, {"first_submission": 0, "first_approval": 0})
            for cid in campaign_ids}


FUNNEL_STEPS = ("eligible", "downloaded", "posted", "approved")


def funnel_members(kit: Kit, step: str, tier_ranks: Mapping[str, int]) -> sa.Select:
    """The members behind one step of a kit's funnel, by member id: a select of Member rows.

    eligible: the active members the kit targets now; downloaded: those issued a download
    link; posted: those who submitted a post for it; approved: those with an approved one.
    """
    condition: sa.ColumnElement[bool]
    if step == "eligible":
        condition = Member.id.in_(kits.eligible_members(kit, tier_ranks, utcnow()))
    elif step == "downloaded":
        condition = sa.exists().where(Download.kit_id == kit.id, Download.member_id == Member.id)
    elif step == "posted":
        condition = sa.exists().where(Submission.kit_id == kit.id,
                                      Submission.member_id == Member.id)
    elif step == "approved":
        condition = sa.exists().where(Submission.kit_id == kit.id,
                                      Submission.member_id == Member.id,
                                      Submission.status == SubmissionStatus.approved.value)
    else:
        raise ValueError(f"unknown funnel step {step!r}")
    return sa.select(Member).where(condition).order_by(Member.id)
