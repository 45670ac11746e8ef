"""store data-quality runs and each check's raw counts

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01 15:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "dq_runs",
        sa.Column("dq_run_id", Id, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("dq_run_id", name=op.f("pk_dq_runs")),
    )
    op.create_table(
        "dq_results",
        sa.Column("dq_run_id", Id, nullable=False),
        sa.Column("check_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=16), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("violated", sa.Integer(), nullable=True),
        sa.Column("denominator", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(
            ["dq_run_id"],
            ["dq_runs.dq_run_id"],
            name=op.f("fk_dq_results_dq_run_id_dq_runs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("dq_run_id", "check_id", name=op.f("pk_dq_results")),
    )


def downgrade() -> None:
    op.drop_table("dq_results")
    op.drop_table("dq_runs")
