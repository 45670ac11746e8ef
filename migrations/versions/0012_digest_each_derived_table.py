"""digest each derived table of a patient

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01 22:40:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # null for patients derived before: their next changed derivation compares every table
    op.add_column("patient_summaries", sa.Column("table_digests", sa.String(length=160), nullable=True))


def downgrade() -> None:
    op.drop_column("patient_summaries", "table_digests")
