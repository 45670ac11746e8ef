"""per-drug facts

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07 20:16:37

Generic per-drug facts replace the columns the founding study had wired into the derivation:
``line_drugs`` (each drug of each line: in its first regimen, in its maintenance) and, in
``relapse_refractoriness``, each drug's exposure days, drug-free interval and last dose at each
relapse. Gone: ``patient_summaries.lenalidomide_maintenance`` and ``l2_lenalidomide``,
``regimens.contains_lenalidomide`` and the four ``relapses.len_*`` columns (a cohort declaring
``drugs = ["lenalidomide"]`` gets the same facts as columns). The patients with derived lines
are flagged, so the next ``registry derive`` (or nightly run) fills the new rows in.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "line_drugs",
        sa.Column("line_id", ID, nullable=False),
        sa.Column("drug_id", ID, nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("first_regimen", sa.Boolean(), nullable=False),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.drug_id"], name=op.f("fk_line_drugs_drug_id_drugs")),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines_of_therapy.line_id"],
            name=op.f("fk_line_drugs_line_id_lines_of_therapy"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("line_id", "drug_id", name=op.f("pk_line_drugs")),
    )
    op.create_index(op.f("ix_line_drugs_patient_key"), "line_drugs", ["patient_key"], unique=False)
    with op.batch_alter_table("patient_summaries") as batch_op:
        batch_op.drop_column("l2_lenalidomide")
        batch_op.drop_column("lenalidomide_maintenance")
    with op.batch_alter_table("regimens") as batch_op:
        batch_op.drop_column("contains_lenalidomide")
    with op.batch_alter_table("relapse_refractoriness") as batch_op:
        batch_op.add_column(sa.Column("exposure_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("free_interval_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("last_dose_mg", sa.Float(), nullable=True))
    with op.batch_alter_table("relapses") as batch_op:
        batch_op.drop_column("len_last_dose_mg")
        batch_op.drop_column("len_refractory")
        batch_op.drop_column("len_exposure_days")
        batch_op.drop_column("len_free_interval_days")
    _flag_for_derivation()


def downgrade() -> None:
    """The old columns come back empty (false, null) and the patients with lines are flagged:
    the older release's next derivation fills them in."""
    with op.batch_alter_table("relapses") as batch_op:
        batch_op.add_column(sa.Column("len_free_interval_days", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("len_exposure_days", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("len_refractory", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(sa.Column("len_last_dose_mg", sa.Float(), nullable=True))
    with op.batch_alter_table("relapse_refractoriness") as batch_op:
        batch_op.drop_column("last_dose_mg")
        batch_op.drop_column("free_interval_days")
        batch_op.drop_column("exposure_days")
    with op.batch_alter_table("regimens") as batch_op:
        batch_op.add_column(
            sa.Column("contains_lenalidomide", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    with op.batch_alter_table("patient_summaries") as batch_op:
        batch_op.add_column(
            sa.Column("lenalidomide_maintenance", sa.Boolean(), nullable=False, server_default=sa.false())
        )
        batch_op.add_column(
            sa.Column("l2_lenalidomide", sa.Boolean(), nullable=False, server_default=sa.false())
        )
    op.drop_index(op.f("ix_line_drugs_patient_key"), table_name="line_drugs")
    op.drop_table("line_drugs")
    _flag_for_derivation()


def _flag_for_derivation() -> None:
    """The patients with lines are derived again, and their stored digests forgotten: the
    migration added or removed derived rows, so a digest equal to the new derivation's (a
    registry derived by this release, downgraded and upgraded again) must not mean "nothing to
    write"."""
    op.execute(
        "UPDATE patients SET needs_derivation = TRUE "
        "WHERE EXISTS (SELECT 1 FROM lines_of_therapy l WHERE l.patient_key = patients.patient_key)"
    )
    op.execute("UPDATE patient_summaries SET derivation_digest = NULL, table_digests = NULL")
