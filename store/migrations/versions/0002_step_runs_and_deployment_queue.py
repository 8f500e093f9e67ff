"""step runs, the deployment queue, and what a rollback restores

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28 20:24:49.019579
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("deployment") as batch:
        batch.add_column(sa.Column("restores_deployment_id", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            op.f("fk_deployment_restores_deployment_id_deployment"),
            "deployment",
            ["restores_deployment_id"],
            ["id"],
            ondelete="RESTRICT",
        )
        batch.create_index("ix_deployment_app_env", ["app_id", "environment_id", "id"])

    op.create_table(
        "deployment_ticket",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("environment_id", sa.Integer(), nullable=False),
        sa.Column("workflow_id", sa.String(length=255), nullable=False),
        sa.Column("run_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=20), nullable=False),
        sa.Column("state", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["app_id"],
            ["app.id"],
            name=op.f("fk_deployment_ticket_app_id_app"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["environment_id"],
            ["environment.id"],
            name=op.f("fk_deployment_ticket_environment_id_environment"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_deployment_ticket")),
        sa.UniqueConstraint(
            "workflow_id", "run_id", name=op.f("uq_deployment_ticket_workflow_id_run_id")
        ),
    )
    op.create_table(
        "step_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("deployment_id", sa.Integer(), nullable=False),
        sa.Column("section", sa.String(length=20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("kind", sa.String(length=10), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("output", sa.Text(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["deployment_id"],
            ["deployment.id"],
            name=op.f("fk_step_run_deployment_id_deployment"),
            ondelete="RESTRICT",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_step_run")),
        sa.UniqueConstraint(
            "deployment_id",
            "section",
            "position",
            "attempt",
            name=op.f("uq_step_run_deployment_id_section_position_attempt"),
        ),
    )


def downgrade() -> None:

    op.drop_table("step_run")
    op.drop_table("deployment_ticket")
    with op.batch_alter_table("deployment") as batch:
        batch.drop_index("ix_deployment_app_env")
        batch.drop_constraint(
            op.f("fk_deployment_restores_deployment_id_deployment"), type_="foreignkey"
        )
        batch.drop_column("restores_deployment_id")
