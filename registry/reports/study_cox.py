"""The study report's Cox models: the design (the group against the reference group and,
adjusted, the definition's covariates) and the rows of each model, with the per-level counts the
release step protects."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from registry.cohorts.definition import Analysis, CohortDefinition
from registry.reports.common import rounded as _r
from registry.reports.common import warn as _warn
from registry.reports.labels import human
from registry.statistics import cox_ph, cox_zph
from registry.statistics.cox import dummies


def _design(
    df: pd.DataFrame, analysis: Analysis, adjusted: bool
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """The Cox design: the group against the reference group and, adjusted, the covariates
    of the definition (numeric as they are, categorical against their reference level)."""
    d = df.copy()
    terms = {"group": dummies(d, "group", analysis.reference_group, prefix="")}
    if adjusted:
        for c in analysis.covariates:
            if c.kind == "numeric":
                d[c.column] = d[c.column].astype(float)
                terms[c.column] = [c.column]
            else:
                assert c.reference is not None
                terms[c.column] = dummies(d, c.column, c.reference, prefix=f"{c.column}=")
        terms = {k: v for k, v in terms.items() if v}
    return d, terms


def cox_rows(
    data: dict[str, Any],
    warnings: list[dict[str, Any]],
    frame: pd.DataFrame,
    name: str,
    tcol: str,
    ecol: str,
    model: str,
    defn: CohortDefinition,
) -> None:
    analysis = defn.analysis
    ref = analysis.reference_group
    d, terms = _design(frame, analysis, adjusted=model == "adjusted")
    try:
        fit = cox_ph(d, tcol, ecol, terms)
    except (np.linalg.LinAlgError, ValueError) as exc:
        _warn(warnings, f"{human(name)}, {model} Cox model could not be fitted ({exc})")
        return
    for w in fit.warnings:  # aliased or infinite terms (rows left out are said below, as a count)
        if not w.endswith("rows with a missing value left out"):
            _warn(warnings, f"{human(name)}, {model} Cox model: {w}")
    if model == "adjusted" and fit.n < len(frame):
        covariates = ", ".join(c.label for c in analysis.covariates)
        _warn(
            warnings,
            f"{human(name)}, adjusted Cox model: {{left_out}} patients without a value for one of the "
            f"covariates ({covariates}) left out",
            # the unadjusted model's patients less this model's (its first row, appended next):
            # hidden where this model's patients are
            cells={"left_out": ["cox", len(data["cox"]), "model_n"]},
            left_out=len(frame) - fit.n,
        )
    try:
        zph = cox_zph(fit)
    except (np.linalg.LinAlgError, ValueError) as exc:
        zph = None
        _warn(warnings, f"{human(name)}, {model} Cox model: no proportional-hazards check ({exc})")
    used = d.dropna(subset=[tcol, ecol, *[c for cols in terms.values() for c in cols]])
    events = used[ecol].astype(float) > 0

    def level_counts(column: str, level: str) -> tuple[int, int]:
        rows = used[column].astype(str) == level
        return int(rows.sum()), int((rows & events).sum())

    def add(
        term: str, variable: str, level: str | None, reference: str | None, row: Any, n: int, ev: int
    ) -> None:
        data["cox"].append(
            {
                "endpoint": name,
                "model": model,
                "term": term,
                "variable": variable,
                "level": level,
                "reference": reference,
                "is_reference": row is None,
                "hr": 1.0 if row is None else _r(row.hr),
                "hr_ci": [None, None] if row is None else [_r(row.hr_lower), _r(row.hr_upper)],
                "p": None if row is None else _r(row.p, 8),
                "n": n,
                "events": ev,
                "model_n": fit.n,
                "model_events": fit.events,
            }
        )

    by_column = {r.name: r for r in fit.rows}
    add(f"{ref} (reference)", "Group", ref, None, None, *level_counts("group", ref))
    for g in terms["group"]:
        add(f"{g} vs {ref}", "Group", g, ref, by_column[g], *level_counts("group", g))
    if model == "adjusted":
        for c in analysis.covariates:
            if c.kind == "numeric":
                if c.column in by_column:
                    add(c.label, c.label, None, None, by_column[c.column], fit.n, fit.events)
                continue
            add(
                f"{c.label}: {c.reference} (reference)",
                c.label,
                c.reference,
                None,
                None,
                *level_counts(c.column, str(c.reference)),
            )
            for col in terms.get(c.column, []):
                level = col.split("=", 1)[1]
                add(
                    f"{c.label}: {level} vs {c.reference}",
                    c.label,
                    level,
                    c.reference,
                    by_column[col],
                    *level_counts(c.column, level),
                )
    if zph is None:
        return
    data["ph_check"].append(
        {
            "endpoint": name,
            "model": model,
            "global_chi2": _r(zph.global_chisq),
            "df": zph.global_df,
            "p": _r(zph.global_p, 8),
            "terms": {k: {"chi2": _r(v[0]), "df": v[1], "p": _r(v[2], 8)} for k, v in zph.terms.items()},
        }
    )
    if zph.global_p < 0.05:
        _warn(
            warnings,
            f"{human(name)}, {model} Cox model: proportional hazards doubtful "
            f"(cox.zph global p = {zph.global_p:.3g})",
        )
