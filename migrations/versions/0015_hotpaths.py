"""Hot paths: a new submission's history anomaly checks wait for a sweep after its commit

Revision ID: 0015_hotpaths
Revises: 0014_tier_snapshots
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0015_hotpaths'
down_revision = '0014_tier_snapshots'
branch_labels = None
depends_on = None


def upgrade():
    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.add_column(sa.Column('history_pending', sa.Boolean(), server_default=sa.false(),
                                      nullable=False))
        batch_op.create_index('ix_metric_snapshots_history_pending', ['id'], unique=False,
                              postgresql_where=sa.text('history_pending'),
                              sqlite_where=sa.text('history_pending'))


def downgrade():
    with op.batch_alter_table('metric_snapshots', schema=None) as batch_op:
        batch_op.drop_index('ix_metric_snapshots_history_pending',
                            postgresql_where=sa.text('history_pending'),
                            sqlite_where=sa.text('history_pending'))
        batch_op.drop_column('history_pending')
