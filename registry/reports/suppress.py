"""Small-cell suppression for reports that leave the registry (``--min-cell N``).

Counts below N are replaced by None (and listed under ``suppressed``) before anything is
rounded. Complementary suppression keeps them from being recovered from totals:
- group sizes add up to the cohort size: if exactly one is hidden, the next smallest is too;
- each baseline table adds up to its group's size: same rule within the table;
- in the attrition chain, remaining(k) = remaining(k-1) - excluded(k): once a step hides a
  count, its remaining and every later count in the chain are hidden as well.
Numbers at risk and event counts below N are hidden (they are not parts of a shown total).
"""

from __future__ import annotations

import copy
from typing import Any


def _complement(cells: dict[str, int | None], n: int, hidden: list[str], where: str) -> None:
    small = [k for k, v in cells.items() if v is not None and v < n and v > 0]
    for k in small:
        cells[k] = None
        hidden.append(f"{where}.{k}")
    if len([k for k, v in cells.items() if v is None]) == 1:
        rest = [(v, k) for k, v in cells.items() if v is not None and v > 0]
        if rest:
            _, k = min(rest)
            cells[k] = None
            hidden.append(f"{where}.{k} (complementary)")


def suppress(report: dict[str, Any], n: int) -> dict[str, Any]:
    """A copy of a report's JSON with every count below ``n`` (and its complements) hidden; see
    the module's notes. ``release`` applies it for every caller."""
    out = copy.deepcopy(report)
    hidden: list[str] = []
    chain_broken = False
    for i, step in enumerate(out["attrition"]):
        if chain_broken:
            step["remaining"] = step["excluded"] = None
            hidden.append(f"attrition[{i}]")
            continue
        if (0 < (step["excluded"] or 0) < n) or (0 < (step["remaining"] or 0) < n):
            step["remaining"] = step["excluded"] = None
            hidden.append(f"attrition[{i}]")
            chain_broken = True
    sizes = {g: v["n"] for g, v in out["groups"].items()}
    _complement(sizes, n, hidden, "groups.n")
    for g, v in out["groups"].items():
        v["n"] = sizes[g]
        base = v.get("baseline", {})
        if sizes[g] is None:
            base["n"] = None
        for table, cells in base.items():  # every tabulated baseline column
            if isinstance(cells, dict):
                _complement(cells, n, hidden, f"groups.{g}.baseline.{table}")
        for ep, s in v["endpoints"].items():
            if sizes[g] is None:
                s["n"] = None
            if s.get("events") is not None and 0 < s["events"] < n:
                s["events"] = None
                hidden.append(f"groups.{g}.endpoints.{ep}.events")
            for t, k in list(s.get("at_risk", {}).items()):
                if 0 < k < n:
                    s["at_risk"][t] = None
                    hidden.append(f"groups.{g}.endpoints.{ep}.at_risk.{t}")
    if out.get("n") is not None and 0 < out["n"] < n:
        out["n"] = None
    for row in out.get("cox", []):
        for key in ("n", "events"):
            if row.get(key) is not None and 0 < row[key] < n:
                row[key] = None
    night = out.get("since_last_night")
    if night:
        for label, v in night["counts"].items():
            if v is not None and 0 < v < n:
                night["counts"][label] = None
                hidden.append(f"since_last_night.{label}")
    out["min_cell"] = n
    out["suppressed"] = hidden
    return out
