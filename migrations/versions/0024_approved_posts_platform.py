"""Approved posts by platform: the dashboard's engagement-by-platform chart reads one index

The chart sums the interactions of the approved posts of the last twelve weeks per platform and
week. ix_submissions_approved_posted already carried the member and the interactions for the
leaderboard; carrying the platform too makes the chart an index-only scan instead of a visit to
a table page per post.

PostgreSQL only (SQLite has no INCLUDE). Built CONCURRENTLY beside the old index, which is then
dropped and the new one takes its name.

Revision ID: 0024_approved_posts_platform
Revises: 0023_review_queue_covering
"""
from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision = '0024_approved_posts_platform'
down_revision = '0023_review_queue_covering'
branch_labels = None
depends_on = None

APPROVED = sa.text("status = 'approved'")


def _rebuild(include):
    with op.get_context().autocommit_block():
        op.create_index('ix_submissions_approved_posted_next', 'submissions', ['posted_at'],
                        postgresql_where=APPROVED, postgresql_include=include,
                        postgresql_concurrently=True, if_not_exists=True)
        op.drop_index('ix_submissions_approved_posted', table_name='submissions',
                      postgresql_concurrently=True, if_exists=True)
        op.execute('ALTER INDEX ix_submissions_approved_posted_next '
                   'RENAME TO ix_submissions_approved_posted')


def upgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _rebuild(['member_id', 'interactions', 'platform'])


def downgrade():
    if op.get_bind().dialect.name == 'postgresql':
        _rebuild(['member_id', 'interactions'])
