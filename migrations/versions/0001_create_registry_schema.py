"""create registry schema

Revision ID: 0001
Revises:
Create Date: 2026-11-24 04:25:18.871312
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "derivation_runs",
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("scope", sa.String(length=16), nullable=False),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("patients_derived", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("derivation_run_id", name=op.f("pk_derivation_runs")),
    )
    op.create_table(
        "drugs",
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("generic_name", sa.String(length=80), nullable=False),
        sa.Column("drug_class", sa.String(length=32), nullable=False),
        sa.Column("atc_code", sa.String(length=16), nullable=True),
        sa.Column("vocabulary_version", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("drug_id", name=op.f("pk_drugs")),
        sa.UniqueConstraint("generic_name", name=op.f("uq_drugs_generic_name")),
    )
    op.create_table(
        "etl_runs",
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("site_code", sa.String(length=32), nullable=True),
        sa.Column("bundle_hash", sa.String(length=64), nullable=True),
        sa.Column("exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("data_cutoff", sa.Date(), nullable=True),
        sa.Column("mode", sa.String(length=16), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("forced", sa.Boolean(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("file_counts", sa.JSON(), nullable=True),
        sa.Column("timings", sa.JSON(), nullable=True),
        sa.Column("warnings", sa.JSON(), nullable=True),
        sa.Column("message", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("run_id", name=op.f("pk_etl_runs")),
    )
    with op.batch_alter_table("etl_runs", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_etl_runs_bundle_hash"), ["bundle_hash"], unique=False)
        batch_op.create_index(batch_op.f("ix_etl_runs_site_code"), ["site_code"], unique=False)
        batch_op.create_index(batch_op.f("ix_etl_runs_status"), ["status"], unique=False)

    op.create_table(
        "sites",
        sa.Column("site_code", sa.String(length=32), nullable=False),
        sa.Column("first_loaded_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_exported_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_data_cutoff", sa.Date(), nullable=True),
        sa.Column("last_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.PrimaryKeyConstraint("site_code", name=op.f("pk_sites")),
    )
    op.create_table(
        "drug_synonyms",
        sa.Column("synonym", sa.String(length=120), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.drug_id"], name=op.f("fk_drug_synonyms_drug_id_drugs")),
        sa.PrimaryKeyConstraint("synonym", name=op.f("pk_drug_synonyms")),
    )
    with op.batch_alter_table("drug_synonyms", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_drug_synonyms_drug_id"), ["drug_id"], unique=False)

    op.create_table(
        "exposures",
        sa.Column("exposure_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("stop_reason", sa.String(length=16), nullable=True),
        sa.Column("last_dose_mg", sa.Float(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_exposures_derivation_run_id_derivation_runs"),
        ),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.drug_id"], name=op.f("fk_exposures_drug_id_drugs")),
        sa.PrimaryKeyConstraint("exposure_id", name=op.f("pk_exposures")),
    )
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exposures_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "lines_of_therapy",
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("line_number", sa.Integer(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("end_reason", sa.String(length=16), nullable=True),
        sa.Column("start_rule", sa.String(length=16), nullable=False),
        sa.Column("includes_index_transplant", sa.Boolean(), nullable=False),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_lines_of_therapy_derivation_run_id_derivation_runs"),
        ),
        sa.PrimaryKeyConstraint("line_id", name=op.f("pk_lines_of_therapy")),
        sa.UniqueConstraint("patient_key", "line_number", name=op.f("uq_lines_of_therapy_patient_key")),
    )
    with op.batch_alter_table("lines_of_therapy", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lines_of_therapy_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "patient_summaries",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("index_transplant_key", sa.String(length=64), nullable=True),
        sa.Column("index_transplant_date", sa.Date(), nullable=True),
        sa.Column("tandem_transplant_date", sa.Date(), nullable=True),
        sa.Column("maintenance", sa.Boolean(), nullable=False),
        sa.Column("lenalidomide_maintenance", sa.Boolean(), nullable=False),
        sa.Column("maintenance_agents", sa.String(length=200), nullable=True),
        sa.Column("maintenance_start", sa.Date(), nullable=True),
        sa.Column("maintenance_end", sa.Date(), nullable=True),
        sa.Column("maintenance_stop_reason", sa.String(length=16), nullable=True),
        sa.Column("relapse_date", sa.Date(), nullable=True),
        sa.Column("l2_line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("l2_start", sa.Date(), nullable=True),
        sa.Column("l2_first_regimen", sa.String(length=400), nullable=True),
        sa.Column("l2_lenalidomide", sa.Boolean(), nullable=False),
        sa.Column("lines", sa.Integer(), nullable=False),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_patient_summaries_derivation_run_id_derivation_runs"),
        ),
        sa.PrimaryKeyConstraint("patient_key", name=op.f("pk_patient_summaries")),
    )
    with op.batch_alter_table("patient_summaries", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_patient_summaries_index_transplant_date"), ["index_transplant_date"], unique=False
        )

    op.create_table(
        "patients",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("site_code", sa.String(length=32), nullable=False),
        sa.Column("sex", sa.String(length=1), nullable=False),
        sa.Column("birth_date", sa.Date(), nullable=False),
        sa.Column("diagnosis_date", sa.Date(), nullable=False),
        sa.Column("iss_stage", sa.String(length=3), nullable=True),
        sa.Column("riss_stage", sa.String(length=3), nullable=True),
        sa.Column("ldh_elevated", sa.Boolean(), nullable=True),
        sa.Column("del17p", sa.String(length=12), nullable=True),
        sa.Column("t_4_14", sa.String(length=12), nullable=True),
        sa.Column("t_14_16", sa.String(length=12), nullable=True),
        sa.Column("gain_1q", sa.String(length=12), nullable=True),
        sa.Column("heavy_chain", sa.String(length=4), nullable=True),
        sa.Column("light_chain", sa.String(length=6), nullable=True),
        sa.Column("cytogenetic_risk", sa.String(length=8), nullable=False),
        sa.Column("needs_derivation", sa.Boolean(), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["site_code"], ["sites.site_code"], name=op.f("fk_patients_site_code_sites")),
        sa.PrimaryKeyConstraint("patient_key", name=op.f("pk_patients")),
    )
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_patients_needs_derivation"), ["needs_derivation"], unique=False)
        batch_op.create_index(batch_op.f("ix_patients_site_code"), ["site_code"], unique=False)

    op.create_table(
        "quarantine",
        sa.Column("quarantine_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("file", sa.String(length=32), nullable=False),
        sa.Column("row_number", sa.Integer(), nullable=False),
        sa.Column("reasons", sa.JSON(), nullable=False),
        sa.Column("row_data", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["etl_runs.run_id"], name=op.f("fk_quarantine_run_id_etl_runs")),
        sa.PrimaryKeyConstraint("quarantine_id", name=op.f("pk_quarantine")),
    )
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.create_index("ix_quarantine_run_file", ["run_id", "file"], unique=False)
        batch_op.create_index(batch_op.f("ix_quarantine_run_id"), ["run_id"], unique=False)

    op.create_table(
        "disease_events",
        sa.Column("event_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("event_date", sa.Date(), nullable=False),
        sa.Column("event_type", sa.String(length=24), nullable=False),
        sa.Column("response", sa.String(length=4), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_key"], ["patients.patient_key"], name=op.f("fk_disease_events_patient_key_patients")
        ),
        sa.PrimaryKeyConstraint("event_key", name=op.f("pk_disease_events")),
    )
    with op.batch_alter_table("disease_events", schema=None) as batch_op:
        batch_op.create_index("ix_disease_events_patient_date", ["patient_key", "event_date"], unique=False)

    op.create_table(
        "exposure_sources",
        sa.Column("exposure_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("treatment_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["exposure_id"],
            ["exposures.exposure_id"],
            name=op.f("fk_exposure_sources_exposure_id_exposures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("exposure_id", "treatment_key", name=op.f("pk_exposure_sources")),
    )
    with op.batch_alter_table("exposure_sources", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_exposure_sources_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "follow_up",
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("last_contact_date", sa.Date(), nullable=False),
        sa.Column("vital_status", sa.String(length=8), nullable=False),
        sa.Column("death_date", sa.Date(), nullable=True),
        sa.Column("cause_of_death", sa.String(length=24), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_key"], ["patients.patient_key"], name=op.f("fk_follow_up_patient_key_patients")
        ),
        sa.PrimaryKeyConstraint("patient_key", name=op.f("pk_follow_up")),
    )
    op.create_table(
        "regimens",
        sa.Column("regimen_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("regimen_number", sa.Integer(), nullable=False),
        sa.Column("phase", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=400), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("stop_reason", sa.String(length=16), nullable=True),
        sa.Column("contains_lenalidomide", sa.Boolean(), nullable=False),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_regimens_derivation_run_id_derivation_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines_of_therapy.line_id"],
            name=op.f("fk_regimens_line_id_lines_of_therapy"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("regimen_id", name=op.f("pk_regimens")),
    )
    with op.batch_alter_table("regimens", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_regimens_line_id"), ["line_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_regimens_patient_key"), ["patient_key"], unique=False)
        batch_op.create_index(batch_op.f("ix_regimens_phase"), ["phase"], unique=False)

    op.create_table(
        "relapses",
        sa.Column("relapse_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("relapse_date", sa.Date(), nullable=False),
        sa.Column("sequence", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("source_key", sa.String(length=64), nullable=False),
        sa.Column("after_index_transplant", sa.Boolean(), nullable=False),
        sa.Column("is_first_after_index", sa.Boolean(), nullable=False),
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("len_refractory", sa.Boolean(), nullable=False),
        sa.Column("len_last_dose_mg", sa.Float(), nullable=True),
        sa.Column("len_exposure_days", sa.Integer(), nullable=True),
        sa.Column("len_free_interval_days", sa.Integer(), nullable=True),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_relapses_derivation_run_id_derivation_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines_of_therapy.line_id"],
            name=op.f("fk_relapses_line_id_lines_of_therapy"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("relapse_id", name=op.f("pk_relapses")),
    )
    with op.batch_alter_table("relapses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_relapses_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "transplant_roles",
        sa.Column("transplant_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("line_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("derivation_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["derivation_run_id"],
            ["derivation_runs.derivation_run_id"],
            name=op.f("fk_transplant_roles_derivation_run_id_derivation_runs"),
        ),
        sa.ForeignKeyConstraint(
            ["line_id"],
            ["lines_of_therapy.line_id"],
            name=op.f("fk_transplant_roles_line_id_lines_of_therapy"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("transplant_key", name=op.f("pk_transplant_roles")),
    )
    with op.batch_alter_table("transplant_roles", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transplant_roles_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "transplants",
        sa.Column("transplant_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("transplant_date", sa.Date(), nullable=False),
        sa.Column("transplant_type", sa.String(length=12), nullable=False),
        sa.Column("conditioning_agent", sa.String(length=80), nullable=True),
        sa.Column("conditioning_dose_mg_m2", sa.Float(), nullable=True),
        sa.Column("planned_tandem", sa.Boolean(), nullable=True),
        sa.Column("response_before", sa.String(length=4), nullable=True),
        sa.Column("response_day100", sa.String(length=4), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(
            ["patient_key"], ["patients.patient_key"], name=op.f("fk_transplants_patient_key_patients")
        ),
        sa.PrimaryKeyConstraint("transplant_key", name=op.f("pk_transplants")),
    )
    with op.batch_alter_table("transplants", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_transplants_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "treatments",
        sa.Column("treatment_key", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("drug_raw", sa.String(length=200), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("start_date", sa.Date(), nullable=False),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("dose_mg", sa.Float(), nullable=True),
        sa.Column("intent", sa.String(length=16), nullable=True),
        sa.Column("stop_reason", sa.String(length=16), nullable=True),
        sa.Column("run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("source_row", sa.Integer(), nullable=False),
        sa.Column("is_current", sa.Boolean(), nullable=False),
        sa.Column("retired_run_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.ForeignKeyConstraint(["drug_id"], ["drugs.drug_id"], name=op.f("fk_treatments_drug_id_drugs")),
        sa.ForeignKeyConstraint(
            ["patient_key"], ["patients.patient_key"], name=op.f("fk_treatments_patient_key_patients")
        ),
        sa.PrimaryKeyConstraint("treatment_key", name=op.f("pk_treatments")),
    )
    with op.batch_alter_table("treatments", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_treatments_drug_id"), ["drug_id"], unique=False)
        batch_op.create_index("ix_treatments_patient_start", ["patient_key", "start_date"], unique=False)

    op.create_table(
        "regimen_exposures",
        sa.Column("regimen_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("exposure_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("continued", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["exposure_id"],
            ["exposures.exposure_id"],
            name=op.f("fk_regimen_exposures_exposure_id_exposures"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["regimen_id"],
            ["regimens.regimen_id"],
            name=op.f("fk_regimen_exposures_regimen_id_regimens"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("regimen_id", "exposure_id", name=op.f("pk_regimen_exposures")),
    )
    with op.batch_alter_table("regimen_exposures", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_regimen_exposures_patient_key"), ["patient_key"], unique=False)

    op.create_table(
        "relapse_refractoriness",
        sa.Column("relapse_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("drug_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("patient_key", sa.String(length=64), nullable=False),
        sa.Column("refractory", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(
            ["drug_id"], ["drugs.drug_id"], name=op.f("fk_relapse_refractoriness_drug_id_drugs")
        ),
        sa.ForeignKeyConstraint(
            ["relapse_id"],
            ["relapses.relapse_id"],
            name=op.f("fk_relapse_refractoriness_relapse_id_relapses"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("relapse_id", "drug_id", name=op.f("pk_relapse_refractoriness")),
    )
    with op.batch_alter_table("relapse_refractoriness", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_relapse_refractoriness_patient_key"), ["patient_key"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("relapse_refractoriness", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relapse_refractoriness_patient_key"))

    op.drop_table("relapse_refractoriness")
    with op.batch_alter_table("regimen_exposures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_regimen_exposures_patient_key"))

    op.drop_table("regimen_exposures")
    with op.batch_alter_table("treatments", schema=None) as batch_op:
        batch_op.drop_index("ix_treatments_patient_start")
        batch_op.drop_index(batch_op.f("ix_treatments_drug_id"))

    op.drop_table("treatments")
    with op.batch_alter_table("transplants", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transplants_patient_key"))

    op.drop_table("transplants")
    with op.batch_alter_table("transplant_roles", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_transplant_roles_patient_key"))

    op.drop_table("transplant_roles")
    with op.batch_alter_table("relapses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_relapses_patient_key"))

    op.drop_table("relapses")
    with op.batch_alter_table("regimens", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_regimens_phase"))
        batch_op.drop_index(batch_op.f("ix_regimens_patient_key"))
        batch_op.drop_index(batch_op.f("ix_regimens_line_id"))

    op.drop_table("regimens")
    op.drop_table("follow_up")
    with op.batch_alter_table("exposure_sources", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exposure_sources_patient_key"))

    op.drop_table("exposure_sources")
    with op.batch_alter_table("disease_events", schema=None) as batch_op:
        batch_op.drop_index("ix_disease_events_patient_date")

    op.drop_table("disease_events")
    with op.batch_alter_table("quarantine", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_quarantine_run_id"))
        batch_op.drop_index("ix_quarantine_run_file")

    op.drop_table("quarantine")
    with op.batch_alter_table("patients", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patients_site_code"))
        batch_op.drop_index(batch_op.f("ix_patients_needs_derivation"))

    op.drop_table("patients")
    with op.batch_alter_table("patient_summaries", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_patient_summaries_index_transplant_date"))

    op.drop_table("patient_summaries")
    with op.batch_alter_table("lines_of_therapy", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lines_of_therapy_patient_key"))

    op.drop_table("lines_of_therapy")
    with op.batch_alter_table("exposures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_exposures_patient_key"))

    op.drop_table("exposures")
    with op.batch_alter_table("drug_synonyms", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_drug_synonyms_drug_id"))

    op.drop_table("drug_synonyms")
    op.drop_table("sites")
    with op.batch_alter_table("etl_runs", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_etl_runs_status"))
        batch_op.drop_index(batch_op.f("ix_etl_runs_site_code"))
        batch_op.drop_index(batch_op.f("ix_etl_runs_bundle_hash"))

    op.drop_table("etl_runs")
    op.drop_table("drugs")
    op.drop_table("derivation_runs")
