"""log every record a run adds, changes, reinstates or retires

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-01 15:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

Id = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "record_changes",
        sa.Column("change_id", Id, autoincrement=True, nullable=False),
        sa.Column("run_id", Id, nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("file", sa.String(length=32), nullable=False),
        sa.Column("record_key", sa.String(length=64), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("columns", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("change_id", name=op.f("pk_record_changes")),
    )
    op.create_index(op.f("ix_record_changes_run_id"), "record_changes", ["run_id"])
    op.create_index(op.f("ix_record_changes_patient_key"), "record_changes", ["patient_key"])


def downgrade() -> None:
    op.drop_index(op.f("ix_record_changes_patient_key"), table_name="record_changes")
    op.drop_index(op.f("ix_record_changes_run_id"), table_name="record_changes")
    op.drop_table("record_changes")
