"""Admin rollups: the dashboard's activity series by closed hour (activity_rollups, and the mark
of how far it reaches), the indexes its live edge reads (submissions by created_at, re-opened
decisions), and covering indexes for the leaderboard's window sums

Revision ID: 0016_admin_rollups
Revises: 0015_hotpaths
Create Date: 2026-12-02 05:30:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

revision = '0016_admin_rollups'
down_revision = '0015_hotpaths'
branch_labels = None
depends_on = None

WHEN = koc.core.db.UTCDateTime(timezone=True)
APPROVED = sa.text("status = 'approved'")
REOPEN = sa.text("action = 'reopen'")


def upgrade():
    op.create_table('activity_rollups',
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('hour', sa.BigInteger(), autoincrement=False, nullable=False),
    sa.Column('amount', sa.Numeric(precision=18, scale=2), nullable=False),
    sa.CheckConstraint("kind IN ('submitted', 'approved', 'points')",
                       name=op.f('ck_activity_rollups_kind_known')),
    sa.PrimaryKeyConstraint('kind', 'hour', name=op.f('pk_activity_rollups'))
    )
    op.create_table('rollup_marks',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('filled_from', sa.BigInteger(), nullable=False),
    sa.Column('filled_until', sa.BigInteger(), nullable=False),
    sa.Column('refreshed_at', WHEN, nullable=False),
    sa.CheckConstraint('filled_from <= filled_until', name=op.f('ck_rollup_marks_range_valid')),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_rollup_marks'))
    )
    op.create_index('ix_submissions_created_at', 'submissions', ['created_at'], unique=False)
    op.create_index('ix_review_events_reopened', 'review_events', ['created_at'], unique=False,
                    postgresql_where=REOPEN, sqlite_where=REOPEN)
    # Approvals per hour at the dashboard's live edge, read from the index alone.
    op.create_index('ix_submissions_approved_reviewed', 'submissions', ['reviewed_at'],
                    unique=False, postgresql_where=APPROVED, sqlite_where=APPROVED)
    # The leaderboard's window sums read these alone (index-only scans on PostgreSQL).
    op.create_index('ix_submissions_approved_posted', 'submissions', ['posted_at'],
                    unique=False, postgresql_where=APPROVED, sqlite_where=APPROVED,
                    postgresql_include=['member_id', 'interactions'])
    op.drop_index('ix_points_ledger_created_at', table_name='points_ledger')
    op.create_index('ix_points_ledger_created_at', 'points_ledger', ['created_at'], unique=False,
                    postgresql_include=['member_id', 'points'])


def downgrade():
    op.drop_index('ix_points_ledger_created_at', table_name='points_ledger')
    op.create_index('ix_points_ledger_created_at', 'points_ledger', ['created_at'], unique=False)
    op.drop_index('ix_submissions_approved_posted', table_name='submissions')
    op.drop_index('ix_submissions_approved_reviewed', table_name='submissions')
    op.drop_index('ix_review_events_reopened', table_name='review_events')
    op.drop_index('ix_submissions_created_at', table_name='submissions')
    op.drop_table('rollup_marks')
    op.drop_table('activity_rollups')
