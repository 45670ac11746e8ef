"""The release rule lives in the library: every caller of ``release`` gets suppression, and
the per-patient table never leaves under it. The study report is computed from a frame and a
definition, without a database, and reads its analysis from the definition."""

from __future__ import annotations

import dataclasses
import json

import pytest

from registry.core.errors import UsageError
from registry.reports.release import release
from registry.reports.study import build_study_report
from tests.reports.helpers import DEFN, cohort_frame


def test_report_needs_no_database_and_reads_its_analysis_from_the_definition() -> None:
    cohort = cohort_frame({"G1": 30, "G2": 30, "G3": 30, "G4": 30})
    rep = build_study_report(cohort, DEFN)
    assert rep.data["n"] == 120 and rep.data["analysis"]["reference_group"] == "G1"
    assert {c["term"] for c in rep.data["cox"] if c["model"] == "unadjusted"} == {
        "G2 vs G1",
        "G3 vs G1",
        "G4 vs G1",
    }
    # another reference group, from the definition alone
    other = dataclasses.replace(DEFN, analysis=dataclasses.replace(DEFN.analysis, reference_group="G2"))
    terms = {c["term"] for c in build_study_report(cohort, other).data["cox"] if c["model"] == "unadjusted"}
    assert terms == {"G1 vs G2", "G3 vs G2", "G4 vs G2"}


def test_release_suppresses_for_every_caller_and_keeps_the_patient_table_in() -> None:
    rep = build_study_report(cohort_frame({"G1": 30, "G2": 4, "G3": 30, "G4": 30}), DEFN)
    released = json.loads(release(rep, "json", min_cell=5))
    assert released["groups"]["G2"]["n"] is None and released["min_cell"] == 5
    assert json.loads(release(rep, "json"))["groups"]["G2"]["n"] == 4  # inside the registry
    assert "Counts below 5 suppressed" in release(rep, "html", min_cell=5)
    with pytest.raises(UsageError, match="per-patient table"):
        release(rep, "csv", min_cell=5)
    assert release(rep, "csv").count("\n") == 95  # header + 94 patients
