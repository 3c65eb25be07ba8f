"""Personal data: forgotten users and members, the badge name choice, import files' deletion time,
member uploads' fixed content fingerprint

Revision ID: 0011_privacy
Revises: 0010_integrity
Create Date: 2026-12-02 02:00:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

revision = '0011_privacy'
down_revision = '0010_integrity'
branch_labels = None
depends_on = None

WHEN = koc.core.db.UTCDateTime(timezone=True)


def upgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forgotten_at', WHEN, nullable=True))
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.add_column(sa.Column('show_name_on_badge', sa.Boolean(), nullable=False,
                                      server_default=sa.false()))
        batch_op.add_column(sa.Column('forgotten_at', WHEN, nullable=True))
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.alter_column('show_name_on_badge', server_default=None)
    with op.batch_alter_table('user_imports', schema=None) as batch_op:
        batch_op.add_column(sa.Column('file_deleted_at', WHEN, nullable=True))
    with op.batch_alter_table('media_uploads', schema=None) as batch_op:
        batch_op.add_column(sa.Column('content_etag', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('fixed_at', WHEN, nullable=True))
        batch_op.add_column(sa.Column('sha256', sa.String(length=64), nullable=True))


def downgrade():
    with op.batch_alter_table('media_uploads', schema=None) as batch_op:
        batch_op.drop_column('sha256')
        batch_op.drop_column('fixed_at')
        batch_op.drop_column('content_etag')
    with op.batch_alter_table('user_imports', schema=None) as batch_op:
        batch_op.drop_column('file_deleted_at')
    with op.batch_alter_table('members', schema=None) as batch_op:
        batch_op.drop_column('forgotten_at')
        batch_op.drop_column('show_name_on_badge')
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_column('forgotten_at')
