"""The data-quality check catalogue: each check is a small named unit that counts, over the
current records of the loaded registry, the violating rows and the rows it applies to.

A check has an id, a category (conformance, completeness, plausibility), a severity, a
threshold (the percentage of violating rows tolerated, 0-100; overridable in the
configuration file) and a description. ``violations`` returns (violating, denominator);
``rows`` (where given) lists the violating records by pseudonymous key and lineage for a
site to fix them. docs/data-quality.md is generated from this catalogue.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import Connection, Select, and_, exists, func, literal, select

from registry.contract import FILE_NAMES
from registry.core.dates import as_date_or_none
from registry.core.enums import StartRule
from registry.db.models import (
    DiseaseEvent,
    EtlRun,
    FollowUp,
    Patient,
    PatientSummary,
    QuarantinedRow,
    Regimen,
    Relapse,
    Site,
    Transplant,
    Treatment,
)

STALE_FOLLOW_UP_DAYS = 365
NO_NEXT_LINE_DAYS = 180
EARLY_TREATMENT_DAYS = 90  # treatment starting this long before diagnosis is implausible
MAX_LENALIDOMIDE_MG = 50  # no lenalidomide schedule goes above 25 mg a day; 50 allows a typo margin
FILES = FILE_NAMES  # the contract's input files (registry/contract)


class Category(StrEnum):
    CONFORMANCE = "conformance"
    COMPLETENESS = "completeness"
    PLAUSIBILITY = "plausibility"


class CheckSeverity(StrEnum):
    FATAL = "fatal"  # the registry cannot be trusted for studies while it fails
    WARNING = "warning"
    INFO = "info"


Counts = Callable[[Connection], tuple[int, int]]
Rows = Callable[[], Any]  # a SELECT of record_key, patient_key, file, run_id, source_row


@dataclass(frozen=True)
class Check:
    """One data-quality check of the catalogue."""

    check_id: str
    category: Category
    severity: CheckSeverity
    threshold: float  # percent of violating rows tolerated
    description: str
    violations: Counts
    rows: Rows | None = None  # the violating records (pseudonymous key, lineage)


def _count(conn: Connection, q: Select[Any]) -> int:
    return int(conn.execute(q).scalar() or 0)


def _ratio(numerator: Select[Any], denominator: Select[Any]) -> Counts:
    def counts(conn: Connection) -> tuple[int, int]:
        return _count(conn, numerator), _count(conn, denominator)

    return counts


def _n(model: Any, *where: Any) -> Select[Any]:
    return select(func.count()).select_from(model).where(*where)


# --------------------------------------------------------------------------- conditions
CURRENT_PATIENT = Patient.is_current
ISS_MISSING = and_(CURRENT_PATIENT, Patient.iss_stage.is_(None))
CYTO_UNKNOWN = and_(CURRENT_PATIENT, Patient.cytogenetic_risk == "unknown")
RISS_BOTH = and_(CURRENT_PATIENT, Patient.riss_stage.is_not(None), Patient.riss_computed.is_not(None))
RISS_CONTRADICTED = and_(RISS_BOTH, Patient.riss_stage != Patient.riss_computed)
NO_FOLLOW_UP = and_(
    CURRENT_PATIENT,
    ~exists().where(FollowUp.patient_key == Patient.patient_key, FollowUp.is_current),
)
UNMAPPED = and_(Treatment.is_current, Treatment.drug_id.is_(None))
DEAD = and_(FollowUp.is_current, FollowUp.vital_status == "dead")
CAUSE_MISSING = and_(DEAD, FollowUp.cause_of_death.is_(None))
WITH_INDEX = PatientSummary.index_transplant_date.is_not(None)
NO_INDUCTION = and_(
    WITH_INDEX,
    ~exists().where(
        Regimen.patient_key == PatientSummary.patient_key,
        Regimen.start_date < PatientSummary.index_transplant_date,
    ),
)


CURRENT_RELAPSE = exists().where(Patient.patient_key == Relapse.patient_key, Patient.is_current)
RECORDED_AFTER_SALVAGE = Relapse.recorded_after_line_start.is_(True)
RECORDED_AGAIN = Relapse.event_records > 1


LABS_ONLY = Relapse.sources == "labs"
# the index transplant's recorded day-100 response, and the one the laboratory series gives
_DAY100_JUDGED = and_(
    Transplant.is_current,
    Transplant.response_day100.is_not(None),
    exists().where(
        PatientSummary.index_transplant_key == Transplant.transplant_key,
        PatientSummary.day100_response.is_not(None),
    ),
)
DAY100_DISAGREES = and_(
    _DAY100_JUDGED,
    exists().where(
        PatientSummary.index_transplant_key == Transplant.transplant_key,
        PatientSummary.day100_response != Transplant.response_day100,
    ),
)
# the quarantine rules of labs.csv these checks count (registry/contract/rules.py names them)
LAB_UNIT_RULE, LAB_IMPLAUSIBLE_RULE = "lab_unit", "lab_implausible"


def _relapse_patients(condition: Any) -> Any:
    return and_(
        CURRENT_PATIENT,
        exists().where(Relapse.patient_key == Patient.patient_key, condition),
    )


def _followup_stale(conn: Connection) -> tuple[int, int]:
    """Alive at last contact, last contact more than 365 days before the site's cutoff."""
    rows = conn.execute(
        select(FollowUp.last_contact_date, Site.last_data_cutoff)
        .join(Patient, Patient.patient_key == FollowUp.patient_key)
        .join(Site, Site.site_code == Patient.site_code)
        .where(FollowUp.is_current, CURRENT_PATIENT, FollowUp.vital_status == "alive")
    ).all()
    stale = 0
    for last, cutoff in rows:
        last_d, cut = as_date_or_none(last), as_date_or_none(cutoff)
        if last_d is not None and cut is not None and (cut - last_d).days > STALE_FOLLOW_UP_DAYS:
            stale += 1
    return stale, len(rows)


def _relapse_no_next_line(conn: Connection) -> tuple[int, int]:
    """Relapses after the index transplant more than 180 days before the cutoff, patient alive
    at last contact: how many have no next line."""
    rows = conn.execute(
        select(
            PatientSummary.relapse_date,
            PatientSummary.l2_start,
            PatientSummary.l2_start_rule,
            Site.last_data_cutoff,
        )
        .join(Patient, Patient.patient_key == PatientSummary.patient_key)
        .join(Site, Site.site_code == Patient.site_code)
        .join(FollowUp, and_(FollowUp.patient_key == Patient.patient_key, FollowUp.is_current))
        .where(CURRENT_PATIENT, FollowUp.vital_status == "alive", PatientSummary.relapse_date.is_not(None))
    ).all()
    due, missing = 0, 0
    for relapse, l2, rule, cutoff in rows:
        rel, cut = as_date_or_none(relapse), as_date_or_none(cutoff)
        if rel is None or cut is None or (cut - rel).days <= NO_NEXT_LINE_DAYS:
            continue
        due += 1
        l2_d = as_date_or_none(l2)
        # (r3) a second line begun for this relapse before it was recorded is its next line
        missing += l2_d is None or (l2_d < rel and rule != StartRule.PROGRESSION_RECORDED_LATER)
    return missing, due


def _early_treatment(conn: Connection) -> tuple[int, int]:
    rows = conn.execute(
        select(Treatment.start_date, Patient.diagnosis_date)
        .join(Patient, Patient.patient_key == Treatment.patient_key)
        .where(Treatment.is_current, CURRENT_PATIENT)
    ).all()
    early = 0
    for start, diagnosis in rows:
        s, d = as_date_or_none(start), as_date_or_none(diagnosis)
        if s is not None and d is not None and (d - s).days > EARLY_TREATMENT_DAYS:
            early += 1
    return early, len(rows)


def _lenalidomide_dose(conn: Connection) -> tuple[int, int]:
    from registry.db.models import Drug

    rows = (
        select(func.count())
        .select_from(Treatment)
        .join(Drug, Drug.drug_id == Treatment.drug_id)
        .where(Treatment.is_current, Drug.generic_name == "lenalidomide", Treatment.dose_mg.is_not(None))
    )
    return _count(conn, rows.where(Treatment.dose_mg > MAX_LENALIDOMIDE_MG)), _count(conn, rows)


def _quarantine_rate(file: str) -> Counts:
    """Rows quarantined / rows read for ``file`` in the latest load of each site."""

    def counts(conn: Connection) -> tuple[int, int]:
        quarantined = read = 0
        for _, file_counts in _latest_runs(conn):
            c = file_counts.get(file) or {}
            if c.get("unchanged_file"):
                continue  # not read again this time: nothing new to say
            quarantined += int(c.get("quarantined", 0))
            read += int(c.get("read", 0))
        return quarantined, read

    return counts


# --------------------------------------------------------------------------- drill-down
def _rows_of(model: Any, key: Any, *where: Any) -> Rows:
    def rows() -> Any:
        return select(
            key.label("record_key"),
            model.patient_key.label("patient_key"),
            literal(model.__tablename__).label("file"),
            model.run_id.label("run_id"),
            model.source_row.label("source_row"),
        ).where(*where)

    return rows


def _summary_rows(*where: Any) -> Rows:
    def rows() -> Any:
        return (
            select(
                Patient.patient_key.label("record_key"),
                Patient.patient_key.label("patient_key"),
                literal("patients").label("file"),
                Patient.run_id.label("run_id"),
                Patient.source_row.label("source_row"),
            )
            .join(PatientSummary, PatientSummary.patient_key == Patient.patient_key)
            .where(CURRENT_PATIENT, *where)
        )

    return rows


CATALOGUE: tuple[Check, ...] = (
    Check(
        "patients_iss_missing",
        Category.COMPLETENESS,
        CheckSeverity.WARNING,
        20.0,
        "patients without ISS stage (of patients)",
        _ratio(_n(Patient, ISS_MISSING), _n(Patient, CURRENT_PATIENT)),
        _rows_of(Patient, Patient.patient_key, ISS_MISSING),
    ),
    Check(
        "patients_cytogenetics_unknown",
        Category.COMPLETENESS,
        CheckSeverity.WARNING,
        30.0,
        "patients whose cytogenetic risk is unknown (of patients)",
        _ratio(_n(Patient, CYTO_UNKNOWN), _n(Patient, CURRENT_PATIENT)),
        _rows_of(Patient, Patient.patient_key, CYTO_UNKNOWN),
    ),
    Check(
        "riss_contradicts_components",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        0.0,
        "patients whose recorded R-ISS contradicts the stage its components give (ISS, LDH, "
        "del(17p), t(4;14), t(14;16)), e.g. R-ISS I with ISS III (of patients with both)",
        _ratio(_n(Patient, RISS_CONTRADICTED), _n(Patient, RISS_BOTH)),
        _rows_of(Patient, Patient.patient_key, RISS_CONTRADICTED),
    ),
    Check(
        "followup_stale",
        Category.COMPLETENESS,
        CheckSeverity.WARNING,
        10.0,
        f"patients alive at last contact whose last contact is more than {STALE_FOLLOW_UP_DAYS} days "
        "before the site's data cutoff (of patients alive at last contact)",
        _followup_stale,
    ),
    Check(
        "followup_missing",
        Category.COMPLETENESS,
        CheckSeverity.FATAL,
        1.0,
        "patients without a follow-up row (of patients)",
        _ratio(_n(Patient, NO_FOLLOW_UP), _n(Patient, CURRENT_PATIENT)),
        _rows_of(Patient, Patient.patient_key, NO_FOLLOW_UP),
    ),
    Check(
        "treatments_unmapped_drug",
        Category.CONFORMANCE,
        CheckSeverity.WARNING,
        1.0,
        "treatment rows whose drug is not in the vocabulary (of treatment rows)",
        _ratio(_n(Treatment, UNMAPPED), _n(Treatment, Treatment.is_current)),
        _rows_of(Treatment, Treatment.treatment_key, UNMAPPED),
    ),
    Check(
        "death_cause_missing",
        Category.COMPLETENESS,
        CheckSeverity.INFO,
        25.0,
        "dead patients without a cause of death (of dead patients)",
        _ratio(_n(FollowUp, CAUSE_MISSING), _n(FollowUp, DEAD)),
        _rows_of(FollowUp, FollowUp.patient_key, CAUSE_MISSING),
    ),
    Check(
        "transplant_no_induction",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        5.0,
        "patients with an index transplant and no regimen before it (of patients with an index transplant)",
        _ratio(_n(PatientSummary, NO_INDUCTION), _n(PatientSummary, WITH_INDEX)),
        _summary_rows(NO_INDUCTION),
    ),
    Check(
        "relapse_no_next_line_180d",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        15.0,
        f"relapses after the index transplant more than {NO_NEXT_LINE_DAYS} days before the cutoff, "
        "patient alive at last contact, with no next line started (of those relapses)",
        _relapse_no_next_line,
    ),
    Check(
        "relapses_recorded_after_salvage",
        Category.PLAUSIBILITY,
        CheckSeverity.INFO,
        10.0,
        "relapse episodes first recorded after the salvage regimen they caused began (the site dates "
        "progressions by a later letter or result; the line starts with the regimen) (of relapse "
        "episodes); `registry dq rows` names each patient's site",
        _ratio(_n(Relapse, CURRENT_RELAPSE, RECORDED_AFTER_SALVAGE), _n(Relapse, CURRENT_RELAPSE)),
        _rows_of(Patient, Patient.patient_key, _relapse_patients(RECORDED_AFTER_SALVAGE)),
    ),
    Check(
        "relapses_recorded_again",
        Category.CONFORMANCE,
        CheckSeverity.INFO,
        10.0,
        "relapse episodes recorded as two or more progression or relapse events within "
        "relapse_episode_days (one relapse, counted once) (of relapse episodes)",
        _ratio(_n(Relapse, CURRENT_RELAPSE, RECORDED_AGAIN), _n(Relapse, CURRENT_RELAPSE)),
        _rows_of(Patient, Patient.patient_key, _relapse_patients(RECORDED_AGAIN)),
    ),
    Check(
        "treatment_before_diagnosis",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        1.0,
        f"treatment rows starting more than {EARLY_TREATMENT_DAYS} days before the patient's diagnosis "
        "(of treatment rows)",
        _early_treatment,
    ),
    Check(
        "lenalidomide_dose_implausible",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        0.5,
        f"lenalidomide rows with a daily dose above {MAX_LENALIDOMIDE_MG} mg "
        "(of lenalidomide rows with a dose)",
        _lenalidomide_dose,
    ),
    Check(
        "disease_events_response_missing",
        Category.COMPLETENESS,
        CheckSeverity.INFO,
        10.0,
        "response assessments without a response (of response assessments)",
        _ratio(
            _n(
                DiseaseEvent,
                DiseaseEvent.is_current,
                DiseaseEvent.event_type == "response_assessment",
                DiseaseEvent.response.is_(None),
            ),
            _n(DiseaseEvent, DiseaseEvent.is_current, DiseaseEvent.event_type == "response_assessment"),
        ),
    ),
    Check(
        "transplants_same_day",
        Category.PLAUSIBILITY,
        CheckSeverity.INFO,
        0.0,
        "patients with two transplants on the same day (of patients with a transplant)",
        lambda conn: _same_day_transplants(conn),
    ),
    Check(
        "labs_unit_unknown",
        Category.CONFORMANCE,
        CheckSeverity.WARNING,
        1.0,
        "laboratory rows quarantined because their unit is not one the test can be read in (of "
        "laboratory rows read in the latest load of each site); `registry quarantine` shows them",
        lambda conn: _lab_rule_rate(conn, LAB_UNIT_RULE),
    ),
    Check(
        "labs_value_implausible",
        Category.PLAUSIBILITY,
        CheckSeverity.WARNING,
        1.0,
        "laboratory rows quarantined because the value is negative or implausible (serum M-protein "
        "above 20 g/dL, urine above 50,000 mg/24h, a free light chain above 100,000 mg/L, marrow "
        "above 100%) (of laboratory rows read in the latest load of each site)",
        lambda conn: _lab_rule_rate(conn, LAB_IMPLAUSIBLE_RULE),
    ),
    Check(
        "day100_response_disagrees",
        Category.PLAUSIBILITY,
        CheckSeverity.INFO,
        20.0,
        "index transplants whose recorded day-100 response differs from the one the laboratory series "
        "gives (line 1's assessment nearest day 100) (of index transplants with both); often a CR "
        "recorded without the marrow the registry needs, or a response judged on another date",
        _ratio(_n(Transplant, DAY100_DISAGREES), _n(Transplant, _DAY100_JUDGED)),
        _rows_of(Transplant, Transplant.transplant_key, DAY100_DISAGREES),
    ),
    Check(
        "relapses_found_only_in_labs",
        Category.COMPLETENESS,
        CheckSeverity.INFO,
        10.0,
        "relapse episodes documented by the laboratory series alone: a confirmed PD that no disease "
        "event or stop reason records (of relapse episodes); `registry dq rows` names the patients",
        _ratio(_n(Relapse, CURRENT_RELAPSE, LABS_ONLY), _n(Relapse, CURRENT_RELAPSE)),
        _rows_of(Patient, Patient.patient_key, _relapse_patients(LABS_ONLY)),
    ),
    *(
        Check(
            f"quarantine_rate_{file}",
            Category.CONFORMANCE,
            CheckSeverity.WARNING,
            5.0,
            f"rows of {file}.csv quarantined in the latest load of each site (of rows read)",
            _quarantine_rate(file),
        )
        for file in FILES
    ),
)


def _latest_runs(conn: Connection) -> list[tuple[int, dict[str, Any]]]:
    """(run id, file counts) of the latest successful load of each site."""
    latest = (
        select(EtlRun.site_code, func.max(EtlRun.run_id).label("run_id"))
        .where(EtlRun.status == "succeeded")
        .group_by(EtlRun.site_code)
        .subquery()
    )
    return [
        (int(run), counts or {})
        for run, counts in conn.execute(
            select(EtlRun.run_id, EtlRun.file_counts).join(latest, latest.c.run_id == EtlRun.run_id)
        )
    ]


def _lab_rule_rate(conn: Connection, rule: str) -> tuple[int, int]:
    """Laboratory rows the latest load of each site quarantined for ``rule`` / rows it read."""
    hit = read = 0
    for run, counts in _latest_runs(conn):
        c = counts.get("labs") or {}
        if c.get("unchanged_file"):
            continue
        read += int(c.get("read", 0))
        for (reasons,) in conn.execute(
            select(QuarantinedRow.reasons).where(QuarantinedRow.run_id == run, QuarantinedRow.file == "labs")
        ):
            hit += any(r.get("rule") == rule for r in reasons or [])
    return hit, read


def _same_day_transplants(conn: Connection) -> tuple[int, int]:
    per_day = (
        select(Transplant.patient_key, Transplant.transplant_date, func.count().label("n"))
        .where(Transplant.is_current)
        .group_by(Transplant.patient_key, Transplant.transplant_date)
        .subquery()
    )
    twice = _count(conn, select(func.count(func.distinct(per_day.c.patient_key))).where(per_day.c.n > 1))
    patients = _count(
        conn, select(func.count(func.distinct(Transplant.patient_key))).where(Transplant.is_current)
    )
    return twice, patients


CHECKS: dict[str, Check] = {c.check_id: c for c in CATALOGUE}
