"""What the derivation stores: exposures, lines, regimens, transplant roles, relapses,
response assessments and the per-patient summary, each row with the run that made it."""

from __future__ import annotations

import datetime as dt

from sqlalchemy import (
    Boolean,
    Date,
    Float,
    ForeignKey,
    Integer,
    String,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, declared_attr, mapped_column

from registry.db.models.base import KEY, PATIENT_KEY_DOC, Base, Id


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
    drug_id: Mapped[int | None] = mapped_column(
        Id,
        ForeignKey("drugs.drug_id"),
        doc="the drug (drugs); for an unmapped drug recording an intent, null",
    )
    start_date: Mapped[dt.date] = mapped_column(Date, doc="first day")
    end_date: Mapped[dt.date | None] = mapped_column(Date, doc="last day; null when ongoing")
    stop_reason: Mapped[str | None] = mapped_column(String(16), doc="the stop reason of its last row")
    last_dose_mg: Mapped[float | None] = mapped_column(Float, doc="the dose of its last row, mg")
    role: Mapped[str] = mapped_column(String(16), doc="regimen or conditioning")
    # the normalised recorded name of such an unmapped drug (class 'unmapped'); null otherwise
    unmapped_drug: Mapped[str | None] = mapped_column(
        String(200),
        doc="the normalised name of an unmapped drug whose rows record an intent (a blinded trial drug)",
    )


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
    line_number: Mapped[int] = mapped_column(Integer, doc="1 for the first line")
    start_date: Mapped[dt.date] = mapped_column(Date, doc="first day of the line")
    end_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="last day (never after the next line starts); null when ongoing"
    )
    # a stop reason of its last-ending exposure, progression, next_line or ongoing
    end_reason: Mapped[str | None] = mapped_column(
        String(16), doc="a stop reason of its last-ending exposure, progression, next_line or ongoing"
    )
    # why this line started: first | progression | progression_recorded_later | gap | new_drug |
    # transplant
    start_rule: Mapped[str] = mapped_column(
        String(32),
        doc="why it started: first, progression, progression_recorded_later, gap, new_drug or transplant",
    )
    includes_index_transplant: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="the index transplant belongs to this line"
    )
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
        Id,
        ForeignKey("lines_of_therapy.line_id", ondelete="CASCADE"),
        index=True,
        doc="the line it belongs to (lines_of_therapy)",
    )
    regimen_number: Mapped[int] = mapped_column(Integer, doc="order within the patient")
    # induction | mobilisation | consolidation | maintenance | salvage (lines >= 2)
    phase: Mapped[str] = mapped_column(
        String(16), index=True, doc="induction, mobilisation, consolidation, maintenance or salvage"
    )
    name: Mapped[str] = mapped_column(String(400), doc="generic names joined by +, sorted")
    start_date: Mapped[dt.date] = mapped_column(Date, doc="first day")
    end_date: Mapped[dt.date | None] = mapped_column(Date, doc="last day; null when ongoing")
    stop_reason: Mapped[str | None] = mapped_column(String(16), doc="why it stopped")
    acronym: Mapped[str | None] = mapped_column(
        String(16), doc="the common acronym (VRd, DRd, ...), where it has one"
    )
    backbone: Mapped[str | None] = mapped_column(
        String(120), doc="its drug classes (e.g. proteasome inhibitor + immunomodulatory)"
    )


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
    continued: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="the exposure was running before the regimen began and continues in it"
    )


class TransplantRole(Derived, Base):
    """The derived role of each transplant: index, tandem, salvage, additional, allogeneic."""

    __tablename__ = "transplant_roles"
    transplant_key: Mapped[str] = mapped_column(KEY, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    role: Mapped[str] = mapped_column(String(16), doc="index, tandem, salvage, additional or allogeneic")
    line_id: Mapped[int | None] = mapped_column(
        Id,
        ForeignKey("lines_of_therapy.line_id", ondelete="SET NULL"),
        index=True,
        doc="the line it happened in, or belongs to (lines_of_therapy)",
    )


class Relapse(Derived, Base):
    """A documented progression (event or treatment stop reason) with refractoriness."""

    __tablename__ = "relapses"
    relapse_id: Mapped[int] = mapped_column(Id, primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    relapse_date: Mapped[dt.date] = mapped_column(Date, doc="the date of the episode's first record")
    sequence: Mapped[int] = mapped_column(Integer, doc="1 for the first relapse episode")
    source: Mapped[str] = mapped_column(
        String(16), doc="what documents its first record: event, stop_reason or labs"
    )
    source_key: Mapped[str] = mapped_column(KEY, doc="that record's key (event, treatment or laboratory row)")
    after_index_transplant: Mapped[bool] = mapped_column(Boolean, doc="dated after the index transplant")
    is_first_after_index: Mapped[bool] = mapped_column(
        Boolean, default=False, doc="the first relapse after the index transplant"
    )
    line_id: Mapped[int | None] = mapped_column(
        Id,
        ForeignKey("lines_of_therapy.line_id", ondelete="SET NULL"),
        index=True,
        doc="the line it happened in, or belongs to (lines_of_therapy)",
    )
    # (r3) disease-event records of the episode (a relapse recorded twice: 2; a stop reason is
    # no such record); null before r3
    event_records: Mapped[int | None] = mapped_column(
        Integer, doc="disease-event records of the episode (2 or more: the relapse recorded again)"
    )
    # (r3) recorded after the salvage regimen it caused began (that line's start rule is
    # progression_recorded_later); null before r3
    recorded_after_line_start: Mapped[bool | None] = mapped_column(
        Boolean, doc="recorded after the salvage regimen it caused began"
    )
    sources: Mapped[str | None] = mapped_column(
        String(40), doc="what documents the episode, comma-separated: event, stop_reason, labs"
    )


class RelapseRefractoriness(Base):
    """Each drug given before a relapse, as it stood at the relapse: refractory or not, days on
    it, the drug-free interval and the last dose (the per-drug facts studies read)."""

    __tablename__ = "relapse_refractoriness"
    relapse_id: Mapped[int] = mapped_column(
        Id, ForeignKey("relapses.relapse_id", ondelete="CASCADE"), primary_key=True
    )
    drug_id: Mapped[int] = mapped_column(Id, ForeignKey("drugs.drug_id"), primary_key=True)
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    refractory: Mapped[bool] = mapped_column(
        Boolean, doc="progressed on the drug or within 60 days of its end"
    )
    exposure_days: Mapped[int | None] = mapped_column(Integer, doc="days on the drug up to the relapse")
    free_interval_days: Mapped[int | None] = mapped_column(
        Integer, doc="days from the drug's last day to the relapse (0 while it runs)"
    )
    last_dose_mg: Mapped[float | None] = mapped_column(
        Float, doc="the drug's last recorded dose before the relapse"
    )


class LineDrug(Base):
    """Each drug given in a line: whether it is in the line's first regimen and whether in its
    maintenance (the per-drug facts of a line studies read)."""

    __tablename__ = "line_drugs"
    line_id: Mapped[int] = mapped_column(
        Id, ForeignKey("lines_of_therapy.line_id", ondelete="CASCADE"), primary_key=True, doc="the line"
    )
    drug_id: Mapped[int] = mapped_column(Id, ForeignKey("drugs.drug_id"), primary_key=True, doc="the drug")
    patient_key: Mapped[str] = mapped_column(KEY, index=True, doc=PATIENT_KEY_DOC)
    line_number: Mapped[int] = mapped_column(Integer, doc="the line's number within the patient")
    first_regimen: Mapped[bool] = mapped_column(Boolean, doc="the drug is one of the line's first regimen")
    maintenance: Mapped[bool] = mapped_column(Boolean, doc="the drug is one of the line's maintenance drugs")


class PatientSummary(Derived, Base):
    """One row per derived patient: the facts cohorts start from."""

    __tablename__ = "patient_summaries"
    patient_key: Mapped[str] = mapped_column(KEY, primary_key=True, doc=PATIENT_KEY_DOC)
    index_transplant_key: Mapped[str | None] = mapped_column(KEY, doc="the index transplant (transplants)")
    index_transplant_date: Mapped[dt.date | None] = mapped_column(Date, index=True, doc="its date")
    tandem_transplant_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="the tandem transplant's date, if any"
    )
    maintenance: Mapped[bool] = mapped_column(Boolean, default=False, doc="line 1 has a maintenance regimen")
    maintenance_agents: Mapped[str | None] = mapped_column(
        String(200), doc="the maintenance drugs, generic names"
    )
    maintenance_start: Mapped[dt.date | None] = mapped_column(Date, doc="first day of maintenance")
    maintenance_end: Mapped[dt.date | None] = mapped_column(
        Date, doc="last day of maintenance; null when ongoing"
    )
    maintenance_stop_reason: Mapped[str | None] = mapped_column(
        String(16), doc="why maintenance stopped (ongoing while it runs)"
    )
    relapse_date: Mapped[dt.date | None] = mapped_column(
        Date, doc="the first relapse after the index transplant"
    )
    l2_line_id: Mapped[int | None] = mapped_column(Id, doc="the second line (lines_of_therapy)")
    l2_start: Mapped[dt.date | None] = mapped_column(Date, doc="the second line's start")
    l2_first_regimen: Mapped[str | None] = mapped_column(String(400), doc="its first regimen, generic names")
    l2_start_rule: Mapped[str | None] = mapped_column(String(32), doc="why the second line started (r3)")
    # (r3) the first progression episode that began after the 2nd line started and is not the
    # one that started it (its documented date): the event of pfs_2l and pfs2
    l2_progression_date: Mapped[dt.date | None] = mapped_column(
        Date,
        doc="the first progression after the second line started that did not start it (pfs_2l, pfs2)",
    )
    lines: Mapped[int] = mapped_column(Integer, default=0, doc="the number of lines")
    last_record_date: Mapped[dt.date | None] = mapped_column(
        Date,
        doc="the latest date of any current treatment (start or end), transplant or disease event: "
        "with the last contact, where follow-up ends (cohorts read it instead of every record)",
    )
    day100_response: Mapped[str | None] = mapped_column(
        String(8),
        doc="line 1's category judged from the laboratory series nearest day 100 after the index transplant",
    )
    # digest of the patient's derived rows (ids local to the patient) under the rules version:
    # a re-derivation with the same digest leaves the stored rows as they are
    derivation_digest: Mapped[str | None] = mapped_column(
        String(32), doc="digest of the patient's derived rows: an unchanged re-derivation writes nothing"
    )
    # one digest per derived table (16 hex digits each, in table order): a re-derivation with
    # another digest reads and compares only the tables whose digest changed
    table_digests: Mapped[str | None] = mapped_column(
        String(192),
        doc="one digest per derived table: a re-derivation compares only the tables whose digest changed",
    )


# every derived table, in the order the derivation writes them (parents first; each table's
# digest is kept in this order); the one list, whatever else needs them reads it
DERIVED_MODELS: tuple[type[Base], ...] = (
    Exposure,
    ExposureSource,
    LineOfTherapy,
    Regimen,
    RegimenExposure,
    LineDrug,
    TransplantRole,
    Relapse,
    RelapseRefractoriness,
    ResponseAssessment,
    PatientSummary,
)
