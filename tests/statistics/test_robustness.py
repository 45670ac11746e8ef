"""The statistics never fail silently (references from tests/fixtures/stats/make_robust_reference.R,
R survival 3.5-3): missing values are left out and counted as R's na.omit does; an aliased
column is reported as such (R: NA); a covariate on a small scale is estimated whatever its units
(R: flchain's FLC in g/L); a monotone likelihood is flagged as R flags it; a test without events
is not estimable; event codes other than 0/1 are refused."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from registry.statistics import cox_ph, kaplan_meier, logrank_test
from registry.statistics.cox import ALIASED, ESTIMATED, INFINITE, CoxConvergenceError
from registry.statistics.inputs import StatisticsInputError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stats"
with (FIX / "robust_reference.csv").open() as fh:
    REF = {r["key"]: None if r["value"] == "NA" else float(r["value"]) for r in csv.DictReader(fh)}
LUNG = pd.read_csv(FIX / "lung.csv")


def _terms(*cols: str) -> dict[str, list[str]]:
    return {c: [c] for c in cols}


def test_missing_values_are_left_out_and_counted_as_r_does() -> None:
    fit = cox_ph(LUNG, "time", "event", _terms("age", "sex", "ph.ecog", "wt.loss"))
    assert (fit.n, fit.events, fit.n_dropped) == (REF["lung:n"], REF["lung:nevent"], REF["lung:dropped"])
    assert any(f"{fit.n_dropped} rows with a missing value left out" in w for w in fit.warnings)
    for row in fit.rows:
        assert row.coef == pytest.approx(REF[f"lung:{row.name}:coef"], abs=1e-6)
        assert row.se == pytest.approx(REF[f"lung:{row.name}:se"], abs=1e-6)
    km = kaplan_meier(LUNG.assign(time=LUNG["time"].where(LUNG["ph.ecog"].notna())), "time", "event")
    assert km.n == REF["lung:km:n"] and km.n_dropped == 1
    lr = logrank_test(LUNG.assign(sex=LUNG["sex"].where(LUNG["age"] > 45)), "time", "event", "sex")
    assert lr.n_dropped == int((LUNG["age"] <= 45).sum()) and sum(lr.n) == len(LUNG) - lr.n_dropped


def test_an_exactly_collinear_column_is_aliased_not_estimated() -> None:
    data = LUNG.assign(z=3 - LUNG["age"])
    fit = cox_ph(data, "time", "event", _terms("age", "z", "sex"))
    assert REF["collinear:z:coef"] is None  # R: NA
    assert fit.term("z").status == ALIASED and np.isnan(fit.term("z").coef)
    assert fit.term("age").coef == pytest.approx(REF["collinear:age:coef"], abs=1e-6)
    assert fit.term("sex").coef == pytest.approx(REF["collinear:sex:coef"], abs=1e-6)
    assert any("aliased" in w and "z" in w for w in fit.warnings)
    with pytest.raises(CoxConvergenceError, match="no estimable term"):
        cox_ph(data.assign(one=1.0), "time", "event", _terms("one"))


def test_a_covariate_on_a_small_scale_is_estimated_whatever_its_units() -> None:
    flc = pd.read_csv(FIX / "flchain.csv")
    fit = cox_ph(flc, "futime", "death", _terms("kappa_gl", "lambda_gl", "age"))
    for row in fit.rows:
        assert row.status == ESTIMATED
        assert row.coef == pytest.approx(REF[f"flchain:{row.name}:coef"], abs=1e-6)
        assert row.se == pytest.approx(REF[f"flchain:{row.name}:se"], abs=1e-6)
        assert row.p == pytest.approx(REF[f"flchain:{row.name}:p"], abs=1e-4)
    assert fit.term("lambda_gl").coef > 100  # no |beta| > 30 refusal: units do not decide


def test_a_monotone_likelihood_is_flagged_as_r_flags_it() -> None:
    mono = pd.read_csv(FIX / "monotone.csv")
    assert REF["monotone:warned"] == 1 and REF["monotone:infinite:x"] == 1
    fit = cox_ph(mono, "time", "status", _terms("x", "age"))
    assert fit.term("x").status == INFINITE and np.isnan(fit.term("x").hr)
    assert fit.term("age").status == ESTIMATED
    assert any("may be infinite" in w and "x" in w for w in fit.warnings)


def test_a_test_without_events_is_not_estimable() -> None:
    lr = logrank_test(LUNG.assign(event=0), "time", "event", "sex")
    assert REF["lung:logrank:noevents:chisq"] == 0  # R: chisq 0 on -1 df, p NA
    assert lr.chi2 is None and lr.p is None and lr.reason == "no events"
    with pytest.raises(CoxConvergenceError, match="no events"):
        cox_ph(LUNG.assign(event=0), "time", "event", _terms("age"))


@pytest.mark.parametrize("statistic", ["km", "logrank", "cox"])
def test_status_coded_1_2_is_refused_not_read_as_all_events(statistic: str) -> None:
    with pytest.raises(StatisticsInputError, match="1 = censored, 2 = event"):
        if statistic == "km":
            kaplan_meier(LUNG, "time", "status")
        elif statistic == "logrank":
            logrank_test(LUNG, "time", "status", "sex")
        else:
            cox_ph(LUNG, "time", "status", _terms("age"))


def test_a_log_rank_comparison_without_variance_is_not_estimable_not_an_error() -> None:
    """Two tiny groups whose comparison has a singular variance matrix (found by the release
    property test): the test says so instead of failing the whole report."""
    from registry.reports.study import build_study_report
    from tests.reports.helpers import DEFN, cohort_frame

    report = build_study_report(cohort_frame({"G1": 0, "G2": 0, "G3": 2, "G4": 2}), DEFN)
    rows = report.data["logrank"]  # it used to raise numpy's LinAlgError
    assert rows and all(r["chi2"] is None and r["p"] is None for r in rows)
