"""Security: token expiry and use, panel sessions kept on the server, the audit log, badge key ids,
webhook secrets and URLs encrypted at rest

Revision ID: 0007_security
Revises: 0004_tiers
Create Date: 2026-12-01 23:20:00

"""
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from alembic import op

import koc.core.crypto
import koc.core.db

revision = '0007_security'
down_revision = '0004_tiers'
branch_labels = None
depends_on = None

BIGINT = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')
WHEN = koc.core.db.UTCDateTime(timezone=True)


def upgrade():
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.add_column(sa.Column('expires_at', WHEN, nullable=True))
        batch_op.add_column(sa.Column('last_used_at', WHEN, nullable=True))
        batch_op.add_column(sa.Column('revoke_reason', sa.String(length=64), nullable=True))
    # Tokens made before expiry existed get the default lifetime from now, not "never".
    tokens = sa.table('api_tokens', sa.column('expires_at', WHEN))
    op.execute(tokens.update().where(tokens.c.expires_at.is_(None))
               .values(expires_at=datetime.now(UTC) + timedelta(days=90)))

    with op.batch_alter_table('badges', schema=None) as batch_op:
        batch_op.add_column(sa.Column('key_id', sa.String(length=16), nullable=True))

    op.create_table('staff_sessions',
    sa.Column('id', BIGINT, nullable=False),
    sa.Column('session_hash', sa.String(length=64), nullable=False),
    sa.Column('staff_id', BIGINT, nullable=False),
    sa.Column('created_at', WHEN, nullable=False),
    sa.Column('expires_at', WHEN, nullable=False),
    sa.Column('ended_at', WHEN, nullable=True),
    sa.Column('end_reason', sa.String(length=64), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('user_agent', sa.String(length=200), nullable=True),
    sa.ForeignKeyConstraint(['staff_id'], ['staff.id'],
                            name=op.f('fk_staff_sessions_staff_id_staff'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_staff_sessions')),
    sa.UniqueConstraint('session_hash', name=op.f('uq_staff_sessions_session_hash'))
    )
    op.create_index(op.f('ix_staff_sessions_staff_id'), 'staff_sessions', ['staff_id'])

    op.create_table('audit_events',
    sa.Column('id', BIGINT, nullable=False),
    sa.Column('created_at', WHEN, nullable=False),
    sa.Column('actor_staff_id', BIGINT, nullable=True),
    sa.Column('actor', sa.String(length=254), nullable=False),
    sa.Column('action', sa.String(length=64), nullable=False),
    sa.Column('target', sa.String(length=160), nullable=True),
    sa.Column('ip', sa.String(length=45), nullable=True),
    sa.Column('details', sa.JSON().with_variant(sa.dialects.postgresql.JSONB(), 'postgresql'),
              nullable=False),
    sa.ForeignKeyConstraint(['actor_staff_id'], ['staff.id'],
                            name=op.f('fk_audit_events_actor_staff_id_staff'),
                            ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_audit_events'))
    )
    op.create_index(op.f('ix_audit_events_created_at'), 'audit_events', ['created_at'])
    op.create_index(op.f('ix_audit_events_actor_staff_id'), 'audit_events', ['actor_staff_id'])
    op.create_index(op.f('ix_audit_events_action'), 'audit_events', ['action'])
    op.create_index(op.f('ix_audit_events_target'), 'audit_events', ['target'])

    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column('url', type_=koc.core.crypto.EncryptedText(),
                              existing_type=sa.String(length=2000), existing_nullable=False)
        batch_op.alter_column('secret', type_=koc.core.crypto.EncryptedText(),
                              existing_type=sa.String(length=200), existing_nullable=True)
    # Plain-text rows from before: encrypted now with the app's key (Flask-Migrate runs this
    # inside the app), not left readable until their next write.
    hooks = sa.table('webhooks', sa.column('id', BIGINT), sa.column('url', sa.Text),
                     sa.column('secret', sa.Text))
    connection = op.get_bind()
    for row in connection.execute(sa.select(hooks)).all():
        values = {name: koc.core.crypto.encrypt(value) for name, value in
                  (("url", row.url), ("secret", row.secret))
                  if value is not None and not value.startswith(koc.core.crypto.MARK)}
        if values:
            connection.execute(hooks.update().where(hooks.c.id == row.id).values(**values))


def downgrade():
    hooks = sa.table('webhooks', sa.column('id', BIGINT), sa.column('url', sa.Text),
                     sa.column('secret', sa.Text))
    connection = op.get_bind()
    for row in connection.execute(sa.select(hooks)).all():
        connection.execute(hooks.update().where(hooks.c.id == row.id).values(
            url=koc.core.crypto.decrypt(row.url),
            secret=None if row.secret is None else koc.core.crypto.decrypt(row.secret)))
    with op.batch_alter_table('webhooks', schema=None) as batch_op:
        batch_op.alter_column('secret', type_=sa.String(length=200), existing_nullable=True)
        batch_op.alter_column('url', type_=sa.String(length=2000), existing_nullable=False)
    op.drop_table('audit_events')
    op.drop_table('staff_sessions')
    with op.batch_alter_table('badges', schema=None) as batch_op:
        batch_op.drop_column('key_id')
    with op.batch_alter_table('api_tokens', schema=None) as batch_op:
        batch_op.drop_column('revoke_reason')
        batch_op.drop_column('last_used_at')
        batch_op.drop_column('expires_at')
