"""End to end on a realistic bundle: synthetic export (1,000 patients, seed 1, with bad rows)
-> ETL -> derivations -> the study report, whose numbers must equal R's on the same
per-patient table (tests/fixtures/e2e/make_reference.R has the R code)."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from registry.cohorts.definition import load_definition
from registry.cohorts.sql import read_cohort
from registry.db.database import make_engine
from registry.reports.study import build_study_report
from tests.fixtures.e2e.make_table import build_table

FIX = Path(__file__).parent / "fixtures" / "e2e"
with (FIX / "reference.csv").open() as _fh:
    REF = {r["key"]: (None if r["value"] == "NA" else float(r["value"])) for r in csv.DictReader(_fh)}


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    work = tmp_path_factory.mktemp("e2e")
    table_csv = build_table(work)
    engine = make_engine(f"sqlite:///{work / 'r.db'}")
    defn = load_definition("lenalidomide-relapse")
    rep = build_study_report(read_cohort(engine, defn), defn)
    engine.dispose()
    return table_csv, rep.data, work


def test_pipeline_reproduces_the_committed_per_patient_table(report) -> None:  # type: ignore[no-untyped-def]
    table_csv, data, _ = report
    assert table_csv == (FIX / "cohort_table.csv").read_text(encoding="utf-8")
    # the generator's published group sizes: its bad rows are extra rows that disturb no patient
    sizes = {g: v["n"] for g, v in data["groups"].items()}
    assert sizes == {"G1": 136, "G2": 161, "G3": 209, "G4": 69} and data["n"] == 575


@pytest.mark.parametrize("endpoint", ["os_2l", "pfs_2l"])
def test_report_numbers_equal_r(report, endpoint: str) -> None:  # type: ignore[no-untyped-def]
    _, data, _ = report

    def near(a, key, tol=1e-6):  # type: ignore[no-untyped-def]
        b = REF[key]
        assert (a is None and b is None) or abs(a - b) <= tol, (key, a, b)

    for g in ("G1", "G2", "G3", "G4"):
        s = data["groups"][g]["endpoints"][endpoint]
        assert s["events"] == REF[f"{endpoint}:{g}:events"]
        near(s["median_months"], f"{endpoint}:{g}:median")
        near(s["median_ci_months"][0], f"{endpoint}:{g}:median.lower")
        near(s["median_ci_months"][1], f"{endpoint}:{g}:median.upper")
        near(s["rate_24m"], f"{endpoint}:{g}:rate24")
        near(s["rate_24m_ci"][0], f"{endpoint}:{g}:rate24.lower")
        near(s["rate_24m_ci"][1], f"{endpoint}:{g}:rate24.upper")
    lr = {tuple(x["groups"]): x for x in data["logrank"] if x["endpoint"] == endpoint}
    near(lr[("G1", "G2", "G3", "G4")]["chi2"], f"{endpoint}:logrank:all:chisq")
    near(lr[("G1", "G2")]["p"], f"{endpoint}:logrank:G1-G2:p", 1e-4)
    near(lr[("G1", "G3")]["p"], f"{endpoint}:logrank:G1-G3:p", 1e-4)
    cox = {x["term"]: x for x in data["cox"] if x["endpoint"] == endpoint and x["model"] == "unadjusted"}
    for g in ("G2", "G3", "G4"):
        row = cox[f"{g} vs G1"]
        near(row["hr"], f"{endpoint}:cox:{g}:hr")
        near(row["hr_ci"][0], f"{endpoint}:cox:{g}:lower")
        near(row["hr_ci"][1], f"{endpoint}:cox:{g}:upper")
        near(row["p"], f"{endpoint}:cox:{g}:p", 1e-4)


with (FIX / "outcomes_reference.csv").open() as _fh:
    OUT_REF = {r["key"]: (None if r["value"] == "NA" else float(r["value"])) for r in csv.DictReader(_fh)}


def test_outcomes_report_equals_r_on_its_own_exported_table(report, tmp_path_factory) -> None:  # type: ignore[no-untyped-def]
    """The transplant-outcomes report on the same registry: its exported table is the committed
    one, and its numbers equal survival + cmprsk on that table (make_outcomes_reference.R)."""
    from registry.reports.outcomes import build_outcomes_report
    from tests.fixtures.e2e.make_table import outcomes_table

    work = report[2]
    assert outcomes_table(work) == (FIX / "outcomes_table.csv").read_text(encoding="utf-8")
    engine = make_engine(f"sqlite:///{work / 'r.db'}")
    defn = load_definition("transplant-outcomes")
    data = build_outcomes_report(read_cohort(engine, defn, baseline=True), defn, by=["iss_stage"]).data
    engine.dispose()

    def near(a, key, tol=1e-6):  # type: ignore[no-untyped-def]
        b = OUT_REF[key]
        assert (a is None and b is None) or abs(a - b) <= tol, (key, a, b)

    for ep in ("os", "pfs", "relapse", "nrm"):
        e = data["endpoints"][ep]
        assert e["events"] == OUT_REF[f"{ep}:events"]
        for m in ("12", "24", "60"):
            est, lo, hi = e["rates"][m]
            near(est, f"{ep}:{m}:est")
            near(lo, f"{ep}:{m}:lower")
            near(hi, f"{ep}:{m}:upper")
    for ep in ("os", "pfs"):
        near(data["endpoints"][ep]["median_months"], f"{ep}:median")
        near(data["endpoints"][ep]["median_ci_months"][0], f"{ep}:median.lower")
        near(data["endpoints"][ep]["median_ci_months"][1], f"{ep}:median.upper")
        near(data["strata"]["iss_stage"]["tests"][ep]["chi2"], f"{ep}:iss:chisq")
        near(data["strata"]["iss_stage"]["tests"][ep]["p"], f"{ep}:iss:p", 1e-4)
    for ep in ("dor", "ttnt"):  # duration of response (responders) and time to next treatment
        e = data["response"]["endpoints"][ep]
        assert (e["n"], e["events"]) == (OUT_REF[f"{ep}:n"], OUT_REF[f"{ep}:events"])
        for key, got in (
            ("median", e["median_months"]),
            ("median.lower", e["median_ci_months"][0]),
            ("median.upper", e["median_ci_months"][1]),
        ):
            near(got, f"{ep}:{key}")
        for m in ("12", "24", "60"):
            est, lo, hi = e["rates"][m]
            near(est, f"{ep}:{m}:est")
            near(lo, f"{ep}:{m}:lower")
            near(hi, f"{ep}:{m}:upper")
    for ep in ("relapse", "nrm"):
        near(data["strata"]["iss_stage"]["tests"][ep]["stat"], f"{ep}:iss:stat")
        near(data["strata"]["iss_stage"]["tests"][ep]["p"], f"{ep}:iss:p", 1e-4)
    fg = data["fine_gray"]  # cmprsk::crr of relapse on ISS and cytogenetic risk
    assert fg["n"] == OUT_REF["crr:n"] and fg["converged"]
    terms = {t["term"]: t for t in fg["terms"]}
    for label, key in (
        ("ISS stage: II vs I", "iss2"),
        ("ISS stage: III vs I", "iss3"),
        ("Cytogenetic risk: high vs standard", "high"),
    ):
        near(terms[label]["hr"], f"crr:{key}:hr")
        near(terms[label]["hr_ci"][0], f"crr:{key}:lower")
        near(terms[label]["hr_ci"][1], f"crr:{key}:upper")
        near(terms[label]["p"], f"crr:{key}:p", 1e-4)
