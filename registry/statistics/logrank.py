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
    # per distinct event time (rows) and group (columns): subjects at risk and events, from
    # sorted times (linear after sorting; a loop over event times rescanned every subject)
    event_times = np.unique(t[e])
    n_g = np.empty((len(event_times), k))
    d_g = np.empty((len(event_times), k))
    for i in range(k):
        mine = g_index == i
        t_i = np.sort(t[mine])
        n_g[:, i] = len(t_i) - np.searchsorted(t_i, event_times, side="left")
        d_g[:, i] = np.bincount(np.searchsorted(event_times, t[mine & e]), minlength=len(event_times))
    n, d = n_g.sum(axis=1), d_g.sum(axis=1)
    obs = d_g.sum(axis=0)
    exp = (n_g * (d / n)[:, None]).sum(axis=0)
    # hypergeometric variance, summed over the times with more than one subject at risk
    several = n > 1
    factor = np.where(several, d * (n - d) / np.where(several, n - 1, 1) / n, 0.0)
    var = np.diag((factor[:, None] * n_g).sum(axis=0)) - (n_g * (factor / n)[:, None]).T @ n_g
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
        try:
            chi2 = float(diff @ np.linalg.solve(vv, diff))
            p = float(stats.chi2.sf(chi2, dof))
        except np.linalg.LinAlgError:
            # no variance to compare with (e.g. every event where only one subject of the
            # groups compared is at risk): R's survdiff stops here too; not estimable
            chi2, p, reason = None, None, "the variance of the comparison is singular (too few events)"
    counts = tuple(int((g_index == i).sum()) for i in range(k))
    return LogRankResult(groups, counts, tuple(obs), tuple(exp), chi2, dof, p, reason, dropped)
