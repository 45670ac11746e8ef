"""Every data-quality check on a small registry built with known defects, with the exact
violating and denominator counts worked out from the rows; thresholds re-applied from stored
counts; a corrected delivery resolves exactly the checks it fixes; both engines."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from sqlalchemy import Engine

from etl.pipeline import run_bundle
from registry.cli import cli
from registry.contract.rules import RuleCode
from registry.quality.checks import CATALOGUE, LAB_IMPLAUSIBLE_RULE, LAB_UNIT_RULE
from registry.quality.run import diff, run_checks, stored_results
from tests.conftest import TEST_KEY
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()


def defective_rows() -> dict[str, list[dict[str, Any]]]:
    """The three test patients with one defect per check (data cutoff 2026-06-30)."""
    rows = base_rows()
    rows["follow_up"][0]["last_contact_date"] = "2025-05-01"  # MRN-0001 alive, 425 days stale
    rows["follow_up"][1]["cause_of_death"] = ""  # MRN-0002 dead, no cause
    del rows["follow_up"][2]  # MRN-0003 has no follow-up row
    rows["treatments"][6].update(start_date="2019-01-01", end_date="2019-03-01")  # MRN-0002: no induction
    rows["treatments"][7]["dose_mg"] = "100"  # MRN-0003: lenalidomide 100 mg
    template = rows["treatments"][0]
    rows["treatments"].append({**template, "treatment_id": "R9", "drug": "Mystery drug"})  # unmapped
    rows["treatments"].append(  # 223 days before MRN-0001's diagnosis (2019-01-10)
        {
            **template,
            "treatment_id": "R10",
            "drug": "thalidomide",
            "start_date": "2018-06-01",
            "end_date": "2018-07-01",
        }
    )
    rows["treatments"].append({**template, "treatment_id": "R11", "dose_mg": "-1"})  # quarantined
    rows["disease_events"][0]["response"] = ""  # a response assessment without its response
    # MRN-0001: DRd begun 2022-03-15, the progression recorded ten days later (maintenance
    # stopped as completed): recorded after the salvage it caused
    rows["treatments"][3]["stop_reason"] = "completed"
    rows["disease_events"][1]["event_date"] = "2022-03-25"
    # MRN-0002: the relapse recorded again 19 days later: one episode, recorded twice
    rows["disease_events"].append({**rows["disease_events"][2], "event_id": "E4", "event_date": "2019-06-20"})
    # MRN-0002 (ISS III, del(17p) present: R-ISS III by its components) recorded as R-ISS I;
    # MRN-0001 (ISS II: R-ISS II whatever the rest) recorded as II, which agrees
    rows["patients"][1]["riss_stage"] = "I"
    rows["patients"][0]["riss_stage"] = "II"

    # laboratory series: MRN-0001 in CR at day 100 (recorded as VGPR); MRN-0003 progresses in
    # the series (0.8 -> 1.6 -> 1.8 g/dL) with no record of it; one unit unknown, one value implausible
    def lab(i: int, patient: str, day: str, test: str, value: str, unit: str = "") -> dict[str, Any]:
        return {
            "lab_id": f"L{i}",
            "patient_id": patient,
            "sample_date": day,
            "test": test,
            "value": value,
            "unit": unit,
        }

    rows["labs"] = [
        # (line 1 starts with R10 on 2018-06-01: its baseline is the last value within 60 days before)
        lab(1, "MRN-0001", "2018-05-25", "serum_m_protein", "3.0", "g/dL"),
        lab(2, "MRN-0001", "2019-09-09", "serum_m_protein", "<0.1", "g/dL"),
        lab(3, "MRN-0001", "2019-09-09", "serum_ife", "negative"),
        lab(4, "MRN-0001", "2019-09-09", "urine_ife", "negative"),
        lab(5, "MRN-0001", "2019-09-09", "bm_plasma_cells", "2", "%"),
        lab(6, "MRN-0001", "2019-09-09", "serum_m_protein", "3", "mmol/L"),  # unit unknown: quarantined
        lab(7, "MRN-0001", "2019-10-09", "serum_m_protein", "25", "g/dL"),  # implausible: quarantined
        lab(8, "MRN-0003", "2020-02-02", "serum_m_protein", "2.0", "g/dL"),
        lab(9, "MRN-0003", "2020-04-01", "serum_m_protein", "0.8", "g/dL"),
        lab(10, "MRN-0003", "2020-06-01", "serum_m_protein", "0.8", "g/dL"),
        lab(11, "MRN-0003", "2020-08-01", "serum_m_protein", "1.6", "g/dL"),
        lab(12, "MRN-0003", "2020-09-01", "serum_m_protein", "1.8", "g/dL"),
    ]
    return rows


EXPECTED = {  # check: (violating, denominator)
    "patients_iss_missing": (1, 3),  # MRN-0003
    "patients_cytogenetics_unknown": (1, 3),  # MRN-0003: del17p not tested
    "followup_stale": (1, 1),  # MRN-0001 (MRN-0003 has no follow-up, MRN-0002 is dead)
    "followup_missing": (1, 3),
    "treatments_unmapped_drug": (1, 10),  # R9 among 8 + R9 + R10 loaded rows
    "death_cause_missing": (1, 1),
    "transplant_no_induction": (1, 2),  # MRN-0002
    "relapse_no_next_line_180d": (0, 1),  # MRN-0001 relapsed 2022-03-25, line 2 on 2022-03-15
    "relapses_recorded_after_salvage": (1, 3),  # MRN-0001 (of the relapses of all three)
    "relapses_recorded_again": (1, 3),  # MRN-0002
    "relapses_found_only_in_labs": (1, 3),  # MRN-0003's, found in the laboratory series only
    "day100_response_disagrees": (1, 1),  # MRN-0001: CR in the series, VGPR recorded
    "labs_unit_unknown": (1, 12),  # L6
    "labs_value_implausible": (1, 12),  # L7
    "treatment_before_diagnosis": (1, 10),  # R10
    "riss_contradicts_components": (1, 2),  # MRN-0002 (of MRN-0001 and MRN-0002)
    "lenalidomide_dose_implausible": (1, 3),  # R8 among R2, R4, R8
    "disease_events_response_missing": (1, 1),
    "quarantine_rate_disease_events": (0, 4),
    "transplants_same_day": (0, 2),
    "quarantine_rate_patients": (0, 3),
    "quarantine_rate_follow_up": (0, 2),
    "quarantine_rate_transplants": (0, 2),
    "quarantine_rate_treatments": (1, 11),  # R11
    "quarantine_rate_labs": (2, 12),  # L6, L7
}


def test_every_check_counts_exactly(engine: Engine, tmp_path: Path) -> None:
    assert set(EXPECTED) == {c.check_id for c in CATALOGUE}
    s = run_bundle(engine, write_bundle(tmp_path / "b", defective_rows()), KEY)
    assert s.quarantined == 3 and s.files["disease_events"].findings == 1
    _, results = run_checks(engine)
    got = {r.check_id: (r.violated, r.denominator) for r in results}
    assert got == EXPECTED
    status = {r.check_id: r.status for r in results}
    assert status["death_cause_missing"] == "failed" and status["relapse_no_next_line_180d"] == "passed"


def test_thresholds_are_reapplied_to_stored_counts(engine: Engine, tmp_path: Path) -> None:
    run_bundle(engine, write_bundle(tmp_path / "b", defective_rows()), KEY)
    run_id, _ = run_checks(engine)
    _, strict = stored_results(engine, run_id)
    _, relaxed = stored_results(engine, run_id, {"patients_iss_missing": 50})
    by = {r.check_id: r for r in strict}, {r.check_id: r for r in relaxed}
    assert by[0]["patients_iss_missing"].status == "failed"  # 33% > 20%
    assert by[1]["patients_iss_missing"].status == "passed" and by[1]["patients_iss_missing"].threshold == 50


def test_a_corrected_delivery_resolves_exactly_what_it_fixes(engine: Engine, cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_bundle(engine, write_bundle(tmp_path / "b1", defective_rows()), KEY)
    runner = CliRunner()
    res = runner.invoke(cli, ["dq", "run", "--format", "json"])
    assert res.exit_code == 0, res.output
    first = json.loads(res.output)
    assert set(first["checks"][0]) >= {
        "check_id",
        "category",
        "severity",
        "status",
        "threshold",
        "violated",
        "denominator",
        "pct",
    }

    fixed = defective_rows()
    fixed["follow_up"][1]["cause_of_death"] = "myeloma"  # resolves death_cause_missing
    fixed["treatments"] = [t for t in fixed["treatments"] if t["treatment_id"] != "R9"]  # resolves unmapped
    fixed["follow_up"].append(  # new: MRN-0003's follow-up sent, but broken (quarantined)
        {"patient_id": "MRN-0003", "last_contact_date": "2026-06-01", "vital_status": "unsure"}
    )
    manifest = {"exported_at": "2026-07-02T02:00:00+00:00"}
    run_bundle(engine, write_bundle(tmp_path / "b2", fixed, manifest), KEY)
    assert runner.invoke(cli, ["dq", "run", "--fail-on", "failed"]).exit_code == 65
    res = runner.invoke(cli, ["dq", "diff", "--format", "json"])
    d = json.loads(res.output)
    assert d["resolved"] == ["death_cause_missing", "treatments_unmapped_drug"]
    assert d["new"] == ["quarantine_rate_follow_up"]
    assert "followup_missing" in d["persisting"]
    assert d == diff(engine)

    res = runner.invoke(cli, ["dq", "show", "--check", "followup_missing", "--rows", "--format", "json"])
    (row,) = json.loads(res.output)
    assert len(row["patient_key"]) == 32 and row["site"] == "TEST-SITE" and row["source_row"] == 4
    assert row["file"] == "patients.csv" and row["bundle_sha256"]


def test_the_quality_page_never_shows_a_small_count_or_the_percentage_that_gives_it_back() -> None:
    from registry.quality.run import CheckResult
    from registry.reports.quality import quality_html

    results = [
        CheckResult("followup_missing", "completeness", "fatal", 1.0, 2, 1004, "failed"),
        CheckResult("patients_iss_missing", "completeness", "warning", 20.0, 132, 1004, "passed"),
    ]
    trend = {"followup_missing": [(3, 1000), (2, 1004)], "patients_iss_missing": [(130, 1000), (132, 1004)]}
    page = quality_html(7, results, trend, None, min_cell=5)
    assert "&lt;5" in page and ">2<" not in page and "0.2" not in page and "0.3" not in page
    assert "13.1" in page and ">132<" in page  # large counts and their percentages stay
    assert "0.2" in quality_html(7, results, trend)  # inside the registry everything is shown


def test_the_checks_that_find_nothing_above_fire_on_their_own_defects(engine: Engine, tmp_path: Path) -> None:
    """transplants_same_day and relapse_no_next_line_180d find 0 on the defective registry: here
    each meets the defect it is for (a check broken so that it never fires fails this test)."""
    rows = base_rows()
    # MRN-0002: a second transplant row on the day of TX2
    rows["transplants"].append({**rows["transplants"][1], "transplant_id": "TX3"})
    # MRN-0001 (alive): the salvage after the 2022 progression never started
    rows["treatments"] = [
        t
        for t in rows["treatments"]
        if not (t["patient_id"] == "MRN-0001" and t["start_date"] >= "2022-03-02")
    ]
    run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    _, results = run_checks(engine)
    got = {r.check_id: (r.violated, r.denominator) for r in results}
    assert got["transplants_same_day"] == (1, 2)  # MRN-0002, of MRN-0001 and MRN-0002
    assert got["relapse_no_next_line_180d"] == (1, 1)  # MRN-0001's relapse of 2022


def test_the_laboratory_checks_count_the_rules_of_the_file() -> None:
    assert (LAB_UNIT_RULE, LAB_IMPLAUSIBLE_RULE) == (RuleCode.LAB_UNIT, RuleCode.LAB_IMPLAUSIBLE)
