"""Table 1: the patients of each group and in total, n (%) per level of a categorical variable
or median (IQR) of a continuous one, with the standardised mean difference (SMD) between groups.

SMDs: for a continuous variable (m1 - m2) / sqrt((s1² + s2²) / 2) with sample variances; for a
categorical one the multi-level form of Yang and Dalton (2012), sqrt(d' S⁻¹ d) with d the
differences of the level proportions (all levels but one) and S the average of the two groups'
multinomial covariance matrices, which reduces to the usual formula for two levels and does not
depend on which level is left out. The table shows the largest SMD over the pairs of groups
(values above 0.1 are the usual sign of imbalance). Missing values are a level of their own
("not recorded") for categorical variables and counted as ``missing`` for continuous ones.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from registry.cohorts.definition import Table1Variable
from registry.reports.labels import human

NOT_RECORDED = "not recorded"
TOTAL = "total"
# ordered factors in their clinical order (any other levels alphabetically, "not recorded" last):
# IMWG response from best to worst, stages I to III, risk from standard to high
ORDINAL = {
    level: rank
    for order in (
        ("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD"),
        ("I", "II", "III"),
        ("standard", "high"),
        ("absent", "present", "not tested"),
    )
    for rank, level in enumerate(order)
}


def level_order(level: str) -> tuple[bool, int, str]:
    """Sort key of a Table 1 level: known ordinal levels in their order, then the others."""
    return (level == NOT_RECORDED, ORDINAL.get(level, len(ORDINAL)), level)


def smd_continuous(a: np.ndarray, b: np.ndarray) -> float | None:
    """Standardised mean difference of two samples (None when either has fewer than 2 values
    or both have no spread)."""
    a, b = a[~np.isnan(a)], b[~np.isnan(b)]
    if len(a) < 2 or len(b) < 2:
        return None
    pooled = math.sqrt((a.var(ddof=1) + b.var(ddof=1)) / 2)
    if pooled == 0:
        return None if a.mean() == b.mean() else math.inf
    return abs(float(a.mean() - b.mean())) / pooled


def smd_categorical(p: np.ndarray, q: np.ndarray) -> float | None:
    """Multi-level SMD of two vectors of level proportions (each summing to 1)."""
    if len(p) < 2:
        return 0.0
    d = (p - q)[1:]
    pk, qk = p[1:], q[1:]
    s = -(np.outer(pk, pk) + np.outer(qk, qk)) / 2
    np.fill_diagonal(s, (pk * (1 - pk) + qk * (1 - qk)) / 2)
    if not np.any(d):
        return 0.0
    sol, *_ = np.linalg.lstsq(s, d, rcond=None)
    value = float(d @ sol)
    return math.sqrt(value) if value >= 0 else None


def _levels(values: pd.Series) -> pd.Series:
    def level(v: Any) -> str:
        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return NOT_RECORDED
        if isinstance(v, bool | np.bool_):
            return "yes" if v else "no"
        return human(v)  # a stored code as words: not_tested -> not tested

    # each distinct value once (a cohort has thousands of rows and a handful of levels);
    # missing values (None, NaN, NA) get the code -1: the last label
    codes, uniques = pd.factorize(values, use_na_sentinel=True)
    labels = np.array([*(level(u) for u in uniques), NOT_RECORDED], dtype=object)
    return pd.Series(labels[codes], index=values.index, dtype=object)


def table_one(
    frame: pd.DataFrame, groups: list[str], variables: tuple[Table1Variable, ...]
) -> dict[str, Any]:
    """Table 1 of ``frame`` (one row per patient, a ``group`` column) for ``variables``.

    Returns ``{"columns": [*groups, "total"], "n": {column: n}, "rows": [...]}``; a categorical
    row per level ``{"variable", "label", "kind", "level", "cells": {column: {"n", "pct"}},
    "smd"}`` (the SMD on the variable's first row), a continuous row ``{"variable", "label",
    "kind", "cells": {column: {"median", "q1", "q3", "values", "missing"}}, "smd"}``.
    """
    columns = [*groups, TOTAL]
    parts = {g: frame[frame["group"] == g] for g in groups}
    parts[TOTAL] = frame
    n = {c: len(parts[c]) for c in columns}
    rows: list[dict[str, Any]] = []
    for var in variables:
        present = var.column in frame.columns
        if var.kind == "continuous":
            rows.append(_continuous(var, parts, columns, groups, n, present))
        else:
            rows += _categorical(var, parts, columns, groups, n, present)
    return {"columns": columns, "n": n, "rows": rows}


def _continuous(
    var: Table1Variable,
    parts: dict[str, pd.DataFrame],
    columns: list[str],
    groups: list[str],
    n: dict[str, int],
    present: bool,
) -> dict[str, Any]:
    """A continuous variable's row: median, quartiles, values and missing per column; the
    largest SMD between two groups."""
    cells = {}
    samples = {}
    for c in columns:
        col = parts[c][var.column] if present else pd.Series([None] * n[c], dtype=float)
        x = pd.to_numeric(col, errors="coerce").astype(float).to_numpy()
        samples[c] = x
        ok = x[~np.isnan(x)]
        cells[c] = {
            "median": round(float(np.median(ok)), 4) if len(ok) else None,
            "q1": round(float(np.quantile(ok, 0.25)), 4) if len(ok) else None,
            "q3": round(float(np.quantile(ok, 0.75)), 4) if len(ok) else None,
            "values": len(ok),
            "missing": int(len(x) - len(ok)),
        }
    smds = [smd_continuous(samples[a], samples[b]) for a, b in itertools.combinations(groups, 2)]
    return {
        "variable": var.column,
        "label": var.label,
        "kind": "continuous",
        "cells": cells,
        "smd": _max(smds),
    }


def _categorical(
    var: Table1Variable,
    parts: dict[str, pd.DataFrame],
    columns: list[str],
    groups: list[str],
    n: dict[str, int],
    present: bool,
) -> list[dict[str, Any]]:
    """A categorical variable's rows, one a level (missing as "not recorded"): n and % per
    column; the largest SMD between two groups on the first row."""
    lv = {
        c: _levels(parts[c][var.column]) if present else pd.Series([NOT_RECORDED] * n[c], dtype=object)
        for c in columns
    }
    levels = sorted(set(lv[TOTAL]), key=level_order)
    counts = {c: lv[c].value_counts() for c in columns}
    props = {
        g: np.array([counts[g].get(level, 0) / n[g] if n[g] else 0.0 for level in levels]) for g in groups
    }
    smds = [
        smd_categorical(props[a], props[b]) if n[a] and n[b] else None
        for a, b in itertools.combinations(groups, 2)
    ]
    rows = []
    for i, level in enumerate(levels):
        cells = {}
        for c in columns:
            k = int(counts[c].get(level, 0))
            cells[c] = {"n": k, "pct": round(100 * k / n[c], 4) if n[c] else None}
        rows.append(
            {
                "variable": var.column,
                "label": var.label,
                "kind": "categorical",
                "level": level,
                "cells": cells,
                "smd": _max(smds) if i == 0 else None,
            }
        )
    return rows


def _max(values: list[float | None]) -> float | None:
    known = [v for v in values if v is not None]
    return round(max(known), 4) if known else None
