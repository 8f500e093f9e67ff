"""promotion approvals on record: the approvals a promotion needed when its gates ran, and the
reviewers whose approvals counted, so a deployment begins only when they add up

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 11:20:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        # Null for promotions recorded before: their runs are not checked this way.
        batch_op.add_column(sa.Column("required_approvals", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("approved_by", sa.JSON(), nullable=False, server_default=sa.text("'[]'"))
        )


def downgrade() -> None:
    with op.batch_alter_table("promotion", schema=None) as batch_op:
        batch_op.drop_column("approved_by")
        batch_op.drop_column("required_approvals")
