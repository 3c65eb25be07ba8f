"""Join the user-base branch (0006) with the integrity and security ones (0008).

Revision ID: 0009_merge
Revises: 0008_merge, 0006_userbase
"""

# revision identifiers, used by Alembic.
revision = '0009_merge'
down_revision = ('0008_merge', '0006_userbase')
branch_labels = None
depends_on = None


def upgrade():
    pass


def downgrade():
    pass
