"""tool profile auth schemes and body parameters

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28 21:56:01.379944
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:

    with op.batch_alter_table("tool_profile", schema=None) as batch_op:
        # Existing profiles keep sending their secret as a bearer token, with no body extras.
        batch_op.add_column(
            sa.Column("auth_scheme", sa.String(length=10), nullable=False, server_default="bearer")
        )
        batch_op.add_column(sa.Column("auth_header", sa.String(length=100), nullable=True))
        batch_op.add_column(sa.Column("body", sa.JSON(), nullable=False, server_default="{}"))


def downgrade() -> None:

    with op.batch_alter_table("tool_profile", schema=None) as batch_op:
        batch_op.drop_column("body")
        batch_op.drop_column("auth_header")
        batch_op.drop_column("auth_scheme")
