"""The release rule lives in the library: every output of a study report (JSON, HTML with its
inline figures, SVG/PNG figures, the summary CSV, warnings) is drawn from the released copy, and
no count from 1 to N-1 reaches any of them (a property test over random small cohorts)."""

from __future__ import annotations

import csv
import dataclasses
import html
import io
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from registry.core.errors import ReportRefused, UsageError
from registry.reports.cells import NOT_COUNTS  # integers that are not counts (months, df, versions)
from registry.reports.release import release, write_figures
from registry.reports.render import figures
from registry.reports.study import build_study_report
from registry.reports.suppress import released
from tests.reports.helpers import DEFN, cohort_frame, random_cohort

COUNT_CELLS = re.compile(r'class="count">([^<]*)<')
SVG_COUNTS = re.compile(r'<g id="count-\d+">\s*<text[^>]*>([^<]*)</text>')
FREE_INTEGERS = re.compile(r"(?<![\w.<&;-])\d+(?![\w.%])")


def small_ints(value: Any, n: int, where: str = "") -> list[str]:
    """Every integer from 1 to n-1 in a JSON value, outside keys that hold no counts."""
    found = []
    if isinstance(value, dict):
        for k, v in value.items():
            if k not in NOT_COUNTS:
                found += small_ints(v, n, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += small_ints(v, n, f"{where}[{i}]")
    elif isinstance(value, int) and not isinstance(value, bool) and 0 < value < n:
        found.append(f"{where}={value}")
    return found


PAIRS = (("n", "events"), ("model_n", "model_events"))


def recoverable_pairs(value: Any, n: int, where: str = "") -> list[str]:
    """Every object showing a count and a part of it (patients and events) whose difference
    (the censored) is 1..n-1: a hidden count given back by subtraction."""
    found = []
    if isinstance(value, dict):
        for total, part in PAIRS:
            a, b = value.get(total), value.get(part)
            if isinstance(a, int) and isinstance(b, int) and 0 < a - b < n:
                found.append(f"{where}: {total} {a} - {part} {b}")
        for k, v in value.items():
            found += recoverable_pairs(v, n, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            found += recoverable_pairs(v, n, f"{where}[{i}]")
    return found


def bad_text(texts: list[str], n: int) -> list[str]:
    ok = {"", "–", f"<{n}", "0"}
    texts = [html.unescape(t).strip() for t in texts]
    return [t for t in texts if t not in ok and not (t.isdigit() and int(t) >= n)]


def assert_nothing_small_leaves(report: Any, n: int) -> None:
    data = json.loads(release(report, "json", n))
    assert small_ints(data, n) == []
    assert recoverable_pairs(data, n) == []
    assert not any("n_risk" in c or "n_event" in c for ep in data["curves"].values() for c in ep.values())
    for w in data["warnings"]:
        assert [int(x) for x in FREE_INTEGERS.findall(w) if 0 < int(x) < n] == [], w
    page = release(report, "html", n)
    cells = COUNT_CELLS.findall(page)
    assert cells and bad_text(cells, n) == []
    svg_counts = SVG_COUNTS.findall(page)
    assert svg_counts and bad_text(svg_counts, n) == []
    assert "INTERNAL" not in page and f"counts below {n} suppressed" in page
    # the page's figures are the released report's figures (render.figures, also what
    # write_figures saves as files): their counts were checked in the page above
    assert page.count("<svg") >= len(data["endpoints"]) + 1  # a KM figure each, the flow diagram
    rows = list(csv.DictReader(io.StringIO(release(report, "csv", n, table="summary"))))
    assert bad_text([r["value"] for r in rows if r["kind"] == "count"], n) == []


@settings(
    max_examples=25,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],  # a failing example is printed as drawn (shrinking is slow)
)
@given(random_cohort(), st.integers(min_value=2, max_value=15))
def test_no_count_below_the_threshold_leaves_in_any_format(cohort: Any, n: int) -> None:
    report = build_study_report(cohort, DEFN)
    if report.data["n"] < n:
        with pytest.raises(ReportRefused, match="release threshold"):
            release(report, "json", n)
        return
    assert_nothing_small_leaves(report, n)


def test_a_released_report_with_min_cell_11_of_a_small_registry() -> None:
    report = build_study_report(cohort_frame({"G1": 25, "G2": 4, "G3": 13, "G4": 30}), DEFN)
    assert_nothing_small_leaves(report, 11)
    data = json.loads(release(report, "json", 11))
    # G2 (4) is hidden, and G3 (13) with it: a hidden group next to a shown total is recoverable
    assert data["groups"]["G2"]["n"] is None and data["groups"]["G3"]["n"] is None
    assert set(data["curves"]["os_2l"]) == {"G1", "G4"}  # the curves of hidden groups are not drawn
    page = release(report, "html", 11)
    # the legend (outside the plot, wrapped) says why: G2 is small, G3 (13) hidden to protect it
    joined = re.sub(r"</text>\s*<text[^>]*>", " ", page)  # a wrapped label's lines, joined
    assert "G2: LMT, then 2nd line without lenalidomide (n &lt;11: not drawn)" in joined
    assert "G3: No LMT, lenalidomide-based 2nd line (n –: not drawn)" in joined
    assert "G2 has only &lt;11 patients" in page  # the warning says <11, never 4


def test_report_needs_no_database_and_reads_its_analysis_from_the_definition() -> None:
    cohort = cohort_frame({"G1": 30, "G2": 30, "G3": 30, "G4": 30})
    rep = build_study_report(cohort, DEFN)
    assert rep.data["n"] == 120 and rep.data["analysis"]["reference_group"] == "G1"
    unadjusted = [c for c in rep.data["cox"] if c["model"] == "unadjusted" and c["endpoint"] == "os_2l"]
    assert [c["term"] for c in unadjusted] == ["G1 (reference)", "G2 vs G1", "G3 vs G1", "G4 vs G1"]
    assert unadjusted[0]["is_reference"] and unadjusted[0]["hr"] == 1.0
    assert sum(c["n"] for c in unadjusted) == 120 == unadjusted[0]["model_n"]
    # another reference group, from the definition alone
    other = dataclasses.replace(DEFN, analysis=dataclasses.replace(DEFN.analysis, reference_group="G2"))
    terms = {
        c["term"]
        for c in build_study_report(cohort, other).data["cox"]
        if c["model"] == "unadjusted" and not c["is_reference"]
    }
    assert terms == {"G1 vs G2", "G3 vs G2", "G4 vs G2"}


def test_cox_rows_have_readable_labels_and_reference_levels() -> None:
    rep = build_study_report(cohort_frame({"G1": 30, "G2": 30, "G3": 30, "G4": 30}), DEFN)
    adjusted = [c["term"] for c in rep.data["cox"] if c["model"] == "adjusted" and c["endpoint"] == "os_2l"]
    assert "Sex: F (reference)" in adjusted and "Sex: M vs F" in adjusted
    assert "ISS stage: I (reference)" in adjusted and "ISS stage: III vs I" in adjusted
    assert "Age at the start of the 2nd line (per year)" in adjusted
    assert not any("=" in t or "age_at_l2" in t for t in adjusted)


def test_release_suppresses_for_every_caller_and_keeps_the_patient_table_in() -> None:
    rep = build_study_report(cohort_frame({"G1": 30, "G2": 4, "G3": 30, "G4": 30}), DEFN)
    out = json.loads(release(rep, "json", min_cell=5))
    assert out["groups"]["G2"]["n"] is None and out["min_cell"] == 5
    assert out["release"]["status"].startswith("released")
    internal = json.loads(release(rep, "json"))
    assert (
        internal["groups"]["G2"]["n"] == 4 and internal["release"]["status"] == "internal - not for release"
    )
    assert "counts below 5 suppressed" in release(rep, "html", min_cell=5)
    assert "INTERNAL - NOT FOR RELEASE" in release(rep, "html")
    with pytest.raises(UsageError, match="per-patient table"):
        release(rep, "csv", min_cell=5)
    assert release(rep, "csv").count("\n") == 95  # header + 94 patients
    summary = list(csv.DictReader(io.StringIO(release(rep, "csv", min_cell=5, table="summary"))))
    assert {r["release"] for r in summary} == {"released: counts below 5 suppressed"}
    g2 = [r for r in summary if r["table"] == "groups" and r["group"] == "G2"]
    assert g2 == [{**g2[0], "value": "", "suppressed": "1"}]


def test_figures_are_svg_and_300_dpi_png(tmp_path: Path) -> None:
    from PIL import Image

    rep = build_study_report(cohort_frame({"G1": 30, "G2": 30, "G3": 30, "G4": 30}), DEFN)
    written = write_figures(rep, tmp_path / "figs", min_cell=11)
    names = {p.name for p in written}
    assert {"km_os_2l.svg", "km_os_2l.png", "forest_os_2l.svg", "forest_pfs_2l.png", "flow.svg"} <= names
    with Image.open(tmp_path / "figs" / "km_os_2l.png") as im:
        assert round(im.info["dpi"][0]) == 300
    svg = (tmp_path / "figs" / "km_os_2l.svg").read_text()
    assert "Number at risk" in svg and "Cumulative events" in svg and "Log-rank p" in svg
    assert "INTERNAL" not in svg  # a released figure
    assert "INTERNAL" in figures(released(rep.data), "svg")["km_os_2l"]  # an internal one says so
