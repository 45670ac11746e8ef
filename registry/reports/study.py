"""The study report: cohort, attrition, per-group survival, log-rank, Cox and warnings.

Computation only, from the cohort frame (``registry.cohorts.sql.read_cohort``) and the
definition (whose ``[analysis]`` table names the reference group, the covariates, the time
points and the baseline tables): no database here, nothing about one study hard-coded. The
result is a plain dict (the report's JSON) plus the per-patient table; ``release`` renders
what may leave the registry. Nothing is invented: a value that cannot be estimated is None.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry import __version__
from registry.cohorts.definition import Analysis, CohortDefinition
from registry.core.errors import StudyError
from registry.core.units import DAYS_PER_MONTH
from registry.statistics import cox_ph, cox_zph, kaplan_meier, logrank_test
from registry.statistics.cox import dummies
from registry.statistics.survival import KaplanMeier, reverse_km_median_follow_up

SMALL_GROUP = 20
HEAVY_CENSORING = 0.6
PATIENT_COLUMNS = [
    "patient_key",
    "group",
    "l2_start",
    "site_code",
    "age_at_l2",
    "sex",
    "iss_stage",
    "cytogenetic_risk",
    "index_transplant_date",
    "relapse_date",
    "l2_first_regimen",
    "maintenance_agents",
    "relapse_lenalidomide_refractory",
    "relapse_lenalidomide_free_days",
]


@dataclass
class StudyReport:
    """A computed study report: the JSON-able dict, the per-patient table and the Kaplan-Meier fits."""

    data: dict[str, Any]
    patients: pd.DataFrame  # the per-patient analysis table
    curves: dict[str, dict[str, KaplanMeier]]  # endpoint -> group -> fit (for plots)


def _m(days: float | None) -> float | None:
    return None if days is None else round(days / DAYS_PER_MONTH, 8)


def _r(x: float | None, nd: int = 8) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


def patient_table(cohort: pd.DataFrame, defn: CohortDefinition) -> pd.DataFrame:
    """The per-patient analysis table: the patients that pass every step, with the endpoint
    columns (``<endpoint>_days``, ``<endpoint>_event``)."""
    last = f"step_{len(defn.steps)}"
    df = cohort[cohort[last] == 1].copy()
    df["age_at_l2"] = [
        round((l2 - b).days / 365.25, 2) if l2 is not None and b is not None else None
        for l2, b in zip(df["l2_start"], df["birth_date"], strict=True)
    ]
    cols = list(PATIENT_COLUMNS)
    for e in defn.endpoints:
        cols += [f"{e.name}_days", f"{e.name}_event"]
    df = df[cols].sort_values(["group", "patient_key"]).reset_index(drop=True)
    for e in defn.endpoints:
        df[f"{e.name}_days"] = df[f"{e.name}_days"].astype("Int64")
        df[f"{e.name}_event"] = df[f"{e.name}_event"].astype("Int64")
    return df


def attrition(cohort: pd.DataFrame, defn: CohortDefinition) -> list[dict[str, Any]]:
    """Remaining and excluded patients after each step, with the reason."""
    rows = []
    before = len(cohort)
    rows.append(
        {
            "step": "Current patients in the registry",
            "remaining": before,
            "excluded": 0,
            "reason": None,
        }
    )
    for i, step in enumerate(defn.steps, start=1):
        remaining = int(cohort[f"step_{i}"].sum())
        rows.append(
            {
                "step": step.label,
                "remaining": remaining,
                "excluded": before - remaining,
                "reason": step.reason,
            }
        )
        before = remaining
    return rows


def _endpoint_summary(km: KaplanMeier, analysis: Analysis) -> dict[str, Any]:
    med, lo, hi = km.median()
    out: dict[str, Any] = {
        "n": km.n,
        "events": km.events,
        "median_months": _m(med),
        "median_ci_months": [_m(lo), _m(hi)],
    }
    for months in analysis.rate_months:
        at = km.at(months * DAYS_PER_MONTH)
        out[f"rate_{months}m"] = _r(at.surv)
        out[f"rate_{months}m_ci"] = [_r(at.lower), _r(at.upper)]
    out["at_risk"] = {str(m): km.n_risk_at(m * DAYS_PER_MONTH) for m in analysis.at_risk_months}
    return out


def _baseline(df: pd.DataFrame, analysis: Analysis) -> dict[str, Any]:
    def counts(col: str) -> dict[str, int]:
        vc = df[col].fillna("not recorded").astype(str).value_counts()
        return {str(k): int(v) for k, v in sorted(vc.items())}

    ages = df["age_at_l2"].dropna().astype(float)
    return {
        "n": len(df),
        "age_at_l2_median": _r(float(ages.median()), 1) if len(ages) else None,
        "age_at_l2_iqr": [_r(float(ages.quantile(0.25)), 1), _r(float(ages.quantile(0.75)), 1)]
        if len(ages)
        else [None, None],
        **{column: counts(column) for column, _ in analysis.baseline_tables},
    }


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
                terms[c.column] = dummies(d, c.column, c.reference, prefix=f"{c.label}=")
        terms = {k: v for k, v in terms.items() if v}
    return d, terms


def build_study_report(
    cohort: pd.DataFrame,
    defn: CohortDefinition,
    *,
    as_of: dt.date | None = None,
    endpoints: list[str] | None = None,
    landmark_days: int | None = None,
) -> StudyReport:
    """Compute a study report.

    Parameters
    ----------
    cohort
        Every current patient with the definition's step flags, group and endpoint columns
        (``registry.cohorts.sql.read_cohort``).
    defn
        The cohort definition, with its ``[analysis]`` table.
    as_of
        The data cutoff the cohort was read at (None: each site's own cutoff).
    endpoints
        Endpoint names to analyse (default: those whose origin is the groups' baseline).
    landmark_days
        Landmark analysis from the index transplant, for endpoints whose origin is earlier
        than the baseline (required for them: otherwise the comparison is refused).

    Returns
    -------
    StudyReport
        The report's JSON-able dict, the per-patient table and the Kaplan-Meier fits.
    """
    analysis = defn.analysis
    ref = analysis.reference_group
    table = patient_table(cohort, defn)
    warnings: list[str] = []
    wanted = endpoints or [e.name for e in defn.endpoints if e.origin_is_baseline]
    chosen = [defn.endpoint(n) for n in wanted]
    biased = [e for e in chosen if not e.origin_is_baseline]
    if biased and landmark_days is None:
        names = ", ".join(e.name for e in biased)
        raise StudyError(
            f"comparing groups defined at the start of the 2nd line on {names} (origin: the "
            f"index transplant) is biased: a patient must survive to relapse to join a group "
            f"(immortal-time bias)",
            hint="use --landmark-days N for a landmark analysis from the index transplant, "
            "or an endpoint whose origin is the start of the 2nd line (os_2l, pfs_2l)",
        )
    cutoffs = cohort["cutoff"].dropna()
    data_cutoff = as_of or (min(cutoffs) if len(cutoffs) else None)
    groups = [g.name for g in defn.groups]
    data: dict[str, Any] = {
        "study": defn.name,
        "title": defn.title,
        "definition_version": defn.version,
        "registry_version": __version__,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_cutoff": data_cutoff.isoformat() if data_cutoff else None,
        "as_of": as_of.isoformat() if as_of else None,
        "n": len(table),
        "attrition": attrition(cohort, defn),
        "endpoints": {
            e.name: {"label": e.label, "origin": e.origin, "events": list(e.events)} for e in chosen
        },
        "groups": {},
        "logrank": [],
        "cox": [],
        "ph_check": [],
        "median_follow_up_months": {},
        "landmark": None,
        "analysis": {
            "reference_group": ref,
            "baseline_heading": analysis.baseline_heading,
            "baseline_tables": [{"column": c, "label": label} for c, label in analysis.baseline_tables],
            "rate_months": list(analysis.rate_months),
            "covariates": [c.column for c in analysis.covariates],
            "colours": analysis.colours,
        },
        "warnings": warnings,
    }
    curves: dict[str, dict[str, KaplanMeier]] = {}
    analysed: list[tuple[str, pd.DataFrame, str]] = []  # (endpoint, frame, time column)
    if landmark_days is None:
        for e in chosen:
            analysed.append((e.name, table, f"{e.name}_days"))
    else:
        lm = _landmark(table, landmark_days)
        data["landmark"] = {
            "days": landmark_days,
            "n": len(lm),
            "rule": "patients under follow-up at the landmark whose 2nd line "
            "had started by then; time counted from the landmark",
        }
        for e in chosen:
            frame = lm[lm[f"{e.name}_days"] > landmark_days].copy()
            frame[f"{e.name}_lm"] = frame[f"{e.name}_days"] - landmark_days
            analysed.append((e.name, frame, f"{e.name}_lm"))

    for grp in defn.groups:
        sub = table[table["group"] == grp.name]
        data["groups"][grp.name] = {
            "label": grp.label,
            "n": len(sub),
            "endpoints": {},
            "baseline": _baseline(sub, analysis),
        }
        if 0 < len(sub) < SMALL_GROUP:
            warnings.append(f"{grp.name} has only {len(sub)} patients: estimates are imprecise")
        if len(sub) == 0:
            warnings.append(f"{grp.name} has no patients")

    for name, frame, tcol in analysed:
        ecol = f"{name}_event"
        frame = frame.dropna(subset=[tcol, ecol])
        curves[name] = {}
        for g in groups:
            sub = frame[frame["group"] == g]
            if len(sub) == 0:
                data["groups"][g]["endpoints"][name] = {
                    "n": 0,
                    "events": 0,
                    "median_months": None,
                    "median_ci_months": [None, None],
                }
                continue
            km = kaplan_meier(sub, tcol, ecol)
            curves[name][g] = km
            data["groups"][g]["endpoints"][name] = _endpoint_summary(km, analysis)
            censored = 1 - km.events / km.n
            if censored > HEAVY_CENSORING:
                warnings.append(f"{name}, {g}: {censored:.0%} of patients censored")
        if len(frame):
            fu = reverse_km_median_follow_up(frame, tcol, ecol)
            data["median_follow_up_months"][name] = _m(fu[0])
        present = [g for g in groups if (frame["group"] == g).any()]
        if len(present) >= 2:
            lr = logrank_test(frame, tcol, ecol, "group")
            data["logrank"].append(
                {
                    "endpoint": name,
                    "groups": list(lr.groups),
                    "chi2": _r(lr.chi2),
                    "df": lr.df,
                    "p": _r(lr.p, 8),
                }
            )
            for a, b in itertools.combinations(present, 2):
                pair = frame[frame["group"].isin([a, b])]
                lr = logrank_test(pair, tcol, ecol, "group")
                data["logrank"].append(
                    {
                        "endpoint": name,
                        "groups": [a, b],
                        "chi2": _r(lr.chi2),
                        "df": lr.df,
                        "p": _r(lr.p, 8),
                    }
                )
        if ref in present and len(present) >= 2:
            for model in ("unadjusted", "adjusted"):
                _cox(data, warnings, frame, name, tcol, ecol, model, analysis)
    return StudyReport(data=data, patients=table, curves=curves)


def _landmark(table: pd.DataFrame, days: int) -> pd.DataFrame:
    idx = pd.to_datetime(table["index_transplant_date"])
    l2 = pd.to_datetime(table["l2_start"])
    started = (l2 - idx).dt.days <= days
    return table[started]


def _cox(
    data: dict[str, Any],
    warnings: list[str],
    frame: pd.DataFrame,
    name: str,
    tcol: str,
    ecol: str,
    model: str,
    analysis: Analysis,
) -> None:
    d, terms = _design(frame, analysis, adjusted=model == "adjusted")
    try:
        fit = cox_ph(d, tcol, ecol, terms)
        zph = cox_zph(fit)
    except (np.linalg.LinAlgError, ValueError) as exc:
        warnings.append(f"{name}, {model} Cox model could not be fitted ({exc})")
        return
    for row in fit.rows:
        term = f"{row.name} vs {analysis.reference_group}" if row.name in terms["group"] else row.name
        data["cox"].append(
            {
                "endpoint": name,
                "model": model,
                "term": term,
                "hr": _r(row.hr),
                "hr_ci": [_r(row.hr_lower), _r(row.hr_upper)],
                "p": _r(row.p, 8),
                "n": fit.n,
                "events": fit.events,
            }
        )
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
        warnings.append(
            f"{name}, {model} Cox model: proportional hazards doubtful "
            f"(cox.zph global p = {zph.global_p:.3g})"
        )
    if model == "adjusted" and fit.n < len(frame):
        covariates = ", ".join(c.column for c in analysis.covariates)
        warnings.append(
            f"{name}, adjusted Cox model: {len(frame) - fit.n} patients without a value for one "
            f"of the covariates ({covariates}) left out"
        )
