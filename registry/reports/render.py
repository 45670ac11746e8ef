"""Render a released study report (``suppress.released``) as JSON, CSV or a self-contained HTML
page with inline SVG figures. Every renderer takes the released JSON only, so nothing the
release step hid can reach an output; the per-patient CSV (internal only) is the exception and
``release`` refuses it under a threshold."""

from __future__ import annotations

import csv
import functools
import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jinja2
import pandas as pd

from registry.core.csvsafe import safe_cell
from registry.reports.labels import human
from registry.reports.plots import count_text, flow_svg, forest_figure, km_figure, to_png, to_svg
from registry.reports.suppress import Protected, json_default


def to_json(data: dict[str, Any]) -> str:
    """The report's JSON (UTF-8, indented)."""
    return json.dumps(data, indent=2, ensure_ascii=False, default=json_default)


def to_csv(patients: pd.DataFrame) -> str:
    """The per-patient analysis table as CSV (never leaves the registry under suppression)."""
    df = patients.copy()
    for col in ("l2_start", "index_transplant_date", "relapse_date"):
        if col in df.columns:
            df[col] = [d.isoformat() if pd.notna(d) else "" for d in df[col]]
    for col in df.columns:
        if df[col].dtype == object:
            df[col] = df[col].map(safe_cell)
    return df.to_csv(index=False, lineterminator="\n")


Add = Callable[..., None]  # (table, endpoint, group, statistic, value, count=False)


def _survival_rows(add: Add, ep: str, g: str, s: dict[str, Any], rate_months: list[int]) -> None:
    for key in ("n", "events", "censored"):
        add("survival", ep, g, key, s.get(key), True)
    add("survival", ep, g, "median_months", s.get("median_months"))
    ci = s.get("median_ci_months") or [None, None]
    add("survival", ep, g, "median_months_lower", ci[0])
    add("survival", ep, g, "median_months_upper", ci[1])
    for m in rate_months:
        add("survival", ep, g, f"rate_{m}m", s.get(f"rate_{m}m"))
        rci = s.get(f"rate_{m}m_ci") or [None, None]
        add("survival", ep, g, f"rate_{m}m_lower", rci[0])
        add("survival", ep, g, f"rate_{m}m_upper", rci[1])
    for key in ("at_risk", "cumulative_events"):
        for t, k in (s.get(key) or {}).items():
            add(key, ep, g, f"{t} months", k, True)


def _table1_rows(add: Add, t1: dict[str, Any] | None) -> None:
    if not t1:
        return
    for r in t1["rows"]:
        for c, cell in r["cells"].items():
            name = r["label"] + (f": {r['level']}" if r["kind"] == "categorical" else "")
            if r["kind"] == "categorical":
                add("table1", "", c, f"{name} - n", cell["n"], True)
                add("table1", "", c, f"{name} - %", cell["pct"])
            else:
                for key in ("median", "q1", "q3"):
                    add("table1", "", c, f"{name} - {key}", cell[key])
                add("table1", "", c, f"{name} - missing", cell["missing"], True)
        if r.get("smd") is not None:
            add("table1", "", "", f"{r['label']} - SMD (largest pair)", r["smd"])


def summary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every summary table of a released report as tidy rows: table, endpoint, group, statistic,
    value (suppressed counts empty, with ``suppressed`` = 1)."""
    rows: list[dict[str, Any]] = []
    status = data.get("release", {}).get("status")

    def add(table: str, endpoint: str, group: str, statistic: str, value: Any, count: bool = False) -> None:
        rows.append(
            {
                "table": table,
                "endpoint": endpoint,
                "group": group,
                "statistic": statistic,
                "value": "" if value is None else value,
                "kind": "count" if count else "estimate",
                "suppressed": int(
                    count
                    and (value is None or isinstance(value, Protected))
                    and bool(data.get("release", {}).get("min_cell"))
                ),
                "release": status,
            }
        )

    for i, a in enumerate(data["attrition"]):
        add("attrition", "", "", f"step {i}: {a['step']} - remaining", a["remaining"], True)
        add("attrition", "", "", f"step {i}: {a['step']} - excluded", a["excluded"], True)
    for g, v in data["groups"].items():
        add("groups", "", g, "n", v["n"], True)
        for ep, est in v["endpoints"].items():
            _survival_rows(add, ep, g, est, data["analysis"]["rate_months"])
    _table1_rows(add, data.get("table1"))
    for lr in data["logrank"]:
        label = " vs ".join(lr["groups"])
        add("logrank", lr["endpoint"], label, "chi2", lr["chi2"])
        add("logrank", lr["endpoint"], label, "p", lr["p"])
    for c in data["cox"]:
        where = f"{c['model']}: {c['term']}"
        add("cox", c["endpoint"], where, "hr", c["hr"])
        add("cox", c["endpoint"], where, "hr_lower", c["hr_ci"][0])
        add("cox", c["endpoint"], where, "hr_upper", c["hr_ci"][1])
        add("cox", c["endpoint"], where, "p", c["p"])
        add("cox", c["endpoint"], where, "n", c["n"], True)
        add("cox", c["endpoint"], where, "events", c["events"], True)
    return rows


def to_summary_csv(data: dict[str, Any]) -> str:
    """The summary tables of a released report as one tidy CSV."""
    fields = ["table", "endpoint", "group", "statistic", "value", "kind", "suppressed", "release"]
    return tidy_csv(summary_rows(data), fields)


def tidy_csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    """Tidy rows as CSV, text cells neutralised for spreadsheets."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fields, lineterminator="\n")
    writer.writeheader()
    for r in rows:
        writer.writerow({k: safe_cell(v) if isinstance(v, str) else v for k, v in r.items()})
    return buf.getvalue()


def write_figure_files(folder: Path, figures_of: Callable[[str], dict[str, str | bytes]]) -> list[Path]:
    """Write the figures ``figures_of(fmt)`` gives, as SVG and 300-dpi PNG, into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for fmt in ("svg", "png"):
        for name, body in figures_of(fmt).items():
            path = folder / f"{name}.{fmt}"
            if isinstance(body, str):
                path.write_text(body, encoding="utf-8")
            else:
                path.write_bytes(body)
            written.append(path)
    return written


def figures(data: dict[str, Any], fmt: str = "svg") -> dict[str, str | bytes]:
    """Every figure of a released report: ``km_<endpoint>``, ``forest_<endpoint>`` (the adjusted
    model, else the unadjusted one) and ``flow``; SVG text or 300-dpi PNG bytes."""
    out: dict[str, str | bytes] = {}
    render = to_svg if fmt == "svg" else to_png
    for name in data["endpoints"]:
        out[f"km_{name}"] = render(km_figure(data, name))
        for model in ("adjusted", "unadjusted"):
            fig = forest_figure(data, name, model)
            if fig is not None:
                out[f"forest_{name}"] = render(fig)
                break
    if fmt == "svg":
        out["flow"] = flow_svg(data)
    return out


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


def _pct(x: float | None) -> str:
    return _num(None if x is None else x * 100)


_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("registry.reports", "templates"),
    autoescape=jinja2.select_autoescape(["html", "j2"]),
    undefined=jinja2.StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)
_ENV.filters.update(num=_num, p=_p, months=_months, pct=_pct, human=human)
# a count the release step let through (hidden ones, small or protected, are never computed with)
_ENV.globals["shown"] = lambda v: isinstance(v, int) and not isinstance(v, bool)


def to_html(data: dict[str, Any]) -> str:
    """A self-contained HTML page (``templates/study.html.j2``) of a released report, figures
    inline as SVG."""
    return page("study.html.j2", data, figures(data, "svg"))


def page(template: str, data: dict[str, Any], figs: dict[str, str | bytes]) -> str:
    """A released report's page from ``template``: its data, its inline SVG figures, the count
    formatter every output shares, and whether the page is internal."""
    min_cell = data.get("release", {}).get("min_cell")
    return _ENV.get_template(template).render(
        data=data,
        figs={k: v for k, v in figs.items() if isinstance(v, str)},
        count=functools.partial(count_text, min_cell=min_cell),
        min_cell=min_cell,
        internal=not min_cell,
    )
