"""The log-rank test (R ``survdiff(Surv(t, e) ~ group)``, rho = 0) for two or more groups."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.inputs import complete_rows, durations, event_indicator


@dataclass(frozen=True)
class LogRankResult:
    """A log-rank test (R: ``survdiff``): groups, observed and expected, chi-square, df, p."""

    groups: tuple[str, ...]
    n: tuple[int, ...]
    observed: tuple[float, ...]
    expected: tuple[float, ...]
    chi2: float | None  # None: not estimable (``reason``), where R prints p = NA
    df: int
    p: float | None
    reason: str | None = None
    n_dropped: int = 0  # rows left out for a missing time, event or group


def logrank_test(df: pd.DataFrame, duration_col: str, event_col: str, group_col: str) -> LogRankResult:
    """Log-rank test of equal survival across the groups of ``group_col``.

    R equivalent: ``survdiff(Surv(time, event) ~ group)`` (rho = 0): chi-square, degrees of
    freedom (groups - 1) and p.

    Parameters
    ----------
    df
        One row per subject.
    duration_col, event_col
        Follow-up time and event indicator (1 = event).
    group_col
        The grouping column (compared as text, groups sorted).

    Returns
    -------
    LogRankResult
        Observed and expected events per group, chi-square, df and p.
    """
    data, dropped = complete_rows(df, [duration_col, event_col, group_col])
    groups = tuple(sorted(str(g) for g in data[group_col].unique()))
    g_index = data[group_col].astype(str).map({g: i for i, g in enumerate(groups)}).to_numpy()
    t = durations(data[duration_col], duration_col)
    e = event_indicator(data[event_col], event_col)
    k = len(groups)
    obs = np.zeros(k)
    exp = np.zeros(k)
    var = np.zeros((k, k))
    event_times = np.unique(t[e])
    order = np.argsort(t)
    t_sorted, g_sorted, e_sorted = t[order], g_index[order], e[order]
    for time in event_times:
        start = np.searchsorted(t_sorted, time, side="left")
        at_risk = g_sorted[start:]
        n_g = np.bincount(at_risk, minlength=k).astype(float)
        n = n_g.sum()
        here = (t_sorted[start:] == time) & e_sorted[start:]
        d_g = np.bincount(at_risk[here], minlength=k).astype(float)
        d = d_g.sum()
        obs += d_g
        exp += n_g * d / n
        if n > 1:
            factor = d * (n - d) / (n - 1) / n
            var += factor * (np.diag(n_g) - np.outer(n_g, n_g) / n)
    keep = exp > 0
    diff = (obs - exp)[keep][1:]
    vv = var[np.ix_(keep, keep)][1:, 1:]
    dof = int(keep.sum()) - 1
    reason = None
    chi2: float | None
    p: float | None
    if not e.any():
        chi2, p, dof, reason = None, None, max(dof, 0), "no events"
    elif dof < 1:
        chi2, p, reason = None, None, "fewer than two groups with expected events"
    else:
        chi2 = float(diff @ np.linalg.solve(vv, diff))
        p = float(stats.chi2.sf(chi2, dof))
    counts = tuple(int((g_index == i).sum()) for i in range(k))
    return LogRankResult(groups, counts, tuple(obs), tuple(exp), chi2, dof, p, reason, dropped)
