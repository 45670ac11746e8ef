"""Cox proportional hazards with Efron ties (R ``coxph(..., ties = "efron")``) and the
proportional-hazards score test of R's ``cox.zph`` (transform = "km", per term and global).

Fitted by Newton-Raphson with step halving to a tight tolerance, so coefficients agree with
R well inside 1e-6. Rows with a missing covariate are dropped (R's ``na.omit``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from registry.statistics.inputs import complete_rows, durations, event_indicator
from registry.statistics.survival import kaplan_meier


class CoxConvergenceError(ValueError):
    """The model cannot be fitted at all (no events, no estimable term, a singular system)."""


ESTIMATED, ALIASED, INFINITE = "estimated", "aliased", "infinite"
EPS = 1e-9  # R coxph.control(eps): the log-likelihood's relative convergence
TOLER_INF = EPS**0.5  # R coxph.control(toler.inf): the "coefficient may be infinite" check


@dataclass(frozen=True)
class CoxTerm:
    """One design column of a Cox model: coefficient, hazard ratio with CI, Wald p. ``status`` is
    ``estimated``, ``aliased`` (a linear combination of earlier columns: not estimated, as R's NA)
    or ``infinite`` (monotone likelihood: the estimate runs off to infinity); the numbers are NaN
    unless estimated."""

    name: str
    coef: float
    se: float
    hr: float
    hr_lower: float
    hr_upper: float
    z: float
    p: float
    status: str = ESTIMATED


@dataclass(frozen=True)
class CoxResult:
    """A fitted Cox model (R: ``summary(coxph(...))``)."""

    columns: tuple[str, ...]
    terms: dict[str, tuple[str, ...]]  # model term -> its design columns
    coef: np.ndarray  # the estimable columns' coefficients (``used``)
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
    _x: np.ndarray  # the estimable columns only
    used: tuple[str, ...] = ()  # the columns that were estimated (not aliased)
    n_dropped: int = 0  # rows left out for a missing value
    warnings: tuple[str, ...] = ()

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


@dataclass(frozen=True)
class _Sorted:
    """Rows sorted by time, latest first, with what the Efron sums need: for each distinct event
    time (latest first) the end of its risk set in the sorted rows, and for each event row its
    time's index and its rank among that time's tied events (as a fraction)."""

    x: np.ndarray
    event_rows: np.ndarray  # indices (sorted order) of the event rows
    group: np.ndarray  # each event row's distinct-time index
    starts: np.ndarray  # first event row of each distinct time (in event_rows)
    risk_end: np.ndarray  # per distinct time: last sorted row with time >= it
    frac: np.ndarray  # per event row: k / d, k its rank within the tie, d the tie's size
    times: np.ndarray  # the distinct event times, latest first


def _prepare(time: np.ndarray, event: np.ndarray, x: np.ndarray) -> _Sorted:
    order = np.argsort(-time, kind="stable")
    t, e, xs = time[order], event[order], x[order]
    event_rows = np.flatnonzero(e)
    et = t[event_rows]
    starts = np.flatnonzero(np.r_[True, et[1:] != et[:-1]])
    group = np.repeat(np.arange(len(starts)), np.diff(np.r_[starts, len(et)]))
    sizes = np.diff(np.r_[starts, len(et)])
    frac = (np.arange(len(et)) - starts[group]) / sizes[group]
    times = et[starts]
    risk_end = np.searchsorted(-t, -times, side="right") - 1
    return _Sorted(xs, event_rows, group, starts, risk_end, frac, times)


def _efron(s: _Sorted, beta: np.ndarray, per_time: bool = False):
    """Efron log-likelihood, score and information at ``beta`` in one pass of cumulative sums
    (time linear in rows after sorting). With ``per_time``: the score and information of each
    distinct event time instead of the totals (for ``cox.zph``)."""
    x = s.x
    eta = x @ beta
    eta = eta - eta.mean()  # centring changes nothing (one log term per event) but keeps exp() in range
    w = np.exp(eta)
    wx = w[:, None] * x
    s0 = np.cumsum(w)[s.risk_end]
    s1 = np.cumsum(wx, axis=0)[s.risk_end]
    we, xe = w[s.event_rows], x[s.event_rows]
    t0 = np.add.reduceat(we, s.starts)
    t1 = np.add.reduceat(we[:, None] * xe, s.starts, axis=0)
    g, f = s.group, s.frac
    d0 = s0[g] - f * t0[g]
    a = (s1[g] - f[:, None] * t1[g]) / d0[:, None]
    u_e = xe - a
    if per_time:
        s2 = np.cumsum(wx[:, :, None] * x[:, None, :], axis=0)[s.risk_end]
        t2 = np.add.reduceat(we[:, None, None] * xe[:, :, None] * xe[:, None, :], s.starts, axis=0)
        info_e = (s2[g] - f[:, None, None] * t2[g]) / d0[:, None, None] - a[:, :, None] * a[:, None, :]
        return np.add.reduceat(u_e, s.starts, axis=0), np.add.reduceat(info_e, s.starts, axis=0)
    # The information summed over events without a (rows x p x p) array: each row's w x x' is
    # counted once per event whose risk set holds it, divided by that event's d0, so it enters
    # with the weight c_i = sum of 1/d0 over those events (a reverse cumulative sum over the
    # risk-set ends); Efron's tie correction likewise weights each event row by the sum of
    # f/d0 over its tie. Two matrix products instead of a cumulative sum of p x p matrices.
    per_end = np.zeros(len(w))
    np.add.at(per_end, s.risk_end, np.bincount(g, weights=1.0 / d0, minlength=len(s.starts)))
    c = np.cumsum(per_end[::-1])[::-1]
    h = np.bincount(g, weights=f / d0, minlength=len(s.starts))[g]
    info = (x.T * (w * c)) @ x - (xe.T * (we * h)) @ xe - a.T @ a
    ll = float(eta[s.event_rows].sum() - np.log(d0).sum())
    return ll, u_e.sum(axis=0), info


def _aliased(x: np.ndarray) -> list[bool]:
    """Columns that are (numerically) a linear combination of the columns before them or constant,
    after centring (a Cox model has no intercept to absorb a constant): R reports them as NA."""
    xc = x - x.mean(axis=0)
    basis = np.zeros((x.shape[0], 0))
    out = []
    for j in range(x.shape[1]):
        col = xc[:, j]
        norm = float(np.linalg.norm(col))
        resid = col - basis @ (basis.T @ col) if basis.shape[1] else col
        r = float(np.linalg.norm(resid))
        if norm == 0 or r <= 1e-7 * norm:
            out.append(True)
            continue
        basis = np.column_stack([basis, resid / r])
        out.append(False)
    return out


def cox_ph(
    df: pd.DataFrame,
    duration_col: str,
    event_col: str,
    terms: dict[str, list[str]],
    conf_level: float = 0.95,
    max_iter: int = 40,
    tol: float = 1e-12,
) -> CoxResult:
    """Cox proportional-hazards model, Efron's method for ties, fitted by Newton-Raphson.

    R equivalent: ``coxph(Surv(time, event) ~ terms, ties = "efron")`` and its ``summary``
    (hazard ratio, Wald 95% CI, Wald p). As R does: rows with a missing value in any column used
    are left out and counted; a column that is a linear combination of earlier ones is aliased
    (not estimated, a warning names it); a coefficient that keeps growing while the
    log-likelihood has converged (monotone likelihood) is flagged infinite by R's check (the last
    Newton step larger than ``eps`` and than ``sqrt(eps)`` times the coefficient), whatever the
    covariate's units.

    Parameters
    ----------
    df
        One row per subject.
    duration_col, event_col
        Follow-up time and event indicator (0/1 or boolean).
    terms
        Model terms: name -> numeric design columns (``dummies`` makes them for a factor).
    conf_level
        Confidence level of the hazard-ratio intervals.
    max_iter, tol
        Newton-Raphson limits (the log-likelihood's relative change, and steps below 1e-9).

    Returns
    -------
    CoxResult
        One ``CoxTerm`` per design column (aliased and infinite ones flagged), with n, events,
        rows dropped, warnings and the log-likelihoods.

    Raises
    ------
    StatisticsInputError
        Event values other than 0/1, negative times.
    CoxConvergenceError
        No events, or no estimable column.
    """
    columns = [c for cols in terms.values() for c in cols]
    data, dropped = complete_rows(df, [duration_col, event_col, *columns])
    time = durations(data[duration_col], duration_col)
    event = event_indicator(data[event_col], event_col)
    x_all = data[columns].to_numpy(dtype=float)
    if not event.any():
        raise CoxConvergenceError("no events: the model cannot be fitted")
    warnings = []
    if dropped:
        warnings.append(f"{dropped} rows with a missing value left out")
    aliased = _aliased(x_all) if len(columns) else []
    used = [c for c, a in zip(columns, aliased, strict=True) if not a]
    if len(used) < len(columns):
        names = ", ".join(c for c, a in zip(columns, aliased, strict=True) if a)
        warnings.append(
            f"aliased (constant, or a linear combination of earlier terms), not estimated: {names}"
        )
    if not used:
        raise CoxConvergenceError("no estimable term (every column is constant or aliased)")
    x = x_all[:, [columns.index(c) for c in used]]
    prep = _prepare(time, event, x)
    beta, ll, u, info, step, it, ll_null = _newton(prep, x, len(used), max_iter, tol)
    try:
        last = np.linalg.lstsq(info, u, rcond=None)[0]
    except np.linalg.LinAlgError:  # pragma: no cover - lstsq does not raise on singular input
        last = step
    infinite = (np.abs(last) > EPS) & (np.abs(last) > TOLER_INF * np.abs(beta))
    if infinite.any():
        names = ", ".join(c for c, bad in zip(used, infinite, strict=True) if bad)
        warnings.append(
            f"coefficient may be infinite (monotone likelihood; the log-likelihood converged while it "
            f"kept growing): {names}"
        )
    var = _variance(info, infinite)
    z = stats.norm.ppf(1 - (1 - conf_level) / 2)
    estimates = dict(
        zip(used, zip(beta, np.sqrt(np.maximum(np.diag(var), 0)), infinite, strict=True), strict=True)
    )
    rows = _rows(columns, estimates, z)
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
        rows=tuple(rows),
        _time=time,
        _event=event,
        _x=x,
        used=tuple(used),
        n_dropped=dropped,
        warnings=tuple(warnings),
    )


def _newton(
    prep: Any, x: np.ndarray, k: int, max_iter: int, tol: float
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray, int, float]:
    """Newton-Raphson from zero with step halving: the coefficients, log-likelihood, score,
    information, last step, iterations and the log-likelihood at zero (stopping as R's coxph
    does: converged, a flat likelihood three times, or a coefficient running off to infinity)."""
    beta = np.zeros(k)
    ll, u, info = _efron(prep, beta)
    ll_null = ll
    it, flat, step = 0, 0, np.zeros(k)
    for it in range(1, max_iter + 1):  # noqa: B007 - ``it`` is reported
        try:
            step = np.linalg.solve(info, u)
        except np.linalg.LinAlgError:
            break
        new, ll_new, u_new, info_new, step = _halved(prep, beta, step, ll)
        if not np.isfinite(ll_new):
            break
        change = abs(ll_new - ll)
        beta, ll, u, info = new, ll_new, u_new, info_new
        if change <= tol * max(1.0, abs(ll)) and np.max(np.abs(step)) < 1e-9:
            break
        flat = flat + 1 if change <= EPS * max(1.0, abs(ll)) else 0
        if flat >= 3:  # the likelihood is flat and the steps are not shrinking: stop there
            break
        if np.max(np.abs(x @ beta - (x @ beta).mean()), initial=0.0) > 500:
            break  # exp() would overflow: a coefficient is running off to infinity
    return beta, ll, u, info, step, it, ll_null


def _halved(
    prep: Any, beta: np.ndarray, step: np.ndarray, ll: float
) -> tuple[np.ndarray, float, np.ndarray, np.ndarray, np.ndarray]:
    """The step, halved (at most 30 times) while it does not improve the log-likelihood."""
    new = beta + step
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        ll_new, u_new, info_new = _efron(prep, new)
    halvings = 0
    while (not np.isfinite(ll_new) or ll_new < ll - 1e-12) and halvings < 30:
        step = step / 2
        new = beta + step
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ll_new, u_new, info_new = _efron(prep, new)
        halvings += 1
    return new, ll_new, u_new, info_new, step


def _rows(columns: list[str], estimates: dict[str, Any], z: float) -> list[CoxTerm]:
    """One row a design column: estimated, aliased or infinite."""
    rows = []
    with np.errstate(over="ignore"):  # a very wide interval ends at infinity, as in R
        for c in columns:
            if c not in estimates:
                rows.append(_missing_term(c, ALIASED))
            elif estimates[c][2]:
                rows.append(_missing_term(c, INFINITE))
            else:
                b, se, _ = estimates[c]
                rows.append(_term(c, float(b), float(se), z))
    return rows


def _variance(info: np.ndarray, infinite: np.ndarray) -> np.ndarray:
    """The inverse information; where a coefficient is infinite, that of the others alone."""
    var = np.full(info.shape, np.nan)
    keep = np.flatnonzero(~infinite)
    if len(keep):
        block = info[np.ix_(keep, keep)]
        try:
            inv = np.linalg.inv(block)
        except np.linalg.LinAlgError:
            raise CoxConvergenceError("the information matrix is singular") from None
        if not np.all(np.isfinite(inv)) or np.any(np.diag(inv) <= 0):
            raise CoxConvergenceError("the information matrix is singular")
        var[np.ix_(keep, keep)] = inv
    return var


def _term(name: str, b: float, se: float, z: float) -> CoxTerm:
    return CoxTerm(
        name=name,
        coef=b,
        se=se,
        hr=float(np.exp(b)),
        hr_lower=float(np.exp(b - z * se)),
        hr_upper=float(np.exp(b + z * se)),
        z=b / se,
        p=float(stats.chi2.sf((b / se) ** 2, 1)),
    )


def _missing_term(name: str, status: str) -> CoxTerm:
    nan = float("nan")
    return CoxTerm(name, nan, nan, nan, nan, nan, nan, nan, status)


def cox_zph(fit: CoxResult) -> ZphResult:
    """R's ``cox.zph(fit)`` with the default ``transform = "km"``: a score test, at the fitted
    coefficients, for adding g(t) * x terms, g = 1 - KM(t-) centred over the events."""
    time, event, x = fit._time, fit._event, fit._x
    if any(r.status == INFINITE for r in fit.rows):
        raise CoxConvergenceError("cox.zph needs finite coefficients (monotone likelihood)")
    p = x.shape[1]
    km = kaplan_meier(pd.DataFrame({"t": time, "e": event.astype(int)}), "t", "e")
    idx = np.searchsorted(km.time, time, side="left")  # times strictly before each t
    g_all = 1 - np.concatenate([[1.0], km.surv])[idx]
    g_all = g_all - g_all[event].mean()
    g_of_time = dict(zip(time[event], g_all[event], strict=False))
    prep = _prepare(time, event, x)
    u_t, info_t = _efron(prep, fit.coef, per_time=True)
    g = np.array([g_of_time[t] for t in prep.times])
    u2 = (g[:, None] * u_t).sum(axis=0)
    info = info_t.sum(axis=0)
    ginfo = (g[:, None, None] * info_t).sum(axis=0)
    imat = np.block([[info, ginfo], [ginfo, (g[:, None, None] ** 2 * info_t).sum(axis=0)]])
    out: dict[str, tuple[float, int, float]] = {}
    col_pos = {c: i for i, c in enumerate(fit.used)}
    for name, cols in fit.terms.items():
        jj = [col_pos[c] for c in cols if c in col_pos]
        if not jj:
            continue
        kk = list(range(p)) + [p + j for j in jj]
        uu = np.concatenate([np.zeros(p), u2[jj]])
        chi = float(np.linalg.solve(imat[np.ix_(kk, kk)], uu) @ uu)
        out[name] = (chi, len(jj), float(stats.chi2.sf(chi, len(jj))))
    uu = np.concatenate([np.zeros(p), u2])
    chi = float(np.linalg.solve(imat, uu) @ uu)
    return ZphResult(out, chi, p, float(stats.chi2.sf(chi, p)))
