"""The transplant-outcomes report: for every patient with an index autologous transplant, overall
and progression-free survival (Kaplan-Meier) and the cumulative incidence of relapse/progression
with non-relapse mortality (NRM) as its competing risk (Aalen-Johansen, Gray's variance), overall
and by risk factor, with log-rank and Gray's tests.

Computation only, from the cohort frame of the ``transplant-outcomes`` definition (read with
``baseline=True``); ``release_outcomes`` makes the copy every output is drawn from (the study
report's small-cell rules). The maintenance comparison is a landmark analysis only: patients
alive and progression-free at the landmark, time from the landmark, by the maintenance they had
started by then — comparing maintenance from the transplant credits maintained patients with the
time they had to stay well to start it.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry.cohorts.definition import CohortDefinition
from registry.cohorts.sql import Reach, reach_of
from registry.core.errors import ReportRefused, StudyError
from registry.core.units import DAYS_PER_MONTH
from registry.reports.common import months as _m
from registry.reports.common import rounded as _r
from registry.reports.common import warn as _warn
from registry.reports.relations import outcomes_model
from registry.reports.study import _curve, attrition, facts_of, patient_table, report_header, table_columns
from registry.reports.suppress import (
    PROTECTED,
    _complement,
    _small,
    curves_note,
    release_with,
    series,
    truncate_curve,
)
from registry.statistics import kaplan_meier, logrank_test
from registry.statistics.competing import CumulativeIncidence, cumulative_incidence, fine_gray, gray_test
from registry.statistics.inputs import StatisticsInputError

RATE_MONTHS = (12, 24, 60)
STRATA = {
    "iss_stage": "ISS stage",
    "riss_stage": "R-ISS stage",
    "cytogenetic_risk": "Cytogenetic risk",
    "age_group": "Age at the transplant",
    "era": "Transplant era",
    "maintenance": "Maintenance started by the landmark",
}
SURVIVAL = ("os", "pfs")
INCIDENCE = {"relapse": 1, "nrm": 2}  # causes of crr_status
NOT_RECORDED = "not recorded"
RESPONSE_LEVELS = ("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD")
NOT_EVALUABLE = "not evaluable"
RESPONSE_ENDPOINTS = ("dor", "ttnt")  # Kaplan-Meier endpoints of the response section
DEFAULT_LANDMARK = 180
TIMES = ("os_days", "os_event", "pfs_days", "pfs_event", "crr_days", "crr_status")  # what is estimated


# the cohort's columns the report reads besides its table's: the strata, the response sets and
# the data cutoff (``cohort_columns``; a test compares the report with one from every column)
FACTS = (
    "cutoff",
    "riss_stage",
    "index_transplant_date",
    "birth_date",
    "maintenance_start",
    "maintenance_agents",
    "l2_start",
    "day100_response",
    "l1_best_response",
    "l2_best_response",
)


def cohort_columns(defn: CohortDefinition) -> list[str]:
    """The columns of the cohort the report reads (``read_analysed(columns=...)``): at a million
    patients, the other columns would be most of the memory it holds."""
    return list(dict.fromkeys([*table_columns(defn), *FACTS]))


@dataclass
class OutcomesReport:
    """A computed outcomes report: the JSON-able dict and the per-patient table."""

    data: dict[str, Any]
    patients: pd.DataFrame


def strata_frame(table: pd.DataFrame, cohort: pd.DataFrame, landmark_days: int) -> pd.DataFrame:
    """The per-patient table with the stratifying columns (missing values as "not recorded")."""
    d = table.copy()
    fact = facts_of(d, cohort)

    d["riss_stage"] = fact("riss_stage")
    transplant = pd.to_datetime(fact("index_transplant_date"))
    age = (transplant - pd.to_datetime(fact("birth_date"))).dt.days / 365.25
    d["age_group"] = np.select(
        [age < 65, age < 70, age >= 70], ["< 65", "65-69", ">= 70"], default=NOT_RECORDED
    )
    first = transplant.dt.year // 5 * 5  # each five-year era, labelled once
    eras = {y: f"{int(y)}-{int(y) + 4}" for y in first.dropna().unique()}
    d["era"] = first.map(eras).astype(object).fillna(NOT_RECORDED)
    started = (pd.to_datetime(fact("maintenance_start")) - transplant).dt.days
    agents = fact("maintenance_agents")
    by_landmark = agents.map(lambda a: isinstance(a, str)).astype(bool)
    d["maintenance"] = agents.where(by_landmark & (started <= landmark_days), "none").astype(object)
    for c in ("iss_stage", "riss_stage", "cytogenetic_risk"):
        d[c] = d[c].where(d[c].notna(), NOT_RECORDED).astype(str)
    return d


def _cif_curve(cif: CumulativeIncidence, followed: np.ndarray) -> dict[str, list[Any]]:
    """The curve at its jumps, and flat to the last follow-up time; with the patients still
    under follow-up at each time (``n_risk``: the release step stops the curve where fewer
    than N are)."""
    last = float(followed.max()) if len(followed) else 0.0
    times = [float(t) for t in cif.time]
    if not times or last > times[-1]:
        times.append(last)
    lims = [cif.ci_at(t) for t in times]
    ordered = np.sort(followed)
    return {
        "time_months": [round(t / DAYS_PER_MONTH, 8) for t in times],
        "estimate": [round(est, 10) for est, _, _ in lims],
        "lower": [None if lo is None else round(lo, 10) for _, lo, _ in lims],
        "upper": [None if hi is None else round(hi, 10) for _, _, hi in lims],
        "n_risk": [int(len(ordered) - np.searchsorted(ordered, t, side="left")) for t in times],
    }


def _summaries(frame: pd.DataFrame, grid: list[int], shift: int = 0) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every endpoint's summary (E) and curve for one set of patients; times minus ``shift``."""
    out: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    f = frame[list(TIMES)].copy()  # the times and their events: a copy of every column would
    for col in ("os_days", "pfs_days", "crr_days"):  # be 24 at a million patients
        f[col] = f[col].astype(float) - shift
    for name in SURVIVAL:
        out[name], curves[name] = _km_summary(f, name, grid)
    for name, cause in INCIDENCE.items():
        cif = cumulative_incidence(f, "crr_days", "crr_status", cause)
        q = cif.quantile(0.5)
        rates: dict[str, list[float | None]] = {}
        for m in RATE_MONTHS:
            t = m * DAYS_PER_MONTH
            if len(f) == 0 or t > float(f["crr_days"].max()):
                rates[str(m)] = [None, None, None]  # past the last follow-up: not estimable
            else:
                est, lo, hi = cif.ci_at(t)
                rates[str(m)] = [_r(est), _r(lo), _r(hi)]
        out[name] = {
            "n": cif.n,
            "events": cif.events,
            "median_months": _m(q),
            "median_ci_months": [None, None],
            "rates": rates,
            "at_risk": {str(m): int((f["crr_days"] >= m * DAYS_PER_MONTH).sum()) for m in grid},
        }
        curves[name] = _cif_curve(cif, f["crr_days"].to_numpy(dtype=float))
    return out, curves


def _km_summary(f: pd.DataFrame, name: str, grid: list[int]) -> tuple[dict[str, Any], dict[str, Any]]:
    """One Kaplan-Meier endpoint's summary (E) and curve."""
    km = kaplan_meier(f, f"{name}_days", f"{name}_event")
    med, lo, hi = km.median()
    summary = {
        "n": km.n,
        "events": km.events,
        "median_months": _m(med),
        "median_ci_months": [_m(lo), _m(hi)],
        "rates": {
            str(m): [_r(a.surv), _r(a.lower), _r(a.upper)]
            for m in RATE_MONTHS
            for a in [km.at(m * DAYS_PER_MONTH)]
        },
        "at_risk": {str(m): km.n_risk_at(m * DAYS_PER_MONTH) for m in grid},
    }
    return summary, _curve(km)


def _responses(
    table: pd.DataFrame, cohort: pd.DataFrame, grid: list[int]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Response after the transplant: the day-100 response, the best response of the first
    and of the second line (each category's patients; every patient of the set in one), the
    duration of the first line's response and its time to next treatment."""
    fact = facts_of(table, cohort)
    has_l2 = fact("l2_start").notna().to_numpy()

    def levels(values: Any, keep: Any = None) -> dict[str, int]:
        v = pd.Series(list(values), dtype=object)
        if keep is not None:
            v = v[keep]
        v = v.where(v.isin(RESPONSE_LEVELS), NOT_EVALUABLE)
        return {lv: int((v == lv).sum()) for lv in (*RESPONSE_LEVELS, NOT_EVALUABLE)}

    sets = {
        "day100": {
            "label": "At day 100 after the index transplant",
            "n": len(table),
            "levels": levels(fact("day100_response")),
        },
        "l1": {
            "label": "Best response of the first line (induction to maintenance)",
            "n": len(table),
            "levels": levels(fact("l1_best_response")),
        },
        "l2": {
            "label": "Best response of the second line",
            "n": int(has_l2.sum()),
            "levels": levels(fact("l2_best_response"), has_l2),
        },
    }
    endpoints: dict[str, Any] = {}
    curves: dict[str, Any] = {}
    for name in RESPONSE_ENDPOINTS:
        f = table[table[f"{name}_days"].notna()].copy()
        if len(f) == 0:  # nobody responded (or no first line): nothing to estimate, no curve
            endpoints[name] = {
                "n": 0,
                "events": 0,
                "median_months": None,
                "median_ci_months": [None, None],
                "rates": {str(m): [None, None, None] for m in RATE_MONTHS},
                "at_risk": {str(m): 0 for m in grid},
            }
            continue
        f[f"{name}_days"] = f[f"{name}_days"].astype(float)
        endpoints[name], curves[name] = _km_summary(f, name, grid)
    return {"sets": sets, "endpoints": endpoints}, curves


def build_outcomes_report(
    cohort: pd.DataFrame,
    defn: CohortDefinition,
    *,
    by: list[str] | None = None,
    as_of: dt.date | None = None,
    landmark_days: int = DEFAULT_LANDMARK,
    context: dict[str, Any] | None = None,
    reach: Reach | None = None,
) -> OutcomesReport:
    """Compute the outcomes report.

    Parameters
    ----------
    cohort
        ``read_cohort(engine, transplant-outcomes, baseline=True)``.
    defn
        The ``transplant-outcomes`` definition (endpoints os, pfs and the competing-risks crr).
    by
        Stratifying factors (default: all of ``STRATA``).
    as_of
        The data cutoff the cohort was read at.
    landmark_days
        The landmark of the maintenance comparison (days after the index transplant).
    context
        Provenance and the data-quality step (``registry.reports.inputs``).
    reach
        How far every current patient got (``read_analysed``), when ``cohort`` holds only the
        patients with an index transplant; None: taken from ``cohort``.

    Raises
    ------
    StudyError
        An unknown factor, or a maintenance comparison without a landmark (64).
    ReportRefused
        No patient in the cohort (65).
    """
    by = list(STRATA) if by is None else by
    unknown = [b for b in by if b not in STRATA]
    if unknown:
        raise StudyError(f"unknown factor {', '.join(unknown)} (known: {', '.join(STRATA)})")
    if "maintenance" in by and landmark_days < 1:
        raise StudyError(
            "comparing maintenance from the transplant is biased: a patient must stay alive and "
            "progression-free to start it (immortal-time bias)",
            hint="use a landmark (--maintenance-landmark-days, default 180)",
        )
    table = patient_table(cohort, defn)
    if len(table) == 0:
        raise ReportRefused(
            f"the cohort {defn.name} is empty: no patient with an index autologous transplant",
            hint="check the data cutoff (--as-of) and that patients are derived",
        )
    frame = strata_frame(table, cohort, landmark_days)
    reach = reach or reach_of(cohort, defn)
    warnings: list[dict[str, Any]] = []
    longest = float(frame[["os_days", "pfs_days", "crr_days"]].astype(float).max().max())
    grid = list(range(0, max(12, math.ceil(longest / DAYS_PER_MONTH / 12) * 12) + 1, 12))
    overall, curves = _summaries(frame, grid)
    data: dict[str, Any] = {
        **report_header(defn, reach, as_of, len(frame), attrition(reach, defn)),
        "endpoints": overall,
        "labels": {
            "os": "Overall survival",
            "pfs": "Progression-free survival",
            "relapse": "Cumulative incidence of relapse or progression",
            "nrm": "Cumulative incidence of non-relapse mortality",
        },
        "short": {"os": "OS", "pfs": "PFS", "relapse": "Relapse/progression", "nrm": "NRM"},
        "curves": curves,
        "strata": {},
        "rate_months": list(RATE_MONTHS),
        "at_risk_months": grid,
        "warnings": warnings,
    }
    if context:
        data.update(context)
    for var in by:
        sub = frame
        shift = 0
        info: dict[str, Any] = {"label": STRATA[var]}
        if var == "maintenance":
            sub = frame[frame["pfs_days"].astype(float) > landmark_days]
            shift = landmark_days
            info["landmark_days"] = landmark_days
            info["rule"] = (
                f"patients alive and progression-free at day {landmark_days} after the index "
                "transplant, by the maintenance they had started by then; time from the landmark"
            )
        info["n"] = len(sub)
        levels: dict[str, Any] = {}
        level_curves: dict[str, Any] = {}
        for level in sorted(sub[var].unique(), key=_level_order):
            part = sub[sub[var] == level]
            summary, lc = _summaries(part, grid, shift)
            levels[str(level)] = {"n": len(part), "endpoints": summary}
            level_curves[str(level)] = {"os": lc["os"]}
        info["levels"] = levels
        info["curves"] = level_curves
        info["tests"] = _tests(sub, var, shift)
        data["strata"][var] = info
        if len(levels) < 2:
            _warn(warnings, f"{STRATA[var]}: a single level, no comparison")
    data["fine_gray"] = _fine_gray(frame, warnings)
    if all(f"{e}_days" in table for e in RESPONSE_ENDPOINTS):
        data["response"], response_curves = _responses(table, cohort, grid)
        data["curves"].update(response_curves)
        data["labels"].update(
            dor="Duration of response (first line, from its first confirmed PR or better)",
            ttnt="Time to next treatment (from the start of the first line)",
        )
        data["short"].update(dor="Duration of response", ttnt="Time to next treatment")
    return OutcomesReport(data=data, patients=table)


# the Fine-Gray model of relapse: the risk factors of the exported table, against these levels
FINE_GRAY_FACTORS = (("iss_stage", "ISS stage", "I"), ("cytogenetic_risk", "Cytogenetic risk", "standard"))


def _fine_gray(frame: pd.DataFrame, warnings: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Fine-Gray regression of relapse/progression (NRM competing) on ISS and cytogenetic risk,
    complete cases ("not recorded" and "unknown" left out), each level against its reference."""
    d = frame[[*TIMES, *(var for var, _, _ in FINE_GRAY_FACTORS)]].copy()
    columns, labels = [], {}
    for var, label, ref in FINE_GRAY_FACTORS:
        known = d[var].where(~d[var].isin([NOT_RECORDED, "unknown"]))
        for level in sorted(v for v in known.dropna().unique() if v != ref):
            name = f"{var}={level}"
            d[name] = np.where(known.isna(), np.nan, (known == level).astype(float))
            columns.append(name)
            labels[name] = f"{label}: {level} vs {ref}"
    if not columns:
        return None
    try:
        fit = fine_gray(d, "crr_days", "crr_status", columns, cause=1)
    except (StatisticsInputError, np.linalg.LinAlgError) as exc:
        _warn(warnings, f"Fine-Gray model of relapse not fitted ({exc})")
        return None
    if not fit.converged:
        _warn(warnings, "Fine-Gray model of relapse: did not converge (estimates unreliable)")
    return {
        "cause": "relapse",
        "competing": "non-relapse mortality",
        "n": fit.n,
        "events": fit.events,
        "n_dropped": fit.n_dropped,
        "converged": fit.converged,
        "terms": [
            {"term": labels[t.name], "hr": _r(t.hr), "hr_ci": [_r(t.hr_lower), _r(t.hr_upper)], "p": _r(t.p)}
            for t in fit.terms
        ],
    }


AGE_ORDER = {"< 65": 0, "65-69": 1, ">= 70": 2}


def _level_order(level: str) -> tuple[bool, int, str]:
    return (level == NOT_RECORDED, AGE_ORDER.get(level, 0), level)


def _tests(frame: pd.DataFrame, var: str, shift: int) -> dict[str, Any]:
    f = frame[[*TIMES, var]].copy()
    for col in ("os_days", "pfs_days", "crr_days"):
        f[col] = f[col].astype(float) - shift
    out: dict[str, Any] = {}
    for name in SURVIVAL:
        lr = logrank_test(f, f"{name}_days", f"{name}_event", var)
        out[name] = {"chi2": _r(lr.chi2), "df": lr.df, "p": _r(lr.p), "reason": lr.reason}
    for name, cause in INCIDENCE.items():
        g = gray_test(f, "crr_days", "crr_status", var, cause)
        out[name] = {"stat": _r(g.statistic), "df": g.df, "p": _r(g.p), "reason": g.reason}
    return out


def release_outcomes(report: dict[str, Any], n: int | None = None) -> dict[str, Any]:
    """The copy of an outcomes report every output is drawn from: marked internal without ``n``;
    with it, the study report's rules (counts 1..n-1 hidden as <n, complements within each
    factor's levels and the attrition chain, a hidden level not described at all and the
    factor's tests withheld, per-time counts dropped from curves, warnings with <n)."""
    return release_with(
        report,
        n,
        _outcome_cells,
        outcomes_model,
        what="cohort",
        hint="keep the report internal, or release a larger cohort",
    )


def _outcome_cells(out: dict[str, Any], n: int, hidden: list[str]) -> None:
    def endpoints(es: dict[str, Any], where: str, size: int | None) -> None:
        for name, e in es.items():
            if _small(e.get("events"), n):
                e["events"] = None
                hidden.append(f"{where}.{name}.events")
            if _small(e.get("n"), n):
                e["n"] = None
            # n and events together give the censored count (n - events); and an endpoint's n
            # is the level's size: hidden when that is
            if e.get("n") is not None and e.get("events") is not None and _small(e["n"] - e["events"], n):
                e["events"] = PROTECTED  # not small itself: hidden for the censored count
                hidden.append(f"{where}.{name}.events (n - events below the threshold)")
            if size is None and "n" in e:
                e["n"] = None
            for t in series(e.get("at_risk", {}), n, size):
                hidden.append(f"{where}.{name}.at_risk.{t}")

    endpoints(out["endpoints"], "endpoints", out.get("n"))
    for curve in out.get("curves", {}).values():
        truncate_curve(curve, n)  # per-time counts dropped; no step among fewer than n
    curves_note(out, n)
    for var, s in out["strata"].items():
        _release_factor(s, var, n, hidden, endpoints)
    _release_responses(out.get("response"), n, hidden, endpoints)
    fg = out.get("fine_gray")
    if fg:
        for key in ("n", "events", "n_dropped"):
            if _small(fg.get(key), n):
                fg[key] = None
                hidden.append(f"fine_gray.{key}")


Endpoints = Callable[[dict[str, Any], str, "int | None"], None]


def _release_factor(s: dict[str, Any], var: str, n: int, hidden: list[str], endpoints: Endpoints) -> None:
    """One factor's levels: small sizes hidden with their complements, a hidden level not
    described at all, per-time counts dropped from its curves, its tests withheld."""
    sizes = {lv: v["n"] for lv, v in s["levels"].items()}
    if _small(s.get("n"), n):  # the landmark set of the maintenance comparison
        sizes = dict.fromkeys(sizes)
        s["n"] = None
    protected = _complement(sizes, n, hidden, f"strata.{var}")
    for lv, v in s["levels"].items():
        v["n"] = sizes[lv]
        if sizes[lv] is None:
            v["endpoints"] = {
                name: {
                    "n": None,
                    "events": None,
                    "median_months": None,
                    "median_ci_months": [None, None],
                    "rates": {m: [None, None, None] for m in e["rates"]},
                    "at_risk": dict.fromkeys(e.get("at_risk", {})),
                    "suppressed": True,
                }
                for name, e in v["endpoints"].items()
            }
            s["curves"].pop(lv, None)
        else:
            endpoints(v["endpoints"], f"strata.{var}.{lv}", sizes[lv])
    for c in s["curves"].values():
        for curve in c.values():
            truncate_curve(curve, n)
    if any(v is None for v in sizes.values()):
        for t in s["tests"].values():
            t.update(
                {k: None for k in ("chi2", "stat", "p") if k in t},
                reason="a level below the release threshold",
            )
    for lv in protected:  # hidden only because another level is: a dash, never a false <N
        s["levels"][lv]["n"] = PROTECTED


def _release_responses(resp: dict[str, Any] | None, n: int, hidden: list[str], endpoints: Endpoints) -> None:
    """Each response set's categories like a factor's levels; DOR and TTNT like endpoints."""
    if resp:
        for key, st in resp["sets"].items():
            sizes = dict(st["levels"])
            if _small(st["n"], n):
                st["n"] = None
                sizes = dict.fromkeys(sizes)
            protected = _complement(sizes, n, hidden, f"response.{key}")
            st["levels"] = {lv: PROTECTED if lv in protected else v for lv, v in sizes.items()}
        for name, e in resp["endpoints"].items():
            endpoints({name: e}, "response", e.get("n"))
