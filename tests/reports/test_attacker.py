"""An attacker against the released reports: it holds every number of the released JSON (and
checks that the HTML, the summary CSV and the figures show no count the JSON hides), knows how
the report's counts relate (the relations the report declares, checked to hold on the internal
report), and solves for every hidden count and every difference of two nested counts by exact
elimination. It must recover no value from 1 to N-1, and no cell reading ``<N`` may hold N or
more. The solver here is written apart from the library's (fractions, Gauss-Jordan), so a fault
in one is not repeated in the other."""

from __future__ import annotations

import csv
import io
import json
from fractions import Fraction
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from registry.cohorts.definition import load_definition
from registry.core.errors import ReportRefused
from registry.reports.cells import Model, Protected, count_leaves, get, label
from registry.reports.outcomes import build_outcomes_report, release_outcomes
from registry.reports.outcomes_render import render_outcomes
from registry.reports.relations import outcomes_model, study_model
from registry.reports.release import release
from registry.reports.render import figures
from registry.reports.study import build_study_report
from registry.reports.suppress import released
from tests.reports.helpers import DEFN, cohort_frame, random_cohort
from tests.reports.test_outcomes import outcome_cohorts
from tests.reports.test_release import COUNT_CELLS, SVG_COUNTS

Path = tuple[Any, ...]
OUTCOMES = load_definition("transplant-outcomes")


def solve(model: Model, shown: dict[Path, int]) -> dict[Path, Fraction]:
    """Every unknown (hidden or virtual) count that the relations fix, with its value."""
    rows: list[tuple[dict[Path, Fraction], Fraction]] = []
    for total, parts in model.relations:
        coef: dict[Path, Fraction] = {}
        rhs = Fraction(0)
        for p, sign in [(total, 1), *[(q, -1) for q in parts]]:
            if p in shown:
                rhs -= sign * shown[p]
            else:
                coef[p] = coef.get(p, Fraction(0)) + sign
        coef = {p: c for p, c in coef.items() if c}
        if coef:
            rows.append((coef, rhs))
    # Gauss-Jordan on sparse rows: each pivot eliminated from every other row
    pivots: list[tuple[Path, dict[Path, Fraction], Fraction]] = []
    for coef, rhs in rows:
        coef = dict(coef)
        for var, prow, prhs in pivots:
            if var in coef:
                f = coef[var]
                for p, c in prow.items():
                    coef[p] = coef.get(p, Fraction(0)) - f * c
                rhs -= f * prhs
                coef = {p: c for p, c in coef.items() if c}
        if not coef:
            continue
        var = min(coef, key=repr)
        f = coef[var]
        coef = {p: c / f for p, c in coef.items()}
        rhs /= f
        for i, (v, prow, prhs) in enumerate(pivots):
            if var in prow:
                g = prow[var]
                new = dict(prow)
                for p, c in coef.items():
                    new[p] = new.get(p, Fraction(0)) - g * c
                pivots[i] = (v, {p: c for p, c in new.items() if c}, prhs - g * rhs)
        pivots.append((var, coef, rhs))
    return {var: rhs for var, prow, rhs in pivots if len(prow) == 1}


def attack(parsed: dict[str, Any], model: Model, n: int) -> list[str]:
    """The counts 1..n-1 the attacker learns from the released JSON ``parsed``."""
    shown = {
        p: v for p in model.truth for v in [get(parsed, p)] if isinstance(v, int) and not isinstance(v, bool)
    }
    found = [f"{label(p)} shown as {v}" for p, v in shown.items() if 0 < v < n]
    solved = solve(model, shown)
    for p, value in solved.items():
        assert value == model.truth[p], f"a declared relation is wrong: {label(p)} solved {value}"
        if 0 < value < n:
            found.append(f"{label(p)} = {value} recovered")
    values = {**shown, **solved}
    for name, (terms, truth) in model.differences.items():  # differences of nested sets
        if all(p in values for p in terms):
            value = sum(c * values[p] for p, c in terms.items())
            assert value == truth, f"a declared nesting is wrong: {label(name)}"
            if 0 < value < n:
                found.append(f"{label(name)} = {value} recovered")
    return found


def false_labels(out: dict[str, Any], model: Model, n: int, path: Path = ()) -> list[str]:
    """Cells of the released copy labelled ``<n`` (None) whose true count is n or more."""
    found = []
    if isinstance(out, dict):
        for k, v in out.items():
            found += false_labels(v, model, n, (*path, k))
    elif isinstance(out, list):
        for i, v in enumerate(out):
            found += false_labels(v, model, n, (*path, i))
    elif out is None:
        truth = model.truth.get(path)
        if isinstance(truth, int) and truth >= n:
            found.append(f"{label(path)} reads <{n} but holds {truth}")
    return found


def numbers_beyond_json(texts: list[str], allowed: set[int], n: int) -> list[str]:
    """Count labels of the HTML, CSV or SVG that are neither a mark nor a count the JSON shows."""
    out = []
    for t in texts:
        t = t.strip().replace("&lt;", "<")
        if t in ("", "–", f"<{n}"):
            continue
        if not t.isdigit() or int(t) not in allowed:
            out.append(t)
    return out


def check(out: dict[str, Any], model: Model, n: int, page: str, csv_text: str, svgs: list[str]) -> None:
    parsed = json.loads(json.dumps(out, default=lambda v: None if isinstance(v, Protected) else str(v)))
    assert attack(parsed, model, n) == []
    assert false_labels(out, model, n) == []
    allowed = {v for _, v in count_leaves(parsed) if isinstance(v, int)}
    assert numbers_beyond_json(COUNT_CELLS.findall(page) + SVG_COUNTS.findall(page), allowed, n) == []
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert numbers_beyond_json([r["value"] for r in rows if r["kind"] == "count"], allowed, n) == []
    for svg in svgs:
        assert numbers_beyond_json(SVG_COUNTS.findall(svg) + COUNT_CELLS.findall(svg), allowed, n) == []


PROPERTY = settings(
    max_examples=15,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],
)


@PROPERTY
@given(random_cohort(), st.integers(min_value=2, max_value=15))
def test_the_attacker_recovers_nothing_from_a_released_study_report(cohort: pd.DataFrame, n: int) -> None:
    report = build_study_report(cohort, DEFN)
    if report.data["n"] < n:
        with pytest.raises(ReportRefused):
            released(report.data, n)
        return
    model = study_model(report.data)
    out = released(report.data, n)
    svgs = [s for s in figures(out, "svg").values() if isinstance(s, str)]
    check(out, model, n, release(report, "html", n), release(report, "csv", n, table="summary"), svgs)


@PROPERTY
@given(outcome_cohorts(), st.integers(min_value=2, max_value=15))
def test_the_attacker_recovers_nothing_from_a_released_outcomes_report(cohort: pd.DataFrame, n: int) -> None:
    data = build_outcomes_report(cohort, OUTCOMES).data
    if data["n"] < n:
        with pytest.raises(ReportRefused):
            release_outcomes(data, n)
        return
    model = outcomes_model(data)
    out = release_outcomes(data, n)
    check(out, model, n, render_outcomes(out, "html"), render_outcomes(out, "csv"), [])


def test_the_attacker_finds_what_the_old_rules_let_through() -> None:
    """Without the closure the at-risk and cumulative-events rows give away how many patients
    left between two times (a check that the attacker and the relations can fail)."""
    report = build_study_report(cohort_frame({"G1": 40, "G2": 40, "G3": 40, "G4": 40}), DEFN)
    model = study_model(report.data)
    internal = json.loads(json.dumps(report.data, default=str))
    assert attack(internal, model, 11) != []  # the internal report: many small counts
    out = released(report.data, 11)
    parsed = json.loads(json.dumps(out, default=lambda v: None))
    assert attack(parsed, model, 11) == []


def test_a_relation_that_does_not_hold_is_refused() -> None:
    m = Model({"n": 10, "a": 3, "b": 4})
    with pytest.raises(AssertionError, match="does not hold"):
        m.sum(("n",), [("a",), ("b",)])
    m.sum(("n",), [("a",), ("b",)], if_holds=True)
    assert m.relations == []
