"""Every rule of export-format.md with a bad row (quarantined with that rule, the rest loads)
and, where the rule has synonyms or exceptions, a good row. Runs on both engines."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from sqlalchemy import func, select

from etl.pipeline import run_bundle
from etl.specs import SPECS
from etl.transform import Pseudonymiser
from etl.validate import PatientFacts, check_chunk
from registry.contract.rules import CATALOGUE, RuleCode
from registry.db.models import InputFinding, Patient, QuarantinedRow, Transplant, Treatment
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()
CUTOFF = dt.date(2026, 6, 30)  # the test bundles' data cutoff


def _set(file: str, index: int, **values: Any):  # type: ignore[no-untyped-def]
    def mutate(rows: dict[str, list[dict[str, Any]]]) -> None:
        rows[file][index].update(values)

    return mutate


LAB = {"lab_id": "L1", "patient_id": "MRN-0001", "sample_date": "2019-01-15", "test": "SPEP M-spike",
       "value": "3.2", "unit": "g/dL"}  # fmt: skip


def _lab(**values: Any):  # type: ignore[no-untyped-def]
    """A labs.csv (optional: absent from the base rows) with one good row and one bad one."""

    def mutate(rows: dict[str, list[dict[str, Any]]]) -> None:
        rows["labs"] = [LAB, {**LAB, "lab_id": "L2", **values}]

    return mutate


BAD = [
    ("sex_code", _set("patients", 2, sex="X"), "patients", "not_allowed"),
    ("sex_empty", _set("patients", 2, sex=""), "patients", "required"),
    ("birth_bad_date", _set("patients", 2, birth_date="1950-13-01"), "patients", "invalid_date"),
    ("birth_slash_date", _set("patients", 2, birth_date="01/01/1950"), "patients", "invalid_date"),
    (
        "birth_after_dx",
        _set("patients", 2, birth_date="2020-03-01"),
        "patients",
        "birth_not_before_diagnosis",
    ),
    ("too_young", _set("patients", 2, birth_date="2005-01-01"), "patients", "age_at_diagnosis"),
    ("too_old", _set("patients", 2, birth_date="1901-01-01"), "patients", "age_at_diagnosis"),
    ("before_1900", _set("patients", 2, birth_date="1899-12-31"), "patients", "date_before_1900"),
    (
        "dx_after_cutoff",
        _set("patients", 2, diagnosis_date="2026-07-01"),
        "patients",
        "date_after_cutoff",
    ),
    ("iss_code", _set("patients", 2, iss_stage="IV"), "patients", "not_allowed"),
    ("riss_synonym_not_allowed", _set("patients", 2, riss_stage="2"), "patients", "not_allowed"),
    ("fish_code", _set("patients", 2, del17p="maybe"), "patients", "not_allowed"),
    ("heavy_chain", _set("patients", 2, heavy_chain="IgX"), "patients", "not_allowed"),
    ("ldh", _set("patients", 2, ldh_elevated="high"), "patients", "not_allowed"),
    ("tx_type", _set("transplants", 1, transplant_type="syngeneic"), "transplants", "not_allowed"),
    (
        "tx_dose_negative",
        _set("transplants", 1, conditioning_dose_mg_m2="-5"),
        "transplants",
        "must_be_positive",
    ),
    (
        "tx_dose_text",
        _set("transplants", 1, conditioning_dose_mg_m2="high"),
        "transplants",
        "invalid_number",
    ),
    (
        "tx_before_dx",
        _set("transplants", 1, transplant_date="2018-03-01"),
        "transplants",
        "transplant_before_diagnosis",
    ),
    (
        "tx_after_death",
        _set("transplants", 1, transplant_date="2020-02-01"),
        "transplants",
        "after_death",
    ),
    ("tx_orphan", _set("transplants", 1, patient_id="MRN-9999"), "transplants", "orphan"),
    ("tx_response", _set("transplants", 0, response_day100="great"), "transplants", "not_allowed"),
    (
        "rx_end_before_start",
        _set("treatments", 7, end_date="2020-01-01"),
        "treatments",
        "end_before_start",
    ),
    (
        "rx_after_last_contact",
        _set("treatments", 7, end_date="2026-06-15"),
        "treatments",
        "after_last_contact",
    ),
    ("rx_after_death", _set("treatments", 6, end_date="2020-02-01"), "treatments", "after_death"),
    ("rx_stop_reason", _set("treatments", 7, stop_reason="lost"), "treatments", "not_allowed"),
    ("rx_intent", _set("treatments", 7, intent="palliative"), "treatments", "not_allowed"),
    ("rx_drug_empty", _set("treatments", 7, drug=""), "treatments", "required"),
    ("rx_dose_zero", _set("treatments", 7, dose_mg="0"), "treatments", "must_be_positive"),
    (
        "rx_after_cutoff",
        _set("treatments", 7, start_date="2026-07-02", end_date=""),
        "treatments",
        "date_after_cutoff",
    ),
    ("ev_type", _set("disease_events", 2, event_type="remission"), "disease_events", "not_allowed"),
    ("lab_test", _lab(test="shoe size"), "labs", "not_allowed"),
    ("lab_value", _lab(value="three"), "labs", "lab_value"),
    ("lab_below_limit_flc", _lab(test="kappa FLC", value="<5", unit="mg/L"), "labs", "lab_value"),
    ("lab_unit", _lab(value="3", unit="mmol/L"), "labs", "lab_unit"),
    ("lab_no_unit", _lab(value="3", unit=""), "labs", "lab_unit"),
    ("lab_implausible", _lab(value="25"), "labs", "lab_implausible"),
    ("lab_orphan", _lab(patient_id="NOPE"), "labs", "orphan"),
    ("lab_after_death", _lab(patient_id="MRN-0002", sample_date="2025-01-01"), "labs", "after_death"),
    ("lab_after_cutoff", _lab(sample_date="2026-07-01"), "labs", "date_after_cutoff"),
    (
        "ev_response",
        _set("disease_events", 0, response="excellent"),
        "disease_events",
        "not_allowed",
    ),
    ("ev_orphan", _set("disease_events", 2, patient_id="NOPE"), "disease_events", "orphan"),
    ("fu_dead_no_date", _set("follow_up", 1, death_date=""), "follow_up", "death_date_required"),
    (
        "fu_alive_with_date",
        _set("follow_up", 0, death_date="2026-01-01"),
        "follow_up",
        "death_date_not_allowed",
    ),
    ("fu_status", _set("follow_up", 2, vital_status="unknown"), "follow_up", "not_allowed"),
    (
        "fu_contact_after_death",
        _set("follow_up", 1, last_contact_date="2020-03-01"),
        "follow_up",
        "after_death",
    ),
    ("fu_cause", _set("follow_up", 1, cause_of_death="old age"), "follow_up", "not_allowed"),
    (
        "fu_contact_before_dx",
        _set("follow_up", 0, last_contact_date="2018-12-01"),
        "follow_up",
        "before_diagnosis",
    ),
    ("rx_id_too_long", _set("treatments", 7, treatment_id="X" * 129), "treatments", "too_long"),
    ("rx_drug_too_long", _set("treatments", 7, drug="x" * 201), "treatments", "too_long"),
    ("rx_drug_nul", _set("treatments", 7, drug="Vel\x00cade"), "treatments", "nul_character"),
    ("ev_bad_date", _set("disease_events", 2, event_date="2021-02-30"), "disease_events", "invalid_date"),
    # strictly YYYY-MM-DD in ASCII digits (strptime took both)
    ("ev_short_date", _set("disease_events", 2, event_date="2021-2-3"), "disease_events", "invalid_date"),
    (
        "ev_fullwidth_date",
        _set("disease_events", 2, event_date="２０２１-０２-０３"),
        "disease_events",
        "invalid_date",
    ),
    ("rx_dose_huge", _set("treatments", 7, dose_mg="1.7e308"), "treatments", "out_of_range"),
    # what a stray quote makes of a record: a line break in a value, a quote in an id
    (
        "rx_drug_line_break",
        _set("treatments", 7, drug="Revlimid\nRX-9,MRN-0003"),
        "treatments",
        "stray_quote",
    ),
    ("rx_id_quote", _set("treatments", 7, treatment_id='R8"'), "treatments", "stray_quote"),
]
# rules whose failing rows are built by other tests (a malformed CSV record, repeated ids)
ELSEWHERE = {
    RuleCode.WRONG_FIELD_COUNT: "tests/etl/test_load.py",
    RuleCode.DUPLICATE_ID: "test_duplicate_ids_make_every_copy_invalid",
    RuleCode.RESPONSE_MISSING: "test_an_advisory_rule_loads_the_row_and_records_a_finding",
}


def test_every_rule_of_the_catalogue_has_a_failing_row_case() -> None:
    assert {RuleCode(rule) for *_, rule in BAD} | set(ELSEWHERE) == set(CATALOGUE)


def test_every_reason_carries_the_severity_of_its_rule(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"][7]["dose_mg"] = "-1"
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, dry_run=True)
    (reason,) = s.quarantine[0].reasons
    assert reason.rule == "must_be_positive" and reason.severity == "blocking"


def validate_in_memory(rows: dict[str, list[dict[str, Any]]]) -> dict[str, dict[int, list[dict[str, Any]]]]:
    """The validation stage alone, on frames (no bundle, no database): each file's chunk
    through ``check_chunk`` in load order, the patient facts fed as the pipeline feeds them.
    Returns, per file, the reasons of each failing row (row numbers count the header)."""
    facts = PatientFacts()
    pseudo = Pseudonymiser(KEY, "TEST-SITE")
    out = {}
    for spec in SPECS.values():
        columns = [c.name for c in spec.columns]
        frame = pd.DataFrame(rows.get(spec.name, []), columns=columns).fillna("").astype(str)
        frame = frame.apply(lambda col: col.str.strip()).astype(object)
        frame.index = pd.RangeIndex(2, len(frame) + 2)
        keys = None if spec.is_root else pseudo.series("patient", frame["patient_id"])
        res = check_chunk(spec, frame, CUTOFF, facts, keys)
        if spec.on_valid is not None:
            ids = frame.loc[res.valid.index, "patient_id"]
            spec.on_valid(facts, res.valid, pseudo.series("patient", ids), ids.to_numpy())
        if spec.on_done is not None:
            spec.on_done(facts, set())
        out[spec.name] = res.reasons
    return out


@pytest.mark.parametrize(("case", "mutate", "file", "rule"), BAD, ids=[b[0] for b in BAD])
def test_bad_row_fails_its_rule(case, mutate, file, rule) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    mutate(rows)
    failed = validate_in_memory(rows)
    assert len(failed[file]) == 1, failed
    (reasons,) = failed[file].values()
    assert rule in {r.rule for r in reasons}


def test_the_base_rows_fail_no_rule() -> None:
    assert not any(validate_in_memory(base_rows()).values())


# a few cases end to end, on both engines: parse error, Pandera check, cross-file rule
END_TO_END = [b for b in BAD if b[0] in ("birth_bad_date", "rx_dose_zero", "tx_after_death", "ev_orphan")]


@pytest.mark.parametrize(("case", "mutate", "file", "rule"), END_TO_END, ids=[b[0] for b in END_TO_END])
def test_bad_row_is_quarantined_with_its_rule(engine, tmp_path: Path, case, mutate, file, rule) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    mutate(rows)
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, dry_run=True)
    assert s.status == "validated"
    q = [r for r in s.quarantine if r.file == file]
    assert len(q) == 1, s.quarantine
    assert rule in {reason.rule for reason in q[0].reasons}
    for name, counts in s.files.items():
        assert counts.read == counts.loaded + counts.quarantined, name


def test_base_bundle_loads_without_quarantine(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    s = run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    assert s.status == "succeeded" and s.quarantined == 0
    assert {k: v.loaded for k, v in s.files.items()} == {
        "patients": 3,
        "follow_up": 3,
        "transplants": 2,
        "treatments": 8,
        "disease_events": 3,
    }
    with engine.connect() as conn:
        assert (
            conn.execute(
                select(func.count()).select_from(Treatment).where(Treatment.drug_id.is_(None))
            ).scalar()
            == 0
        )
        types = set(conn.execute(select(Transplant.transplant_type)).scalars())
    assert types == {"autologous"}


def test_cytogenetic_risk_and_synonyms(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_bundle(engine, write_bundle(tmp_path / "b"), KEY)
    with engine.connect() as conn:
        got = sorted(
            conn.execute(select(Patient.iss_stage, Patient.cytogenetic_risk)).all(),
            key=lambda r: str(r),
        )
    assert got == sorted([("II", "standard"), ("III", "high"), (None, "unknown")], key=str)


def test_duplicate_ids_make_every_copy_invalid(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"].append(dict(rows["treatments"][7]))  # same treatment_id twice
    rows["follow_up"].append(dict(rows["follow_up"][2]))  # same patient twice
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, derive=False)
    assert s.files["treatments"].quarantined == 2 and s.files["follow_up"].quarantined == 2
    with engine.connect() as conn:
        reasons = [r for (rs,) in conn.execute(select(QuarantinedRow.reasons)) for r in rs]
    assert sum(r["rule"] == "duplicate_id" for r in reasons) == 4


def test_children_of_a_quarantined_patient_are_orphans(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["patients"][0]["sex"] = "?"
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, dry_run=True)
    by_file = {k: v.quarantined for k, v in s.files.items()}
    assert by_file == {
        "patients": 1,
        "follow_up": 1,
        "transplants": 1,
        "treatments": 6,
        "disease_events": 2,
    }


def test_ongoing_treatment_is_not_after_last_contact(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # R5/R6 are ongoing (no end date) while last contact is 2026-05-01: allowed
    s = run_bundle(engine, write_bundle(tmp_path / "b"), KEY, dry_run=True)
    assert s.files["treatments"].quarantined == 0


def test_follow_up_beyond_the_cutoff_is_kept(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["follow_up"][2].update(last_contact_date="2026-08-01")
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, dry_run=True)
    assert s.files["follow_up"].quarantined == 0


def test_every_reason_of_a_row_is_reported(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"][7].update(stop_reason="lost", dose_mg="-1", end_date="2020-01-01")
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY, dry_run=True)
    (q,) = [r for r in s.quarantine if r.file == "treatments"]
    assert {r.rule for r in q.reasons} == {
        "not_allowed",
        "must_be_positive",
        "end_before_start",
    }
    assert q.row_number == 9  # header is row 1


def test_an_advisory_rule_loads_the_row_and_records_a_finding(engine, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    assessment = next(r for r in rows["disease_events"] if r["event_type"] == "response_assessment")
    assessment["response"] = ""
    s = run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    events = s.files["disease_events"]
    assert events.quarantined == 0 and events.loaded == 3 and events.findings == 1
    with engine.connect() as conn:
        (finding,) = conn.execute(select(InputFinding)).all()
    assert finding.rule == "response_missing" and finding.file == "disease_events"
    assert finding.record_key != assessment["event_id"] and len(finding.record_key) == 32  # a pseudonym
    assert CATALOGUE[RuleCode.RESPONSE_MISSING].severity == "advisory"
