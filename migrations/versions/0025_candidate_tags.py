"""Candidate tags: a tag's candidates found through an index of the tags, not by walking the ranking

`GET /api/v1/candidates?tag=...` walked the score index best first and tested each user's tags
until a page had filled: quick for a tag many candidates carry, but for a tag a few thousand of
40 million carry the walk read most of the base and ran into the ranking's time limit (422).
A GIN index of the candidates' tags (jsonb_path_ops: it serves exactly the @> containment the
filter uses) lets PostgreSQL fetch a rare tag's candidates directly and sort that handful; for
a common tag the planner keeps the ranking walk, which fills a page in a few index pages.

On SQLite the filter goes through json_each and no index serves it; the plain index keeps the
two schemas alike. On PostgreSQL it is built CONCURRENTLY, outside the migration's transaction.

Revision ID: 0025_candidate_tags
Revises: 0024_approved_posts_platform
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0025_candidate_tags'
down_revision = '0024_approved_posts_platform'
branch_labels = None
depends_on = None

CANDIDATES = sa.text('candidate_score >= 0')


def upgrade():
    if op.get_bind().dialect.name != 'postgresql':
        op.create_index('ix_users_candidates_tags', 'users', ['tags'], sqlite_where=CANDIDATES)
        return
    with op.get_context().autocommit_block():
        op.create_index('ix_users_candidates_tags', 'users', ['tags'], postgresql_using='gin',
                        postgresql_ops={'tags': 'jsonb_path_ops'}, postgresql_where=CANDIDATES,
                        postgresql_concurrently=True, if_not_exists=True)


def downgrade():
    op.drop_index('ix_users_candidates_tags', table_name='users')
