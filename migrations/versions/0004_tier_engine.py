"""Tier engine: spells below a tier's low-water mark, full and incremental runs

Revision ID: 0004_tiers
Revises: 4f67c249bd41
Create Date: 2026-11-23 02:40:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

revision = '0004_tiers'
down_revision = '4f67c249bd41'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('tier_below_since', koc.core.db.UTCDateTime(timezone=True),
                                      nullable=True))
    with op.batch_alter_table('tier_runs', schema=None) as batch_op:
        batch_op.add_column(sa.Column('kind', sa.String(length=16), nullable=False,
                                      server_default='full'))


def downgrade():
    with op.batch_alter_table('tier_runs', schema=None) as batch_op:
        batch_op.drop_column('kind')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('tier_below_since')
