"""digest each patient's derivation

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01 19:45:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("patient_summaries", sa.Column("derivation_digest", sa.String(length=32), nullable=True))


def downgrade() -> None:
    op.drop_column("patient_summaries", "derivation_digest")
