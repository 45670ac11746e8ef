"""IMWG response and progression of each line of therapy, derived from the laboratory series
(the rules in docs/derivations.md, "Response and progression from the laboratory series").

Pure functions over one patient's samples (canonical units, ``registry.core.labs``) and lines:
for each line the baseline, the parameters measurable there, the response category at every
assessment with the rule that decided it, confirmation, the best response (confirmed, and an
unconfirmed one apart), and the first confirmed progression (PD) with how it was confirmed.
"""

from __future__ import annotations

import bisect
import datetime as dt
import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# categories, best first; PD is judged before the others at every assessment
CATEGORIES = ("sCR", "CR", "VGPR", "PR", "MR", "SD", "PD")
RANK = {c: len(CATEGORIES) - i for i, c in enumerate(CATEGORIES)}  # sCR 7 ... PD 1
MEASURED = ("serum_m_protein", "urine_m_protein", "flc_kappa", "flc_lambda", "serum_ife", "urine_ife")


def _r(default: float, doc: str) -> Any:
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True)
class ResponseParams:
    """Every number of the response and progression rules, with its default; the generated
    parameter table of docs/derivations.md reads the ``doc`` of each."""

    baseline_window_days: int = _r(
        60, "a line's baseline: each test's last value within this before its start"
    )
    assessment_window_days: int = _r(
        30, "at an assessment a test without a value that day takes its latest within this before"
    )
    pd_confirmation_days: int = _r(
        60, "a PD is confirmed by a regimen with a new non-steroid drug starting within this after it"
    )
    day100_window_days: int = _r(
        30,
        "the derived day-100 response: line 1's assessment nearest day 100 after the index "
        "transplant, within this",
    )
    serum_measurable: float = _r(1.0, "measurable serum M-protein, g/dL")
    urine_measurable: float = _r(200.0, "measurable urine M-protein, mg/24h")
    flc_measurable: float = _r(100.0, "measurable involved FLC (with an abnormal ratio), mg/L")
    ratio_low: float = _r(0.26, "the normal kappa/lambda ratio's lower bound")
    ratio_high: float = _r(1.65, "the normal kappa/lambda ratio's upper bound")
    marrow_cr: float = _r(5.0, "CR needs fewer marrow plasma cells than this, %")
    pd_increase: float = _r(0.25, "PD: the rise above the nadir, as a fraction of it")
    pd_serum_abs: float = _r(0.5, "PD: the serum M-protein rise, g/dL ...")
    pd_serum_abs_high: float = _r(1.0, "... or this when the nadir is at least pd_serum_high_nadir")
    pd_serum_high_nadir: float = _r(5.0, "the nadir (g/dL) from which a serum PD needs pd_serum_abs_high")
    pd_urine_abs: float = _r(200.0, "PD: the urine M-protein rise, mg/24h")
    pd_flc_abs: float = _r(100.0, "PD: the dFLC rise, mg/L (strictly more)")
    pd_marrow_points: float = _r(10.0, "PD: the marrow plasma-cell rise, percentage points")


@dataclass(frozen=True)
class Sample:
    date: dt.date
    test: str
    value: float | None = None  # canonical unit
    result: str | None = None  # immunofixation: positive | negative
    key: str | None = None  # the sample row's key (a laboratory progression names its first PD sample)


@dataclass(frozen=True)
class Line:
    number: int
    start: dt.date
    next_start: dt.date | None = None
    # starts of later regimens with a non-steroid drug not given in this line (confirm a PD)
    new_drug_starts: tuple[dt.date, ...] = ()


@dataclass
class Assessment:
    date: dt.date
    category: str
    basis: str  # the rule that decided it, e.g. "PR: serum -62%"
    confirmed: bool = False
    # the values it used: serum (g/dL), urine (mg/24h), dflc (mg/L), marrow (%)
    values: dict[str, float] = field(default_factory=dict)


@dataclass
class LineResponse:
    line: int
    measurable: tuple[str, ...]
    baseline: dict[str, float | str]
    assessments: list[Assessment] = field(default_factory=list)
    best: str | None = None  # best confirmed category; "not_evaluable" without a measurable baseline
    best_date: dt.date | None = None
    best_unconfirmed: str | None = None  # a better category met only at the last assessment
    progression: dt.date | None = None  # the first confirmed PD
    progression_basis: str | None = None
    progression_key: str | None = None  # the key of its first PD sample
    unconfirmed_pd: list[dt.date] = field(default_factory=list)


def series_of(samples: list[Sample] | tuple[Sample, ...]) -> _Series:
    """A patient's samples indexed by test and date, to judge several lines from."""
    return _Series(list(samples))


class _Series:
    """One patient's samples by test, in date order (a test sampled twice a day: the last)."""

    def __init__(self, samples: list[Sample]) -> None:
        by: dict[str, dict[dt.date, Sample]] = {}
        for s in sorted(samples, key=lambda s: s.date):
            by.setdefault(s.test, {})[s.date] = s
        self.by = {t: sorted(v.values(), key=lambda s: s.date) for t, v in by.items()}
        self.days = {t: [s.date for s in v] for t, v in self.by.items()}  # for bisection

    def latest(self, test: str, day: dt.date, since: dt.date) -> Sample | None:
        """The last sample of ``test`` taken from ``since`` to ``day`` (both included)."""
        days = self.days.get(test)
        if not days:
            return None
        i = bisect.bisect_right(days, day) - 1
        return self.by[test][i] if i >= 0 and days[i] >= since else None

    def dates(self, tests: tuple[str, ...], after: dt.date, before: dt.date | None) -> list[dt.date]:
        return sorted(
            {
                s.date
                for t in tests
                for s in self.by.get(t, [])
                if s.date > after and (before is None or s.date < before)
            }
        )


def _values(series: _Series, day: dt.date, window: int) -> dict[str, Sample]:
    since = day - dt.timedelta(days=window)
    return {
        t: s for t in (*MEASURED, "bm_plasma_cells") for s in [series.latest(t, day, since)] if s is not None
    }


def _dflc(values: dict[str, Sample], involved: str | None) -> float | None:
    k, lam = values.get("flc_kappa"), values.get("flc_lambda")
    if k is None or lam is None or k.value is None or lam.value is None or involved is None:
        return None
    return k.value - lam.value if involved == "kappa" else lam.value - k.value


def _ratio_normal(values: dict[str, Sample], p: ResponseParams) -> bool:
    k, lam = values.get("flc_kappa"), values.get("flc_lambda")
    if k is None or lam is None or k.value is None or not lam.value:
        return False
    return p.ratio_low <= k.value / lam.value <= p.ratio_high


def _involved(values: dict[str, Sample], p: ResponseParams) -> str | None:
    k, lam = values.get("flc_kappa"), values.get("flc_lambda")
    if k is None or lam is None or k.value is None or lam.value is None:
        return None
    if lam.value == 0:
        return "kappa" if k.value > 0 else None
    ratio = k.value / lam.value
    return "kappa" if ratio > p.ratio_high else "lambda" if ratio < p.ratio_low else None


def _pct(now: float, base: float) -> float:
    return (now - base) / base * 100 if base else 0.0


def _category(
    values: dict[str, Sample],
    base: dict[str, float],
    measurable: tuple[str, ...],
    involved: str | None,
    marrow: float | None,
    p: ResponseParams,
) -> tuple[str, str]:
    """The best response category an assessment meets (PD apart), with its basis."""
    now, change, described = _changes(values, base, measurable, involved)
    ife = values.get("serum_ife"), values.get("urine_ife")
    negative = all(s is not None and s.result == "negative" for s in ife)
    if negative and marrow is not None and marrow < p.marrow_cr:
        if _ratio_normal(values, p):
            return "sCR", f"sCR: immunofixation negative, marrow {marrow:g}%, FLC ratio normal"
        return "CR", f"CR: immunofixation negative, marrow {marrow:g}%"
    cr_short = " (no marrow: at most VGPR)" if negative and marrow is None else ""
    flc_only = measurable == ("flc",)
    for category, criteria in _criteria(now["urine"], change, p):
        if category in ("VGPR", "MR") and flc_only:
            continue  # light-chain-only disease: no VGPR, no MR
        if all(criteria.get(k, False) for k in measurable):  # every measurable parameter meets it
            return category, f"{category}: {described}{cr_short if category != 'MR' else ''}"
    return "SD", f"SD: {described}"


def _changes(
    values: dict[str, Sample], base: dict[str, float], measurable: tuple[str, ...], involved: str | None
) -> tuple[dict[str, float | None], dict[str, float | None], str]:
    """Each parameter's value now, each measurable one's change from the baseline (%), and the
    changes described ("serum -62%")."""
    now: dict[str, float | None] = {
        "serum": values["serum_m_protein"].value if "serum_m_protein" in values else None,
        "urine": values["urine_m_protein"].value if "urine_m_protein" in values else None,
        "flc": _dflc(values, involved),
    }
    change = {k: None if now[k] is None else _pct(now[k], base[k]) for k in measurable}  # type: ignore[arg-type]
    described = ", ".join(f"{k} {change[k]:+.0f}%" for k in measurable if change[k] is not None) or "no value"
    return now, change, described


def _criteria(
    urine: float | None, change: Mapping[str, float | None], p: ResponseParams
) -> list[tuple[str, dict[str, bool]]]:
    """Each partial category, best first, with whether each parameter meets it."""

    def down(k: str, pct: float) -> bool:
        c = change.get(k)
        return c is not None and -c >= pct

    low_urine = urine is not None and urine < p.urine_measurable
    return [
        ("VGPR", {"serum": down("serum", 90), "urine": urine is not None and urine < 100}),
        ("PR", {"serum": down("serum", 50), "urine": down("urine", 90) or low_urine, "flc": down("flc", 50)}),
        ("MR", {"serum": down("serum", 25), "urine": down("urine", 50)}),
    ]


def nadirs(values: list[float]) -> Iterator[float]:
    """The nadir of ``values[:1]``, ``values[:2]``, ... in one pass: the lowest level held by two
    consecutive values, min(v0, min_i max(v_i, v_i+1)), over the values after the baseline v0
    (a single low value not repeated is not a nadir)."""
    held = (max(a, b) for a, b in itertools.pairwise(values))
    return itertools.accumulate(held, min, initial=values[0])


def nadir(values: list[float]) -> float:
    """The nadir of all of ``values`` (the last of ``nadirs``)."""
    *_, last = nadirs(values)
    return last


def _pd_meets(parameter: str, value: float, low: float, p: ResponseParams) -> bool:
    rise = value - low
    if rise < p.pd_increase * low or rise <= 0:
        return False
    if parameter == "serum":
        return rise >= (p.pd_serum_abs_high if low >= p.pd_serum_high_nadir else p.pd_serum_abs)
    if parameter == "urine":
        return rise >= p.pd_urine_abs
    if parameter == "flc":
        return rise > p.pd_flc_abs
    return rise >= p.pd_marrow_points  # marrow, in percentage points


def _own_series(
    series: _Series, parameter: str, line: Line, involved: str | None
) -> list[tuple[dt.date, float, str | None]]:
    """A parameter's own samples after the line's start and before the next line's."""

    def inside(d: dt.date) -> bool:
        return d > line.start and (line.next_start is None or d < line.next_start)

    if parameter == "flc":
        out: list[tuple[dt.date, float, str | None]] = []
        for d in series.dates(("flc_kappa", "flc_lambda"), line.start, line.next_start):
            pair = {t: s for t in ("flc_kappa", "flc_lambda") for s in [series.latest(t, d, d)] if s}
            v = _dflc(pair, involved)
            if v is not None:
                out.append((d, v, pair["flc_kappa"].key))
        return out
    test = {"serum": "serum_m_protein", "urine": "urine_m_protein", "marrow": "bm_plasma_cells"}[parameter]
    return [
        (s.date, s.value, s.key) for s in series.by.get(test, []) if inside(s.date) and s.value is not None
    ]


def _progression(
    series: _Series,
    line: Line,
    base: dict[str, float],
    judged: tuple[str, ...],
    involved: str | None,
    p: ResponseParams,
) -> tuple[tuple[dt.date, str, str | None] | None, list[dt.date], dict[dt.date, str]]:
    """The first confirmed PD (date, basis, sample key), the unconfirmed PD dates, and every
    PD date."""
    candidates: list[tuple[dt.date, str, str, str | None]] = []  # (date, basis, how confirmed or "", key)
    every: dict[dt.date, str] = {}
    for parameter in judged:
        own = _own_series(series, parameter, line, involved)
        # each sample against the nadir of the baseline and the values before it
        lows = nadirs([base[parameter], *(v for _, v, _ in own)])
        for i, ((day, value, key), low) in enumerate(zip(own, lows, strict=False)):
            if not _pd_meets(parameter, value, low, p):
                continue
            basis = f"PD: {parameter} {value:g} against a nadir of {low:g}"
            every.setdefault(day, basis)
            if parameter == "marrow":
                candidates.append((day, basis, "the marrow needs no repeat", key))
                continue
            later = own[i + 1] if i + 1 < len(own) else None
            if later is not None and _pd_meets(parameter, later[1], low, p):
                candidates.append((day, basis, f"confirmed by the next sample ({later[0]})", key))
                continue
            limit = day + dt.timedelta(days=p.pd_confirmation_days)
            started = [d for d in line.new_drug_starts if day < d <= limit]
            if started:
                candidates.append((day, basis, f"confirmed by new therapy on {started[0]}", key))
                continue
            candidates.append((day, basis, "", key))
    confirmed = sorted((c for c in candidates if c[2]), key=lambda c: c[0])
    if not confirmed:
        return None, sorted(c[0] for c in candidates), every
    first = confirmed[0]
    unconfirmed = sorted(c[0] for c in candidates if not c[2] and c[0] < first[0])
    return (first[0], f"{first[1]}, {first[2]}", first[3]), unconfirmed, every


def _baseline(
    series: _Series, start: dt.date, p: ResponseParams
) -> tuple[dict[str, float], str | None, tuple[str, ...]]:
    """A line's baseline values (serum, urine; dFLC only for light-chain-only disease), the
    involved light chain and the parameters measurable there."""
    at_start = _values(series, start, p.baseline_window_days)
    base: dict[str, float] = {}
    for name, test in (("serum", "serum_m_protein"), ("urine", "urine_m_protein")):
        sample = at_start.get(test)
        if sample is not None and sample.value is not None:
            base[name] = sample.value
    involved = _involved(at_start, p)
    measurable = tuple(
        k
        for k, limit in (("serum", p.serum_measurable), ("urine", p.urine_measurable))
        if base.get(k, 0.0) >= limit
    )
    if not measurable and involved is not None:
        inv = at_start["flc_kappa" if involved == "kappa" else "flc_lambda"].value or 0.0
        dflc = _dflc(at_start, involved)
        if inv >= p.flc_measurable and dflc is not None:
            base["flc"] = dflc
            measurable = ("flc",)
    return base, involved, measurable


def line_response(
    samples: list[Sample] | _Series, line: Line, params: ResponseParams | None = None
) -> LineResponse:
    """The response and progression of one line from the patient's samples (or from their
    ``series``, built once for all of a patient's lines)."""
    p = params or ResponseParams()
    series = samples if isinstance(samples, _Series) else _Series(samples)
    base, involved, measurable = _baseline(series, line.start, p)
    shown_base: dict[str, float | str] = {k: v for k, v in base.items()}
    if not measurable:
        return LineResponse(line.number, (), shown_base, best="not_evaluable")
    marrow_base = series.latest(
        "bm_plasma_cells", line.start, line.start - dt.timedelta(days=p.baseline_window_days)
    )
    judged = measurable
    if marrow_base is not None and marrow_base.value is not None:
        judged = (*measurable, "marrow")
        base["marrow"] = shown_base["marrow"] = marrow_base.value
    out = LineResponse(line.number, measurable, shown_base)
    first, out.unconfirmed_pd, pd_dates = _progression(series, line, base, judged, involved, p)
    if first is not None:
        out.progression, out.progression_basis, out.progression_key = first
    _assess(out, series, line, base, involved, pd_dates, p)
    _best(out)
    return out


def _assess(
    out: LineResponse,
    series: _Series,
    line: Line,
    base: dict[str, float],
    involved: str | None,
    pd_dates: dict[dt.date, str],
    p: ResponseParams,
) -> None:
    """Every assessment of the line, up to its progression (and the sample confirming it)."""
    for day in series.dates(MEASURED, line.start, line.next_start):
        after = out.progression is not None and day > out.progression
        if after and day not in pd_dates:
            break  # after the line's progression nothing is judged again
        values = _values(series, day, p.assessment_window_days)
        marrow = series.latest("bm_plasma_cells", day, line.start)
        used = _used(values, involved, marrow)
        if day in pd_dates:
            out.assessments.append(Assessment(day, "PD", pd_dates[day], values=used))
            if after:
                break
            continue
        marrow_value = marrow.value if marrow else None
        category, basis = _category(values, base, out.measurable, involved, marrow_value, p)
        out.assessments.append(Assessment(day, category, basis, values=used))


def _used(values: dict[str, Sample], involved: str | None, marrow: Sample | None) -> dict[str, float]:
    """The numbers an assessment used, by parameter."""
    out: dict[str, float] = {}
    for name, test in (("serum", "serum_m_protein"), ("urine", "urine_m_protein")):
        s = values.get(test)
        if s is not None and s.value is not None:
            out[name] = s.value
    dflc = _dflc(values, involved)
    if dflc is not None:
        out["dflc"] = dflc
    if marrow is not None and marrow.value is not None:
        out["marrow"] = marrow.value
    return out


def _best(out: LineResponse) -> None:
    """Confirmation (the next assessment meets the category or a better one) and the best
    confirmed response, dated by the first of its two assessments; a better category met
    only at the last assessment is the unconfirmed best."""
    a = out.assessments
    best_rank, best_date = 0, None
    for first, second in itertools.pairwise(a):
        if first.category == "PD":
            continue
        level = min(RANK[first.category], RANK[second.category])
        if RANK[second.category] >= RANK[first.category]:
            first.confirmed = True
        if level > best_rank and level > RANK["PD"]:
            best_rank, best_date = level, first.date
    if best_rank:
        out.best = CATEGORIES[len(CATEGORIES) - best_rank]
        out.best_date = best_date
    if a and a[-1].category != "PD" and RANK[a[-1].category] > best_rank:
        out.best_unconfirmed = a[-1].category
