"""The transplant-outcomes report drawn: its figures (survival, the stacked incidence, the
incidences with CI, duration of response and time to next treatment, OS by each factor), the tidy
summary rows and the page, from a released copy (``registry.reports.outcomes.release_outcomes``)."""

from __future__ import annotations

import math
from typing import Any

XLABEL_RESPONSE = (
    "Months from the first response (duration) or from the first line's start (to next treatment)"
)
COLOURS = ("#1b6ca8", "#d1495b", "#2e8b57", "#8d6a9f", "#e08e0b", "#5b5b5b", "#17becf", "#7f7f7f")


def _horizon(data: dict[str, Any]) -> int:
    longest = max((c["time_months"][-1] for c in data["curves"].values() if c.get("time_months")), default=0)
    return max(12, math.ceil(longest / 12) * 12)


def outcome_figures(data: dict[str, Any], fmt: str = "svg") -> dict[str, str | bytes]:
    """The figures of a released outcomes report: survival (OS, PFS), the stacked cumulative
    incidence of relapse and NRM, the incidence curves with CI, and OS by each factor."""
    from registry.reports.plots import count_text, curves_figure, stacked_incidence_figure, to_png, to_svg

    min_cell = data.get("release", {}).get("min_cell")

    render = to_svg if fmt == "svg" else to_png
    h = _horizon(data)
    e, c, labels = data["endpoints"], data["curves"], data["labels"]
    out: dict[str, str | bytes] = {}
    out["survival"] = render(
        curves_figure(
            "Overall and progression-free survival",
            [(labels["os"], COLOURS[0], c["os"]), (labels["pfs"], COLOURS[1], c["pfs"])],
            [("OS", COLOURS[0], e["os"]["at_risk"]), ("PFS", COLOURS[1], e["pfs"]["at_risk"])],
            data,
            horizon=h,
        )
    )
    out["incidence_stacked"] = render(stacked_incidence_figure(data, h))
    out["incidence"] = render(
        curves_figure(
            "Cumulative incidence with 95% CI",
            [(labels["relapse"], COLOURS[1], c["relapse"]), (labels["nrm"], COLOURS[5], c["nrm"])],
            [("under follow-up", "#222", e["relapse"]["at_risk"])],
            data,
            horizon=h,
            incidence=True,
        )
    )
    if data.get("response"):
        re_ = data["response"]["endpoints"]
        out["response"] = render(
            curves_figure(
                "Duration of response and time to next treatment (first line)",
                [(labels["dor"], COLOURS[2], c.get("dor")), (labels["ttnt"], COLOURS[3], c.get("ttnt"))],
                [
                    ("DOR", COLOURS[2], re_["dor"]["at_risk"]),
                    ("TTNT", COLOURS[3], re_["ttnt"]["at_risk"]),
                ],
                data,
                horizon=h,
                xlabel=XLABEL_RESPONSE,
            )
        )
    for var, s in data["strata"].items():
        levels = list(s["levels"])
        landmark = s.get("landmark_days")
        out[f"os_by_{var}"] = render(
            curves_figure(
                f"Overall survival by {s['label']}" + (f" (landmark at day {landmark})" if landmark else ""),
                [
                    (
                        f"{lv} (n {count_text(s['levels'][lv]['n'], min_cell)})",
                        COLOURS[i % len(COLOURS)],
                        s["curves"].get(lv, {}).get("os"),
                    )
                    for i, lv in enumerate(levels)
                ],
                [
                    (lv, COLOURS[i % len(COLOURS)], s["levels"][lv]["endpoints"]["os"]["at_risk"])
                    for i, lv in enumerate(levels)
                ],
                data,
                horizon=h,
                xlabel="Months from the landmark" if landmark else "Months from the index transplant",
            )
        )
    return out


def outcomes_summary_rows(data: dict[str, Any]) -> list[dict[str, Any]]:
    """Every table of a released outcomes report as tidy rows."""
    rows: list[dict[str, Any]] = []
    status = data.get("release", {}).get("status")

    def add(factor: str, level: str, endpoint: str, statistic: str, value: Any, count: bool = False) -> None:
        rows.append(
            {
                "factor": factor,
                "level": level,
                "endpoint": endpoint,
                "statistic": statistic,
                "value": "" if value is None else value,
                "kind": "count" if count else "estimate",
                "release": status,
            }
        )

    def endpoints(factor: str, level: str, es: dict[str, Any]) -> None:
        for name, e in es.items():
            add(factor, level, name, "n", e["n"], True)
            add(factor, level, name, "events", e["events"], True)
            add(factor, level, name, "median_months", e["median_months"])
            for m, (est, lo, hi) in e["rates"].items():
                add(factor, level, name, f"rate_{m}m", est)
                add(factor, level, name, f"rate_{m}m_lower", lo)
                add(factor, level, name, f"rate_{m}m_upper", hi)
            for t, k in e.get("at_risk", {}).items():
                add(factor, level, name, f"at_risk_{t}m", k, True)

    endpoints("all", "all", data["endpoints"])
    if data.get("response"):
        endpoints("response", "all", data["response"]["endpoints"])
        for key, st in data["response"]["sets"].items():
            add("response", key, "patients", "n", st["n"], True)
            for lv, v in st["levels"].items():
                add("response", key, lv, "n", v, True)
    for var, s in data["strata"].items():
        for lv, v in s["levels"].items():
            endpoints(var, lv, v["endpoints"])
        for name, t in s["tests"].items():
            add(var, "test", name, "statistic", t.get("chi2", t.get("stat")))
            add(var, "test", name, "p", t["p"])
    return rows


def render_outcomes(data: dict[str, Any], fmt: str) -> str:
    """A released outcomes report as JSON, the tidy summary CSV, or a self-contained HTML page."""
    from registry.reports.render import page, tidy_csv, to_json

    if fmt == "json":
        return to_json(data)
    if fmt == "csv":
        fields = ["factor", "level", "endpoint", "statistic", "value", "kind", "release"]
        return tidy_csv(outcomes_summary_rows(data), fields)
    return page("outcomes.html.j2", data, outcome_figures(data, "svg"))
