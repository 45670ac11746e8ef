"""The release step's complementary suppression: after ``released(data, n)`` no hidden cell can
be recovered as a total minus the shown cells (group sizes, attrition chain, Table 1 rows and
columns, events and censored), and the input is never changed."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from registry.reports.study import build_study_report
from registry.reports.suppress import PROTECTED, released
from tests.reports.helpers import DEFN, cohort_frame


def _hidden(v: Any) -> bool:
    return v is None or v is PROTECTED


@settings(max_examples=30, derandomize=True, deadline=None)
@given(
    st.fixed_dictionaries({g.name: st.integers(0, 30) for g in DEFN.groups}),
    st.integers(min_value=2, max_value=12),
)
def test_no_hidden_cell_is_recoverable(sizes: dict[str, int], n: int) -> None:
    if sum(sizes.values()) < n:
        return  # refused (test_release)
    report = build_study_report(cohort_frame(sizes), DEFN)
    before = copy.deepcopy(report.data)
    out = released(report.data, n)
    assert report.data == before  # the input is untouched
    group_n = [v["n"] for v in out["groups"].values()]
    assert sum(map(_hidden, group_n)) != 1, group_n  # one hidden group size next to a shown total
    for g, v in out["groups"].items():  # <N only on a small count; a protected one is not small
        true = before["groups"][g]["n"]
        assert (v["n"] is None) <= (0 < true < n) and (v["n"] is PROTECTED) <= (true >= n), (g, true, v["n"])
    steps = out["attrition"]
    for prev, step in itertools.pairwise(steps):  # remaining(k) = remaining(k-1) - excluded(k)
        assert sum(map(_hidden, [prev["remaining"], step["remaining"], step["excluded"]])) != 1, steps
    assert steps[-1]["remaining"] == out["n"] == report.data["n"]  # the analysed set's size stays shown
    t1 = out["table1"]
    for var in {r["variable"] for r in t1["rows"] if r["kind"] == "categorical"}:
        rows = [r for r in t1["rows"] if r["variable"] == var]
        for c in t1["columns"]:  # a column adds up to its n
            if not _hidden(t1["n"][c]):
                assert sum(_hidden(r["cells"][c]["n"]) for r in rows) != 1, (var, c)
        for r in rows:  # a row's total is the sum of the groups
            assert sum(_hidden(cell["n"]) for cell in r["cells"].values()) != 1, (var, r["level"])
            assert all(cell["pct"] is None for cell in r["cells"].values() if _hidden(cell["n"]))
    for g, v in out["groups"].items():
        for ep, s in v["endpoints"].items():
            # n shown with exactly one of events and censored gives the other: never a small one
            true = before["groups"][g]["endpoints"][ep]
            for a, b in (("events", "censored"), ("censored", "events")):
                if not _hidden(s["n"]) and _hidden(s[a]) and not _hidden(s[b]):
                    assert not 0 < true[a] < n, (g, ep, a, true[a])


def test_a_hidden_group_is_not_described_anywhere() -> None:
    report = build_study_report(cohort_frame({"G1": 20, "G2": 3, "G3": 20, "G4": 20}), DEFN)
    out: dict[str, Any] = released(report.data, 5)
    hidden = {g for g, v in out["groups"].items() if _hidden(v["n"])}
    assert "G2" in hidden and len(hidden) == 2  # and the smallest other group, complementary
    assert out["groups"]["G2"]["n"] is None  # <5
    assert [out["groups"][g]["n"] for g in hidden - {"G2"}] == [PROTECTED]  # 20: a dash, not <5
    for g in hidden:
        assert out["groups"][g]["endpoints"]["os_2l"]["median_months"] is None
        assert g not in out["curves"]["os_2l"]
        assert _hidden(out["table1"]["n"][g])
        assert all(
            _hidden(r["cells"][g].get("n")) for r in out["table1"]["rows"] if r["kind"] == "categorical"
        )
    assert all(r["hr"] is None for r in out["cox"] if r["level"] in hidden and r["variable"] == "Group")
    # with the reference group hidden, no group has a hazard ratio (each is relative to it)
    g1_hidden = released(
        build_study_report(cohort_frame({"G1": 3, "G2": 20, "G3": 20, "G4": 20}), DEFN).data, 5
    )
    assert all(r["hr"] is None for r in g1_hidden["cox"] if r["variable"] == "Group")
    assert all(r["p"] is None for r in out["logrank"] if set(r["groups"]) & hidden)


def test_numbers_at_risk_show_only_values_and_changes_of_zero_or_at_least_n() -> None:
    """Between two shown numbers at risk, at least N patients (or none) left: a smaller change
    would count the few who had an event or were censored between them. A value hidden for its
    change is marked as protected (a dash), never as a false <N; a small value is <N."""
    import json

    from registry.reports.plots import count_text
    from registry.reports.render import to_json
    from registry.reports.suppress import PROTECTED, series

    at_risk = {"0": 27, "12": 22, "24": 19, "36": 17, "48": 15, "60": 12, "72": 10, "84": 7, "96": 0}
    hidden = series(at_risk, 11, start=27)
    assert at_risk == {
        "0": 27, "12": PROTECTED, "24": PROTECTED, "36": PROTECTED, "48": 15,
        "60": PROTECTED, "72": None, "84": None, "96": 0,
    }  # fmt: skip
    assert hidden == ["12", "24", "36", "60", "72", "84"]
    assert [count_text(v, 11) for v in at_risk.values()] == [
        "27",
        "–",
        "–",
        "–",
        "15",
        "–",
        "<11",
        "<11",
        "0",
    ]
    assert json.loads(to_json({"at_risk": at_risk}))["at_risk"]["12"] is None
    events = {"0": 0, "12": 5, "24": 11, "36": 20, "48": 23}
    series(events, 11, start=0)
    assert events == {"0": 0, "12": None, "24": 11, "36": PROTECTED, "48": 23}  # 23 - 11 = 12


def test_a_curve_stops_where_fewer_than_n_remain_at_risk() -> None:
    from registry.reports.suppress import truncate_curve

    curve = {
        "time_months": [1.0, 2.0, 3.0, 4.0],
        "surv": [0.9, 0.8, 0.7, 0.6],
        "lower": [0.8, 0.7, 0.6, 0.5],
        "upper": [1.0, 0.9, 0.8, 0.7],
        "n_risk": [20, 15, 10, 5],
        "n_event": [1, 1, 1, 1],
        "n_censor": [0, 0, 0, 0],
        "censored_months": [2.5, 3.5],
        "censored_surv": [0.8, 0.7],
    }
    assert truncate_curve(curve, 11) == 3.0
    assert curve["time_months"] == [1.0, 2.0] and curve["surv"] == [0.9, 0.8]
    assert curve["censored_months"] == [2.5] and "n_risk" not in curve and "n_event" not in curve
