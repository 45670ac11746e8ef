"""An independent cross-check of the estimators: lifelines (a test dependency only; the
registry does not use it at run time) must agree with the registry's Kaplan-Meier and Cox
(Efron) on the study-like fixture to 1e-6 (lifelines run to a precision of 1e-12: at its
default it stops about 4e-5 short on the adjusted model).
R is the reference (tests/statistics/test_statistics.py); this is a second, open witness."""

from __future__ import annotations

import numpy as np
import pytest

from registry.statistics import cox_ph, kaplan_meier
from tests.statistics.test_statistics import STUDY, _design

lifelines = pytest.importorskip("lifelines", reason="lifelines is in the dev extra (pip install -e .[dev])")


def test_kaplan_meier_agrees_with_lifelines() -> None:
    ours = kaplan_meier(STUDY, "time", "event")
    theirs = lifelines.KaplanMeierFitter().fit(STUDY["time"], STUDY["event"])
    sf = theirs.survival_function_.iloc[:, 0]
    assert len(ours.time) > 100  # a real curve, not a handful of points
    np.testing.assert_allclose(ours.surv, sf.loc[ours.time].to_numpy(), atol=1e-6)
    assert ours.median()[0] == pytest.approx(theirs.median_survival_time_, abs=1e-9)


@pytest.mark.parametrize("model", ["unadjusted", "adjusted"])
def test_cox_efron_agrees_with_lifelines(model: str) -> None:
    df, unadj, adj = _design()
    terms = unadj if model == "unadjusted" else adj
    fit = cox_ph(df, "time", "event", terms)
    columns = [c for cols in terms.values() for c in cols]
    data = df[["time", "event", *columns]].dropna()
    theirs = lifelines.CoxPHFitter(baseline_estimation_method="breslow").fit(
        data, "time", "event", fit_options={"precision": 1e-12, "max_steps": 200}
    )
    estimated = [row for row in fit.rows if row.status == "estimated"]
    assert len(estimated) == len(columns) >= 3
    for row in estimated:
        assert row.coef == pytest.approx(theirs.params_[row.name], abs=1e-6), row.name
        assert row.se == pytest.approx(theirs.standard_errors_[row.name], abs=1e-6), row.name
    assert fit.loglik == pytest.approx(theirs.log_likelihood_, abs=1e-6)
