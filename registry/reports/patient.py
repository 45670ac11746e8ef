"""One patient's page (``registry patient show --format html``): the timeline and a picture of
the laboratory series the response was judged on — serum M-protein, urine M-protein or the free
light chain difference over time, with each line's start, each line's nadir (the lowest level
held by two consecutive values) and the progressions the series documented marked.

A patient's own record, for the people who look after the registry: internal, never released.
"""

from __future__ import annotations

import datetime as dt
import html
from typing import Any

from sqlalchemy import Engine, select

from registry.core.dates import as_date
from registry.db.history import resolve_patient_key
from registry.db.models import LabResult, LineOfTherapy, Relapse
from registry.derive.response import ResponseParams, nadir
from registry.derive.timeline import patient_timeline

# what the picture can draw, by the parameter a line is judged on
PARAMETERS = {
    "serum": ("serum_m_protein", "Serum M-protein, g/dL"),
    "urine": ("urine_m_protein", "Urine M-protein, mg/24h"),
    "flc": ("dflc", "Free light chain difference, mg/L"),
}


def patient_series(engine: Engine, patient_key: str) -> dict[str, Any]:
    """The patient's series (by parameter: dated values), lines (start, number, the parameter
    judged, its nadir) and relapses (date, sources), for the picture."""
    with engine.connect() as conn:
        key = resolve_patient_key(conn, patient_key)
        labs = conn.execute(
            select(LabResult.sample_date, LabResult.test, LabResult.value)
            .where(LabResult.patient_key == key, LabResult.is_current, LabResult.value.is_not(None))
            .order_by(LabResult.sample_date)
        ).all()
        lines = conn.execute(
            select(
                LineOfTherapy.line_number,
                LineOfTherapy.start_date,
                LineOfTherapy.measurable,
                LineOfTherapy.best_response,
            )
            .where(LineOfTherapy.patient_key == key)
            .order_by(LineOfTherapy.line_number)
        ).all()
        relapses = conn.execute(
            select(Relapse.relapse_date, Relapse.sources)
            .where(Relapse.patient_key == key)
            .order_by(Relapse.sequence)
        ).all()
    series = _series(labs)
    out_lines = []
    for i, (number, start, measurable, best) in enumerate(lines):
        start = as_date(start)
        nxt = as_date(lines[i + 1][1]) if i + 1 < len(lines) else None
        parameter = (measurable or "").split(",")[0] or None
        low = _nadir(series.get(parameter or "", []), start, nxt)
        out_lines.append(
            {"number": number, "start": start, "parameter": parameter, "best": best, "nadir": low}
        )
    return {
        "patient_key": key,
        "series": {k: v for k, v in series.items() if v},
        "lines": out_lines,
        "relapses": [{"date": as_date(d), "sources": s or ""} for d, s in relapses],
    }


def _series(labs: Any) -> dict[str, list[tuple[dt.date, float]]]:
    """Serum and urine M-protein, and the light chains' difference on the days both were sampled."""
    series: dict[str, list[tuple[dt.date, float]]] = {"serum": [], "urine": [], "flc": []}
    chains: dict[str, dict[dt.date, float]] = {"flc_kappa": {}, "flc_lambda": {}}
    where = {"serum_m_protein": "serum", "urine_m_protein": "urine"}
    for when, test, number in labs:
        day, value = as_date(when), float(number or 0.0)  # (rows without a value are not read)
        if test in where:
            series[where[test]].append((day, value))
        elif test in chains:
            chains[test][day] = value
    kappa, lam = chains["flc_kappa"], chains["flc_lambda"]
    series["flc"] = [(d, abs(kappa[d] - lam[d])) for d in sorted(kappa) if d in lam]
    return series


def _nadir(
    values: list[tuple[dt.date, float]], start: dt.date, nxt: dt.date | None
) -> tuple[dt.date, float] | None:
    """A line's nadir (the lowest level two consecutive values held, from its baseline) and the
    day it was first reached; None with fewer than two values."""
    window = ResponseParams().baseline_window_days  # the line's baseline, as the rules take it
    line = [(d, v) for d, v in values if d <= start and (start - d).days <= window][-1:]
    line += [(d, v) for d, v in values if d > start and (nxt is None or d < nxt)]
    if len(line) < 2:
        return None
    level = nadir([v for _, v in line])
    return next((d for d, v in line if v == level), line[0][0]), level


def series_figure(data: dict[str, Any]) -> Any:
    """The series over time: the parameter each line is judged on (serum M-protein first), line
    starts as dashed lines, each line's nadir as a ring, relapses as red marks (filled where the
    series documented them)."""
    import matplotlib.pyplot as plt

    judged = [ln["parameter"] for ln in data["lines"] if ln["parameter"]]
    shown = [p for p in ("serum", "urine", "flc") if p in data["series"] and (p in judged or not judged)][:2]
    fig, ax = plt.subplots(figsize=(9, 3.8))
    axes = {shown[0]: ax} if shown else {}
    if len(shown) == 2:
        axes[shown[1]] = ax.twinx()
    colours = {"serum": "#1b6ca8", "urine": "#8d6a9f", "flc": "#2e8b57"}
    for p, a in axes.items():
        xs, ys = zip(*data["series"][p], strict=True)
        a.plot(xs, ys, "o-", color=colours[p], ms=3.5, lw=1.3, label=PARAMETERS[p][1])
        a.set_ylabel(PARAMETERS[p][1], color=colours[p], fontsize=9)
        a.set_ylim(bottom=0)
    for ln in data["lines"]:
        ax.axvline(ln["start"], color="#555", ls="--", lw=0.9)
        ax.annotate(f"L{ln['number']}", (ln["start"], 1.0), xycoords=("data", "axes fraction"), fontsize=8,
                    ha="left", va="bottom")  # fmt: skip
        if ln["nadir"] is not None and ln["parameter"] in axes:
            day, level = ln["nadir"]
            axes[ln["parameter"]].plot([day], [level], "o", mfc="none", mec="#e08e0b", ms=10, mew=1.6)
    for rel in data["relapses"]:
        from_labs = "labs" in rel["sources"].split(",")
        ax.axvline(rel["date"], color="#d1495b", lw=1.2, alpha=0.8 if from_labs else 0.4)
    ax.set_title(
        "Laboratory series: line starts (dashed), nadirs (rings), relapses (red; darker where the "
        "series documented them)",
        fontsize=9,
    )
    ax.grid(alpha=0.25)
    fig.autofmt_xdate()
    fig.tight_layout()
    return fig


STYLE = (
    "body{font-family:system-ui,sans-serif;max-width:1040px;margin:0 auto;padding:3em 1em;color:#222}"
    "table{border-collapse:collapse;font-size:.88em;margin:.6em 0 1.4em}"
    "td,th{border:1px solid #ccc;padding:.2em .5em;vertical-align:top}"
    ".text{text-align:left} figure svg{max-width:100%;height:auto}"
    ".banner{position:fixed;top:0;left:0;right:0;padding:.45em 1em;font-weight:bold;text-align:center;"
    "background:#b00020;color:#fff}"
)


def patient_page(engine: Engine, patient_key: str) -> str:
    """A self-contained HTML page: the patient's header, the series picture and the timeline."""
    from registry.reports.plots import to_svg

    head, entries = patient_timeline(engine, patient_key)
    data = patient_series(engine, str(head["patient_key"]))
    figure = (
        to_svg(series_figure(data)) if data["series"] else "<p>No laboratory series for this patient.</p>"
    )
    rows = "".join(
        f"<tr><td>{e.date.isoformat()}</td><td>{html.escape(e.kind)}</td>"
        f"<td class=text>{html.escape(e.text)}</td></tr>"
        for e in entries
    )
    facts = "".join(
        f"<tr><th class=text>{html.escape(k)}</th><td class=text>{html.escape(str(v))}</td></tr>"
        for k, v in head.items()
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>Patient {html.escape(str(head["patient_key"])[:12])}</title>
<style>{STYLE}</style>
</head><body><div class="banner">INTERNAL - one patient's record (pseudonymised), never for release</div>
<h1>Patient {html.escape(str(head["patient_key"])[:12])}…</h1>
<table>{facts}</table>
<h2>Laboratory series</h2><figure>{figure}</figure>
<h2>Timeline</h2><table><tr><th>Date</th><th>Kind</th><th class=text>What</th></tr>{rows}</table>
</body></html>
"""
