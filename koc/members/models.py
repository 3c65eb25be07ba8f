from __future__ import annotations

import enum
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column, relationship

from koc.core.db import BigIntPK, JSONType, UTCDateTime, mapped_columns, utcnow
from koc.extensions import Model

PLATFORMS = ("xiaohongshu", "douyin", "wechat_channels", "weibo", "other")
# Where a social account's confirmed follower count came from; "declared" means none is confirmed
# and only the member's own figure (`followers`) is known.
FOLLOWER_SOURCES = ("declared", "reviewer", "import")


class User(Model):
    """One customer of the brand's wider base (tens of millions of rows), imported from the CRM."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    external_id: Mapped[str] = mapped_column(sa.String(64), unique=True)
    display_name: Mapped[str | None] = mapped_column(sa.String(100))
    city: Mapped[str | None] = mapped_column(sa.String(64))
    store_code: Mapped[str | None] = mapped_column(sa.String(32))
    tags: Mapped[list[str]] = mapped_column(JSONType, default=list)
    orders_count: Mapped[int] = mapped_column(default=0)
    spend_cents: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    last_order_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    shares_count: Mapped[int] = mapped_column(default=0)
    community_posts_count: Mapped[int] = mapped_column(default=0)
    # Set when the person was forgotten (PIPL): every personal field is blank, the row stays as
    # the tombstone that keeps the external id from being imported back to life.
    forgotten_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Kept up to date on every write (under the candidate rules in force) so ranking candidates
    # is an index scan, not a full scan. -1 marks a user the rules exclude (a member, opted out,
    # staff, outside the required segments): the partial index below holds only the others.
    candidate_score: Mapped[float] = mapped_column(sa.Float, default=0.0)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    member: Mapped[Member | None] = relationship(back_populates="user", uselist=False)

    __table_args__ = (
        sa.CheckConstraint(
            "orders_count >= 0 AND spend_cents >= 0 AND shares_count >= 0 "
            "AND community_posts_count >= 0",
            name="counts_not_negative",
        ),
        # The candidate list's top-N: best first among the users the rules have not excluded.
        sa.Index("ix_users_candidates", "candidate_score",
                 postgresql_where=sa.text("candidate_score >= 0"),
                 sqlite_where=sa.text("candidate_score >= 0")),
        # A segment's top-N and its count, from that segment's part of the ranking alone.
        *(sa.Index(f"ix_users_candidates_{name}", column, "candidate_score", "id",
                   postgresql_where=sa.text("candidate_score >= 0"),
                   sqlite_where=sa.text("candidate_score >= 0"))
          for name, column in (("city", "city"), ("store", "store_code"))),
        # A rare tag's candidates fetched directly (jsonb @> on PostgreSQL), then sorted: the
        # ranking walk would read most of the base before it found a page of them.
        sa.Index("ix_users_candidates_tags", "tags", postgresql_using="gin",
                 postgresql_ops={"tags": "jsonb_path_ops"},
                 postgresql_where=sa.text("candidate_score >= 0"),
                 sqlite_where=sa.text("candidate_score >= 0")),
    )


class MemberStatus(enum.StrEnum):
    active = "active"
    suspended = "suspended"


class Member(Model):
    """A KOC: a user who accepted an invitation."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    user_id: Mapped[int] = mapped_column(
        sa.ForeignKey("users.id", ondelete="RESTRICT"), unique=True
    )
    display_name: Mapped[str] = mapped_column(sa.String(100))
    status: Mapped[str] = mapped_column(sa.String(16), default=MemberStatus.active.value)
    tier_key: Mapped[str | None] = mapped_column(sa.String(32), index=True)
    tier_locked: Mapped[bool] = mapped_column(default=False)
    tier_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # When the member's values fell below the tier's low-water mark; cleared when they recover.
    tier_below_since: Mapped[datetime | None] = mapped_column(UTCDateTime)
    joined_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    terms_accepted_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # The member chose to show their display name on the public badge page (hidden by default).
    show_name_on_badge: Mapped[bool] = mapped_column(default=False)
    # Set when the person was forgotten: the row stays, anonymous, so totals stay right.
    forgotten_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(back_populates="member")
    social_accounts: Mapped[list[SocialAccount]] = relationship(
        back_populates="member", cascade="all, delete-orphan", order_by="SocialAccount.id"
    )

    __table_args__ = (
        sa.CheckConstraint("status IN ('active', 'suspended')", name="status_known"),
        # The roster's search by part of a name (trigrams on PostgreSQL).
        sa.Index("ix_members_display_name_search", "display_name", postgresql_using="gin",
                 postgresql_ops={"display_name": "gin_trgm_ops"}),
    )



# The search indexes' operator class comes from pg_trgm: created with the schema wherever the
# schema is made from the models (the tests' databases); migration 0022 does it in production.
sa.event.listen(Model.metadata, "before_create", sa.DDL(
    "CREATE EXTENSION IF NOT EXISTS pg_trgm").execute_if(dialect="postgresql"))


def member_may_use_tokens(member_id: sa.ColumnElement[int]) -> sa.ColumnElement[bool]:
    """SQL: the member owning a token is active (a suspended member's tokens stop working).

    koc.core.auth asks this through the app (create_app wires it), as core knows no Member.
    """
    # Never correlated to a `members` of the outer query (load_member_with_token joins one).
    return (sa.exists().where(Member.id == member_id, Member.status == MemberStatus.active.value)
            .correlate_except(Member))


def load_member_with_token(stmt: sa.Select, member_id: sa.ColumnElement[int],
                           ) -> tuple[sa.Select, tuple[type, ...]]:
    """The token lookup also loads the token's member and its user (for a staff token, none).

    They go into the session's identity map, so `db.session.get(Member, id)` and `member.user`
    cost no round trip afterwards. create_app gives this to koc.core.auth.
    """
    return (stmt.outerjoin(Member, Member.id == member_id)
            .outerjoin(User, User.id == Member.user_id)
            .add_columns(*mapped_columns(Member)[1], *mapped_columns(User)[1]), (Member, User))


class SocialAccount(Model):
    __tablename__ = "social_accounts"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    member_id: Mapped[int] = mapped_column(
        sa.ForeignKey("members.id", ondelete="CASCADE"), index=True
    )
    platform: Mapped[str] = mapped_column(sa.String(32))
    handle: Mapped[str] = mapped_column(sa.String(100))
    url: Mapped[str | None] = mapped_column(sa.String(500))
    # As the member declared it: recorded and shown, but never trusted on its own.
    followers: Mapped[int] = mapped_column(default=0)
    confirmed_followers: Mapped[int | None] = mapped_column()
    followers_source: Mapped[str] = mapped_column(sa.String(16), default="declared")
    followers_confirmed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    followers_confirmed_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL"))

    member: Mapped[Member] = relationship(back_populates="social_accounts")

    __table_args__ = (
        sa.UniqueConstraint("platform", "handle"),
        sa.CheckConstraint("followers >= 0", name="followers_not_negative"),
        sa.CheckConstraint("followers_source IN ('declared', 'reviewer', 'import')",
                           name="followers_source_known"),
        # A confirmed count always says when; a declared-only account has none.
        sa.CheckConstraint(
            "(followers_source = 'declared' AND confirmed_followers IS NULL"
            " AND followers_confirmed_at IS NULL) OR (followers_source <> 'declared'"
            " AND confirmed_followers >= 0 AND followers_confirmed_at IS NOT NULL)",
            name="followers_confirmation_complete"),
        # The roster's search by part of a handle (trigrams on PostgreSQL).
        sa.Index("ix_social_accounts_handle_search", "handle", postgresql_using="gin",
                 postgresql_ops={"handle": "gin_trgm_ops"}),
    )

    @property
    def followers_confirmed(self) -> bool:
        return self.confirmed_followers is not None


class CandidateRuleSet(Model):
    """One saved version of the candidate rules; the highest version is in force."""

    __tablename__ = "candidate_rule_sets"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    version: Mapped[int] = mapped_column(unique=True)
    rules: Mapped[dict[str, Any]] = mapped_column(JSONType)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class InvitationCampaign(Model):
    """A batch of invitations to the top N of a candidate filter, followed from sent to first
    approved post."""

    __tablename__ = "invitation_campaigns"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(100))
    filter: Mapped[dict[str, Any]] = mapped_column(JSONType, default=dict)
    limit: Mapped[int] = mapped_column()
    message: Mapped[str] = mapped_column(sa.String(1000), default="")
    invited: Mapped[int] = mapped_column(default=0)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # The candidate rules version the ranking was read under.
    rules_version: Mapped[int] = mapped_column(default=0)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint('"limit" >= 1 AND invited >= 0', name="counts_valid"),
    )


class Invitation(Model):
    """An invitation of one user. Its code is never stored: a new code is `<id>.<mac>`, the
    HMAC of the id under a key derived from KOC_SECRET_KEY (koc.members.services.codes), so a
    copy of the database reveals no code, a batch of 100,000 is one INSERT ... SELECT, and the
    links of a campaign can be listed again later. Codes issued before that are kept as their
    SHA-256 (`code_hash`)."""

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    code_hash: Mapped[str | None] = mapped_column(sa.String(64), unique=True)
    campaign_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("invitation_campaigns.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id", ondelete="CASCADE"), index=True)
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    accepted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    member_id: Mapped[int | None] = mapped_column(sa.ForeignKey("members.id", ondelete="SET NULL"))
    # The first time its join link was opened (the campaign funnel's second step).
    opened_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship()


class UserImportStatus(enum.StrEnum):
    pending = "pending"  # waiting for the client to upload the file
    started = "started"  # the file is stored and its job created


class UserImport(Model):
    """A bulk import's file on its way into object storage, then the job that reads it.

    The object is deleted when the job ends, failed included (PIPL: import files do not outlive
    their job); `koc.members.tasks.purge_import_files` deletes what a crash left behind.
    """

    __tablename__ = "user_imports"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    filename: Mapped[str] = mapped_column(sa.String(255))
    content_type: Mapped[str] = mapped_column(sa.String(100))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    format: Mapped[str] = mapped_column(sa.String(8))
    encoding: Mapped[str] = mapped_column(sa.String(16))
    storage_key: Mapped[str] = mapped_column(sa.String(300), unique=True)
    # Set while a multipart upload is open; the part size the client was told.
    upload_id: Mapped[str | None] = mapped_column(sa.String(1024))
    part_size: Mapped[int | None] = mapped_column(sa.BigInteger)
    status: Mapped[str] = mapped_column(sa.String(16), default=UserImportStatus.pending.value)
    job_id: Mapped[int | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="SET NULL"))
    created_by_staff_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("staff.id", ondelete="SET NULL")
    )
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # When the stored file was deleted: at the end of its job (succeeded or failed), or by the
    # sweep for an upload that was never started.
    file_deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    __table_args__ = (
        sa.CheckConstraint("status IN ('pending', 'started')", name="status_known"),
        sa.CheckConstraint("format IN ('csv', 'jsonl')", name="format_known"),
        sa.CheckConstraint("encoding IN ('utf-8', 'gb18030')", name="encoding_known"),
        sa.CheckConstraint("size >= 0", name="size_not_negative"),
    )
