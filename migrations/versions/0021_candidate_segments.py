"""Candidate segments: the top-N of a city or a store read from an index of that segment

At 40 million users a filter on one store (a 500th of the base) walked the score index until it
had found a page of that store's users, and counted them from the table. Each partial index here
holds the candidates of one segment column by score, so a segment's first page reads a few index
pages and its count the segment's part of one index. Forgotten people take the excluded score
(-1) like members, so whether a user is a candidate is decided by the index alone.

On PostgreSQL the indexes are built CONCURRENTLY, outside the migration's transaction: a brand's
users table keeps taking imports and sign-ups while they build.

Revision ID: 0021_candidate_segments
Revises: 0020_leaderboard_standings
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0021_candidate_segments'
down_revision = '0020_leaderboard_standings'
branch_labels = None
depends_on = None

CANDIDATES = sa.text('candidate_score >= 0')
SEGMENTS = {'ix_users_candidates_city': 'city', 'ix_users_candidates_store': 'store_code'}


def upgrade():
    op.execute('UPDATE users SET candidate_score = -1 WHERE forgotten_at IS NOT NULL '
               'AND candidate_score >= 0')
    postgresql = op.get_bind().dialect.name == 'postgresql'
    for name, column in SEGMENTS.items():
        columns = [column, "candidate_score", "id"]
        if postgresql:
            with op.get_context().autocommit_block():
                op.create_index(name, 'users', columns, postgresql_where=CANDIDATES,
                                postgresql_concurrently=True, if_not_exists=True)
        else:
            op.create_index(name, 'users', columns, sqlite_where=CANDIDATES)


def downgrade():
    # Forgotten people keep -1: the code before this revision filtered them out anyway.
    for name in SEGMENTS:
        op.drop_index(name, table_name='users')
