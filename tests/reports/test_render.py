"""The HTML page comes from its template: every group, the definition's baseline heading and
tables, values that cannot be estimated said in words, and text from the data escaped."""

from __future__ import annotations

import dataclasses
import json

from registry.reports.release import release
from registry.reports.study import build_study_report
from tests.reports.helpers import DEFN, cohort_frame


def test_html_shows_every_group_the_baseline_tables_and_escapes_labels() -> None:
    groups = tuple(dataclasses.replace(g, label=f"{g.label} <b>&</b>") for g in DEFN.groups)
    defn = dataclasses.replace(DEFN, groups=groups)
    rep = build_study_report(cohort_frame({"G1": 12, "G2": 12, "G3": 12, "G4": 12}), defn)
    page = release(rep, "html")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "Baseline at the start of the 2nd line" in page
    for label in ("Sex: F", "ISS stage: II", "Cytogenetic risk: high"):
        assert label in page
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page  # autoescaped
    assert page.count('src="data:image/png;base64,') == 2  # one Kaplan-Meier plot per endpoint
    medians = [
        g["endpoints"]["os_2l"]["median_months"] for g in json.loads(release(rep, "json"))["groups"].values()
    ]
    if None in medians:
        assert "not reached" in page


def test_json_and_csv_are_the_same_report() -> None:
    rep = build_study_report(cohort_frame({"G1": 8, "G2": 9, "G3": 10, "G4": 11}), DEFN)
    data = json.loads(release(rep, "json"))
    assert data["n"] == 38 == len(release(rep, "csv").splitlines()) - 1
    assert {g: v["n"] for g, v in data["groups"].items()} == {"G1": 8, "G2": 9, "G3": 10, "G4": 11}
