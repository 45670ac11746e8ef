"""The clinical records as delivered (one table per input file), with their lineage."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    BigInteger,
    Boolean,
    Date,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
)
from sqlalchemy.orm import Mapped, mapped_column

from registry.contract import INPUT_FILES
from registry.db.models.base import KEY, PATIENT_KEY_DOC, Base, Id


class SourceRow:
    """Lineage and currency shared by every table loaded from a bundle.

    ``run_id`` refers to ``etl_runs`` but carries no foreign-key constraint: ledger rows are
    never deleted, and on PostgreSQL the per-row constraint trigger cost about a fifth of a
    large merge (docs/benchmarks.md). For the same reason the event tables' ``patient_key``
    (and ``treatments.drug_id``) carry none: the load checks each record's patient (the orphan
    rule) and, before it commits, every merged record against ``patients`` and ``drugs`` at
    once (``etl.load.check_references``); patients are never deleted, only retired."""

    run_id: Mapped[int] = mapped_column(Id, doc="the ETL run that last wrote the row (etl_runs)")
    source_row: Mapped[int] = mapped_column(
        Integer, doc="the row's line number in its delivered file (1 = the first data row)"
    )
    # keyed 64-bit hash of the source row's text under the reading version (etl/transform.py);
    # null for rows loaded before hashes were kept
    row_hash: Mapped[int | None] = mapped_column(
        BigInteger, doc="keyed hash of the delivered record's values: an unchanged record is skipped"
    )
    is_current: Mapped[bool] = mapped_column(
        Boolean, default=True, doc="false once the site's full export no longer sends the record"
    )
    retired_run_id: Mapped[int | None] = mapped_column(Id, doc="the run that retired the record, if retired")


# --------------------------------------------------------------------------- loaded records
class Patient(SourceRow, Base):
    """A patient as delivered (current or retired), keyed by pseudonym, with derived cytogenetic risk."""

    __tablename__ = "patients"
    patient_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc=PATIENT_KEY_DOC)
    site_code: Mapped[str] = mapped_column(
        String(32), ForeignKey("sites.site_code"), index=True, doc="the delivering site"
    )
    sex: Mapped[str] = mapped_column(String(1), doc="F, M or U")
    birth_date: Mapped[dt.date] = mapped_column(Date, doc="date of birth (views show the year only)")
    diagnosis_date: Mapped[dt.date] = mapped_column(Date, doc="date of the myeloma diagnosis")
    iss_stage: Mapped[str | None] = mapped_column(String(3), doc="ISS stage I-III as recorded")
    riss_stage: Mapped[str | None] = mapped_column(String(3), doc="R-ISS stage I-III as recorded")
    ldh_elevated: Mapped[bool | None] = mapped_column(
        Boolean, doc="LDH above the upper limit of normal at diagnosis (yes/no)"
    )
    del17p: Mapped[str | None] = mapped_column(String(12), doc="FISH del(17p): present, absent or not_tested")
    t_4_14: Mapped[str | None] = mapped_column(String(12), doc="FISH t(4;14)")
    t_14_16: Mapped[str | None] = mapped_column(String(12), doc="FISH t(14;16)")
    gain_1q: Mapped[str | None] = mapped_column(String(12), doc="FISH 1q gain or amplification")
    heavy_chain: Mapped[str | None] = mapped_column(
        String(4), doc="the paraprotein's heavy chain (IgG, IgA, ...; none: light chain only)"
    )
    light_chain: Mapped[str | None] = mapped_column(String(6), doc="kappa or lambda")
    cytogenetic_risk: Mapped[str] = mapped_column(
        String(8), doc="high (any of del(17p), t(4;14), t(14;16)), standard, or unknown"
    )
    # computed by the registry from ISS, LDH and FISH (registry.core.staging); None where the
    # components leave the stage open
    riss_computed: Mapped[str | None] = mapped_column(
        String(3), doc="R-ISS computed from ISS, LDH and FISH; null where they leave it open"
    )
    r2iss_computed: Mapped[str | None] = mapped_column(
        String(3), doc="R2-ISS I-IV computed from its components"
    )
    # set by a load that changed any of the patient's rows; cleared by the derivation
    needs_derivation: Mapped[bool] = mapped_column(
        Boolean, default=True, index=True, doc="the patient's rows changed since the last derivation"
    )


class Transplant(SourceRow, Base):
    """A stem-cell transplant as delivered."""

    __tablename__ = "transplants"
    transplant_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    transplant_date: Mapped[dt.date] = mapped_column(Date, doc="day 0: the stem-cell infusion")
    transplant_type: Mapped[str] = mapped_column(String(12), doc="autologous or allogeneic")
    conditioning_agent: Mapped[str | None] = mapped_column(String(80), doc="conditioning agent as recorded")
    conditioning_dose_mg_m2: Mapped[float | None] = mapped_column(Float, doc="conditioning dose, mg/m2")
    planned_tandem: Mapped[bool | None] = mapped_column(Boolean, doc="recorded as a planned tandem")
    response_before: Mapped[str | None] = mapped_column(String(4), doc="IMWG response before conditioning")
    response_day100: Mapped[str | None] = mapped_column(
        String(4), doc="IMWG response at day 100, as recorded"
    )


class Treatment(SourceRow, Base):
    """A raw exposure row as the site recorded it, linked to the vocabulary when known."""

    __tablename__ = "treatments"
    treatment_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    # indexed by ix_treatments_patient_start (patient_key first)
    patient_key: Mapped[str] = mapped_column(KEY, doc=PATIENT_KEY_DOC)
    drug_raw: Mapped[str] = mapped_column(
        String(200), doc="the drug as delivered (a name, never an identifier)"
    )
    drug_id: Mapped[int | None] = mapped_column(
        Id, index=True, doc="the vocabulary's drug (drugs); null when unmapped"
    )
    start_date: Mapped[dt.date] = mapped_column(Date, doc="first day")
    end_date: Mapped[dt.date | None] = mapped_column(Date, doc="last day; null when ongoing")
    dose_mg: Mapped[float | None] = mapped_column(Float, doc="dose, mg")
    intent: Mapped[str | None] = mapped_column(
        String(16),
        doc="induction, consolidation, maintenance, salvage, mobilisation or conditioning, as recorded",
    )
    stop_reason: Mapped[str | None] = mapped_column(
        String(16), doc="completed, progression, toxicity, patient_choice, death, other or ongoing"
    )


class DiseaseEvent(SourceRow, Base):
    """A response assessment or a documented progression/relapse as delivered."""

    __tablename__ = "disease_events"
    event_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    # indexed by ix_disease_events_patient_date (patient_key first)
    patient_key: Mapped[str] = mapped_column(KEY, doc=PATIENT_KEY_DOC)
    event_date: Mapped[dt.date] = mapped_column(Date, doc="the date of the event")
    event_type: Mapped[str] = mapped_column(String(24), doc="response_assessment, progression or relapse")
    response: Mapped[str | None] = mapped_column(String(4), doc="the recorded IMWG response (sCR ... PD)")


class FollowUp(SourceRow, Base):
    """Last contact and vital status, one row per patient."""

    __tablename__ = "follow_up"
    patient_key: Mapped[str] = mapped_column(
        KEY, ForeignKey("patients.patient_key"), primary_key=True, doc=PATIENT_KEY_DOC
    )
    last_contact_date: Mapped[dt.date] = mapped_column(Date, doc="the last contact")
    vital_status: Mapped[str] = mapped_column(String(8), doc="alive or dead")
    death_date: Mapped[dt.date | None] = mapped_column(Date, doc="date of death")
    cause_of_death: Mapped[str | None] = mapped_column(String(24), doc="myeloma, infection, other or unknown")


class LabResult(SourceRow, Base):
    """A laboratory value as delivered (labs.csv, optional), with its value in the test's
    canonical unit (registry.core.labs)."""

    __tablename__ = "labs"
    lab_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc="the sample row's pseudonym")
    patient_key: Mapped[str] = mapped_column(KEY, doc=PATIENT_KEY_DOC)
    sample_date: Mapped[dt.date] = mapped_column(Date, doc="the date the sample was taken")
    test: Mapped[str] = mapped_column(String(32), doc="the test's code (registry.core.labs)")
    value_text: Mapped[str] = mapped_column(String(64), doc="the value as delivered (e.g. <0.1)")
    unit: Mapped[str | None] = mapped_column(String(16), doc="the unit as delivered")
    value: Mapped[float | None] = mapped_column(
        Float, doc="the value in the test's canonical unit (0 for below the limit of an M-protein)"
    )
    result: Mapped[str | None] = mapped_column(String(8), doc="immunofixation: positive or negative")


Index("ix_treatments_patient_start", Treatment.patient_key, Treatment.start_date)
Index("ix_disease_events_patient_date", DiseaseEvent.patient_key, DiseaseEvent.event_date)
Index("ix_labs_patient_date", LabResult.patient_key, LabResult.sample_date)

# the tables of the contract's input files (registry/contract)
CLINICAL_SOURCE_TABLES = tuple(f.table for f in INPUT_FILES)
