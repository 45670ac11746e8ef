"""remember each site's last full delivery of each file (to skip unchanged files)

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01 15:30:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "source_files",
        sa.Column("site_code", sa.String(length=32), nullable=False),
        sa.Column("file", sa.String(length=32), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("rows", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("registry_version", sa.String(length=32), nullable=False),
        sa.PrimaryKeyConstraint("site_code", "file", name=op.f("pk_source_files")),
    )


def downgrade() -> None:
    op.drop_table("source_files")
