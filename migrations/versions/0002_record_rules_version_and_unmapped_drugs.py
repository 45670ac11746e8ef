"""record the derivation rules version and the unmapped drug names of each run

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-01 14:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("derivation_runs") as batch:
        batch.add_column(sa.Column("rules_version", sa.String(length=48), nullable=True))
    with op.batch_alter_table("etl_runs") as batch:
        batch.add_column(sa.Column("unmapped_drugs", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("etl_runs") as batch:
        batch.drop_column("unmapped_drugs")
    with op.batch_alter_table("derivation_runs") as batch:
        batch.drop_column("rules_version")
