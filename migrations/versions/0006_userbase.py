"""The user base at scale: import files uploaded to object storage, then streamed by their job

Revision ID: 0006_userbase
Revises: 0004_tiers
Create Date: 2026-12-01 23:12:02.478259

"""
from alembic import op
import sqlalchemy as sa

import koc.core.db


# revision identifiers, used by Alembic.
revision = '0006_userbase'
down_revision = '0004_tiers'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('user_imports',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('filename', sa.String(length=255), nullable=False),
    sa.Column('content_type', sa.String(length=100), nullable=False),
    sa.Column('size', sa.BigInteger(), nullable=False),
    sa.Column('format', sa.String(length=8), nullable=False),
    sa.Column('encoding', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=300), nullable=False),
    sa.Column('upload_id', sa.String(length=1024), nullable=True),
    sa.Column('part_size', sa.BigInteger(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('job_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.CheckConstraint("encoding IN ('utf-8', 'gb18030')", name=op.f('ck_user_imports_encoding_known')),
    sa.CheckConstraint("format IN ('csv', 'jsonl')", name=op.f('ck_user_imports_format_known')),
    sa.CheckConstraint("status IN ('pending', 'started')", name=op.f('ck_user_imports_status_known')),
    sa.CheckConstraint('size >= 0', name=op.f('ck_user_imports_size_not_negative')),
    sa.ForeignKeyConstraint(['created_by_staff_id'], ['staff.id'], name=op.f('fk_user_imports_created_by_staff_id_staff'), ondelete='SET NULL'),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], name=op.f('fk_user_imports_job_id_jobs'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_user_imports')),
    sa.UniqueConstraint('storage_key', name=op.f('uq_user_imports_storage_key'))
    )


def downgrade():
    op.drop_table('user_imports')
