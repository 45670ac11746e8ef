"""keep a keyed hash of each loaded source row

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01 19:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

LOADED = ("patients", "follow_up", "transplants", "treatments", "disease_events")


def upgrade() -> None:
    for table in LOADED:  # a plain ADD COLUMN on both engines (no table copy)
        op.add_column(table, sa.Column("row_hash", sa.BigInteger(), nullable=True))


def downgrade() -> None:
    for table in LOADED:
        op.drop_column(table, "row_hash")
