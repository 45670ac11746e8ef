"""The HTML page comes from its template: every group, Table 1 with n (%), median (IQR), a total
column and SMDs, figures inline as SVG, Methods and provenance, values that cannot be estimated
said in words, text from the data escaped; and it renders in a real browser."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
from pathlib import Path

import pytest

from registry.reports.release import release
from registry.reports.study import build_study_report
from tests.reports.helpers import DEFN, cohort_frame


def test_html_shows_every_group_table_1_and_escapes_labels() -> None:
    groups = tuple(dataclasses.replace(g, label=f"{g.label} <b>&</b>") for g in DEFN.groups)
    defn = dataclasses.replace(DEFN, groups=groups)
    rep = build_study_report(cohort_frame({"G1": 12, "G2": 12, "G3": 12, "G4": 12}), defn)
    page = release(rep, "html")
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert "Table 1. Baseline at the start of the 2nd line" in page
    for label in ("Sex, n (%): F", "ISS stage, n (%): I", "Cytogenetic risk, n (%): standard", "Total"):
        assert label in page
    assert "Age at the start of the 2nd line, years, median (IQR)" in page
    assert "&lt;b&gt;&amp;&lt;/b&gt;" in page and "<b>&</b>" not in page  # autoescaped
    assert page.count("Kaplan-Meier estimates with 95% confidence bands") == 2  # one per endpoint
    assert page.count("Forest plot") == 2 and "Patients (flow diagram)" in page
    for m in (12, 24, 60):
        assert f"{m}-month rate" in page
    assert "Published and reproduced" in page and "55.3" in page  # the definition's [published]
    assert "Multiplicity" in page and "7 log-rank tests" in page  # Methods from the definition
    # every median is reached here; with G4 event-free its OS median is "not reached"
    assert ">not reached" not in page  # a median cell (an upper CI bound may read "not reached")
    frame = cohort_frame({"G1": 12, "G2": 12, "G3": 12, "G4": 12})
    frame.loc[frame["group"] == "G4", "os_2l_event"] = 0
    no_median = build_study_report(frame, defn)
    medians = {g: v["endpoints"]["os_2l"]["median_months"] for g, v in no_median.data["groups"].items()}
    assert medians["G4"] is None and None not in [medians[g] for g in ("G1", "G2", "G3")]
    # G4 only, in the survival table and in the published-and-reproduced table
    assert release(no_median, "html").count(">not reached") == 2


def test_json_and_csv_are_the_same_report() -> None:
    rep = build_study_report(cohort_frame({"G1": 8, "G2": 9, "G3": 10, "G4": 11}), DEFN)
    data = json.loads(release(rep, "json"))
    assert data["n"] == 38 == len(release(rep, "csv").splitlines()) - 1
    assert {g: v["n"] for g, v in data["groups"].items()} == {"G1": 8, "G2": 9, "G3": 10, "G4": 11}
    assert data["table1"]["n"] == {"G1": 8, "G2": 9, "G3": 10, "G4": 11, "total": 38}
    curve = data["curves"]["os_2l"]["G1"]  # enough to redraw the plot
    assert len(curve["time_months"]) == len(curve["surv"]) == len(curve["n_risk"])
    assert (
        curve["n_risk"][0] == 8
        and sum(curve["n_event"]) == data["groups"]["G1"]["endpoints"]["os_2l"]["events"]
    )


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install -y chromium)")
def test_the_page_renders_in_a_headless_browser(tmp_path: Path) -> None:
    from PIL import Image

    rep = build_study_report(cohort_frame({"G1": 30, "G2": 30, "G3": 30, "G4": 30}), DEFN)
    page = tmp_path / "report.html"
    page.write_text(release(rep, "html", min_cell=11), encoding="utf-8")
    shot = tmp_path / "shot.png"
    common = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars"]
    proc = subprocess.run(
        [*common, "--window-size=1100,3000", f"--screenshot={shot}", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0 and shot.exists(), proc.stderr[-2000:]
    with Image.open(shot) as im:
        colours = im.convert("RGB").resize((110, 300)).getcolors(maxcolors=100_000)
    assert colours is not None and len(colours) > 50  # a drawn page, not a blank one
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120, check=True
    ).stdout
    assert dom.count("<svg") >= 5 and "Released: counts below 11 suppressed" in dom


def test_the_time_axis_ends_with_the_last_observation_drawn() -> None:
    import math

    from registry.reports.plots import km_figure
    from registry.reports.study import build_study_report
    from registry.reports.suppress import released
    from tests.reports.helpers import DEFN, cohort_frame

    data = released(build_study_report(cohort_frame({"G1": 40, "G2": 40, "G3": 40, "G4": 40}), DEFN).data, 11)
    curves = data["curves"]["os_2l"].values()
    last = max(max([*c["time_months"], *c.get("censored_months", [])]) for c in curves)
    fig = km_figure(data, "os_2l")
    assert fig.axes[0].get_xlim()[1] == min(data["horizon_months"], max(12, math.ceil(last / 12) * 12))
    assert fig.axes[0].get_xlim()[1] < data["horizon_months"]  # the curves stop before the data do
