"""Figures of a study report, drawn only from its released JSON (``suppress.released``), never
from the fits: what a figure shows is what the release step let through.

- ``km_figure``: Kaplan-Meier curves with 95% CI bands and censoring marks, the axis to the end
  of follow-up (or a chosen horizon), the log-rank p and hazard ratios on the plot, and numbers at
  risk and cumulative events under it; groups whose size is suppressed are named, not drawn.
- ``forest_figure``: hazard ratios with 95% CI of a Cox model, reference levels included.
- ``flow_svg``: the CONSORT-style flow of patients (plain SVG, no matplotlib).

Figures come out as SVG (text kept as text, counts tagged ``id="count-…"``) or 300-dpi PNG.
An internal report's figures carry "internal - not for release" across them.
"""

from __future__ import annotations

import html
import io
import math
import textwrap
from typing import Any

import matplotlib
import matplotlib.ticker

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.figure import Figure

from registry.reports.suppress import Protected

PALETTE = ("#1b6ca8", "#d1495b", "#2e8b57", "#8d6a9f", "#e08e0b", "#5b5b5b")  # when none is given
plt.rcParams["svg.fonttype"] = "none"  # SVG text stays text: searchable, small, testable
plt.rcParams["svg.hashsalt"] = "registry"  # stable ids: the same report gives the same SVG


def count_text(v: int | None, min_cell: int | None) -> str:
    """A count as every output shows it: ``<N`` when the release step hid it, a dash when there is
    none (an internal report), else the number."""
    if isinstance(v, Protected):  # hidden to protect another count: never a false <N
        return "–"
    return f"<{min_cell}" if v is None and min_cell else ("–" if v is None else str(v))


class _Counter:
    """Tags each count drawn with a unique SVG id (``count-<k>``)."""

    def __init__(self) -> None:
        self.k = 0

    def __call__(self, artist: Any) -> None:
        self.k += 1
        artist.set_gid(f"count-{self.k}")


def _internal(fig: Figure, data: dict[str, Any]) -> None:
    if not data.get("release", {}).get("min_cell"):
        fig.text(
            0.5,
            0.55,
            "INTERNAL - NOT FOR RELEASE",
            rotation=25,
            fontsize=34,
            color="#c00",
            alpha=0.10,
            ha="center",
            va="center",
            weight="bold",
        )


def _ci(ci: list[float | None]) -> str:
    lo, hi = ci
    return f"{'–' if lo is None else f'{lo:.2f}'}–{'∞' if hi is None else f'{hi:.2f}'}"


AX_LEFT, AX_WIDTH = 0.16, 0.52  # the plotting area (row labels of the tables under it to its
# left, the legend to its right: both outside it)
LEGEND_CHARS = 30  # a legend label is wrapped at this width (it never runs off the figure)


MAX_TIME_LABELS = 11  # more month labels than this on the time axis would run into each other


def _time_ticks(ax: Any, grid: list[int]) -> None:
    """A tick at every time of the grid (the numbers at risk stand under them); labels on every
    second, third ... tick when the axis is long, so they never overlap."""
    every = max(1, math.ceil(len(grid) / MAX_TIME_LABELS))
    ax.set_xticks(grid, [str(t) if i % every == 0 else "" for i, t in enumerate(grid)])


def _legend(ax: Any, **kwargs: Any) -> None:
    """The legend outside the plotting area, right of it, labels wrapped: never over a curve."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:  # nothing drawn (no events): no legend
        wrapped = [textwrap.fill(lb, LEGEND_CHARS) for lb in labels]
        ax.legend(handles, wrapped, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, **kwargs)


def _p(x: float | None) -> str:
    """A p-value with its relation: "p < 0.001" or "p = 0.042" (a dash when withheld)."""
    return "p –" if x is None else ("p < 0.001" if x < 0.001 else f"p = {x:.3f}")


def km_figure(data: dict[str, Any], endpoint: str) -> Figure:
    """Kaplan-Meier figure of ``endpoint`` from a released report."""
    meta = data["endpoints"][endpoint]
    groups = data["groups"]
    curves = data.get("curves", {}).get(endpoint, {})
    colours = data.get("analysis", {}).get("colours", {})
    min_cell = data.get("release", {}).get("min_cell")
    grid = [int(m) for m in data["analysis"]["at_risk_months"]]
    horizon = _km_horizon(data, curves, grid)
    grid = [m for m in grid if m <= horizon]
    names = list(groups)
    colour_of = {g: colours.get(g, PALETTE[i % len(PALETTE)]) for i, g in enumerate(names)}
    rows = len(names)
    height = 5.2 + 0.42 * 2 * rows
    fig = plt.figure(figsize=(9, height))
    table_h = (0.42 * 2 * rows + 0.9) / height
    ax = fig.add_axes((AX_LEFT, table_h + 0.08, AX_WIDTH, 0.9 - table_h - 0.06))
    tag = _Counter()
    for g in names:
        label, c, n = f"{g}: {groups[g]['label']}", curves.get(g), groups[g]["n"]
        if c is None:
            why = "no patients" if n == 0 else f"n {count_text(n, min_cell)}: not drawn"
            ax.plot([], [], color=colour_of[g], lw=0, label=f"{label} ({why})")
        else:
            _km_curve(ax, c, colour_of[g], label)
    ax.axhline(0.5, color="#999", lw=0.8, ls=":")
    ax.set_xlim(0, horizon)
    ax.set_ylim(0, 1.02)
    _time_ticks(ax, grid)
    ax.set_xlabel("Months" + (" from the landmark" if data.get("landmark") else ""))
    ax.set_ylabel("Probability (95% CI)")
    ax.set_title(meta.get("title", meta["label"]), fontsize=10.5, wrap=True)
    ax.grid(alpha=0.25)
    _legend(ax, fontsize=8, frameon=False)
    notes = _km_notes(data, endpoint)
    if notes:
        # above the plotting area, under the title: never over a curve or its band
        ax.set_title(
            meta.get("title", meta["label"]), fontsize=10.5, wrap=True, pad=8 + 11 * ((len(notes) + 1) // 2)
        )
        pairs = ["   ".join(notes[i : i + 2]) for i in range(0, len(notes), 2)]
        ax.text(0.5, 1.01, "\n".join(pairs), transform=ax.transAxes, fontsize=7.5, ha="center", va="bottom")

    def x_of(t: float) -> float:
        return AX_LEFT + AX_WIDTH * t / horizon

    top = table_h - 0.01
    line = 0.42 / height
    for block, field in (("Number at risk", "at_risk"), ("Cumulative events", "cumulative_events")):
        fig.text(0.01, top, block, fontsize=8.5, weight="bold", va="top")
        top -= line * 0.9
        for g in names:
            fig.text(0.02, top, g, fontsize=8.5, color=colour_of[g], va="top")
            cells = groups[g]["endpoints"].get(endpoint, {}).get(field) or {}
            for t in (t for t in grid if str(t) in cells):
                text = count_text(cells[str(t)], min_cell)
                tag(fig.text(x_of(t), top, text, fontsize=8.5, ha="center", va="top"))
            top -= line * 0.8
    _internal(fig, data)
    return fig


def _km_horizon(data: dict[str, Any], curves: dict[str, Any], grid: list[int]) -> int:
    """The axis's end: the report's horizon, else the last observation drawn (whole years)."""
    horizon = int(data.get("horizon_months") or (grid[-1] if grid else 60))
    if data.get("horizon_requested"):
        return horizon
    ends = [
        max([*c.get("time_months", []), *c.get("censored_months", [])], default=0.0)
        for c in curves.values()
        if c
    ]
    if ends and max(ends) > 0:
        horizon = min(horizon, max(12, math.ceil(max(ends) / 12) * 12))
    return horizon


def _km_curve(ax: Any, c: dict[str, Any], colour: str, label: str) -> None:
    """A step curve with its 95% band (a missing bound drawn at the estimate) and censoring ticks."""
    x = [0.0, *c["time_months"]]
    y = [1.0, *c["surv"]]
    lo = [1.0, *[s if v is None else v for v, s in zip(c["lower"], c["surv"], strict=True)]]
    hi = [1.0, *[s if v is None else v for v, s in zip(c["upper"], c["surv"], strict=True)]]
    ax.fill_between(x, lo, hi, step="post", color=colour, alpha=0.13, lw=0)
    ax.step(x, y, where="post", color=colour, lw=1.8, label=label)
    ax.plot(c["censored_months"], c["censored_surv"], "|", color=colour, ms=7, mew=1.2)


def _km_notes(data: dict[str, Any], endpoint: str) -> list[str]:
    """The overall log-rank test and the unadjusted hazard ratios of the groups."""
    notes = []
    tests = [r for r in data.get("logrank", []) if r["endpoint"] == endpoint]
    overall = next((r for r in tests if len(r["groups"]) > 2), None) or next(iter(tests), None)
    if overall is not None and overall.get("p") is not None:
        notes.append(f"Log-rank {_p(overall['p'])} ({', '.join(overall['groups'])})")
    for r in data.get("cox", []):
        key = (r["endpoint"], r["model"], r["variable"])
        if key == (endpoint, "unadjusted", "Group") and not r["is_reference"] and r.get("hr") is not None:
            notes.append(f"HR {r['term']}: {r['hr']:.2f} ({_ci(r['hr_ci'])})")
    return notes


N_COLUMN, EVENTS_COLUMN = 1.80, 2.06  # the forest plot's count columns, right of the axes


def forest_figure(data: dict[str, Any], endpoint: str, model: str) -> Figure | None:
    """Forest plot of one Cox model (hazard ratios, 95% CI, reference levels, n and events)."""
    rows = [r for r in data.get("cox", []) if r["endpoint"] == endpoint and r["model"] == model]
    if not rows:
        return None
    min_cell = data.get("release", {}).get("min_cell")
    height = 1.2 + 0.32 * len(rows)
    fig = plt.figure(figsize=(9, height))
    ax = fig.add_axes((0.36, 0.9 / height, 0.27, 1 - 1.5 / height))
    tag = _Counter()

    def at(x: float, y: float, text: str, **style: Any) -> Any:  # x in axes units, y in rows
        return ax.text(x, y, text, transform=ax.get_yaxis_transform(), fontsize=8, **style)

    finite = [v for r in rows for v in (r["hr_ci"] or []) if v is not None and v > 0 and math.isfinite(v)]
    lo = min([*finite, 0.5]) / 1.2
    hi = max([*finite, 2.0]) * 1.2
    for i, r in enumerate(rows):
        y = len(rows) - i
        right = _forest_row(ax, r, y, lo, hi)
        at(-0.02, y, r["term"], ha="right", va="center")
        at(1.03, y, right, ha="left", va="center")
        tag(at(N_COLUMN, y, count_text(r["n"], min_cell), ha="right", va="center"))
        tag(at(EVENTS_COLUMN, y, count_text(r["events"], min_cell), ha="right", va="center"))
    at(1.03, len(rows) + 0.9, "HR (95% CI)", weight="bold")
    at(N_COLUMN, len(rows) + 0.9, "n", weight="bold", ha="right")
    at(EVENTS_COLUMN, len(rows) + 0.9, "events", weight="bold", ha="right")
    ax.axvline(1, color="#555", lw=0.8)
    ax.set_xscale("log")
    ax.set_xlim(lo, hi)
    ticks = [t for t in (0.1, 0.25, 0.5, 1, 2, 4, 10) if lo <= t <= hi]
    ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_ylim(0.3, len(rows) + 0.7)
    ax.set_yticks([])
    ax.set_xlabel(f"Hazard ratio, {model} (log scale)", fontsize=8)
    ax.tick_params(labelsize=8)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    _internal(fig, data)
    return fig


def _forest_row(ax: Any, r: dict[str, Any], y: float, lo: float, hi: float) -> str:
    """One term's mark (its HR and CI, clipped to the axis; a grey square for the reference)
    and the text to its right."""
    if r["is_reference"]:
        ax.plot([1], [y], "s", color="#999", ms=4)
        return "reference"
    if r.get("hr") is None:
        return "not released" if r.get("suppressed") else "not estimable"
    ci = r["hr_ci"]
    left_end = lo if ci[0] is None else max(ci[0], lo)
    right_end = hi if ci[1] is None else min(ci[1], hi)
    ax.plot([left_end, right_end], [y, y], color="#1b6ca8", lw=1.5)
    ax.plot([r["hr"]], [y], "s", color="#1b6ca8", ms=5)
    return f"{r['hr']:.2f} ({_ci(ci)}) {_p(r['p'])}"


def to_svg(fig: Figure) -> str:
    """The figure as SVG text (closed afterwards)."""
    buf = io.StringIO()
    fig.savefig(buf, format="svg", metadata={"Date": None})
    plt.close(fig)
    text = buf.getvalue()
    return text[text.index("<svg") :]


def to_png(fig: Figure, dpi: int = 300) -> bytes:
    """The figure as PNG at ``dpi`` (closed afterwards)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi)
    plt.close(fig)
    return buf.getvalue()


FLOW_CHAR_PX = 7.2  # the width of a character of the flow diagram's 12-pixel font, generously


def _wrap(text: str, width_px: int) -> list[str]:
    """A box's text in lines that fit ``width_px`` (its padding left out), escaped: wrapped at
    words, never cut."""
    chars = max(8, int((width_px - 16) / FLOW_CHAR_PX))
    return [html.escape(line) for line in textwrap.wrap(text, chars, break_long_words=True)] or [""]


def flow_svg(data: dict[str, Any]) -> str:
    """The flow of patients (CONSORT style) as SVG: the data-quality step, every inclusion step
    with its exclusions and reason, then the groups. Counts are tagged ``class="count"``."""
    min_cell = data.get("release", {}).get("min_cell")

    def cnt(v: int | None) -> str:
        return f'<tspan class="count">{html.escape(count_text(v, min_cell))}</tspan>'

    def pct(part: int | None, whole: int | None) -> str:
        # a percentage of a hidden count (small or protected) would give it back: none
        if isinstance(part, int) and isinstance(whole, int) and whole:
            return f" ({100 * part / whole:.0f}%)"
        return ""

    boxes: list[str] = []
    w, left, side = 380, 20, 430
    y = 10

    def box(x: int, y: int, width: int, lines: list[str], fill: str = "#f7f9fc") -> int:
        h = 16 * len(lines) + 12
        boxes.append(
            f'<rect x="{x}" y="{y}" width="{width}" height="{h}" rx="4" fill="{fill}" stroke="#8aa"/>'
        )
        for i, text in enumerate(lines):
            boxes.append(f'<text x="{x + 8}" y="{y + 20 + 16 * i}">{text}</text>')
        return h

    def arrow(y1: int, y2: int) -> None:
        boxes.append(
            f'<line x1="{left + w // 2}" y1="{y1}" x2="{left + w // 2}" y2="{y2 - 3}" stroke="#555" '
            'marker-end="url(#a)"/>'
        )

    dq = data.get("data_quality")
    if dq:
        h = box(
            left,
            y,
            w,
            [
                f"Rows delivered in the sites' latest bundles: {cnt(dq['rows_read'])}",
                f"Patient rows delivered: {cnt(dq['patients_read'])}",
            ],
        )
        q = box(
            side,
            y,
            300,
            [
                f"Quarantined by the input checks: {cnt(dq['rows_quarantined'])} rows",
                f"of them patient rows: {cnt(dq['patients_quarantined'])}",
            ],
            "#fff4e5",
        )
        boxes.append(f'<line x1="{left + w}" y1="{y + h // 2}" x2="{side}" y2="{y + h // 2}" stroke="#555"/>')
        y += max(h, q) + 24
        arrow(y - 24, y)
    previous = None
    for i, step in enumerate(data["attrition"]):
        h = box(
            left,
            y,
            w,
            [*_wrap(step["step"], w), f"n = {cnt(step['remaining'])}{pct(step['remaining'], previous)}"],
        )
        if i > 0:
            e = box(
                side,
                y,
                300,
                [
                    f"Excluded: {cnt(step['excluded'])}{pct(step['excluded'], previous)}",
                    *_wrap(step["reason"] or "", 300),
                ],
                "#fbeff0",
            )
            boxes.append(
                f'<line x1="{left + w}" y1="{y + h // 2}" x2="{side}" y2="{y + h // 2}" stroke="#555"/>'
            )
            h = max(h, e)
        previous = step["remaining"]
        y += h + 24
        arrow(y - 24, y)
    gw = (side + 300 - left - 10 * (len(data["groups"]) - 1)) // max(len(data["groups"]), 1)
    texts = {
        g: [f"{html.escape(g)}: n = {cnt(v['n'])}", *_wrap(v["label"], gw)] for g, v in data["groups"].items()
    }
    tallest = max((len(t) for t in texts.values()), default=1)
    for j, t in enumerate(texts.values()):  # one height for the row: every box fits its text
        box(left + j * (gw + 10), y, gw, t + [""] * (tallest - len(t)), "#eef5ee")
    height = y + 16 * tallest + 24
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" role="img" aria-label="Flow of patients" '
        f'width="{side + 320}" height="{height}" font-family="system-ui,sans-serif" font-size="12">'
        '<defs><marker id="a" markerWidth="8" markerHeight="8" refX="6" refY="4" orient="auto">'
        '<path d="M0,0 L8,4 L0,8 z" fill="#555"/></marker></defs>' + "".join(boxes) + "</svg>"
    )


def curves_figure(
    title: str,
    series: list[tuple[str, str, dict[str, Any] | None]],
    at_risk: list[tuple[str, str, dict[str, int | None]]],
    data: dict[str, Any],
    *,
    horizon: int,
    incidence: bool = False,
    xlabel: str = "Months from the index transplant",
) -> Figure:
    """Step curves with 95% CI bands (survival, or cumulative incidence rising from 0), and the
    numbers at risk under the axis. ``series``: (label, colour, curve or None = not drawn)."""
    min_cell = data.get("release", {}).get("min_cell")
    grid = list(range(0, horizon + 1, 12))
    height = 4.6 + 0.3 * len(at_risk)
    fig = plt.figure(figsize=(9, height))
    table_h = (0.3 * len(at_risk) + 0.7) / height
    ax = fig.add_axes((AX_LEFT, table_h + 0.08, AX_WIDTH, 0.9 - table_h - 0.06))
    tag = _Counter()
    start = 0.0 if incidence else 1.0
    key = "estimate" if incidence else "surv"
    for label, colour, c in series:
        if c is None:
            ax.plot([], [], lw=0, label=f"{label} (not drawn)")
            continue
        x = [0.0, *c["time_months"]]
        y = [start, *c[key]]
        lo = [start, *[s if v is None else v for v, s in zip(c["lower"], c[key], strict=True)]]
        hi = [start, *[s if v is None else v for v, s in zip(c["upper"], c[key], strict=True)]]
        ax.fill_between(x, lo, hi, step="post", color=colour, alpha=0.13, lw=0)
        ax.step(x, y, where="post", color=colour, lw=1.8, label=label)
        if "censored_months" in c:
            ax.plot(c["censored_months"], c["censored_surv"], "|", color=colour, ms=6)
    ax.set_xlim(0, horizon)
    ax.set_ylim(0, 1.02)
    _time_ticks(ax, grid)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(("Cumulative incidence" if incidence else "Probability") + " (95% CI)")
    ax.set_title(title, fontsize=10.5)
    ax.grid(alpha=0.25)
    _legend(ax, fontsize=8, frameon=False)
    fig.text(0.01, table_h - 0.01, "Number at risk", fontsize=8.5, weight="bold", va="top")
    line = 0.3 / height
    top = table_h - 0.01 - line
    for label, colour, cells in at_risk:
        fig.text(0.02, top, textwrap.shorten(label, 20, placeholder="…"), fontsize=8, color=colour, va="top")
        for t in grid:
            if str(t) in cells:
                x_pos = AX_LEFT + AX_WIDTH * t / horizon
                tag(
                    fig.text(
                        x_pos, top, count_text(cells[str(t)], min_cell), fontsize=8, ha="center", va="top"
                    )
                )
        top -= line
    _internal(fig, data)
    return fig


def stacked_incidence_figure(data: dict[str, Any], horizon: int) -> Figure:
    """Relapse/progression and non-relapse mortality stacked: relapse from the bottom, NRM on top
    of it; the gap to 1 is alive without relapse."""
    fig = plt.figure(figsize=(9, 4.8))
    ax = fig.add_axes((AX_LEFT, 0.14, AX_WIDTH, 0.76))
    rel, nrm = data["curves"]["relapse"], data["curves"]["nrm"]
    # the stack ends where the first of the two curves ends: at the last follow-up, or, where the
    # release step stopped a curve, at the last time known to have enough patients under
    # follow-up (its last point kept, or a later month whose released count shows it)
    followed = data["endpoints"]["relapse"].get("at_risk", {})
    enough = data.get("release", {}).get("min_cell") or 1

    def end_of(c: dict[str, Any]) -> float:
        kept = c["time_months"][-1] if c["time_months"] else 0.0
        stop = c.get("stops_at_months")
        if stop is None:
            return float(kept)
        shown = [int(m) for m, v in followed.items() if isinstance(v, int) and v >= enough and int(m) < stop]
        return float(max([kept, *shown]))

    end = min(end_of(rel), end_of(nrm))
    times = sorted({0.0, *[t for t in (*rel["time_months"], *nrm["time_months"]) if t <= end], end})

    def step(c: dict[str, Any], t: float) -> float:
        i = int(np.searchsorted(c["time_months"], t, side="right")) - 1
        return 0.0 if i < 0 else float(c["estimate"][i])

    r = np.array([step(rel, t) for t in times])
    n = np.array([step(nrm, t) for t in times])
    ax.fill_between(times, 0, r, step="post", color="#d1495b", alpha=0.6, label="Relapse or progression")
    ax.fill_between(times, r, r + n, step="post", color="#5b5b5b", alpha=0.5, label="Non-relapse mortality")
    ax.set_xlim(0, horizon)
    ax.set_ylim(0, 1)
    _time_ticks(ax, list(range(0, horizon + 1, 12)))
    ax.set_xlabel("Months from the index transplant")
    ax.set_ylabel("Cumulative incidence (stacked)")
    ax.set_title("Relapse or progression and non-relapse mortality (competing risks)", fontsize=10.5)
    _legend(ax, fontsize=8, frameon=False)
    ax.grid(alpha=0.25)
    _internal(fig, data)
    return fig
