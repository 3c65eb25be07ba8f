"""Fraud: a suspended member's pending drop claims are voided (status 'voided', voided_at)

Revision ID: 0010_fraud
Revises: 0009_merge
Create Date: 2026-12-02 02:00:00

"""
import sqlalchemy as sa
from alembic import op

import koc.core.db

# revision identifiers, used by Alembic.
revision = '0010_fraud'
down_revision = '0009_merge'
branch_labels = None
depends_on = None


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


def downgrade():
    op.execute("DELETE FROM drop_claims WHERE status = 'voided'")
    with op.batch_alter_table('drop_claims', schema=None) as batch_op:
        batch_op.drop_constraint(op.f('ck_drop_claims_voided_when_voided'), type_='check')
        batch_op.drop_constraint(op.f('ck_drop_claims_status_known'), type_='check')
        batch_op.create_check_constraint(
            op.f('ck_drop_claims_status_known'), "status IN ('claimed', 'entered', 'won', 'lost')")
        batch_op.drop_column('voided_at')
