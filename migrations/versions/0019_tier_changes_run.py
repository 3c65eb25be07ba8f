"""Tier changes indexed by run: a run reads back the members it changed to sync their benefits

Revision ID: 0019_tier_changes_run
Revises: 0016_admin_rollups
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0019_tier_changes_run'
down_revision = '0016_admin_rollups'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.create_index('ix_tier_changes_run_id', ['run_id'], unique=False)


def downgrade():
    with op.batch_alter_table('tier_changes', schema=None) as batch_op:
        batch_op.drop_index('ix_tier_changes_run_id')
