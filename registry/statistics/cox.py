"""Cox proportional hazards with Efron ties (R ``coxph(..., ties = "efron")``) and the
proportional-hazards score test of R's ``cox.zph`` (transform = "km", per term and global).

Fitted by Newton-Raphson with step halving to a tight tolerance, so coefficients agree with
R well inside 1e-6. Rows with a missing covariate are dropped (R's ``na.omit``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.survival import kaplan_meier


class CoxConvergenceError(ValueError):
    """The partial likelihood has no finite maximum (e.g. a group without events)."""


@dataclass(frozen=True)
class CoxTerm:
    """One design column of a Cox model: coefficient, hazard ratio with CI, Wald p."""

    name: str
    coef: float
    se: float
    hr: float
    hr_lower: float
    hr_upper: float
    z: float
    p: float


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model (R: ``summary(coxph(...))``)."""

    columns: tuple[str, ...]
    terms: dict[str, tuple[str, ...]]  # model term -> its design columns
    coef: np.ndarray
    var: np.ndarray
    loglik: float
    loglik_null: float
    n: int
    events: int
    iterations: int
    rows: tuple[CoxTerm, ...]
    # kept for the proportional-hazards test
    _time: np.ndarray
    _event: np.ndarray
    _x: np.ndarray

    def term(self, column: str) -> CoxTerm:
        return next(r for r in self.rows if r.name == column)


@dataclass(frozen=True)
class ZphResult:
    """The proportional-hazards score test per term and global (R: ``cox.zph``)."""

    terms: dict[str, tuple[float, int, float]]  # term -> (chisq, df, p)
    global_chisq: float
    global_df: int
    global_p: float


def dummies(df: pd.DataFrame, column: str, reference: str, prefix: str | None = None) -> list[str]:
    """Add 0/1 columns for every level of ``column`` present other than ``reference``
    (R's treatment contrasts). Missing values stay missing. Returns the new column names."""
    levels = sorted(str(v) for v in df[column].dropna().unique() if str(v) != reference)
    names = []
    for lv in levels:
        name = f"{column if prefix is None else prefix}{lv}"
        df[name] = np.where(df[column].isna(), np.nan, (df[column].astype(str) == lv).astype(float))
        names.append(name)
    return names


def _efron_pieces(time: np.ndarray, event: np.ndarray, x: np.ndarray, beta: np.ndarray):
    """Per distinct event time: (loglik part, score part, information part)."""
    eta = x @ beta
    eta = eta - eta.mean()  # centring changes nothing but keeps exp() in range
    w = np.exp(eta)
    order = np.argsort(-time, kind="stable")
    t, d_, xs, ws, es = time[order], event[order], x[order], w[order], eta[order]
    p = x.shape[1]
    # cumulative sums over the descending time order give risk-set sums
    c0 = np.cumsum(ws)
    c1 = np.cumsum(ws[:, None] * xs, axis=0)
    c2 = np.cumsum(ws[:, None, None] * xs[:, :, None] * xs[:, None, :], axis=0)
    out = []
    uniq = np.unique(t[d_])[::-1]
    for tt in uniq:
        last = np.searchsorted(-t, -tt, side="right") - 1  # last index with time >= tt
        S0, S1, S2 = c0[last], c1[last], c2[last]
        here = (t == tt) & d_
        dd = int(here.sum())
        T0 = ws[here].sum()
        T1 = (ws[here][:, None] * xs[here]).sum(axis=0)
        T2 = (ws[here][:, None, None] * xs[here][:, :, None] * xs[here][:, None, :]).sum(axis=0)
        ll = es[here].sum()
        u = xs[here].sum(axis=0)
        info = np.zeros((p, p))
        for k in range(dd):
            f = k / dd
            s0, s1, s2 = S0 - f * T0, S1 - f * T1, S2 - f * T2
            ll -= np.log(s0)
            u = u - s1 / s0
            info += s2 / s0 - np.outer(s1, s1) / s0**2
        out.append((tt, ll, u, info))
    return out


def _loglik(time, event, x, beta):
    if np.max(np.abs(x @ beta - (x @ beta).mean()), initial=0.0) > 600:
        raise CoxConvergenceError("coefficients diverge (monotone likelihood)")
    pieces = _efron_pieces(time, event, x, beta)
    # centring eta leaves the Efron log-likelihood unchanged (one log term per event)
    ll = sum(pc[1] for pc in pieces)
    u = sum((pc[2] for pc in pieces), np.zeros(x.shape[1]))
    info = sum((pc[3] for pc in pieces), np.zeros((x.shape[1], x.shape[1])))
    return float(ll), u, info


def cox_ph(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    terms: dict[str, list[str]],
    conf_level: float = 0.95,
    max_iter: int = 50,
    tol: float = 1e-12,
) -> CoxResult:
    """Cox proportional-hazards model, Efron's method for ties, fitted by Newton-Raphson.

    R equivalent: ``coxph(Surv(time, event) ~ terms, ties = "efron")`` and its ``summary``
    (hazard ratio, Wald 95% CI, Wald p). Rows with a missing value in any column used are
    left out (``fit.n`` says how many remain).

    Parameters
    ----------
    df
        One row per subject.
    duration_col, event_col
        Follow-up time and event indicator (1 = event).
    terms
        Model terms: name -> numeric design columns (``dummies`` makes them for a factor).
    conf_level
        Confidence level of the hazard-ratio intervals.
    max_iter, tol
        Newton-Raphson limits; a fit that does not converge raises ``CoxConvergenceError``.

    Returns
    -------
    CoxResult
        One ``CoxTerm`` per design column, with n, events and the log-likelihoods.
    """
    columns = [c for cols in terms.values() for c in cols]
    data = df[[duration_col, event_col, *columns]].dropna()
    time = data[duration_col].to_numpy(dtype=float)
    event = data[event_col].to_numpy(dtype=float) > 0
    x = data[columns].to_numpy(dtype=float)
    p = x.shape[1]
    for j, col in enumerate(columns):
        vals = np.unique(x[:, j])
        if len(vals) < 2:
            raise CoxConvergenceError(f"{col} does not vary")
        if set(vals) <= {0.0, 1.0} and (not event[x[:, j] == 1].any() or not event[x[:, j] == 0].any()):
            raise CoxConvergenceError(f"no events on one side of {col}: its hazard ratio is infinite")
    beta = np.zeros(p)
    ll, u, info = _loglik(time, event, x, beta)
    ll_null = ll
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - iterations are reported
        step = np.linalg.solve(info, u)
        if not np.all(np.isfinite(step)):
            raise CoxConvergenceError("the Newton step is not finite")
        new = beta + step
        ll_new, u_new, info_new = _loglik(time, event, x, new)
        halvings = 0
        while ll_new < ll - 1e-12 and halvings < 30:
            step /= 2
            new = beta + step
            ll_new, u_new, info_new = _loglik(time, event, x, new)
            halvings += 1
        done = abs(ll_new - ll) <= tol * max(1.0, abs(ll_new)) and np.max(np.abs(step)) < 1e-9
        beta, ll, u, info = new, ll_new, u_new, info_new
        if done:
            break
    if np.max(np.abs(beta)) > 30 or not np.isfinite(ll):
        raise CoxConvergenceError("coefficients diverge (monotone likelihood)")
    var = np.linalg.inv(info)
    if not np.all(np.isfinite(var)) or np.any(np.diag(var) <= 0):
        # a singular or indefinite information matrix: collinear terms or a likelihood without a
        # finite maximum; a standard error would be NaN and the p-value meaningless
        raise CoxConvergenceError("the information matrix is singular (collinear or monotone terms)")
    se = np.sqrt(np.diag(var))
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    with np.errstate(over="ignore"):  # a very wide interval ends at infinity, as in R
        rows = _rows(columns, beta, se, z)
    return CoxResult(
        columns=tuple(columns),
        terms={k: tuple(v) for k, v in terms.items()},
        coef=beta,
        var=var,
        loglik=ll,
        loglik_null=ll_null,
        n=len(time),
        events=int(event.sum()),
        iterations=it,
        rows=rows,
        _time=time,
        _event=event,
        _x=x,
    )


def _rows(columns: list[str], beta: np.ndarray, se: np.ndarray, z: float) -> tuple[CoxTerm, ...]:
    return tuple(
        CoxTerm(
            name=c,
            coef=float(b),
            se=float(s),
            hr=float(np.exp(b)),
            hr_lower=float(np.exp(b - z * s)),
            hr_upper=float(np.exp(b + z * s)),
            z=float(b / s),
            p=float(stats.chi2.sf((b / s) ** 2, 1)),
        )
        for c, b, s in zip(columns, beta, se, strict=True)
    )


def cox_zph(fit: CoxResult) -> ZphResult:
    """R's ``cox.zph(fit)`` with the default ``transform = "km"``: a score test, at the fitted
    coefficients, for adding g(t) * x terms, g = 1 - KM(t-) centred over the events."""
    time, event, x = fit._time, fit._event, fit._x
    p = x.shape[1]
    km = kaplan_meier(pd.DataFrame({"t": time, "e": event.astype(int)}), "t", "e")
    idx = np.searchsorted(km.time, time, side="left")  # times strictly before each t
    g_all = 1 - np.concatenate([[1.0], km.surv])[idx]
    g_all = g_all - g_all[event].mean()
    g_of_time = dict(zip(time[event], g_all[event], strict=False))
    u2 = np.zeros(p)
    imat = np.zeros((2 * p, 2 * p))
    for tt, _ll, u, info in _efron_pieces(time, event, x, fit.coef):
        g = g_of_time[tt]
        u2 += g * u
        imat[:p, :p] += info
        imat[:p, p:] += g * info
        imat[p:, :p] += g * info
        imat[p:, p:] += g * g * info
    out: dict[str, tuple[float, int, float]] = {}
    col_pos = {c: i for i, c in enumerate(fit.columns)}
    for name, cols in fit.terms.items():
        jj = [col_pos[c] for c in cols]
        kk = list(range(p)) + [p + j for j in jj]
        uu = np.concatenate([np.zeros(p), u2[jj]])
        chi = float(np.linalg.solve(imat[np.ix_(kk, kk)], uu) @ uu)
        out[name] = (chi, len(jj), float(stats.chi2.sf(chi, len(jj))))
    uu = np.concatenate([np.zeros(p), u2])
    chi = float(np.linalg.solve(imat, uu) @ uu)
    return ZphResult(out, chi, p, float(stats.chi2.sf(chi, p)))
