"""approval timeout, reviewer groups, freeze windows

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28 20:41:20.343962
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:

    op.create_table(
        "reviewer_group",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("workspace_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=63), nullable=False),
        sa.Column("members", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["workspace_id"],
            ["workspace.id"],
            name=op.f("fk_reviewer_group_workspace_id_workspace"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reviewer_group")),
        sa.UniqueConstraint(
            "workspace_id", "name", name=op.f("uq_reviewer_group_workspace_id_name")
        ),
    )
    op.create_table(
        "freeze_window",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("starts_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ends_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_by", sa.String(length=200), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("lifted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("lifted_by", sa.String(length=200), nullable=True),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environment.id"],
            name=op.f("fk_freeze_window_environment_id_environment"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_freeze_window")),
    )
    with op.batch_alter_table("environment", schema=None) as batch_op:
        # Existing environments get the default of seven days.
        batch_op.add_column(
            sa.Column(
                "approval_timeout_minutes", sa.Integer(), nullable=False, server_default="10080"
            )
        )


def downgrade() -> None:

    with op.batch_alter_table("environment", schema=None) as batch_op:
        batch_op.drop_column("approval_timeout_minutes")

    op.drop_table("freeze_window")
    op.drop_table("reviewer_group")
