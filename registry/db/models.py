"""The registry schema: SQLAlchemy 2 typed models. The models are the truth; the Alembic
revisions in ``migrations/`` must match them (a test runs ``alembic check``).

Every clinical table carries ``patient_key`` so that the registry could be distributed by
patient on a sharded PostgreSQL. Source rows carry lineage (the ETL run and the source row
number that last wrote them) and a current/retired flag (``mode: full`` retires records a
site no longer sends; they stay in the table, no longer current).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Date,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, declared_attr, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# A BigInteger primary key on SQLite is not the rowid: use INTEGER there.
Id = BigInteger().with_variant(Integer(), "sqlite")
KEY = String(64)  # HMAC-SHA256 hex pseudonym
PATIENT_KEY_DOC = "the patient's pseudonym (a keyed HMAC of site and source id; never the id itself)"


class Base(DeclarativeBase):
    """Declarative base with the naming convention; the models are the schema's truth."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON}  # noqa: RUF012 - read by SQLAlchemy


# --------------------------------------------------------------------------- reference data
class Site(Base):
    """A delivering centre. ``last_exported_at`` guards against loading stale bundles."""

    __tablename__ = "sites"
    site_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    first_loaded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    last_exported_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    last_data_cutoff: Mapped[dt.date | None] = mapped_column(Date)
    last_run_id: Mapped[int | None] = mapped_column(Id)


class Drug(Base):
    """The drug vocabulary: one generic name, a class and an ATC code (shipped as data)."""

    __tablename__ = "drugs"
    drug_id: Mapped[int] = mapped_column(Id, primary_key=True)
    generic_name: Mapped[str] = mapped_column(String(80), unique=True)
    drug_class: Mapped[str] = mapped_column(String(32))
    atc_code: Mapped[str | None] = mapped_column(String(16))
    vocabulary_version: Mapped[str] = mapped_column(String(16))


class DrugSynonym(Base):
    """Brand names and spellings, lower-cased and trimmed, each mapping to one drug."""

    __tablename__ = "drug_synonyms"
    synonym: Mapped[str] = mapped_column(String(120), primary_key=True)
    drug_id: Mapped[int] = mapped_column(Id, ForeignKey("drugs.drug_id"), index=True)


# --------------------------------------------------------------------------- ETL bookkeeping
class EtlRun(Base):
    """The run ledger: every run, refused ones included."""

    __tablename__ = "etl_runs"
    run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    site_code: Mapped[str | None] = mapped_column(String(32), index=True)
    bundle_hash: Mapped[str | None] = mapped_column(String(64), index=True)
    exported_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    data_cutoff: Mapped[dt.date | None] = mapped_column(Date)
    mode: Mapped[str | None] = mapped_column(String(16))
    # running | succeeded | unchanged | refused | failed | interrupted | killed
    status: Mapped[str] = mapped_column(String(16), index=True)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    file_counts: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    timings: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    warnings: Mapped[list[Any] | None] = mapped_column(JSON)
    message: Mapped[str | None] = mapped_column(Text)
    # drug names the vocabulary did not map: {normalised name: rows}, most frequent first
    unmapped_drugs: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    # columns the operator said a full export no longer has on purpose (``--column-gone``)
    columns_gone: Mapped[list[Any] | None] = mapped_column(JSON)


class QuarantinedRow(Base):
    """A rejected input row with every reason found; source ids replaced by pseudonyms and
    direct-identifier columns removed."""

    __tablename__ = "quarantine"
    quarantine_id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("etl_runs.run_id"), index=True)
    file: Mapped[str] = mapped_column(String(32))
    row_number: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[Any]] = mapped_column(JSON)
    row_data: Mapped[dict[str, Any]] = mapped_column(JSON)


class SourceFile(Base):
    """The last full delivery of each file per site: a file delivered again byte for byte (with
    the patient files it is checked against) is not read again."""

    __tablename__ = "source_files"
    site_code: Mapped[str] = mapped_column(String(32), primary_key=True)
    file: Mapped[str] = mapped_column(String(32), primary_key=True)
    sha256: Mapped[str] = mapped_column(String(64))
    rows: Mapped[int] = mapped_column(Integer)
    run_id: Mapped[int] = mapped_column(Id)
    registry_version: Mapped[str] = mapped_column(String(32))  # <version>+<specs, rules, vocabulary digest>
    # the header's contract columns, comma-separated (null: remembered before headers were)
    columns: Mapped[str | None] = mapped_column(Text)


class InputFinding(Base):
    """An advisory finding on an input row that was loaded (the rule catalogue's ``advisory``
    severity): the row stays, the finding is kept for the site and for data-quality review."""

    __tablename__ = "input_findings"
    finding_id: Mapped[int] = mapped_column(Id, primary_key=True)
    run_id: Mapped[int] = mapped_column(Id, ForeignKey("etl_runs.run_id"), index=True)
    file: Mapped[str] = mapped_column(String(32))
    row_number: Mapped[int] = mapped_column(Integer)
    record_key: Mapped[str] = mapped_column(KEY)  # the loaded row's key (a pseudonym)
    patient_key: Mapped[str | None] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    rule: Mapped[str] = mapped_column(String(48))
    column: Mapped[str | None] = mapped_column(String(64))
    value: Mapped[str | None] = mapped_column(Text)
    message: Mapped[str] = mapped_column(Text)


class KeyFingerprint(Base):
    """The fingerprint of the pseudonym key the registry's pseudonyms were made with (an HMAC of
    a fixed label under the key, never the key), recorded by the first load (one row)."""

    __tablename__ = "key_fingerprints"
    fingerprint: Mapped[str] = mapped_column(String(64), primary_key=True)
    recorded_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    run_id: Mapped[int | None] = mapped_column(Id)


class RecordChange(Base):
    """The change log: one row per loaded record a run added, changed, reinstated or retired
    (pseudonymous keys and column names only, never values), for ``registry patient history``.
    Like lineage, ``run_id`` carries no foreign-key constraint (ledger rows are never deleted)."""

    __tablename__ = "record_changes"
    change_id: Mapped[int] = mapped_column(Id, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(Id, index=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    file: Mapped[str] = mapped_column(String(32))
    record_key: Mapped[str] = mapped_column(KEY)
    # added | changed | reinstated | retired
    action: Mapped[str] = mapped_column(String(16))
    # for 'changed': the data columns whose value changed, comma-separated
    columns: Mapped[str | None] = mapped_column(Text)


class SourceRow:
    """Lineage and currency shared by every table loaded from a bundle.

    ``run_id`` refers to ``etl_runs`` but carries no foreign-key constraint: ledger rows are
    never deleted, and on PostgreSQL the per-row constraint trigger cost about a fifth of a
    large merge (docs/benchmarks.md)."""

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
    site_code: Mapped[str] = mapped_column(String(32), ForeignKey("sites.site_code"), index=True)
    sex: Mapped[str] = mapped_column(String(1))
    birth_date: Mapped[dt.date] = mapped_column(Date)
    diagnosis_date: Mapped[dt.date] = mapped_column(Date)
    iss_stage: Mapped[str | None] = mapped_column(String(3))
    riss_stage: Mapped[str | None] = mapped_column(String(3))
    ldh_elevated: Mapped[bool | None] = mapped_column(Boolean)
    del17p: Mapped[str | None] = mapped_column(String(12))
    t_4_14: Mapped[str | None] = mapped_column(String(12))
    t_14_16: Mapped[str | None] = mapped_column(String(12))
    gain_1q: Mapped[str | None] = mapped_column(String(12))
    heavy_chain: Mapped[str | None] = mapped_column(String(4))
    light_chain: Mapped[str | None] = mapped_column(String(6))
    cytogenetic_risk: Mapped[str] = mapped_column(String(8))  # high | standard | unknown
    # computed by the registry from ISS, LDH and FISH (registry.core.staging); None where the
    # components leave the stage open
    riss_computed: Mapped[str | None] = mapped_column(String(3))
    r2iss_computed: Mapped[str | None] = mapped_column(String(3))
    # set by a load that changed any of the patient's rows; cleared by the derivation
    needs_derivation: Mapped[bool] = mapped_column(Boolean, default=True, index=True)


class Transplant(SourceRow, Base):
    """A stem-cell transplant as delivered."""

    __tablename__ = "transplants"
    transplant_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    patient_key: Mapped[str] = mapped_column(
        KEY, ForeignKey("patients.patient_key"), index=True, doc=PATIENT_KEY_DOC
    )
    transplant_date: Mapped[dt.date] = mapped_column(Date)
    transplant_type: Mapped[str] = mapped_column(String(12))  # autologous | allogeneic
    conditioning_agent: Mapped[str | None] = mapped_column(String(80))
    conditioning_dose_mg_m2: Mapped[float | None] = mapped_column(Float)
    planned_tandem: Mapped[bool | None] = mapped_column(Boolean)
    response_before: Mapped[str | None] = mapped_column(String(4))
    response_day100: Mapped[str | None] = mapped_column(String(4))


class Treatment(SourceRow, Base):
    """A raw exposure row as the site recorded it, linked to the vocabulary when known."""

    __tablename__ = "treatments"
    treatment_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    # indexed by ix_treatments_patient_start (patient_key first)
    patient_key: Mapped[str] = mapped_column(KEY, ForeignKey("patients.patient_key"), doc=PATIENT_KEY_DOC)
    drug_raw: Mapped[str] = mapped_column(String(200))
    drug_id: Mapped[int | None] = mapped_column(Id, ForeignKey("drugs.drug_id"), index=True)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    dose_mg: Mapped[float | None] = mapped_column(Float)
    intent: Mapped[str | None] = mapped_column(String(16))
    stop_reason: Mapped[str | None] = mapped_column(String(16))


class DiseaseEvent(SourceRow, Base):
    """A response assessment or a documented progression/relapse as delivered."""

    __tablename__ = "disease_events"
    event_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    # indexed by ix_disease_events_patient_date (patient_key first)
    patient_key: Mapped[str] = mapped_column(KEY, ForeignKey("patients.patient_key"), doc=PATIENT_KEY_DOC)
    event_date: Mapped[dt.date] = mapped_column(Date)
    event_type: Mapped[str] = mapped_column(String(24))
    response: Mapped[str | None] = mapped_column(String(4))


class FollowUp(SourceRow, Base):
    """Last contact and vital status, one row per patient."""

    __tablename__ = "follow_up"
    patient_key: Mapped[str] = mapped_column(
        KEY, ForeignKey("patients.patient_key"), primary_key=True, doc=PATIENT_KEY_DOC
    )
    last_contact_date: Mapped[dt.date] = mapped_column(Date)
    vital_status: Mapped[str] = mapped_column(String(8))
    death_date: Mapped[dt.date | None] = mapped_column(Date)
    cause_of_death: Mapped[str | None] = mapped_column(String(24))


# --------------------------------------------------------------------------- derived history
class LabResult(SourceRow, Base):
    """A laboratory value as delivered (labs.csv, optional), with its value in the test's
    canonical unit (registry.core.labs)."""

    __tablename__ = "labs"
    lab_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc="the sample row's pseudonym")
    patient_key: Mapped[str] = mapped_column(KEY, ForeignKey("patients.patient_key"), doc=PATIENT_KEY_DOC)
    sample_date: Mapped[dt.date] = mapped_column(Date, doc="the date the sample was taken")
    test: Mapped[str] = mapped_column(String(32), doc="the test's code (registry.core.labs)")
    value_text: Mapped[str] = mapped_column(String(64), doc="the value as delivered (e.g. <0.1)")
    unit: Mapped[str | None] = mapped_column(String(16), doc="the unit as delivered")
    value: Mapped[float | None] = mapped_column(
        Float, doc="the value in the test's canonical unit (0 for below the limit of an M-protein)"
    )
    result: Mapped[str | None] = mapped_column(String(8), doc="immunofixation: positive or negative")


class DerivationRun(Base):
    """A derivation run: when, which patients, the parameters and rules version it used."""

    __tablename__ = "derivation_runs"
    derivation_run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    scope: Mapped[str] = mapped_column(String(16))  # all | changed
    parameters: Mapped[dict[str, Any]] = mapped_column(JSON)
    patients_derived: Mapped[int] = mapped_column(Integer, default=0)
    # r<rules revision>-<vocabulary version>-<parameters digest>; null: before revision 2
    rules_version: Mapped[str | None] = mapped_column(String(48))


class Derived:
    """Mixin: derived rows record the derivation run that made them."""

    @declared_attr
    def derivation_run_id(cls) -> Mapped[int]:
        return mapped_column(
            Id,
            ForeignKey("derivation_runs.derivation_run_id"),
            doc="the derivation run that made the row (derivation_runs)",
        )


class Exposure(Derived, Base):
    """Same-drug treatment rows merged across short gaps (docs/derivations.md, Exposures)."""

    __tablename__ = "exposures"
    exposure_id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    # null for an unmapped drug whose rows record an intent (r3: a blinded trial drug)
    drug_id: Mapped[int | None] = mapped_column(Id, ForeignKey("drugs.drug_id"))
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)  # null = ongoing at the cutoff
    stop_reason: Mapped[str | None] = mapped_column(String(16))
    last_dose_mg: Mapped[float | None] = mapped_column(Float)
    role: Mapped[str] = mapped_column(String(16))  # regimen | conditioning
    # the normalised recorded name of such an unmapped drug (class 'unmapped'); null otherwise
    unmapped_drug: Mapped[str | None] = mapped_column(String(200))


class ExposureSource(Base):
    """Which treatment rows an exposure was merged from (lineage)."""

    __tablename__ = "exposure_sources"
    exposure_id: Mapped[int] = mapped_column(
        Id, ForeignKey("exposures.exposure_id", ondelete="CASCADE"), primary_key=True
    )
    treatment_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)


class LineOfTherapy(Derived, Base):
    """A line of therapy: number, dates, why it started and why it ended."""

    __tablename__ = "lines_of_therapy"
    __table_args__ = (UniqueConstraint("patient_key", "line_number"),)
    line_id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    line_number: Mapped[int] = mapped_column(Integer)
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)  # null = ongoing
    # a stop reason of its last-ending exposure, progression, next_line or ongoing
    end_reason: Mapped[str | None] = mapped_column(String(16))
    # why this line started: first | progression | progression_recorded_later | gap | new_drug |
    # transplant
    start_rule: Mapped[str] = mapped_column(String(32))
    includes_index_transplant: Mapped[bool] = mapped_column(Boolean, default=False)
    best_response: Mapped[str | None] = mapped_column(
        String(8), doc="the best confirmed IMWG category (sCR ... PD); null when none was confirmed"
    )
    best_response_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="the first of the two assessments that confirmed the best response"
    )
    response_basis: Mapped[str | None] = mapped_column(
        String(16),
        doc="labs (judged from the laboratory series), recorded (response assessments) or not_evaluable",
    )
    response_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="the first confirmed partial response or better (where the duration of response starts)"
    )
    best_response_unconfirmed: Mapped[str | None] = mapped_column(
        String(8), doc="a better category met only at the line's last assessment (not confirmed)"
    )
    measurable: Mapped[str | None] = mapped_column(
        String(32),
        doc="the parameters measurable at the line's baseline: serum, urine, flc (comma-separated)",
    )
    response_baseline: Mapped[str | None] = mapped_column(
        String(120), doc="the baseline values the line is judged against, e.g. 'serum 3.2, marrow 40'"
    )
    lab_progression_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="the line's confirmed progression found in the laboratory series (its first PD sample)"
    )
    lab_progression_basis: Mapped[str | None] = mapped_column(
        String(200), doc="the rule and values that made it a PD and how it was confirmed"
    )


class ResponseAssessment(Base):
    """One assessment of a line's response, judged from the laboratory series."""

    __tablename__ = "response_assessments"
    line_id: Mapped[int] = mapped_column(
        Id,
        ForeignKey("lines_of_therapy.line_id", ondelete="CASCADE"),
        primary_key=True,
        doc="the line judged (lines_of_therapy)",
    )
    assessment_date: Mapped[dt.date] = mapped_column(
        Date,
        primary_key=True,
        doc="a date on which an M-protein, a free light chain or an immunofixation was sampled",
    )
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    category: Mapped[str] = mapped_column(String(8), doc="sCR, CR, VGPR, PR, MR, SD or PD")
    confirmed: Mapped[bool] = mapped_column(
        Boolean,
        doc="the next assessment met the category or a better one (PD: the line's confirmed progression)",
    )
    basis: Mapped[str] = mapped_column(String(200), doc="the rule that decided it, e.g. 'PR: serum -62%'")
    serum_m_protein: Mapped[float | None] = mapped_column(Float, doc="the serum M-protein used, g/dL")
    urine_m_protein: Mapped[float | None] = mapped_column(Float, doc="the urine M-protein used, mg/24h")
    dflc: Mapped[float | None] = mapped_column(
        Float, doc="the FLC difference used (involved - uninvolved), mg/L"
    )
    bm_plasma_cells: Mapped[float | None] = mapped_column(
        Float, doc="the latest marrow since the line's start, %"
    )


class Regimen(Derived, Base):
    """A regimen within a line, with its phase."""

    __tablename__ = "regimens"
    regimen_id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    line_id: Mapped[int] = mapped_column(
        Id, ForeignKey("lines_of_therapy.line_id", ondelete="CASCADE"), index=True
    )
    regimen_number: Mapped[int] = mapped_column(Integer)  # order within the patient
    # induction | mobilisation | consolidation | maintenance | salvage (lines >= 2)
    phase: Mapped[str] = mapped_column(String(16), index=True)
    name: Mapped[str] = mapped_column(String(400))  # generic names, '+'-joined, sorted
    start_date: Mapped[dt.date] = mapped_column(Date)
    end_date: Mapped[dt.date | None] = mapped_column(Date)
    stop_reason: Mapped[str | None] = mapped_column(String(16))
    contains_lenalidomide: Mapped[bool] = mapped_column(Boolean, default=False)
    acronym: Mapped[str | None] = mapped_column(String(16))  # VRd, KRd, ... when a known combination
    backbone: Mapped[str | None] = mapped_column(String(120))  # drug classes: "PI + IMiD + steroid"


class RegimenExposure(Base):
    """The exposures a regimen contains; ``continued`` when carried over from an earlier one."""

    __tablename__ = "regimen_exposures"
    regimen_id: Mapped[int] = mapped_column(
        Id, ForeignKey("regimens.regimen_id", ondelete="CASCADE"), primary_key=True
    )
    # indexed on its own: deleting a patient's exposures checks this column for each of them
    exposure_id: Mapped[int] = mapped_column(
        Id, ForeignKey("exposures.exposure_id", ondelete="CASCADE"), primary_key=True, index=True
    )
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    continued: Mapped[bool] = mapped_column(Boolean, default=False)  # carried over


class TransplantRole(Derived, Base):
    """The derived role of each transplant: index, tandem, salvage, additional, allogeneic."""

    __tablename__ = "transplant_roles"
    transplant_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    role: Mapped[str] = mapped_column(String(16))
    line_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("lines_of_therapy.line_id", ondelete="SET NULL"), index=True
    )


class Relapse(Derived, Base):
    """A documented progression (event or treatment stop reason) with refractoriness."""

    __tablename__ = "relapses"
    relapse_id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    relapse_date: Mapped[dt.date] = mapped_column(Date)
    sequence: Mapped[int] = mapped_column(Integer)  # 1 = first documented progression
    source: Mapped[str] = mapped_column(String(16))  # event | stop_reason
    source_key: Mapped[str] = mapped_column(KEY)  # event_key or treatment_key
    after_index_transplant: Mapped[bool] = mapped_column(Boolean)
    is_first_after_index: Mapped[bool] = mapped_column(Boolean, default=False)
    line_id: Mapped[int | None] = mapped_column(
        Id, ForeignKey("lines_of_therapy.line_id", ondelete="SET NULL"), index=True
    )
    len_refractory: Mapped[bool] = mapped_column(Boolean, default=False)
    len_last_dose_mg: Mapped[float | None] = mapped_column(Float)
    len_exposure_days: Mapped[int | None] = mapped_column(Integer)
    len_free_interval_days: Mapped[int | None] = mapped_column(Integer)
    # (r3) disease-event records of the episode (a relapse recorded twice: 2; a stop reason is
    # no such record); null before r3
    event_records: Mapped[int | None] = mapped_column(Integer)
    # (r3) recorded after the salvage regimen it caused began (that line's start rule is
    # progression_recorded_later); null before r3
    recorded_after_line_start: Mapped[bool | None] = mapped_column(Boolean)
    sources: Mapped[str | None] = mapped_column(
        String(40), doc="what documents the episode, comma-separated: event, stop_reason, labs"
    )


class RelapseRefractoriness(Base):
    """Refractory or not to each drug at each relapse."""

    __tablename__ = "relapse_refractoriness"
    relapse_id: Mapped[int] = mapped_column(
        Id, ForeignKey("relapses.relapse_id", ondelete="CASCADE"), primary_key=True
    )
    drug_id: Mapped[int] = mapped_column(Id, ForeignKey("drugs.drug_id"), primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    refractory: Mapped[bool] = mapped_column(Boolean)


class PatientSummary(Derived, Base):
    """One row per derived patient: the facts cohorts start from."""

    __tablename__ = "patient_summaries"
    patient_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc=PATIENT_KEY_DOC)
    index_transplant_key: Mapped[str | None] = mapped_column(KEY)
    index_transplant_date: Mapped[dt.date | None] = mapped_column(Date, index=True)
    tandem_transplant_date: Mapped[dt.date | None] = mapped_column(Date)
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    lenalidomide_maintenance: Mapped[bool] = mapped_column(Boolean, default=False)
    maintenance_agents: Mapped[str | None] = mapped_column(String(200))
    maintenance_start: Mapped[dt.date | None] = mapped_column(Date)
    maintenance_end: Mapped[dt.date | None] = mapped_column(Date)
    maintenance_stop_reason: Mapped[str | None] = mapped_column(String(16))
    relapse_date: Mapped[dt.date | None] = mapped_column(Date)  # first after index
    l2_line_id: Mapped[int | None] = mapped_column(Id)
    l2_start: Mapped[dt.date | None] = mapped_column(Date)
    l2_first_regimen: Mapped[str | None] = mapped_column(String(400))
    l2_lenalidomide: Mapped[bool] = mapped_column(Boolean, default=False)
    l2_start_rule: Mapped[str | None] = mapped_column(String(32))  # why the 2nd line started (r3)
    # (r3) the first progression episode that began after the 2nd line started and is not the
    # one that started it (its documented date): the event of pfs_2l and pfs2
    l2_progression_date: Mapped[dt.date | None] = mapped_column(Date)
    lines: Mapped[int] = mapped_column(Integer, default=0)
    day100_response: Mapped[str | None] = mapped_column(
        String(8),
        doc="line 1's category judged from the laboratory series nearest day 100 after the index transplant",
    )
    # digest of the patient's derived rows (ids local to the patient) under the rules version:
    # a re-derivation with the same digest leaves the stored rows as they are
    derivation_digest: Mapped[str | None] = mapped_column(String(32))
    # one digest per derived table (16 hex digits each, in table order): a re-derivation with
    # another digest reads and compares only the tables whose digest changed
    table_digests: Mapped[str | None] = mapped_column(String(192))


Index("ix_treatments_patient_start", Treatment.patient_key, Treatment.start_date)
Index("ix_disease_events_patient_date", DiseaseEvent.patient_key, DiseaseEvent.event_date)
Index("ix_labs_patient_date", LabResult.patient_key, LabResult.sample_date)
Index("ix_quarantine_run_file", QuarantinedRow.run_id, QuarantinedRow.file)

CLINICAL_SOURCE_TABLES = ("patients", "transplants", "treatments", "disease_events", "follow_up", "labs")
DERIVED_TABLES = (
    "response_assessments",
    "relapse_refractoriness",
    "relapses",
    "transplant_roles",
    "regimen_exposures",
    "regimens",
    "lines_of_therapy",
    "exposure_sources",
    "exposures",
    "patient_summaries",
)


# --------------------------------------------------------------------------- data quality
class DqRun(Base):
    """A run of the data-quality checks."""

    __tablename__ = "dq_runs"
    dq_run_id: Mapped[int] = mapped_column(Id, primary_key=True)
    started_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[dt.datetime | None] = mapped_column(DateTime(timezone=True))
    failed: Mapped[int] = mapped_column(Integer, default=0)


class DqResult(Base):
    """One check's raw counts in one run (so thresholds can be re-applied without re-running)."""

    __tablename__ = "dq_results"
    dq_run_id: Mapped[int] = mapped_column(
        Id, ForeignKey("dq_runs.dq_run_id", ondelete="CASCADE"), primary_key=True
    )
    check_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    category: Mapped[str] = mapped_column(String(16))
    severity: Mapped[str] = mapped_column(String(16))
    threshold: Mapped[float] = mapped_column(Float)
    violated: Mapped[int | None] = mapped_column(Integer)
    denominator: Mapped[int | None] = mapped_column(Integer)
    status: Mapped[str] = mapped_column(String(16))  # passed | failed | not_applicable | error
    seconds: Mapped[float] = mapped_column(Float)
    error: Mapped[str | None] = mapped_column(Text)
