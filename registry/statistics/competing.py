"""Competing risks: the Aalen-Johansen cumulative incidence of each cause with Gray's variance
(R ``cmprsk::cuminc``; the estimate equals ``survival``'s multi-state ``survfit``), and Gray's
K-sample test of equal cumulative incidence across groups (``cuminc``'s ``Tests``, rho = 0,
one stratum).

Status coding: 0 censored, any other integer a cause (the cause of interest is named). Ties are
handled exactly (no jittering): every event at a time counts at that time.

Confidence intervals are pointwise, on the log(-log) scale from Gray's variance:
F^exp(∓z·sd/(F·log F)) (lower, upper) — the usual transform for a probability that starts at 0 (documented in
docs/reports.md; the fixtures compute the same formula in R from ``cuminc``'s variance).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.inputs import StatisticsInputError, complete_rows, durations


@dataclass(frozen=True)
class CumulativeIncidence:
    """The cumulative incidence of one cause: a step function at the cause's event times."""

    cause: int
    time: np.ndarray  # distinct times with an event of this cause
    estimate: np.ndarray
    variance: np.ndarray  # Gray's variance (cmprsk::cuminc $var)
    n: int
    events: int
    n_dropped: int = 0

    def at(self, t: float) -> tuple[float, float]:
        """(estimate, variance) at time t (0 before the first event)."""
        i = int(np.searchsorted(self.time, t, side="right")) - 1
        return (0.0, 0.0) if i < 0 else (float(self.estimate[i]), float(self.variance[i]))

    def ci_at(self, t: float, conf_level: float = 0.95) -> tuple[float, float | None, float | None]:
        """(estimate, lower, upper) at time t; the limits are None where undefined (F = 0 or 1)."""
        est, var = self.at(t)
        if est <= 0 or est >= 1 or var <= 0:
            return est, None, None
        z = stats.norm.ppf(1 - (1 - conf_level) / 2)
        k = z * np.sqrt(var) / (est * np.log(est))  # negative: log(est) < 0
        with np.errstate(over="ignore"):  # a very wide interval reaches 0
            return est, float(est ** np.exp(-k)), float(est ** np.exp(k))

    def quantile(self, p: float) -> float | None:
        """The first time the incidence reaches ``p`` (None if it never does)."""
        hit = np.flatnonzero(self.estimate >= p - 1e-12)
        return float(self.time[hit[0]]) if len(hit) else None


@dataclass(frozen=True)
class GrayTest:
    """Gray's test of equal cumulative incidence of one cause across groups."""

    cause: int
    groups: tuple[str, ...]
    statistic: float | None  # None: not estimable (singular variance, or no event of the cause)
    df: int
    p: float | None
    reason: str | None = None
    n_dropped: int = 0


def _status(values: pd.Series, column: str) -> np.ndarray:
    try:
        s = values.to_numpy(dtype=float)
    except (TypeError, ValueError):
        raise StatisticsInputError(f"{column} must be 0 (censored) or a cause number") from None
    if np.any(s != np.round(s)) or np.any(s < 0):
        raise StatisticsInputError(f"{column} must be 0 (censored) or a positive cause number")
    return s.astype(int)


def cumulative_incidence(
    df: pd.DataFrame, duration_col: str, status_col: str, cause: int
) -> CumulativeIncidence:
    """Aalen-Johansen cumulative incidence of ``cause`` with Gray's variance.

    R equivalent: ``cmprsk::cuminc(time, status)`` (the estimate and ``var`` of the cause's
    curve); rows with a missing time or status are left out and counted.
    """
    data, dropped = complete_rows(df, [duration_col, status_col])
    t = durations(data[duration_col], duration_col)
    status = _status(data[status_col], status_col)
    order = np.argsort(t, kind="stable")
    t, status = t[order], status[order]
    times, first = np.unique(t, return_index=True)
    counts = np.diff(np.r_[first, len(t)])
    any_event = np.add.reduceat((status > 0).astype(float), first) if len(t) else np.zeros(0)
    this = np.add.reduceat((status == cause).astype(float), first) if len(t) else np.zeros(0)
    at_risk = len(t) - np.r_[0, np.cumsum(counts)[:-1]]
    out_t, out_f, out_v = [], [], []
    km, f, v1, v2, v3 = 1.0, 0.0, 0.0, 0.0, 0.0
    for time, n_at, d_all, d1 in zip(times, at_risk, any_event, this, strict=True):
        if d_all == 0:
            continue
        d2 = d_all - d1
        km_after = km * (n_at - d_all) / n_at
        if d1 > 0:
            f = f + km * d1 / n_at
        if d2 > 0 and km_after > 0:
            t5 = 1 - (d2 - 1) / (n_at - 1) if d2 > 1 else 1.0
            t6 = km * km * t5 * d2 / (n_at * n_at)
            t3, t4 = 1 / km_after, f / km_after
            v1, v2, v3 = v1 + t4 * t4 * t6, v2 + t3 * t4 * t6, v3 + t3 * t3 * t6
        if d1 > 0:
            t5 = 1 - (d1 - 1) / (n_at - 1) if d1 > 1 else 1.0
            t6 = km * km * t5 * d1 / (n_at * n_at)
            t3 = 1 / km_after if km_after > 0 else 0.0
            t4 = 1 + t3 * f
            v1, v2, v3 = v1 + t4 * t4 * t6, v2 + t3 * t4 * t6, v3 + t3 * t3 * t6
            out_t.append(time)
            out_f.append(f)
            out_v.append(v1 + f * f * v3 - 2 * f * v2)
        km = km_after
    return CumulativeIncidence(
        cause,
        np.array(out_t),
        np.array(out_f),
        np.array(out_v),
        n=len(t),
        events=int((status == cause).sum()),
        n_dropped=dropped,
    )


def gray_test(df: pd.DataFrame, duration_col: str, status_col: str, group_col: str, cause: int) -> GrayTest:
    """Gray's test (rho = 0) that the cumulative incidence of ``cause`` is equal across groups.

    R equivalent: ``cmprsk::cuminc(time, status, group)$Tests`` for the cause (statistic, p,
    df = groups - 1). Not estimable (statistic None, with the reason) when the variance matrix is
    singular — for instance no event of the cause.
    """
    data, dropped = complete_rows(df, [duration_col, status_col, group_col])
    t = durations(data[duration_col], duration_col)
    status = _status(data[status_col], status_col)
    groups = tuple(sorted(str(g) for g in data[group_col].unique()))
    ng = len(groups)
    if ng < 2:
        return GrayTest(cause, groups, None, 0, None, "fewer than two groups", dropped)
    gi = data[group_col].astype(str).map({g: i for i, g in enumerate(groups)}).to_numpy()
    code = np.where(status == 0, 0, np.where(status == cause, 1, 2))
    order = np.argsort(t, kind="stable")
    t, code, gi = t[order], code[order], gi[order]
    if not (code == 1).any():
        return GrayTest(cause, groups, None, ng - 1, None, f"no event of cause {cause}", dropped)
    ng1 = ng - 1
    rs = np.bincount(gi, minlength=ng).astype(float)
    f1m, skmm = np.zeros(ng), np.ones(ng)
    f1, skm = np.zeros(ng), np.ones(ng)
    v3, v2 = np.zeros(ng), np.zeros((ng1, ng))
    c, v, score = np.zeros((ng, ng)), np.zeros((ng1, ng1)), np.zeros(ng1)
    fm = 0.0
    _, first = np.unique(t, return_index=True)
    ends = np.r_[first[1:], len(t)]
    for lo, hi in zip(first, ends, strict=True):
        d = np.zeros((3, ng))
        np.add.at(d, (code[lo:hi], gi[lo:hi]), 1.0)
        nd1, nd2 = d[1].sum(), d[2].sum()
        if nd1 or nd2:
            alive = rs > 0
            n_safe, s_safe = np.where(alive, rs, 1.0), np.where(alive, skmm, 1.0)  # no 0/0 anywhere
            skm = np.where(alive, skmm * (rs - d[1] - d[2]) / n_safe, skm)
            f1 = np.where(alive, f1m + skmm * d[1] / n_safe, f1)
            h = np.where(alive, rs / s_safe, 0.0)  # the paper's h_r
            tr = h.sum()
            tq = np.where(alive, rs * (1 - f1m) / s_safe, 0.0).sum()
            f = fm + nd1 / tr
            a = -np.outer(h, h) / tr
            a[np.diag_indices(ng)] = h * (1 - h / tr)
            c += a * nd1 / (tr * (1 - fm))
            score += np.where(alive, d[1] - nd1 * h * (1 - f1m) / tq if tq > 0 else 0.0, 0.0)[:ng1]
            if nd1 > 0:
                for k in np.flatnonzero(alive):
                    t4 = 1 - (1 - f) / skm[k] if skm[k] > 0 else 1.0
                    t5 = 1 - (nd1 - 1) / (tr * skmm[k] - 1) if nd1 > 1 else 1.0
                    t3 = t5 * skmm[k] * nd1 / (tr * rs[k])
                    v3[k] += t4 * t4 * t3
                    col = a[:ng1, k] - t4 * c[:ng1, k]
                    v2[:, k] += col * t4 * t3
                    v += np.outer(col, col) * t3
            if nd2 > 0:
                for k in np.flatnonzero((skm > 0) & (d[2] > 0) & alive):
                    t4 = (1 - f) / skm[k]
                    t5 = 1 - (d[2, k] - 1) / (rs[k] - 1) if d[2, k] > 1 else 1.0
                    t3 = t5 * skmm[k] ** 2 * d[2, k] / rs[k] ** 2
                    v3[k] += t4 * t4 * t3
                    col = t4 * c[:ng1, k]
                    v2[:, k] -= col * t4 * t3
                    v += np.outer(col, col) * t3
            fm = f
            f1m, skmm = f1.copy(), skm.copy()
        rs -= np.bincount(gi[lo:hi], minlength=ng)
    cc = c[:ng1]
    v = v + (cc * v3) @ cc.T + cc @ v2.T + v2 @ cc.T
    if np.linalg.matrix_rank(v) < ng1:
        return GrayTest(cause, groups, None, ng1, None, "the variance matrix is singular", dropped)
    stat = float(score @ np.linalg.solve(v, score))
    return GrayTest(cause, groups, stat, ng1, float(stats.chi2.sf(stat, ng1)), None, dropped)
