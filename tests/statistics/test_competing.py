"""Competing risks against R's cmprsk (``cuminc``: the Aalen-Johansen estimate, Gray's variance
and Gray's test) and survival (multi-state ``survfit``), from
tests/fixtures/stats/make_robust_reference.R: R's mgus2 (progression vs death, by sex) and a
small data set with many ties and a cause missing from one group."""

from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd
import pytest

from registry.statistics.competing import cumulative_incidence, gray_test
from registry.statistics.inputs import StatisticsInputError

FIX = Path(__file__).resolve().parents[1] / "fixtures" / "stats"


def _ref() -> dict[str, float | None]:
    with (FIX / "robust_reference.csv").open() as fh:
        return {r["key"]: None if r["value"] == "NA" else float(r["value"]) for r in csv.DictReader(fh)}


REF = _ref()
MGUS2 = pd.read_csv(FIX / "mgus2.csv")
TIES = pd.read_csv(FIX / "crtie.csv")


@pytest.mark.parametrize("sex", ["F", "M"])
@pytest.mark.parametrize("cause", [1, 2])
@pytest.mark.parametrize("months", [12, 60, 120, 240])
def test_cumulative_incidence_of_mgus2_equals_cuminc(sex: str, cause: int, months: int) -> None:
    cif = cumulative_incidence(MGUS2[MGUS2["sex"] == sex], "etime", "event", cause)
    est, lower, upper = cif.ci_at(months)
    key = f"mgus2:{sex}:{cause}:{months}"
    assert est == pytest.approx(REF[f"{key}:est"], abs=1e-9)
    assert cif.at(months)[1] == pytest.approx(REF[f"{key}:var"], abs=1e-12)
    assert lower == pytest.approx(REF[f"{key}:lower"], abs=1e-9)
    assert upper == pytest.approx(REF[f"{key}:upper"], abs=1e-9)


def test_the_estimate_is_survfits_aalen_johansen() -> None:
    for cause in (1, 2):
        est, _ = cumulative_incidence(MGUS2, "etime", "event", cause).at(60)
        assert est == pytest.approx(REF[f"mgus2:survfit:all:{cause}:60"], abs=1e-12)


@pytest.mark.parametrize("cause", [1, 2])
def test_grays_test_equals_cuminc(cause: int) -> None:
    for data, prefix, group in ((MGUS2, "mgus2", "sex"), (TIES, "crtie", "group")):
        g = gray_test(
            data,
            "etime" if prefix == "mgus2" else "time",
            "event" if prefix == "mgus2" else "status",
            group,
            cause,
        )
        assert g.statistic == pytest.approx(REF[f"{prefix}:gray:{cause}:stat"], abs=1e-6), prefix
        assert g.p == pytest.approx(REF[f"{prefix}:gray:{cause}:p"], abs=1e-4), prefix
        assert g.df == len(g.groups) - 1


@pytest.mark.parametrize("group", ["a", "b", "c"])
@pytest.mark.parametrize("cause", [1, 2])
def test_every_point_of_the_tied_curves_equals_cuminc(group: str, cause: int) -> None:
    cif = cumulative_incidence(TIES[TIES["group"] == group], "time", "status", cause)
    points: dict[float, tuple[float, float]] = {}
    i = 1
    while f"crtie:{group}:{cause}:{i}:time" in REF:  # R's corners: the last value at a time is after the jump
        k = f"crtie:{group}:{cause}:{i}"
        points[REF[f"{k}:time"]] = (REF[f"{k}:est"], REF[f"{k}:var"])  # type: ignore[index,assignment]
        i += 1
    assert points  # (no cause 2 in group c: R's curve is 0 throughout, and so is ours)
    for t, (est, var) in points.items():
        got = cif.at(t)
        assert got[0] == pytest.approx(est, abs=1e-12) and got[1] == pytest.approx(var, abs=1e-12), t


def test_a_cause_without_events_and_bad_codes() -> None:
    cif = cumulative_incidence(TIES, "time", "status", 3)
    assert cif.events == 0 and cif.quantile(0.5) is None
    g = gray_test(TIES, "time", "status", "group", 3)
    assert g.statistic is None and g.p is None and "no event of cause 3" in (g.reason or "")
    with pytest.raises(StatisticsInputError, match="cause number"):
        cumulative_incidence(TIES.assign(status=TIES["status"] - 0.5), "time", "status", 1)
    missing = TIES.astype({"time": float}).copy()
    missing.loc[0, "time"] = float("nan")
    assert cumulative_incidence(missing, "time", "status", 1).n_dropped == 1


@pytest.mark.parametrize("data", ["mgus2", "crtie"])
def test_fine_gray_equals_crr(data: str) -> None:
    from registry.statistics.competing import fine_gray

    if data == "mgus2":  # progression on age, sex and haemoglobin (13 rows without hgb left out)
        df = MGUS2.assign(male=(MGUS2["sex"] == "M").astype(int))
        fit = fine_gray(df, "etime", "event", ["age", "male", "hgb"], cause=1)
        assert (fit.n, fit.n_dropped) == (REF["crr:mgus2:n"], REF["crr:mgus2:dropped"])
    else:  # many ties, group b and c against a
        df = TIES.assign(b=(TIES["group"] == "b").astype(int), c=(TIES["group"] == "c").astype(int))
        fit = fine_gray(df, "time", "status", ["b", "c"], cause=1)
    assert fit.converged
    for term in fit.terms:
        key = f"crr:{data}:{term.name}"
        assert term.coef == pytest.approx(REF[f"{key}:coef"], abs=1e-6)
        assert term.se == pytest.approx(REF[f"{key}:se"], abs=1e-6)
        assert term.p == pytest.approx(REF[f"{key}:p"], abs=1e-4)


def test_fine_gray_without_an_event_of_the_cause_is_refused() -> None:
    from registry.statistics.competing import fine_gray

    with pytest.raises(StatisticsInputError, match="no event of cause 3"):
        fine_gray(TIES.assign(x=1.0), "time", "status", ["x"], cause=3)
