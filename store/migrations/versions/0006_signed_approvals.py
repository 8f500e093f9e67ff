"""signed approvals: reviewer keys, and environments that require signatures

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-02 10:00:00.000000
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "reviewer_key",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("reviewer", sa.String(length=200), nullable=False),
        sa.Column("public_key", sa.String(length=100), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspace.id"],
            name=op.f("fk_reviewer_key_workspace_id_workspace"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewer_key")),
        sa.UniqueConstraint(
            "workspace_id", "fingerprint", name=op.f("uq_reviewer_key_workspace_id_fingerprint")
        ),
    )
    op.create_index("ix_reviewer_key_reviewer", "reviewer_key", ["workspace_id", "reviewer"])
    with op.batch_alter_table("environment", schema=None) as batch_op:
        # Existing environments keep accepting unsigned decisions.
        batch_op.add_column(
            sa.Column(
                "require_signed_approvals", sa.Boolean(), nullable=False, server_default=sa.false()
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("require_signed_approvals")

    op.drop_index("ix_reviewer_key_reviewer", table_name="reviewer_key")
    op.drop_table("reviewer_key")
