"""laboratory series

The optional labs.csv: one row per test and sample date, the delivered text and unit kept and
the value converted to the test's canonical unit (registry.core.labs).

Revision ID: 0016
Revises: 0015
Create Date: 2026-12-07 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "labs",
        sa.Column("lab_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("sample_date", sa.Date(), nullable=False),
        sa.Column("test", sa.String(length=32), nullable=False),
        sa.Column("value_text", sa.String(length=64), nullable=False),
        sa.Column("unit", sa.String(length=16), nullable=True),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("result", sa.String(length=8), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("row_hash", sa.BigInteger(), nullable=True),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_key"], ["patients.patient_key"], name=op.f("fk_labs_patient_key_patients")
        ),
        sa.PrimaryKeyConstraint("lab_key", name=op.f("pk_labs")),
    )
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.create_index("ix_labs_patient_date", ["patient_key", "sample_date"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("labs", schema=None) as batch_op:
        batch_op.drop_index("ix_labs_patient_date")

    op.drop_table("labs")
