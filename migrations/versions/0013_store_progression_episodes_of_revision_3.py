"""store progression episodes of revision 3

Lines may start because a progression was recorded after the salvage regimen began
(``progression_recorded_later``, 26 characters: the start rule column widens); exposures of an
unmapped drug whose rows record an intent have no drug id but their normalised name; relapses
record how many events their episode holds and whether it was recorded after its line began;
the patient summary keeps the 2nd line's start rule and its first later progression.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 12:00:00
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("lines_of_therapy") as batch:
        batch.alter_column("start_rule", existing_type=sa.String(length=16), type_=sa.String(length=32))
    with op.batch_alter_table("exposures") as batch:
        batch.alter_column(
            "drug_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True
        )
        batch.add_column(sa.Column("unmapped_drug", sa.String(length=200), nullable=True))
    op.add_column("relapses", sa.Column("event_records", sa.Integer(), nullable=True))
    op.add_column("relapses", sa.Column("recorded_after_line_start", sa.Boolean(), nullable=True))
    op.add_column("patient_summaries", sa.Column("l2_start_rule", sa.String(length=32), nullable=True))
    op.add_column("patient_summaries", sa.Column("l2_progression_date", sa.Date(), nullable=True))


def downgrade() -> None:
    op.drop_column("patient_summaries", "l2_progression_date")
    op.drop_column("patient_summaries", "l2_start_rule")
    op.drop_column("relapses", "recorded_after_line_start")
    op.drop_column("relapses", "event_records")
    with op.batch_alter_table("exposures") as batch:
        batch.drop_column("unmapped_drug")
        batch.alter_column(
            "drug_id", existing_type=sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        )
    with op.batch_alter_table("lines_of_therapy") as batch:
        batch.alter_column("start_rule", existing_type=sa.String(length=32), type_=sa.String(length=16))
