"""Leaderboard standings: each member's figures over the preset windows, refreshed by a task

Revision ID: 0020_leaderboard_standings
Revises: 0019_tier_changes_run
"""
from alembic import op
import sqlalchemy as sa

from koc.core.db import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0020_leaderboard_standings'
down_revision = '0019_tier_changes_run'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'leaderboard_refreshes',
        sa.Column('window_days', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('as_of', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('window_days', name=op.f('pk_leaderboard_refreshes')),
    )
    op.create_table(
        'leaderboard_standings',
        sa.Column('window_days', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('member_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'),
                  autoincrement=False, nullable=False),
        sa.Column('points', sa.Numeric(precision=18, scale=2), nullable=False),
        sa.Column('approved', sa.BigInteger(), nullable=False),
        sa.Column('engagement', sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(['member_id'], ['members.id'],
                                name=op.f('fk_leaderboard_standings_member_id_members'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('window_days', 'member_id',
                                name=op.f('pk_leaderboard_standings')),
    )


def downgrade():
    op.drop_table('leaderboard_standings')
    op.drop_table('leaderboard_refreshes')
