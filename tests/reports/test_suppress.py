"""Small-cell suppression as a property: whatever the report's counts, after ``suppress(data,
n)`` no count below n (other than 0) is left anywhere a count is shown, and a hidden cell can
never be recovered as a total minus the shown cells."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from registry.reports.suppress import suppress

GROUPS = ("G1", "G2", "G3", "G4")
count = st.integers(min_value=0, max_value=60)


@st.composite
def reports(draw: st.DrawFn) -> dict[str, Any]:
    sizes = {g: draw(count) for g in GROUPS}
    groups = {}
    for g, n in sizes.items():
        males = draw(st.integers(0, n))
        groups[g] = {
            "label": g,
            "n": n,
            "baseline": {"n": n, "sex": {"F": n - males, "M": males}},
            "endpoints": {
                "os": {
                    "n": n,
                    "events": draw(st.integers(0, n)),
                    "at_risk": {str(m): draw(st.integers(0, n)) for m in (0, 12, 24)},
                }
            },
        }
    total = sum(sizes.values())
    registry = total + draw(count)
    middle = draw(st.integers(total, registry))
    attrition = [
        {"step": "all", "remaining": registry, "excluded": 0},
        {"step": "a", "remaining": middle, "excluded": registry - middle},
        {"step": "b", "remaining": total, "excluded": middle - total},
    ]
    night = {"night": "2026-07-01", "counts": {"deaths": draw(count), "relapses": draw(count)}}
    return {"n": total, "groups": groups, "attrition": attrition, "cox": [], "since_last_night": night}


def shown_counts(data: dict[str, Any]) -> list[int]:
    out = [data["n"], *data["since_last_night"]["counts"].values()]
    for step in data["attrition"]:
        out += [step["remaining"], step["excluded"]]
    for v in data["groups"].values():
        out += [v["n"], *v["baseline"]["sex"].values()]
        for s in v["endpoints"].values():
            out += [s["n"], s["events"], *s["at_risk"].values()]
    return [c for c in out if c is not None]


@settings(max_examples=300, derandomize=True, deadline=None)
@given(reports(), st.integers(min_value=2, max_value=20))
def test_no_small_count_survives_and_no_hidden_cell_is_recoverable(data: dict[str, Any], n: int) -> None:
    out = suppress(data, n)
    assert all(c == 0 or c >= n for c in shown_counts(out)), (n, shown_counts(out))
    # a single hidden cell next to a shown total would be the total minus the shown cells
    sizes = [v["n"] for v in out["groups"].values()]
    assert out["n"] is None or sizes.count(None) != 1, sizes
    for v in out["groups"].values():
        assert v["n"] is None or list(v["baseline"]["sex"].values()).count(None) != 1, v
    hidden_at = [i for i, s in enumerate(out["attrition"]) if s["remaining"] is None]
    assert hidden_at == list(range(hidden_at[0], len(out["attrition"]))) if hidden_at else True
    assert data["groups"]["G1"]["n"] == data["groups"]["G1"]["baseline"]["n"]  # the input is untouched
