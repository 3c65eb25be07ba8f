"""Integrity follow-ups: a suspended member's pending drop claims are voided (status 'voided',
voided_at); a short link that resolves to a post already submitted is flagged 'duplicate_post'

Revision ID: 0010_integrity
Revises: 0009_merge
Create Date: 2026-12-02 02:00:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

# revision identifiers, used by Alembic.
revision = '0010_integrity'
down_revision = '0009_merge'
branch_labels = None
depends_on = None

_KINDS = "'likes_above_views', 'engagement_jump', 'engagement_rate', 'near_duplicate_media'"


def upgrade():
    with op.batch_alter_table('drop_claims', schema=None) as batch_op:
        batch_op.add_column(sa.Column('voided_at', koc.core.db.UTCDateTime(), nullable=True))
        batch_op.drop_constraint(op.f('ck_drop_claims_status_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_drop_claims_status_known'),
            "status IN ('claimed', 'entered', 'won', 'lost', 'voided')")
        batch_op.create_check_constraint(
            op.f('ck_drop_claims_voided_when_voided'),
            "(status = 'voided') = (voided_at IS NOT NULL)")
    with op.batch_alter_table('submission_flags', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_submission_flags_kind_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_submission_flags_kind_known'),
            f"kind IN ({_KINDS}, 'duplicate_post')")


def downgrade():
    op.execute("DELETE FROM submission_flags WHERE kind = 'duplicate_post'")
    with op.batch_alter_table('submission_flags', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_submission_flags_kind_known'), type_='check')
        batch_op.create_check_constraint(op.f('ck_submission_flags_kind_known'),
                                         f"kind IN ({_KINDS})")
    op.execute("DELETE FROM drop_claims WHERE status = 'voided'")
    with op.batch_alter_table('drop_claims', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_drop_claims_voided_when_voided'), type_='check')
        batch_op.drop_constraint(op.f('ck_drop_claims_status_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_drop_claims_status_known'), "status IN ('claimed', 'entered', 'won', 'lost')")
        batch_op.drop_column('voided_at')
