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

import functools
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.inputs import StatisticsInputError, complete_rows, durations


@functools.lru_cache(maxsize=8)
def _z(conf_level: float) -> float:
    """The two-sided normal quantile of a confidence level (asked for at every point of a curve:
    scipy's ppf costs 90 microseconds a call)."""
    return float(stats.norm.ppf(1 - (1 - conf_level) / 2))


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
        z = _z(conf_level)
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


class _GraySums:
    """The recursion of Gray's test over the distinct times: the matrices its score and variance
    are made of. A handful of groups at each of thousands of times: plain floats, a list a
    group (a fifth of the time of numpy's calls on arrays of three)."""

    def __init__(self, at_risk: list[float]) -> None:
        ng = len(at_risk)
        self.ng, self.ng1 = ng, ng - 1
        self.rs = list(at_risk)
        self.f1m, self.skmm = [0.0] * ng, [1.0] * ng
        self.f1, self.skm = [0.0] * ng, [1.0] * ng
        self.v3 = [0.0] * ng
        self.v2 = [[0.0] * ng for _ in range(ng - 1)]
        self.c = [[0.0] * ng for _ in range(ng)]
        self.v = [[0.0] * (ng - 1) for _ in range(ng - 1)]
        self.score = [0.0] * (ng - 1)
        self.fm = 0.0

    def time(self, d1: list[float], d2: list[float]) -> None:
        """One distinct time with an event (``d1``: of the cause, ``d2``: of another, by group)."""
        groups, rs, skmm, f1m = range(self.ng), self.rs, self.skmm, self.f1m
        nd1 = sum(d1)
        alive = [r > 0 for r in rs]
        for j in groups:
            if alive[j]:
                self.skm[j] = skmm[j] * (rs[j] - d1[j] - d2[j]) / rs[j]
                self.f1[j] = f1m[j] + skmm[j] * d1[j] / rs[j]
        h = [rs[j] / skmm[j] if alive[j] else 0.0 for j in groups]  # the paper's h_r
        tr = sum(h)
        tq = sum(rs[j] * (1 - f1m[j]) / skmm[j] for j in groups if alive[j])
        f = self.fm + nd1 / tr
        a = [[-h[i] * h[j] / tr for j in groups] for i in groups]
        for j in groups:
            a[j][j] = h[j] * (1 - h[j] / tr)
        w = nd1 / (tr * (1 - self.fm))
        for ci, ai in zip(self.c, a, strict=True):
            for j in groups:
                ci[j] += ai[j] * w
        if tq > 0:
            for j in range(self.ng1):
                if alive[j]:
                    self.score[j] += d1[j] - nd1 * h[j] * (1 - f1m[j]) / tq
        if nd1 > 0:
            self._cause(a, alive, f, tr, nd1)
        if sum(d2) > 0:
            self._other(alive, f, d2)
        self.fm = f
        self.f1m, self.skmm = self.f1[:], self.skm[:]

    def _cause(self, a: list[list[float]], alive: list[bool], f: float, tr: float, nd1: float) -> None:
        rs, skm, skmm, c = self.rs, self.skm, self.skmm, self.c
        for j in range(self.ng):
            if alive[j]:
                t4 = 1 - (1 - f) / skm[j] if skm[j] > 0 else 1.0
                t5 = 1 - (nd1 - 1) / (tr * skmm[j] - 1) if nd1 > 1 else 1.0
                t3 = t5 * skmm[j] * nd1 / (tr * rs[j])
                self.v3[j] += t4 * t4 * t3
                self._add([a[i][j] - t4 * c[i][j] for i in range(self.ng1)], j, t4 * t3, t3)

    def _other(self, alive: list[bool], f: float, d2: list[float]) -> None:
        rs, skm, skmm, c = self.rs, self.skm, self.skmm, self.c
        for j in range(self.ng):
            if alive[j] and skm[j] > 0 and d2[j] > 0:
                t4 = (1 - f) / skm[j]
                t5 = 1 - (d2[j] - 1) / (rs[j] - 1) if d2[j] > 1 else 1.0
                t3 = t5 * skmm[j] ** 2 * d2[j] / rs[j] ** 2
                self.v3[j] += t4 * t4 * t3
                self._add([t4 * c[i][j] for i in range(self.ng1)], j, -(t4 * t3), t3)

    def _add(self, col: list[float], j: int, w2: float, t3: float) -> None:
        """One group's term: ``col`` into v2's column j (weight w2), its outer product (t3) into v."""
        for i, x in enumerate(col):
            self.v2[i][j] += x * w2
            vi, xt = self.v[i], x * t3
            for k, y in enumerate(col):
                vi[k] += xt * y


def _gray_sums(
    counts: np.ndarray, at_risk: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(c, v2, v, v3, score) of Gray's test from ``counts`` (censored, cause, other cause, per
    distinct time and group) and ``at_risk`` (each group's size)."""
    sums = _GraySums([float(x) for x in at_risk])
    for d0, d1, d2 in counts.tolist():
        if sum(d1) or sum(d2):
            sums.time(d1, d2)
        for j in range(sums.ng):
            sums.rs[j] -= d0[j] + d1[j] + d2[j]
    return np.array(sums.c), np.array(sums.v2), np.array(sums.v), np.array(sums.v3), np.array(sums.score)


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
    if not (code == 1).any():
        return GrayTest(cause, groups, None, ng - 1, None, f"no event of cause {cause}", dropped)
    ng1 = ng - 1
    # subjects censored (0), with the cause (1) or another cause (2), per distinct time and group
    times, at = np.unique(t, return_inverse=True)
    counts = np.bincount((at * 3 + code) * ng + gi, minlength=len(times) * 3 * ng).reshape(-1, 3, ng)
    c, v2, v, v3, score = _gray_sums(counts.astype(float), np.bincount(gi, minlength=ng).astype(float))
    cc = c[:ng1]
    v = v + (cc * v3) @ cc.T + cc @ v2.T + v2 @ cc.T
    if np.linalg.matrix_rank(v) < ng1:
        return GrayTest(cause, groups, None, ng1, None, "the variance matrix is singular", dropped)
    stat = float(score @ np.linalg.solve(v, score))
    return GrayTest(cause, groups, stat, ng1, float(stats.chi2.sf(stat, ng1)), None, dropped)


@dataclass(frozen=True)
class FineGrayTerm:
    """One covariate of a Fine-Gray model: coefficient, robust SE, subdistribution HR, CI, p."""

    name: str
    coef: float
    se: float
    hr: float
    hr_lower: float
    hr_upper: float
    p: float


@dataclass(frozen=True)
class FineGrayResult:
    """A Fine-Gray subdistribution-hazards model (R: ``cmprsk::crr``)."""

    cause: int
    terms: tuple[FineGrayTerm, ...]
    loglik: float
    n: int
    events: int
    n_dropped: int
    converged: bool
    iterations: int


def _censoring_left(t: np.ndarray, censored: np.ndarray) -> np.ndarray:
    """The Kaplan-Meier of the censoring distribution just before each time, G(t-)."""
    times, first = np.unique(t, return_index=True)
    counts = np.diff(np.r_[first, len(t)])
    at_risk = len(t) - np.r_[0, np.cumsum(counts)[:-1]]
    c = np.add.reduceat(censored.astype(float), first)
    after = np.cumprod(1 - c / at_risk)  # G at each distinct time (right-continuous)
    before = np.r_[1.0, after[:-1]]  # G just before it
    return before[np.searchsorted(times, t)]


class _FineGray:
    """The weighted risk sets of Fine and Gray at the distinct times of the cause: everyone still
    under observation, plus those who failed from another cause earlier, weighted by
    G(t-)/G(T-) (the censoring distribution); Breslow ties, as ``crr``. Sums are cumulative over
    the sorted rows, so each evaluation is linear in rows."""

    def __init__(self, t: np.ndarray, code: np.ndarray, x: np.ndarray) -> None:
        self.t, self.code, self.x = t, code, x
        self.g = _censoring_left(t, code == 0)
        fail = code == 1
        self.times, self.d = np.unique(t[fail], return_counts=True)
        self.g_k = self.g[np.searchsorted(t, self.times)]  # G(t_k-)
        self.start = np.searchsorted(t, self.times, side="left")  # first row with T >= t_k
        self.fail = fail
        self.other = code == 2

    def sums(self, beta: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        x = self.x
        r = np.exp(x @ beta)
        rx = r[:, None] * x
        rxx = rx[:, :, None] * x[:, None, :]

        def tail(a: np.ndarray) -> np.ndarray:  # sum over rows with T >= t_k
            c = np.cumsum(a[::-1], axis=0)[::-1]
            return np.concatenate([c, np.zeros((1, *a.shape[1:]))])[self.start]

        def head(a: np.ndarray) -> np.ndarray:  # sum over rows with T < t_k
            c = np.concatenate([np.zeros((1, *a.shape[1:])), np.cumsum(a, axis=0)])
            return c[self.start]

        w = np.where(self.other, 1 / self.g, 0.0)
        s0 = tail(r) + self.g_k * head(r * w)
        s1 = tail(rx) + self.g_k[:, None] * head(rx * w[:, None])
        s2 = tail(rxx) + self.g_k[:, None, None] * head(rxx * w[:, None, None])
        return r, s0, s1, s2

    def evaluate(self, beta: np.ndarray) -> tuple[float, np.ndarray, np.ndarray]:
        """The negative log partial likelihood, its gradient and Hessian (crr minimises)."""
        _, s0, s1, s2 = self.sums(beta)
        xf = self.x[self.fail]
        xbar = s1 / s0[:, None]
        f = float(-(xf @ beta).sum() + (self.d * np.log(s0)).sum())
        grad = -xf.sum(axis=0) + (self.d[:, None] * xbar).sum(axis=0)
        info = (self.d[:, None, None] * (s2 / s0[:, None, None] - xbar[:, :, None] * xbar[:, None, :])).sum(
            axis=0
        )
        return f, grad, info

    def robust_middle(self, beta: np.ndarray) -> np.ndarray:
        """The middle of crr's sandwich: the sum over subjects of (eta_i + psi_i)^2, eta from the
        subdistribution counting processes, psi from estimating the censoring distribution."""
        t, x, code = self.t, self.x, self.code
        r, s0, s1, _ = self.sums(beta)
        xbar = s1 / s0[:, None]
        a = self.d / s0  # d_k / S0_k
        ag = a * self.g_k
        # eta_i = I(cause 1)(x_i - xbar(T_i)) - r_i sum_k w_ik d_k (x_i - xbar_k) / S0_k
        upto = np.searchsorted(self.times, t, side="right")  # number of t_k <= T_i
        ca = np.r_[0.0, np.cumsum(a)]
        cax = np.vstack([np.zeros(x.shape[1]), np.cumsum(a[:, None] * xbar, axis=0)])
        cag = np.r_[np.cumsum(ag[::-1])[::-1], 0.0]
        cagx = np.vstack([np.cumsum((ag[:, None] * xbar)[::-1], axis=0)[::-1], np.zeros(x.shape[1])])
        eta = -r[:, None] * (x * ca[upto][:, None] - cax[upto])
        later = np.where(self.other, 1 / self.g, 0.0)
        eta -= (r * later)[:, None] * (x * cag[upto][:, None] - cagx[upto])
        k_of = np.searchsorted(self.times, t)
        eta[self.fail] += x[self.fail] - xbar[k_of[self.fail]]
        # psi_i: q(u) at each censoring time u, with Y(u) at risk and c(u) censored there
        times, first = np.unique(t, return_index=True)
        y = len(t) - first
        c = np.add.reduceat((code == 0).astype(float), first)
        w2 = np.where(self.other, r / self.g, 0.0)
        c0 = np.concatenate([[0.0], np.cumsum(w2)])[first]  # other-cause failures before u
        c1 = np.vstack([np.zeros(x.shape[1]), np.cumsum(w2[:, None] * x, axis=0)])[first]
        kfrom = np.searchsorted(self.times, times, side="left")  # t_k >= u
        q = c1 * cag[kfrom][:, None] - c0[:, None] * cagx[kfrom]
        step = np.where(c > 0, 1.0, 0.0)[:, None] * q * (c / y**2)[:, None]
        cum = np.cumsum(step, axis=0)
        u_of = np.searchsorted(times, t)
        psi = -cum[u_of]
        cens = code == 0
        psi[cens] += q[u_of[cens]] / y[u_of[cens]][:, None]
        total = eta + psi
        return total.T @ total


def fine_gray(
    df: pd.DataFrame,
    duration_col: str,
    status_col: str,
    covariates: list[str],
    cause: int = 1,
    conf_level: float = 0.95,
) -> FineGrayResult:
    """Fine-Gray proportional subdistribution hazards of ``cause`` (R: ``cmprsk::crr`` with one
    censoring group and fixed covariates): coefficients by Newton-Raphson with crr's
    backtracking and stopping rule, robust (sandwich) standard errors as crr computes them,
    subdistribution hazard ratios with Wald CI and p. Rows with a missing value are left out and
    counted."""
    data, dropped = complete_rows(df, [duration_col, status_col, *covariates])
    t = durations(data[duration_col], duration_col)
    status = _status(data[status_col], status_col)
    x = data[covariates].to_numpy(dtype=float)
    order = np.argsort(t, kind="stable")
    t, status, x = t[order], status[order], x[order]
    code = np.where(status == 0, 0, np.where(status == cause, 1, 2))
    if not (code == 1).any():
        raise StatisticsInputError(f"no event of cause {cause}: a Fine-Gray model cannot be fitted")
    model = _FineGray(t, code, x)
    b = np.zeros(x.shape[1])
    converged, it = False, 0
    for it in range(11):  # crr: maxiter = 10, gtol = 1e-6
        f, grad, info = model.evaluate(b)
        if np.max(np.abs(grad) * np.maximum(np.abs(b), 1)) < max(abs(f), 1) * 1e-6:
            converged = True
            break
        if it == 10:
            break
        sc = -np.linalg.solve(info, grad)
        bn = b + sc
        fbn = model.evaluate(bn)[0]
        halvings = 0
        while not np.isfinite(fbn) or fbn > f + 1e-4 * float(sc @ grad):
            halvings += 1
            sc = sc * 0.5
            bn = b + sc
            fbn = model.evaluate(bn)[0]
            if halvings > 20:
                break
        if halvings > 20:
            break
        b = bn
    f, _, info = model.evaluate(b)
    h = np.linalg.inv(info)
    var = h @ model.robust_middle(b) @ h.T
    diag = np.diag(var)
    # a degenerate fit (a few patients, a covariate that separates them) can leave a variance
    # numerically below zero: its standard error is not estimable (NaN), never a warning
    se = np.sqrt(np.where(diag >= 0, diag, np.nan))
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    with np.errstate(over="ignore"):
        terms = tuple(
            FineGrayTerm(
                name,
                float(bb),
                float(s),
                float(np.exp(bb)),
                float(np.exp(bb - z * s)),
                float(np.exp(bb + z * s)),
                float(2 * stats.norm.sf(abs(bb / s))),
            )
            for name, bb, s in zip(covariates, b, se, strict=True)
        )
    return FineGrayResult(cause, terms, -f, len(t), int((code == 1).sum()), dropped, converged, it)
