"""Baseline schema.

Policy until the first release: the schema lives in `mailwright.storage.models` and this one
revision creates it, so parallel work on the models never produces competing Alembic heads.
From the first tagged release on, this file is frozen (the tables spelled out) and every schema
change gets its own revision.

Revision ID: 0001
Revises:
"""

from alembic import op

from mailwright.storage.models import Base

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    Base.metadata.create_all(op.get_bind())


def downgrade() -> None:
    Base.metadata.drop_all(op.get_bind())
