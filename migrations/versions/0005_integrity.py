"""Integrity: checked follower counts and their log, engagement trusted by source (snapshot
states, held submissions), one post one reward (platform post id unique, short links unresolved)

Revision ID: 0005_integrity
Revises: 0004_tiers
Create Date: 2026-12-01 23:10:03

"""
import re

import sqlalchemy as sa
from alembic import op

import koc.core.db

# Frozen copies of the canonical forms koc.submissions.services.post_urls writes (a migration
# must not change when the code does).
_POST_ID = (
    re.compile(r"^https://www\.xiaohongshu\.com/explore/([0-9a-f]{24})$"),
    re.compile(r"^https://www\.douyin\.com/(?:video|note)/(\d+)$"),
    re.compile(r"^https://m\.weibo\.cn/detail/(\d+)$"),
)
_SHORT_HOSTS = re.compile(r"^https://(?:[^/]*\.)?(?:xhslink\.com|xhslink\.cn|v\.douyin\.com)(?:/|$)")

# revision identifiers, used by Alembic.
revision = '0005_integrity'
down_revision = '0004_tiers'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('follower_checks',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('social_account_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('source', sa.String(length=16), nullable=False),
    sa.Column('declared', sa.BigInteger(), nullable=False),
    sa.Column('previous', sa.BigInteger(), nullable=True),
    sa.Column('confirmed', sa.BigInteger(), nullable=False),
    sa.Column('staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('submission_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('note', sa.String(length=1000), nullable=True),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("source IN ('reviewer', 'import')", name=op.f('ck_follower_checks_source_known')),
    sa.CheckConstraint('confirmed >= 0', name=op.f('ck_follower_checks_confirmed_not_negative')),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_follower_checks_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['social_account_id'], ['social_accounts.id'], name=op.f('fk_follower_checks_social_account_id_social_accounts'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'], name=op.f('fk_follower_checks_staff_id_staff'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['submission_id'], ['submissions.id'], name=op.f('fk_follower_checks_submission_id_submissions'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_follower_checks'))
    )
    with op.batch_alter_table('follower_checks', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_follower_checks_created_at'), ['created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_follower_checks_member_id'), ['member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_follower_checks_social_account_id'), ['social_account_id'], unique=False)

    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('state', sa.String(length=16), nullable=False,
                                      server_default='counted'))
        batch_op.add_column(sa.Column('decided_at', koc.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('decided_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('confirmed_by_snapshot_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_index(batch_op.f('ix_metric_snapshots_decided_at'), ['decided_at'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_metric_snapshots_decided_by_staff_id_staff'), 'staff', ['decided_by_staff_id'], ['id'], ondelete='SET NULL')
        batch_op.create_foreign_key(batch_op.f('fk_metric_snapshots_confirmed_by_snapshot_id_metric_snapshots'), 'metric_snapshots', ['confirmed_by_snapshot_id'], ['id'], ondelete='SET NULL')
        batch_op.create_check_constraint(
            op.f('ck_metric_snapshots_state_known'),
            "state IN ('counted', 'unconfirmed', 'confirmed', 'dismissed')")
        # Snapshots staff add were called "admin"; any staff role may add them now.
        batch_op.drop_constraint(op.f('ck_metric_snapshots_source_known'), type_='check')
    op.execute("UPDATE metric_snapshots SET source = 'staff' WHERE source = 'admin'")
    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_metric_snapshots_source_known'),
                                         "source IN ('member', 'staff', 'import')")
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_review_events_action_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_review_events_action_known'),
            "action IN ('approve', 'reject', 'reopen', 'confirm_metrics', 'dismiss_metrics')")

    with op.batch_alter_table('social_accounts', schema=None) as batch_op:
        batch_op.add_column(sa.Column('confirmed_followers', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('followers_source', sa.String(length=16), nullable=False,
                                      server_default='declared'))
        batch_op.add_column(sa.Column('followers_confirmed_at', koc.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('followers_confirmed_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.create_foreign_key(batch_op.f('fk_social_accounts_followers_confirmed_by_staff_id_staff'), 'staff', ['followers_confirmed_by_staff_id'], ['id'], ondelete='SET NULL')
        # Autogenerate does not see check constraints on existing tables.
        batch_op.create_check_constraint(
            op.f('ck_social_accounts_followers_source_known'),
            "followers_source IN ('declared', 'reviewer', 'import')")
        batch_op.create_check_constraint(
            op.f('ck_social_accounts_followers_confirmation_complete'),
            "(followers_source = 'declared' AND confirmed_followers IS NULL"
            " AND followers_confirmed_at IS NULL) OR (followers_source <> 'declared'"
            " AND confirmed_followers >= 0 AND followers_confirmed_at IS NOT NULL)")

    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.add_column(sa.Column('post_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('url_unresolved', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('held_at', koc.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.create_index('ix_submissions_held_at', ['held_at'], unique=False)

    _backfill_post_ids()
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.create_unique_constraint(batch_op.f('uq_submissions_platform_post_id'), ['platform', 'post_id'])


def _backfill_post_ids():
    """Post ids of the submissions already held, and which of them are short links. A post id
    that a second row of the same platform also yields (a video and a note with one id) is left
    on the first row only; the reviewer sees the other as it was."""
    bind = op.get_bind()
    submissions = sa.table('submissions', sa.column('id'), sa.column('platform'),
                           sa.column('canonical_url'), sa.column('post_id'),
                           sa.column('url_unresolved'))
    seen = set()
    rows = bind.execute(sa.select(submissions.c.id, submissions.c.platform,
                                  submissions.c.canonical_url).order_by(submissions.c.id))
    for row_id, platform, canonical in rows.all():
        post_id = next((m.group(1) for m in (p.match(canonical) for p in _POST_ID) if m), None)
        if post_id is not None and (platform, post_id) in seen:
            post_id = None
        if post_id is not None:
            seen.add((platform, post_id))
        short = bool(_SHORT_HOSTS.match(canonical))
        if post_id is not None or short:
            bind.execute(submissions.update().where(submissions.c.id == row_id)
                         .values(post_id=post_id, url_unresolved=short))


def downgrade():
    with op.batch_alter_table('submissions', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_submissions_platform_post_id'), type_='unique')
        batch_op.drop_index('ix_submissions_held_at')
        batch_op.drop_column('held_at')
        batch_op.drop_column('url_unresolved')
        batch_op.drop_column('post_id')

    with op.batch_alter_table('social_accounts', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_social_accounts_followers_confirmation_complete'), type_='check')
        batch_op.drop_constraint(op.f('ck_social_accounts_followers_source_known'), type_='check')
        batch_op.drop_constraint(batch_op.f('fk_social_accounts_followers_confirmed_by_staff_id_staff'), type_='foreignkey')
        batch_op.drop_column('followers_confirmed_by_staff_id')
        batch_op.drop_column('followers_confirmed_at')
        batch_op.drop_column('followers_source')
        batch_op.drop_column('confirmed_followers')

    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_review_events_action_known'), type_='check')
    op.execute("DELETE FROM review_events WHERE action IN ('confirm_metrics', 'dismiss_metrics')")
    with op.batch_alter_table('review_events', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_review_events_action_known'),
                                         "action IN ('approve', 'reject', 'reopen')")
    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_metric_snapshots_source_known'), type_='check')
        batch_op.drop_constraint(op.f('ck_metric_snapshots_state_known'), type_='check')
    op.execute("UPDATE metric_snapshots SET source = 'admin' WHERE source = 'staff'")
    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.create_check_constraint(op.f('ck_metric_snapshots_source_known'),
                                         "source IN ('member', 'admin', 'import')")
        batch_op.drop_constraint(batch_op.f('fk_metric_snapshots_confirmed_by_snapshot_id_metric_snapshots'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('fk_metric_snapshots_decided_by_staff_id_staff'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_metric_snapshots_decided_at'))
        batch_op.drop_column('confirmed_by_snapshot_id')
        batch_op.drop_column('decided_by_staff_id')
        batch_op.drop_column('decided_at')
        batch_op.drop_column('state')

    with op.batch_alter_table('follower_checks', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_follower_checks_social_account_id'))
        batch_op.drop_index(batch_op.f('ix_follower_checks_member_id'))
        batch_op.drop_index(batch_op.f('ix_follower_checks_created_at'))

    op.drop_table('follower_checks')

