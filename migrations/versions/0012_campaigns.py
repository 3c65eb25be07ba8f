"""Candidate rules as versioned data; invitation campaigns; invitation codes no longer stored

Invitations lose their plain `code`: new codes are derived from the id (HMAC under a key from
KOC_SECRET_KEY) and never stored; the codes already issued are kept as their SHA-256 in
`code_hash`, so their links keep working. Members leave the candidate index (score -1), which
becomes a partial index over candidate_score >= 0.

Revision ID: 0012_campaigns
Revises: 0011_privacy
Create Date: 2026-12-02 01:39:28.155459

"""
import hashlib

from alembic import op
import sqlalchemy as sa

import koc.core.db
from sqlalchemy.dialects import postgresql

# revision identifiers, used by Alembic.
revision = '0012_campaigns'
down_revision = '0011_privacy'
branch_labels = None
depends_on = None


def upgrade():
    op.create_table('candidate_rule_sets',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('rules', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('created_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(['created_by_staff_id'], ['staff.id'], name=op.f('fk_candidate_rule_sets_created_by_staff_id_staff'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_candidate_rule_sets')),
    sa.UniqueConstraint('version', name=op.f('uq_candidate_rule_sets_version'))
    )
    op.create_table('invitation_campaigns',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('filter', sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), 'postgresql'), nullable=False),
    sa.Column('limit', sa.Integer(), nullable=False),
    sa.Column('message', sa.String(length=1000), nullable=False),
    sa.Column('invited', sa.Integer(), nullable=False),
    sa.Column('expires_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rules_version', sa.Integer(), nullable=False),
    sa.Column('created_by_staff_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True),
    sa.Column('created_at', koc.core.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('revoked_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('reminded_at', koc.core.db.UTCDateTime(timezone=True), nullable=True),
    sa.CheckConstraint('"limit" >= 1 AND invited >= 0', name=op.f('ck_invitation_campaigns_counts_valid')),
    sa.ForeignKeyConstraint(['created_by_staff_id'], ['staff.id'], name=op.f('fk_invitation_campaigns_created_by_staff_id_staff'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_invitation_campaigns'))
    )
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.add_column(sa.Column('code_hash', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('campaign_id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), nullable=True))
        batch_op.add_column(sa.Column('opened_at', koc.core.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('revoked_at', koc.core.db.UTCDateTime(timezone=True), nullable=True))

    # The codes issued so far, kept only as their hash (a few rows: invitations were one by one).
    bind = op.get_bind()
    invitations = sa.table('invitations', sa.column('id', sa.BigInteger), sa.column('code', sa.String),
                           sa.column('code_hash', sa.String))
    for row in bind.execute(sa.select(invitations.c.id, invitations.c.code)).all():
        bind.execute(invitations.update().where(invitations.c.id == row.id).values(
            code_hash=hashlib.sha256(row.code.encode()).hexdigest()))

    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_invitations_code'), type_='unique')
        batch_op.create_index(batch_op.f('ix_invitations_campaign_id'), ['campaign_id'], unique=False)
        batch_op.create_unique_constraint(batch_op.f('uq_invitations_code_hash'), ['code_hash'])
        batch_op.create_foreign_key(batch_op.f('fk_invitations_campaign_id_invitation_campaigns'), 'invitation_campaigns', ['campaign_id'], ['id'], ondelete='CASCADE')
        batch_op.drop_column('code')

    # Members are no candidates: out of the candidate index.
    op.execute("UPDATE users SET candidate_score = -1 WHERE id IN (SELECT user_id FROM members)")

    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_users_candidate_score'))
        batch_op.create_index('ix_users_candidates', ['candidate_score'], unique=False, postgresql_where=sa.text('candidate_score >= 0'), sqlite_where=sa.text('candidate_score >= 0'))



def downgrade():
    with op.batch_alter_table('users', schema=None) as batch_op:
        batch_op.drop_index('ix_users_candidates', postgresql_where=sa.text('candidate_score >= 0'), sqlite_where=sa.text('candidate_score >= 0'))
        batch_op.create_index(batch_op.f('ix_users_candidate_score'), ['candidate_score'], unique=False)

    with op.batch_alter_table('invitations', schema=None) as batch_op:
        # The plain codes are gone: old links stop working after a downgrade.
        batch_op.add_column(sa.Column('code', sa.VARCHAR(length=64), nullable=True))
        batch_op.drop_constraint(batch_op.f('fk_invitations_campaign_id_invitation_campaigns'), type_='foreignkey')
        batch_op.drop_constraint(batch_op.f('uq_invitations_code_hash'), type_='unique')
        batch_op.drop_index(batch_op.f('ix_invitations_campaign_id'))
        batch_op.create_unique_constraint(batch_op.f('uq_invitations_code'), ['code'])
    op.execute("UPDATE invitations SET code = 'gone-' || CAST(id AS VARCHAR(20))")
    op.execute("UPDATE users SET candidate_score = 0 WHERE candidate_score < 0")
    with op.batch_alter_table('invitations', schema=None) as batch_op:
        batch_op.alter_column('code', existing_type=sa.VARCHAR(length=64), nullable=False)
        batch_op.drop_column('revoked_at')
        batch_op.drop_column('opened_at')
        batch_op.drop_column('campaign_id')
        batch_op.drop_column('code_hash')

    op.drop_table('invitation_campaigns')
    op.drop_table('candidate_rule_sets')
