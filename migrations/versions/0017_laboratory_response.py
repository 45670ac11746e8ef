"""laboratory response

The response of each line (best response, its basis, the baseline and parameters judged, the
line's laboratory progression), one row per assessment judged from the laboratory series, the
sources of each relapse episode, and the derived day-100 response. Filled by the next
derivation: the parameters change the rules version, so `registry doctor` asks for
`registry derive --all`.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-07 16:58:22.234498
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "response_assessments",
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("assessment_date", sa.Date(), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=8), nullable=False),
        sa.Column("confirmed", sa.Boolean(), nullable=False),
        sa.Column("basis", sa.String(length=200), nullable=False),
        sa.Column("serum_m_protein", sa.Float(), nullable=True),
        sa.Column("urine_m_protein", sa.Float(), nullable=True),
        sa.Column("dflc", sa.Float(), nullable=True),
        sa.Column("bm_plasma_cells", sa.Float(), nullable=True),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines_of_therapy.line_id"],
            name=op.f("fk_response_assessments_line_id_lines_of_therapy"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("line_id", "assessment_date", name=op.f("pk_response_assessments")),
    )
    with op.batch_alter_table("response_assessments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_response_assessments_patient_key"), ["patient_key"], unique=False
        )

    with op.batch_alter_table("lines_of_therapy", schema=None) as batch_op:
        batch_op.add_column(sa.Column("best_response", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("best_response_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("response_basis", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("response_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("best_response_unconfirmed", sa.String(length=8), nullable=True))
        batch_op.add_column(sa.Column("measurable", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("response_baseline", sa.String(length=120), nullable=True))
        batch_op.add_column(sa.Column("lab_progression_date", sa.Date(), nullable=True))
        batch_op.add_column(sa.Column("lab_progression_basis", sa.String(length=200), nullable=True))

    with op.batch_alter_table("patient_summaries", schema=None) as batch_op:
        batch_op.add_column(sa.Column("day100_response", sa.String(length=8), nullable=True))
        batch_op.alter_column(
            "table_digests",
            existing_type=sa.VARCHAR(length=160),
            type_=sa.String(length=192),
            existing_nullable=True,
        )

    with op.batch_alter_table("relapses", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sources", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("relapses", schema=None) as batch_op:
        batch_op.drop_column("sources")

    # the per-table digests of a later schema may be longer than the older column: they only
    # save work (a missing digest compares every table), so they go
    op.execute("UPDATE patient_summaries SET table_digests = NULL")
    with op.batch_alter_table("patient_summaries", schema=None) as batch_op:
        batch_op.alter_column(
            "table_digests",
            existing_type=sa.String(length=192),
            type_=sa.VARCHAR(length=160),
            existing_nullable=True,
        )
        batch_op.drop_column("day100_response")

    with op.batch_alter_table("lines_of_therapy", schema=None) as batch_op:
        batch_op.drop_column("lab_progression_basis")
        batch_op.drop_column("lab_progression_date")
        batch_op.drop_column("response_baseline")
        batch_op.drop_column("measurable")
        batch_op.drop_column("best_response_unconfirmed")
        batch_op.drop_column("response_date")
        batch_op.drop_column("response_basis")
        batch_op.drop_column("best_response_date")
        batch_op.drop_column("best_response")

    with op.batch_alter_table("response_assessments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_response_assessments_patient_key"))

    op.drop_table("response_assessments")
