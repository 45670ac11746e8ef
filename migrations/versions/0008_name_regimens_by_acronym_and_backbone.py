"""name regimens by acronym and backbone

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01 15:10:00

The derivation fills the two columns; a registry derived before them has its patients with
regimens flagged so that the next ``registry derive`` (or nightly run) fills them in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("regimens") as batch:
        batch.add_column(sa.Column("acronym", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("backbone", sa.String(length=120), nullable=True))
    op.execute(
        "UPDATE patients SET needs_derivation = TRUE "
        "WHERE EXISTS (SELECT 1 FROM regimens r WHERE r.patient_key = patients.patient_key)"
    )


def downgrade() -> None:
    with op.batch_alter_table("regimens") as batch:
        batch.drop_column("backbone")
        batch.drop_column("acronym")
