"""verified requesters: environments that accept only requests the stageline server signed,
and whether each promotion's and deployment's requester was verified

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-14 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("environment", schema=None) as batch_op:
        # Existing environments keep accepting requests from anywhere.
        batch_op.add_column(
            sa.Column(
                "require_verified_requester",
                sa.Boolean(),
                nullable=False,
                server_default=sa.false(),
            )
        )
    # Records made before were never verified.
    for table in ("promotion", "deployment"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(
                sa.Column(
                    "requester_verified", sa.Boolean(), nullable=False, server_default=sa.false()
                )
            )


def downgrade() -> None:
    for table in ("deployment", "promotion"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_column("requester_verified")
    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("require_verified_requester")
