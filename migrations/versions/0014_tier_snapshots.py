"""Tier snapshots: members per tier (and at risk) on each day, written by the tier job, for the
dashboard's members-per-tier-over-time chart; partial indexes for the review queue and its
decided view

Revision ID: 0014_tier_snapshots
Revises: 0013_wecom
Create Date: 2026-12-02 02:00:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

revision = '0014_tier_snapshots'
down_revision = '0013_wecom'
branch_labels = None
depends_on = None

WHEN = koc.core.db.UTCDateTime(timezone=True)


def upgrade():
    op.create_table('tier_snapshots',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('tier_key', sa.String(length=32), nullable=False),
    sa.Column('members', sa.Integer(), nullable=False),
    sa.Column('at_risk', sa.Integer(), nullable=False),
    sa.Column('taken_at', WHEN, nullable=False),
    sa.CheckConstraint('members >= 0 AND at_risk >= 0 AND at_risk <= members',
                       name=op.f('ck_tier_snapshots_counts_valid')),
    sa.PrimaryKeyConstraint('day', 'tier_key', name=op.f('pk_tier_snapshots'))
    )
    queue = sa.text("status = 'pending' OR held_at IS NOT NULL")
    op.create_index('ix_submissions_queue', 'submissions', ['created_at', 'id'], unique=False,
                    postgresql_where=queue, sqlite_where=queue)
    decided = sa.text("status IN ('approved', 'rejected') AND held_at IS NULL")
    op.create_index('ix_submissions_decided', 'submissions', ['reviewed_at', 'id'],
                    unique=False, postgresql_where=decided, sqlite_where=decided)


def downgrade():
    op.drop_index('ix_submissions_decided', table_name='submissions')
    op.drop_index('ix_submissions_queue', table_name='submissions')
    op.drop_table('tier_snapshots')
