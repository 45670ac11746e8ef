"""remember delivered columns

Each site's last full delivery of a file remembers its header, so a full export that lost a
column the site delivered before is refused instead of blanking it for every patient; a run
records the columns the operator said are gone on purpose.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-07 13:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # null for deliveries remembered before: the next full delivery records its header
    op.add_column("source_files", sa.Column("columns", sa.Text(), nullable=True))
    op.add_column("etl_runs", sa.Column("columns_gone", sa.JSON(), nullable=True))


def downgrade() -> None:
    op.drop_column("etl_runs", "columns_gone")
    op.drop_column("source_files", "columns")
