"""Render a study report as JSON, CSV (the per-patient table) or a self-contained HTML page."""

from __future__ import annotations

import base64
import json
from typing import Any

import jinja2

from registry.core.csvsafe import safe_cell
from registry.reports.plots import km_plot
from registry.reports.study import StudyReport


def to_json(data: dict[str, Any]) -> str:
    """The report's JSON (UTF-8, indented)."""
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_csv(report: StudyReport) -> str:
    """The per-patient analysis table as CSV (never leaves the registry under suppression)."""
    df = report.patients.copy()
    for col in ("l2_start", "index_transplant_date", "relapse_date"):
        df[col] = [d.isoformat() if d is not None else "" for d in df[col]]
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(safe_cell)
    return df.to_csv(index=False, lineterminator="\n")


def _num(x: Any, nd: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return str(x)


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _months(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def _count(x: int | None) -> str:
    """A count that may have been suppressed (None): said as such, never a bare symbol."""
    return "fewer than the release threshold" if x is None else str(x)


def _pct(x: float | None) -> str:
    return _num(None if x is None else x * 100)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("registry.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=False,
)
_ENV.filters.update(num=_num, p=_p, months=_months, pct=_pct, count=_count)


def to_html(report: StudyReport, data: dict[str, Any]) -> str:
    """A self-contained HTML page (``templates/study.html.j2``). ``data`` is the (possibly
    suppressed) JSON; the plots' numbers at risk come from it."""
    groups = data["groups"]
    labels = {g: v["label"] for g, v in groups.items()}
    colours = data.get("analysis", {}).get("colours", {})
    plots = {}
    for name, meta in data["endpoints"].items():
        if report.curves.get(name):
            at_risk = {g: v["endpoints"].get(name, {}).get("at_risk", {}) for g, v in groups.items()}
            png = km_plot(report.curves[name], meta["label"], labels, at_risk, colours)
            plots[name] = base64.b64encode(png).decode()

    def levels(column: str) -> list[str]:
        return sorted({k for v in groups.values() for k in v["baseline"].get(column, {})})

    return _ENV.get_template("study.html.j2").render(
        data=data, patients=len(report.patients), plots=plots, levels=levels
    )
