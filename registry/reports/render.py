"""Render a study report as JSON, CSV (the per-patient table) or a self-contained HTML page."""

from __future__ import annotations

import base64
import html
import json
from typing import Any

from registry.reports.plots import km_plot
from registry.reports.study import StudyReport


def to_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False)


def to_csv(report: StudyReport) -> str:
    df = report.patients.copy()
    for col in ("l2_start", "index_transplant_date", "relapse_date"):
        df[col] = [d.isoformat() if d is not None else "" for d in df[col]]
    return df.to_csv(index=False, lineterminator="\n")


def _fmt(x: Any, nd: int = 1) -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        return f"{x:.{nd}f}"
    return html.escape(str(x))


def _p(x: float | None) -> str:
    if x is None:
        return "–"
    return "<0.001" if x < 0.001 else f"{x:.3f}"


def _months(v: float | None) -> str:
    return "not reached" if v is None else f"{v:.1f}"


def to_html(report: StudyReport, data: dict[str, Any]) -> str:
    """``data`` is the (possibly suppressed) JSON; plots use its numbers at risk."""
    e = html.escape
    parts = [
        f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>{e(data["title"])}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:1000px;margin:2em auto;color:#222;line-height:1.4}}
table{{border-collapse:collapse;margin:.6em 0 1.4em}} td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
th{{background:#f3f3f3}} td:first-child,th:first-child,td.text,th.text{{text-align:left}}
.warn{{background:#fff4e5;border-left:4px solid #e8a33d;padding:.5em 1em}}
.small{{color:#666;font-size:.9em}}
</style></head><body>
<h1>{e(data["title"])}</h1>
<p class="small">Study <code>{e(data["study"])}</code> (definition v{data["definition_version"]}),
data cutoff {e(str(data["data_cutoff"]))}, generated {e(data["generated_at"])} by registry
{e(data["registry_version"])}. {len(report.patients)} patients in the analysis.
{"Counts below " + str(data["min_cell"]) + " suppressed." if data.get("min_cell") else ""}</p>"""
    ]
    if data["warnings"]:
        items = "".join(f"<li>{e(w)}</li>" for w in data["warnings"])
        parts.append(f'<div class="warn"><strong>Warnings</strong><ul>{items}</ul></div>')
    parts.append(
        "<h2>Cohort (attrition)</h2><table><tr><th>Step</th><th>Remaining</th>"
        "<th>Excluded</th><th class='text'>Reason</th></tr>"
    )
    for a in data["attrition"]:
        parts.append(
            f"<tr><td>{e(a['step'])}</td><td>{_fmt(a['remaining'])}</td>"
            f"<td>{_fmt(a['excluded'])}</td><td class='text'>{e(a['reason'] or '')}</td></tr>"
        )
    parts.append("</table>")
    groups = data["groups"]
    parts.append(
        "<h2>Baseline at the start of the 2nd line</h2><table><tr><th></th>"
        + "".join(f"<th>{g}</th>" for g in groups)
        + "</tr>"
    )
    parts.append(
        "<tr><td>Group</td>" + "".join(f"<td>{e(v['label'])}</td>" for v in groups.values()) + "</tr>"
    )
    parts.append(
        "<tr><td>Patients</td>" + "".join(f"<td>{_fmt(v['n'])}</td>" for v in groups.values()) + "</tr>"
    )
    parts.append(
        "<tr><td>Age at 2nd line, median (IQR)</td>"
        + "".join(
            f"<td>{_fmt(v['baseline']['age_at_l2_median'])} ({_fmt(v['baseline']['age_at_l2_iqr'][0])}"
            f"–{_fmt(v['baseline']['age_at_l2_iqr'][1])})</td>"
            for v in groups.values()
        )
        + "</tr>"
    )
    for table, label in (
        ("sex", "Sex"),
        ("iss_stage", "ISS stage"),
        ("cytogenetic_risk", "Cytogenetic risk"),
    ):
        levels = sorted({k for v in groups.values() for k in v["baseline"].get(table, {})})
        for lv in levels:
            parts.append(
                f"<tr><td>{label}: {e(lv)}</td>"
                + "".join(f"<td>{_fmt(v['baseline'][table].get(lv, 0))}</td>" for v in groups.values())
                + "</tr>"
            )
    parts.append("</table>")
    labels = {g: v["label"] for g, v in groups.items()}
    for name, meta in data["endpoints"].items():
        parts.append(f"<h2>{e(meta['label'])} (<code>{e(name)}</code>)</h2>")
        if report.curves.get(name):
            at_risk = {g: v["endpoints"].get(name, {}).get("at_risk", {}) for g, v in groups.items()}
            png = km_plot(report.curves[name], meta["label"], labels, at_risk)
            parts.append(
                f'<img alt="Kaplan-Meier curves for {e(name)}" width="850" '
                f'src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            )
        parts.append(
            "<table><tr><th>Group</th><th>Patients</th><th>Events</th>"
            "<th>Median, months (95% CI)</th><th>24-month rate (95% CI)</th></tr>"
        )
        for g, v in groups.items():
            s = v["endpoints"].get(name, {})
            ci = s.get("median_ci_months", [None, None])
            r24 = s.get("rate_24m")
            rci = s.get("rate_24m_ci", [None, None])
            parts.append(
                f"<tr><td>{g}</td><td>{_fmt(s.get('n'))}</td><td>{_fmt(s.get('events'))}</td>"
                f"<td>{_months(s.get('median_months'))} ({_months(ci[0])}–{_months(ci[1])})</td>"
                f"<td>{_fmt(r24 * 100 if r24 is not None else None)}% "
                f"({_fmt(rci[0] * 100 if rci[0] is not None else None)}–"
                f"{_fmt(rci[1] * 100 if rci[1] is not None else None)})</td></tr>"
            )
        parts.append("</table>")
        fu = data["median_follow_up_months"].get(name)
        fu_text = "not estimable (too few patients censored)" if fu is None else f"{fu:.1f} months"
        parts.append(f"<p class='small'>Median follow-up (reverse Kaplan-Meier): {fu_text}.</p>")
        parts.append("<table><tr><th>Log-rank</th><th>χ²</th><th>df</th><th>p</th></tr>")
        for lr in (x for x in data["logrank"] if x["endpoint"] == name):
            parts.append(
                f"<tr><td>{' vs '.join(lr['groups'])}</td><td>{_fmt(lr['chi2'], 2)}</td>"
                f"<td>{lr['df']}</td><td>{_p(lr['p'])}</td></tr>"
            )
        parts.append(
            "</table><table><tr><th>Cox (Efron)</th><th>Model</th><th>HR (95% CI)</th><th>p</th></tr>"
        )
        for c in (x for x in data["cox"] if x["endpoint"] == name):
            parts.append(
                f"<tr><td>{e(c['term'])}</td><td>{c['model']}</td><td>{_fmt(c['hr'], 2)} "
                f"({_fmt(c['hr_ci'][0], 2)}–{_fmt(c['hr_ci'][1], 2)})</td><td>{_p(c['p'])}</td></tr>"
            )
        for z in (x for x in data["ph_check"] if x["endpoint"] == name):
            parts.append(
                f"<tr><td>PH check (cox.zph, global)</td><td>{z['model']}</td>"
                f"<td>χ² {_fmt(z['global_chi2'], 2)}, df {z['df']}</td><td>{_p(z['p'])}</td></tr>"
            )
        parts.append("</table>")
    parts.append(
        "<h2>Methods</h2><p class='small'>Kaplan-Meier estimates with 95% pointwise "
        "confidence intervals from Greenwood's variance on the log(−log) scale; medians "
        "and their confidence intervals as R's <code>survfit</code> reports them; "
        "log-rank tests (<code>survdiff</code>); Cox proportional-hazards models with "
        "Efron ties, G1 as reference, unadjusted and adjusted for age at the 2nd line, "
        "sex, ISS stage and cytogenetic risk, with the <code>cox.zph</code> score test. "
        "Months are days / 30.4375. See docs/reports.md.</p></body></html>"
    )
    return "\n".join(parts)
