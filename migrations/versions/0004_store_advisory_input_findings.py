"""store advisory findings on loaded input rows

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01 15:20:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "input_findings",
        sa.Column("finding_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file", sa.String(length=32), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("record_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=True),
        sa.Column("rule", sa.String(length=48), nullable=False),
        sa.Column("column", sa.String(length=64), nullable=True),
        sa.Column("value", sa.Text(), nullable=True),
        sa.Column("message", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["run_id"], ["etl_runs.run_id"], name=op.f("fk_input_findings_run_id_etl_runs")
        ),
        sa.PrimaryKeyConstraint("finding_id", name=op.f("pk_input_findings")),
    )
    op.create_index(op.f("ix_input_findings_run_id"), "input_findings", ["run_id"])
    op.create_index(op.f("ix_input_findings_patient_key"), "input_findings", ["patient_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_input_findings_patient_key"), table_name="input_findings")
    op.drop_index(op.f("ix_input_findings_run_id"), table_name="input_findings")
    op.drop_table("input_findings")
