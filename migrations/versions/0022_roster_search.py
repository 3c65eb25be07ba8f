"""Roster search: part of a member's name or of a social handle found through trigram indexes

PostgreSQL's pg_trgm (a trusted extension since PostgreSQL 13: a database owner may create it)
gives GIN indexes that serve ILIKE '%...%'; the indexes are built CONCURRENTLY, outside the
migration's transaction. SQLite gets plain indexes of the same names (its LIKE reads the table
either way; the roster there is small).

Revision ID: 0022_roster_search
Revises: 0021_candidate_segments
"""
from alembic import op


# revision identifiers, used by Alembic.
revision = '0022_roster_search'
down_revision = '0021_candidate_segments'
branch_labels = None
depends_on = None

INDEXES = {'ix_members_display_name_search': ('members', 'display_name'),
           'ix_social_accounts_handle_search': ('social_accounts', 'handle')}


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        for name, (table, column) in INDEXES.items():
            op.create_index(name, table, [column])
        return
    op.execute('CREATE EXTENSION IF NOT EXISTS pg_trgm')
    for name, (table, column) in INDEXES.items():
        with op.get_context().autocommit_block():
            op.create_index(name, table, [column], postgresql_using='gin',
                            postgresql_ops={column: 'gin_trgm_ops'},
                            postgresql_concurrently=True, if_not_exists=True)


def downgrade():
    # pg_trgm stays: other databases objects may use it by now.
    for name, (table, _column) in INDEXES.items():
        op.drop_index(name, table_name=table)
