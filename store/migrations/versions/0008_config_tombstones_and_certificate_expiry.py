"""configuration lifecycle: tombstone versions for deleted variables and secrets, and the
expiry of certificate secrets

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-10 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("variable", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("secret", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("deleted", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        # Certificates stored before this revision have no expiry on record until set again:
        # reading it would need the master key, which migrations never have.
        batch_op.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("secret", schema=None) as batch_op:
        batch_op.drop_column("expires_at")
        batch_op.drop_column("deleted")
    with op.batch_alter_table("variable", schema=None) as batch_op:
        batch_op.drop_column("deleted")
