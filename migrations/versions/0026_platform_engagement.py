"""Engagement by platform, stored by the leaderboard refresh for the dashboard

Summing the approved posts of twelve weeks per platform read 594,000 index entries per
dashboard view at the reference size (300 ms); the leaderboard's ten-minute refresh now writes
the twelve weeks' figures per platform (a few dozen rows) and the dashboard reads those.

Revision ID: 0026_platform_engagement
Revises: 0025_candidate_tags
"""
from alembic import op
import sqlalchemy as sa

from koc.core.db import UTCDateTime


# revision identifiers, used by Alembic.
revision = '0026_platform_engagement'
down_revision = '0025_candidate_tags'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table(
        'platform_engagement_weeks',
        sa.Column('week', sa.Integer(), autoincrement=False, nullable=False),
        sa.Column('platform', sa.String(length=32), nullable=False),
        sa.Column('posts', sa.BigInteger(), nullable=False),
        sa.Column('engagement', sa.BigInteger(), nullable=False),
        sa.Column('as_of', UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint('week', 'platform', name=op.f('pk_platform_engagement_weeks')),
    )


def downgrade():
    op.drop_table('platform_engagement_weeks')
