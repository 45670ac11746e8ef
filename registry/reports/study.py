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
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from registry import __version__
from registry.cohorts.definition import Analysis, CohortDefinition, Endpoint
from registry.cohorts.sql import Reach, drug_column_stem, drug_columns, reach_of
from registry.core.errors import ReportRefused, StudyError
from registry.core.units import DAYS_PER_MONTH
from registry.reports.common import months as _m
from registry.reports.common import rounded as _r
from registry.reports.common import warn as _warn
from registry.reports.labels import human
from registry.reports.methods import methods
from registry.reports.study_cox import cox_rows as _cox
from registry.reports.table1 import table_one
from registry.statistics import kaplan_meier, logrank_test
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
]  # then each declared drug's relapse facts (per_drug_columns)


def per_drug_columns(defn: CohortDefinition) -> list[str]:
    """The per-patient table's per-drug columns: refractoriness and drug-free days at the first
    relapse after transplant, for each drug the definition declares."""
    out = []
    for drug in defn.drugs:
        cols = drug_columns(drug)
        out += [cols.refractory, cols.free_days]
    return out


@dataclass
class StudyReport:
    """A computed study report: the JSON-able dict (every output is drawn from it) and the
    per-patient table."""

    data: dict[str, Any]
    patients: pd.DataFrame  # the per-patient analysis table


AGES = {"age_at_l2": "l2_start", "age_at_transplant": "index_transplant_date"}  # age at that date


def _shown_columns(defn: CohortDefinition) -> list[str]:
    cols = list(defn.export or [*PATIENT_COLUMNS, *per_drug_columns(defn)])
    for e in defn.endpoints:
        cols += [f"{e.name}_days", e.outcome_column]
    return cols


def table_columns(defn: CohortDefinition) -> list[str]:
    """The cohort columns ``patient_table`` reads: those it shows, and the dates of the ages."""
    cols = _shown_columns(defn)
    read = [c for c in cols if c not in AGES]
    return read + [c for c in ("birth_date", *(AGES[c] for c in cols if c in AGES)) if c not in read]


def patient_table(cohort: pd.DataFrame, defn: CohortDefinition) -> pd.DataFrame:
    """The per-patient analysis table: the patients that pass every step, with the endpoint
    columns (``<endpoint>_days``, ``<endpoint>_event``)."""
    last = f"step_{len(defn.steps)}"
    cols = _shown_columns(defn)
    read = table_columns(defn)
    order = ["group", "patient_key"] if "group" in cols else ["patient_key"]
    df = cohort.loc[cohort[last] == 1, read]  # only the columns the table shows (or needs)
    for age, date in AGES.items():
        if age in cols:  # age in years, to 2 decimals, at that date
            df[age] = [
                round((d - b).days / 365.25, 2) if pd.notna(d) and pd.notna(b) else None
                for d, b in zip(df[date], df["birth_date"], strict=True)
            ]
    df = df[cols].sort_values(order).reset_index(drop=True)
    for e in defn.endpoints:
        df[f"{e.name}_days"] = df[f"{e.name}_days"].astype("Int64")
        df[e.outcome_column] = df[e.outcome_column].astype("Int64")
    return df


def attrition(reach: Reach, defn: CohortDefinition) -> list[dict[str, Any]]:
    """Remaining and excluded patients after each step, with the reason."""
    rows = []
    before = reach.patients
    rows.append(
        {
            "step": "Current patients in the registry",
            "remaining": before,
            "excluded": 0,
            "reason": None,
        }
    )
    for step, remaining in zip(defn.steps, reach.passed, strict=True):
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


def _endpoint_summary(km: KaplanMeier, analysis: Analysis, grid: list[int]) -> dict[str, Any]:
    med, lo, hi = km.median()
    out: dict[str, Any] = {
        "n": km.n,
        "events": km.events,
        "censored": km.n - km.events,
        "median_months": _m(med),
        "median_ci_months": [_m(lo), _m(hi)],
    }
    for months in analysis.rate_months:
        at = km.at(months * DAYS_PER_MONTH)
        out[f"rate_{months}m"] = _r(at.surv)
        out[f"rate_{months}m_ci"] = [_r(at.lower), _r(at.upper)]
    out["at_risk"] = {str(m): km.n_risk_at(m * DAYS_PER_MONTH) for m in grid}
    out["cumulative_events"] = {str(m): int(km.n_event[km.time <= m * DAYS_PER_MONTH].sum()) for m in grid}
    return out


def _curve(km: KaplanMeier) -> dict[str, list[Any]]:
    """A Kaplan-Meier curve as lists (months), to redraw it: every distinct time with survival,
    its CI (null where R gives NA), and the numbers at risk, events and censored there."""

    def col(a: np.ndarray, nd: int = 8) -> list[float | None]:
        return [None if math.isnan(v) else round(float(v), nd) for v in a]

    return {
        "time_months": col(km.time / DAYS_PER_MONTH),
        "surv": col(km.surv),
        "lower": col(km.lower),
        "upper": col(km.upper),
        "n_risk": [int(v) for v in km.n_risk],
        "n_event": [int(v) for v in km.n_event],
        "n_censor": [int(v) for v in km.n_censor],
        # where the censoring marks go (times with a censored patient, and the curve there)
        "censored_months": col(km.time[km.n_censor > 0] / DAYS_PER_MONTH),
        "censored_surv": col(km.surv[km.n_censor > 0]),
    }


def facts_of(table: pd.DataFrame, cohort: pd.DataFrame) -> Callable[[str], pd.Series]:
    """A column of the cohort's facts aligned with ``table``'s patients (all missing when the
    cohort was read without that fact)."""
    rows = pd.Index(cohort["patient_key"]).get_indexer(table["patient_key"])  # found once
    everyone = bool((rows >= 0).all())

    def fact(column: str) -> pd.Series:
        if column not in cohort.columns:
            return pd.Series([None] * len(table), index=table.index, dtype=object)
        if everyone:  # the column's values at those rows (no copy of the whole cohort)
            return cohort[column].iloc[rows].set_axis(table.index)
        return table["patient_key"].map(cohort.set_index("patient_key")[column])

    return fact


def describe(table: pd.DataFrame, cohort: pd.DataFrame, drugs: tuple[str, ...] = ()) -> pd.DataFrame:
    """The per-patient table with the columns Table 1 describes (computed from the cohort's facts;
    all missing where a fact was not read)."""
    d = table.copy()
    fact = facts_of(d, cohort)

    def days(later: pd.Series, earlier: pd.Series) -> pd.Series:
        return (pd.to_datetime(later) - pd.to_datetime(earlier)).dt.days.astype(float)

    d["age_at_diagnosis"] = (days(fact("diagnosis_date"), fact("birth_date")) / 365.25).round(2)
    for c in ("riss_stage", "del17p", "t_4_14", "t_14_16", "gain_1q", "response_day100"):
        d[c] = fact(c)
    d["ldh_elevated"] = fact("ldh_elevated")
    tandem = fact("tandem_transplant_date")
    d["tandem"] = np.where(tandem.isna(), "no", "yes") if "tandem_transplant_date" in cohort.columns else None
    acronym, backbone = fact("induction_acronym"), fact("induction_backbone")
    d["induction"] = [
        a if isinstance(a, str) else (f"other ({b})" if isinstance(b, str) else None)
        for a, b in zip(acronym, backbone, strict=True)
    ]
    d["l2_drug_classes"] = fact("l2_backbone")
    cutoff = pd.to_datetime(fact("cutoff"))
    end = pd.to_datetime(fact("maintenance_end")).fillna(cutoff)
    end = end.where(end <= cutoff, cutoff)
    d["maintenance_months"] = (days(end, fact("maintenance_start")) / DAYS_PER_MONTH).round(4)
    d["transplant_to_relapse_months"] = (
        days(d["relapse_date"], d["index_transplant_date"]) / DAYS_PER_MONTH
    ).round(4)
    for drug in drugs:  # <drug>_refractory, <drug>_free_months at the first relapse
        stem, cols = drug_column_stem(drug), drug_columns(drug)
        d[f"{stem}_refractory"] = d[cols.refractory]
        d[f"{stem}_free_months"] = (d[cols.free_days].astype(float) / DAYS_PER_MONTH).round(4)
    return d


def report_header(
    defn: CohortDefinition, reach: Reach, as_of: dt.date | None, n: int, steps: list[dict[str, Any]]
) -> dict[str, Any]:
    """What every report's JSON starts with: the definition, the versions, when, the data cutoff
    (``as_of``, else the earliest site cutoff), the patients analysed and the attrition."""
    data_cutoff = as_of or reach.earliest_cutoff
    return {
        "study": defn.name,
        "title": defn.title,
        "definition_version": defn.version,
        "registry_version": __version__,
        "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "data_cutoff": data_cutoff.isoformat() if data_cutoff else None,
        "as_of": as_of.isoformat() if as_of else None,
        "n": n,
        "attrition": steps,
    }


OUTCOMES_DEFINITION = "transplant-outcomes"  # the outcomes report's definition (registry.reports.inputs)


def check_request(
    defn: CohortDefinition, endpoints: list[str] | None, landmark_days: int | None
) -> list[Endpoint]:
    """The endpoints asked for, or ``StudyError`` (64) for a request that cannot be answered as
    asked: an unknown endpoint, a biased comparison, a landmark for endpoints that need none."""
    if len(defn.groups) < 2:
        fits = (
            "`registry report outcomes` is its report"
            if defn.name == OUTCOMES_DEFINITION
            else "a study report compares two or more groups: add [[groups]] to the definition"
        )
        raise StudyError(f"{defn.name!r} compares no groups: it is not a study", hint=fits)
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
    if landmark_days is not None and len(biased) < len(chosen):
        raise StudyError(
            "--landmark-days is only for endpoints whose origin is the index transplant "
            f"({', '.join(e.name for e in defn.endpoints if not e.origin_is_baseline)})",
            hint="leave out --landmark-days for endpoints that start at the 2nd line, and ask for "
            "the two kinds in separate reports",
        )
    return chosen


def build_study_report(
    cohort: pd.DataFrame,
    defn: CohortDefinition,
    *,
    as_of: dt.date | None = None,
    endpoints: list[str] | None = None,
    landmark_days: int | None = None,
    horizon_months: int | None = None,
    context: dict[str, Any] | None = None,
    reach: Reach | None = None,
) -> StudyReport:
    """Compute a study report.

    Parameters
    ----------
    cohort
        Every current patient with the definition's step flags, group and endpoint columns
        (``registry.cohorts.sql.read_cohort``; with ``baseline=True`` for a full Table 1).
    defn
        The cohort definition, with its ``[analysis]`` table.
    as_of
        The data cutoff the cohort was read at (None: each site's own cutoff).
    endpoints
        Endpoint names to analyse (default: those whose origin is the groups' baseline).
    landmark_days
        Landmark analysis from the index transplant, for endpoints whose origin is earlier
        than the baseline (required for them: otherwise the comparison is refused).
    horizon_months
        The end of the plots' time axis (default: the end of follow-up, in whole years).
    context
        What the registry knows around the cohort (``registry.reports.inputs``): provenance,
        the data-quality step, the derivation parameters. Copied into the report.
    reach
        How far every current patient got (``read_analysed``), when ``cohort`` holds only the
        patients that pass every step; None: taken from ``cohort``.

    Returns
    -------
    StudyReport
        The report's JSON-able dict and the per-patient table.

    Raises
    ------
    StudyError
        A biased comparison (64).
    ReportRefused
        No patient to analyse: an empty cohort, or a landmark nobody reaches (65).
    """
    analysis = defn.analysis
    ref = analysis.reference_group
    table = patient_table(cohort, defn)
    warnings: list[dict[str, Any]] = []
    chosen = check_request(defn, endpoints, landmark_days)
    if len(table) == 0:
        raise ReportRefused(
            f"the cohort {defn.name} is empty: no patient passes every inclusion step",
            hint="`registry cohort export` and the attrition of `registry report study --format json` "
            "show where patients leave; check the data cutoff (--as-of) and the loaded sites",
        )
    groups = [g.name for g in defn.groups]
    reach = reach or reach_of(cohort, defn)
    steps = attrition(reach, defn)
    analysed_set, landmark = _landmark_set(table, chosen, landmark_days, steps)
    described = describe(analysed_set, cohort, defn.drugs)
    frames = [_endpoint_frame(analysed_set, e, analysis, landmark_days) for e in chosen]
    longest = max(
        (float(f[t].max()) for _, f, t in frames if len(f) and not pd.isna(f[t].max())), default=0.0
    )
    horizon = horizon_months or max(12, math.ceil(longest / DAYS_PER_MONTH / 12) * 12)
    grid = sorted({m for m in analysis.at_risk_months if m <= horizon} | set(range(0, horizon + 1, 12)))

    def endpoint_meta(e: Any) -> dict[str, Any]:
        title = e.label
        if landmark_days is not None:
            title = (
                f"Landmark analysis at day {landmark_days} ({landmark_days / DAYS_PER_MONTH:.1f} months) "
                f"after the index transplant: {e.label[0].lower()}{e.label[1:]}, time from the landmark"
            )
        return {"label": e.label, "title": title, "origin": e.origin, "events": list(e.events)}

    data: dict[str, Any] = {
        **report_header(defn, reach, as_of, len(analysed_set), steps),
        "endpoints": {e.name: endpoint_meta(e) for e in chosen},
        "groups": {},
        "table1": table_one(described, groups, analysis.table1),
        "curves": {},
        "horizon_months": horizon,
        "horizon_requested": bool(horizon_months),  # --horizon-months: the axis is not shortened
        "logrank": [],
        "cox": [],
        "ph_check": [],
        "median_follow_up_months": {},
        "landmark": landmark,
        "analysis": {
            "reference_group": ref,
            "baseline_heading": analysis.baseline_heading
            + (f" (the landmark set at day {landmark_days})" if landmark_days is not None else ""),
            "rate_months": list(analysis.rate_months),
            "at_risk_months": grid,
            "covariates": [c.column for c in analysis.covariates],
            "covariate_labels": [c.label for c in analysis.covariates],
            "colours": analysis.colours,
            "pairwise_tests": len(list(itertools.combinations(groups, 2))),
        },
        "published": _published(defn),
        "methods": methods(defn, None, landmark_days),  # the registry's rules; context has the run's
        "warnings": warnings,
    }
    if context:
        data.update(context)
    _group_sizes(data, defn, analysed_set, warnings)
    for name, frame, tcol in frames:
        _analyse_endpoint(data, warnings, defn, grid, name, frame, tcol)
    return StudyReport(data=data, patients=table)


def _endpoint_frame(
    analysed: pd.DataFrame, e: Endpoint, analysis: Analysis, landmark_days: int | None
) -> tuple[str, pd.DataFrame, str]:
    """(endpoint, frame, time column): only what its curves, tests and models read (the group,
    its time and event, the covariates), times from the landmark when there is one."""
    read = ["group", f"{e.name}_days", f"{e.name}_event", *(c.column for c in analysis.covariates)]
    frame = analysed[[c for c in dict.fromkeys(read) if c in analysed]].copy()
    tcol = f"{e.name}_days"
    if landmark_days is not None:
        tcol = f"{e.name}_lm"
        frame[tcol] = frame[f"{e.name}_days"] - landmark_days
    return e.name, frame, tcol


def _landmark_set(
    table: pd.DataFrame, chosen: list[Endpoint], landmark_days: int | None, steps: list[dict[str, Any]]
) -> tuple[pd.DataFrame, dict[str, Any] | None]:
    """The patients a landmark analysis keeps (their 2nd line started by the landmark; alive,
    event-free and followed then), its two attrition steps and its description; everyone
    without a landmark."""
    if landmark_days is None:
        return table, None
    idx = pd.to_datetime(table["index_transplant_date"])
    started = (pd.to_datetime(table["l2_start"]) - idx).dt.days <= landmark_days
    after_start = table[started]
    followed = np.ones(len(after_start), dtype=bool)
    for e in chosen:
        followed &= (after_start[f"{e.name}_days"].astype(float) > landmark_days).to_numpy()
    analysed_set = after_start[followed].reset_index(drop=True)
    names = ", ".join(e.name for e in chosen)
    steps.append(
        {
            "step": f"... whose 2nd line started within {landmark_days} days of the index "
            "transplant (the landmark)",
            "remaining": len(after_start),
            "excluded": len(table) - len(after_start),
            "reason": "2nd line started after the landmark",
        }
    )
    steps.append(
        {
            "step": f"... alive, free of the events of {names} and under follow-up at the landmark",
            "remaining": len(analysed_set),
            "excluded": len(after_start) - len(analysed_set),
            "reason": "an event, or the end of follow-up, by the landmark",
        }
    )
    landmark = {
        "days": landmark_days,
        "months": _m(landmark_days),
        "origin": "index transplant",
        "n": len(analysed_set),
        "rule": f"patients whose 2nd line had started by day {landmark_days} after the index "
        f"transplant and who were alive, free of the events of {names} and under follow-up "
        "then; time counted from the landmark",
    }
    if len(analysed_set) == 0:
        raise ReportRefused(
            f"the landmark at day {landmark_days} leaves no patient: nobody had started a 2nd "
            f"line by then and was still under follow-up without an event of {names}",
            hint="choose a later landmark (--landmark-days)",
        )
    return analysed_set, landmark


def _group_sizes(
    data: dict[str, Any], defn: CohortDefinition, analysed: pd.DataFrame, warnings: list[dict[str, Any]]
) -> None:
    """Each group's size, with a warning for a small or empty one."""
    for grp in defn.groups:
        sub = analysed[analysed["group"] == grp.name]
        data["groups"][grp.name] = {"label": grp.label, "n": len(sub), "endpoints": {}}
        if 0 < len(sub) < SMALL_GROUP:
            _warn(
                warnings,
                f"{grp.name} has only {{n}} patients: estimates are imprecise",
                cells={"n": ["groups", grp.name, "n"]},
                n=len(sub),
            )
        if len(sub) == 0:
            _warn(warnings, f"{grp.name} has no patients")


def _analyse_endpoint(
    data: dict[str, Any],
    warnings: list[dict[str, Any]],
    defn: CohortDefinition,
    grid: list[int],
    name: str,
    frame: pd.DataFrame,
    tcol: str,
) -> None:
    """One endpoint: Kaplan-Meier per group, median follow-up, log-rank tests (all groups and
    each pair) and the Cox models against the reference group."""
    analysis = defn.analysis
    ref = analysis.reference_group
    groups = [g.name for g in defn.groups]
    ecol = f"{name}_event"
    before = len(frame)
    frame = frame.dropna(subset=[tcol, ecol])
    if len(frame) < before:  # said, never silently used (R's na.omit says so too)
        _warn(
            warnings,
            f"{human(name)}: {{missing}} patients without a time or event left out",
            missing=before - len(frame),
        )
    data["curves"][name] = {}
    for g in groups:
        sub = frame[frame["group"] == g]
        if len(sub) == 0:
            data["groups"][g]["endpoints"][name] = {
                "n": 0,
                "events": 0,
                "censored": 0,
                "median_months": None,
                "median_ci_months": [None, None],
            }
            continue
        km = kaplan_meier(sub, tcol, ecol)
        data["curves"][name][g] = _curve(km)
        data["groups"][g]["endpoints"][name] = _endpoint_summary(km, analysis, grid)
        if 1 - km.events / km.n > HEAVY_CENSORING:  # counts, not a share of a shown n
            cell = ["groups", g, "endpoints", name]
            _warn(
                warnings,
                f"{human(name)}, {g}: {{censored}} of {{n}} patients censored",
                cells={"censored": [*cell, "censored"], "n": [*cell, "n"]},
                censored=km.n - km.events,
                n=km.n,
            )
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
                {"endpoint": name, "groups": [a, b], "chi2": _r(lr.chi2), "df": lr.df, "p": _r(lr.p, 8)}
            )
    if ref in present and len(present) >= 2:
        for model in ("unadjusted", "adjusted"):
            _cox(data, warnings, frame, name, tcol, ecol, model, defn)


def _published(defn: CohortDefinition) -> dict[str, Any] | None:
    p = defn.published
    if p is None:
        return None
    return {
        "source": p.source,
        "endpoint": p.endpoint,
        "note": p.note,
        "groups": {g: {"n": n, "median_months": m} for g, (n, m) in p.groups.items()},
    }
