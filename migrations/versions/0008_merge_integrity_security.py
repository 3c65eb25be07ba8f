"""Join the integrity (0005) and security (0007) branches, written side by side from 0004.

Revision ID: 0008_merge
Revises: 0005_integrity, 0007_security
"""

# revision identifiers, used by Alembic.
revision = '0008_merge'
down_revision = ('0005_integrity', '0007_security')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
