"""Tier engine and benefits: spells below a tier's low-water mark, full and incremental runs,
badges, early-access drops and the senior group

Revision ID: 0004_tiers
Revises: 0003_submissions
Create Date: 2026-11-23 02:40:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

revision = '0004_tiers'
down_revision = '0003_submissions'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier_below_since', koc.core.db.UTCDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('tier_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='full'))
    # What an incremental run reads: activity since the last run.
    op.create_index('ix_submissions_reviewed_at', 'submissions', ['reviewed_at'])
    op.create_index('ix_metric_snapshots_recorded_at', 'metric_snapshots', ['recorded_at'])
    op.create_index('ix_points_ledger_created_at', 'points_ledger', ['created_at'])
    op.create_table('tier_run_parts',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('run_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('first_member_id', sa.BigInteger(), nullable=False),
    sa.Column('last_member_id', sa.BigInteger(), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('members_evaluated', sa.Integer(), nullable=False),
    sa.Column('promotions', sa.Integer(), nullable=False),
    sa.Column('demotions', sa.Integer(), nullable=False),
    sa.Column('sent_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('finished_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint("status IN ('pending', 'succeeded')", name=op.f('ck_tier_run_parts_status_known')),
    sa.ForeignKeyConstraint(['run_id'], ['tier_runs.id'], name=op.f('fk_tier_run_parts_run_id_tier_runs'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_tier_run_parts')),
    sa.UniqueConstraint('run_id', 'first_member_id', name=op.f('uq_tier_run_parts_run_id_first_member_id'))
    )
    op.create_table('drops',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('product_name', sa.String(length=200), nullable=False),
    sa.Column('sku', sa.String(length=64), nullable=False),
    sa.Column('quantity', sa.Integer(), nullable=False),
    sa.Column('per_member_limit', sa.Integer(), nullable=False),
    sa.Column('min_tier', sa.String(length=32), nullable=True),
    sa.Column('opens_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('closes_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('allocation', sa.String(length=16), nullable=False),
    sa.Column('allocated', sa.Integer(), nullable=False),
    sa.Column('post_within_days', sa.Integer(), nullable=False),
    sa.Column('lottery_seed', sa.String(length=64), nullable=True),
    sa.Column('drawn_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("allocation IN ('first_come', 'lottery')", name=op.f('ck_drops_allocation_known')),
    sa.CheckConstraint('allocated >= 0 AND allocated <= quantity', name=op.f('ck_drops_within_stock')),
    sa.CheckConstraint('opens_at < closes_at', name=op.f('ck_drops_window_ordered')),
    sa.CheckConstraint('quantity > 0 AND per_member_limit > 0', name=op.f('ck_drops_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drops'))
    )
    op.create_table('badges',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('badge_id', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('tier_key', sa.String(length=32), nullable=False),
    sa.Column('issued_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('signature', sa.String(length=128), nullable=False),
    sa.Column('revoked_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoke_reason', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_badges_member_id_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_badges')),
    sa.UniqueConstraint('badge_id', name=op.f('uq_badges_badge_id'))
    )
    with op.batch_alter_table('badges', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_badges_member_id'), ['member_id'], unique=False)
        batch_op.create_index('uq_badges_member_live', ['member_id'], unique=True, postgresql_where=sa.text('revoked_at IS NULL'), sqlite_where=sa.text('revoked_at IS NULL'))

    op.create_table('drop_claims',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('drop_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("status IN ('claimed', 'entered', 'won', 'lost')", name=op.f('ck_drop_claims_status_known')),
    sa.ForeignKeyConstraint(['drop_id'], ['drops.id'], name=op.f('fk_drop_claims_drop_id_drops'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_drop_claims_member_id_members'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_drop_claims'))
    )
    with op.batch_alter_table('drop_claims', schema=None) as batch_op:
        batch_op.create_index('ix_drop_claims_drop_member', ['drop_id', 'member_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_drop_claims_member_id'), ['member_id'], unique=False)

    op.create_table('group_memberships',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('group_key', sa.String(length=32), nullable=False),
    sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('invited_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('removal_due_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('removed_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('removed_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.ForeignKeyConstraint(['member_id'], ['members.id'], name=op.f('fk_group_memberships_member_id_members'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['removed_by_staff_id'], ['staff.id'], name=op.f('fk_group_memberships_removed_by_staff_id_staff'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_group_memberships')),
    sa.UniqueConstraint('code', name=op.f('uq_group_memberships_code'))
    )
    with op.batch_alter_table('group_memberships', schema=None) as batch_op:
        batch_op.create_index('uq_group_memberships_live', ['group_key', 'member_id'], unique=True, postgresql_where=sa.text('removed_at IS NULL'), sqlite_where=sa.text('removed_at IS NULL'))


def downgrade():
    op.drop_index('ix_points_ledger_created_at', table_name='points_ledger')
    op.drop_index('ix_metric_snapshots_recorded_at', table_name='metric_snapshots')
    op.drop_index('ix_submissions_reviewed_at', table_name='submissions')
    op.drop_table('tier_run_parts')
    with op.batch_alter_table('group_memberships', schema=None) as batch_op:
        batch_op.drop_index('uq_group_memberships_live', postgresql_where=sa.text('removed_at IS NULL'), sqlite_where=sa.text('removed_at IS NULL'))

    op.drop_table('group_memberships')
    with op.batch_alter_table('drop_claims', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_drop_claims_member_id'))
        batch_op.drop_index('ix_drop_claims_drop_member')

    op.drop_table('drop_claims')
    with op.batch_alter_table('badges', schema=None) as batch_op:
        batch_op.drop_index('uq_badges_member_live', postgresql_where=sa.text('revoked_at IS NULL'), sqlite_where=sa.text('revoked_at IS NULL'))
        batch_op.drop_index(batch_op.f('ix_badges_member_id'))

    op.drop_table('badges')
    op.drop_table('drops')
    with op.batch_alter_table('tier_runs', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('tier_below_since')
