"""Kaplan-Meier with Greenwood variance and log(-log) confidence intervals, medians (with R's
edge cases), survival at fixed times and numbers at risk — as R's
``survfit(Surv(t, e) ~ 1, conf.type = "log-log")`` and ``summary(fit, times = ...)`` report.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.inputs import complete_rows, durations, event_indicator

TOLERANCE = float(np.sqrt(np.finfo(float).eps))  # R: sqrt(.Machine$double.eps)


@dataclass(frozen=True)
class SurvivalAt:
    """Survival at one time with its confidence interval (R: ``summary(fit, times=)``)."""

    time: float
    surv: float | None
    lower: float | None
    upper: float | None
    n_risk: int


@dataclass(frozen=True)
class KaplanMeier:
    """A Kaplan-Meier fit (R: ``survfit``, log-log CI) with medians and numbers at risk."""

    time: np.ndarray  # every distinct observed time
    n_risk: np.ndarray
    n_event: np.ndarray
    n_censor: np.ndarray
    surv: np.ndarray
    std_err: np.ndarray  # standard error of the cumulative hazard (R's fit$std.err)
    lower: np.ndarray  # NaN where R reports NA
    upper: np.ndarray
    conf_level: float
    n_dropped: int = 0  # rows left out for a missing time or event (R's na.omit)

    @property
    def n(self) -> int:
        return int(self.n_risk[0]) if len(self.n_risk) else 0

    @property
    def events(self) -> int:
        return int(self.n_event.sum())

    def median(self) -> tuple[float | None, float | None, float | None]:
        """(median, lower, upper); None where R gives NA (not reached)."""
        return self.quantile(0.5)

    def quantile(self, p: float) -> tuple[float | None, float | None, float | None]:
        return (
            _findq(self.time, 1 - self.surv, p),
            _findq(self.time, 1 - self.lower, p),
            _findq(self.time, 1 - self.upper, p),
        )

    def at(self, t: float) -> SurvivalAt:
        """Survival at time t as R's ``summary(fit, times = t)`` (None past the last time)."""
        n_risk = int(self.n_risk_at(t))
        if len(self.time) == 0 or t > self.time[-1]:
            return SurvivalAt(t, None, None, None, n_risk)
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        if i < 0:
            return SurvivalAt(t, 1.0, 1.0, 1.0, n_risk)
        return SurvivalAt(t, float(self.surv[i]), _num(self.lower[i]), _num(self.upper[i]), n_risk)

    def n_risk_at(self, t: float) -> int:
        """Patients with time >= t (the numbers printed under a Kaplan-Meier plot)."""
        i = int(np.searchsorted(self.time, t, side="left"))
        return int(self.n_risk[i]) if i < len(self.n_risk) else 0


def _num(x: float) -> float | None:
    return None if np.isnan(x) else float(x)


def kaplan_meier(
    df: pd.DataFrame, duration_col: str, event_col: str, conf_level: float = 0.95
) -> KaplanMeier:
    """Kaplan-Meier estimate of the survival function.

    R equivalent: ``survfit(Surv(time, event) ~ 1, conf.type = "log-log")`` (pointwise CI from
    Greenwood's variance on the log(-log) scale); medians and their CI as R's
    ``quantile(fit, 0.5)`` reports them, edge cases included.

    Parameters
    ----------
    df
        One row per subject.
    duration_col
        Follow-up time (days).
    event_col
        1 (or True) for an event, 0 for censored; other codes are refused.

    Rows with a missing time or event are left out and counted in ``n_dropped``, as R's
    ``na.omit`` (which says how many).
    conf_level
        Confidence level of the pointwise intervals.

    Returns
    -------
    KaplanMeier
        Step function at the distinct times, with n at risk, events, censored and CI.
    """
    data, dropped = complete_rows(df, [duration_col, event_col])
    t = durations(data[duration_col], duration_col)
    e = event_indicator(data[event_col], event_col)
    times, inverse = np.unique(t, return_inverse=True)
    n_event = np.bincount(inverse, weights=e, minlength=len(times)).astype(int)
    n_total = np.bincount(inverse, minlength=len(times))
    n_censor = n_total - n_event
    n_risk = len(t) - np.concatenate([[0], np.cumsum(n_total)[:-1]])
    with np.errstate(divide="ignore", invalid="ignore"):
        surv = np.cumprod(1.0 - n_event / n_risk)
        terms = np.where(n_event > 0, n_event / (n_risk * (n_risk - n_event)), 0.0)
        std_err = np.sqrt(np.cumsum(terms))
        z = stats.norm.ppf(1 - (1 - conf_level) / 2)
        xx = np.where((surv == 0) | (surv == 1), np.nan, surv)
        se2 = z * std_err / np.log(xx)
        lower = np.exp(-np.exp(np.log(-np.log(xx)) - se2))
        upper = np.exp(-np.exp(np.log(-np.log(xx)) + se2))
    return KaplanMeier(times, n_risk, n_event, n_censor, surv, std_err, lower, upper, conf_level, dropped)


def _findq(x: np.ndarray, y: np.ndarray, p: float, tol: float = TOLERANCE) -> float | None:
    """Time at which the cumulative incidence y (= 1 - S) reaches p, with R's conventions:
    a curve flat at exactly p gives the midpoint of the flat stretch; a curve that ends flat
    at p gives the midpoint to the last observed time; a curve that never reaches p gives
    None. NaN points (undefined confidence limits) are skipped, as R's ``approx`` does."""
    xs = np.concatenate([[0.0], x])
    ys = np.concatenate([[0.0], y])
    if len(xs) == 0 or np.nanmax(ys) < p:
        return None
    xmax = xs[-1]
    last_y = ys[-1]
    # drop repeated y values, keeping the first (R: duplicated()), then NaN points
    _, first = np.unique(ys, return_index=True)
    keep = np.zeros(len(ys), bool)
    keep[first] = True
    nan_mask = np.isnan(ys)
    if nan_mask.any():  # np.unique keeps one NaN; R's duplicated() keeps one NaN too
        keep[np.flatnonzero(nan_mask)[0]] = True
    xs, ys = xs[keep], ys[keep]
    ok = ~np.isnan(ys)
    xs, ys = xs[ok], ys[ok]

    def first_at_least(level: float) -> int | None:
        idx = np.flatnonzero(ys >= level)
        return int(idx[0]) if len(idx) else None

    i1 = first_at_least(p - tol)
    i2 = first_at_least(p + tol)
    if p == 0:
        return float(xs[0])
    if i1 is None:
        return None
    if i2 is None:
        if not np.isnan(last_y) and abs(p - last_y) < tol:
            return float((xs[i1] + xmax) / 2)
        return None
    return float((xs[i1] + xs[i2]) / 2)


def reverse_km_median_follow_up(
    df: pd.DataFrame, duration_col: str, event_col: str
) -> tuple[float | None, float | None, float | None]:
    """Median follow-up by the reverse Kaplan-Meier method (censoring is the 'event')."""
    data, _ = complete_rows(df, [duration_col, event_col])
    rev = data[[duration_col]].copy()
    rev["_censored"] = (~event_indicator(data[event_col], event_col)).astype(int)
    return kaplan_meier(rev, duration_col, "_censored").median()
