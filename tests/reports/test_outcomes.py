"""The transplant-outcomes report: its per-patient table, refusals, and the release rule in
every output format (a property test over random small cohorts, as for the study report). Its
numbers against R are in tests/test_end_to_end.py."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from registry.cli import cli
from registry.cohorts.definition import load_definition
from registry.core.errors import ReportRefused, StudyError
from registry.reports.outcomes import build_outcomes_report, release_outcomes
from registry.reports.outcomes_render import render_outcomes
from tests.cohorts.test_registry_flow import cohort_rows
from tests.etl.bundles import write_bundle
from tests.reports.test_release import COUNT_CELLS, SVG_COUNTS, bad_text, recoverable_pairs, small_ints

DEFN = load_definition("transplant-outcomes")
NOT_COUNTS = {"definition_version", "df", "min_cell", "rate_months", "at_risk_months", "landmark_days"}


@st.composite
def outcome_cohorts(draw: st.DrawFn) -> pd.DataFrame:
    k = draw(st.integers(1, 60))
    ints = st.lists(st.integers(1, 3000), min_size=k, max_size=k)
    os_days = draw(ints)
    pfs_days = [min(o, p) for o, p in zip(os_days, draw(ints), strict=True)]
    crr_status = draw(st.lists(st.sampled_from([0, 1, 2]), min_size=k, max_size=k))
    years = draw(st.lists(st.integers(2006, 2024), min_size=k, max_size=k))
    categories = st.sampled_from(["sCR", "CR", "VGPR", "PR", "MR", "SD", "PD", None])
    best = draw(st.lists(categories, min_size=k, max_size=k))
    second = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    responded = [b in ("sCR", "CR", "VGPR", "PR") for b in best]
    frame = pd.DataFrame(
        {
            "patient_key": [f"p{i:03d}" for i in range(k)],
            "cutoff": pd.Timestamp("2026-06-30").date(),
            "iss_stage": draw(st.lists(st.sampled_from(["I", "II", "III", None]), min_size=k, max_size=k)),
            "riss_stage": draw(st.lists(st.sampled_from(["I", "II", None]), min_size=k, max_size=k)),
            "cytogenetic_risk": draw(st.lists(st.sampled_from(["standard", "high"]), min_size=k, max_size=k)),
            "birth_date": [pd.Timestamp(f"{y - 55 - i % 20}-01-01").date() for i, y in enumerate(years)],
            "index_transplant_date": [pd.Timestamp(f"{y}-03-01").date() for y in years],
            "l2_start": None,
            "maintenance_start": [
                pd.Timestamp(f"{y}-06-01").date() if i % 3 else None for i, y in enumerate(years)
            ],
            "maintenance_agents": ["lenalidomide" if i % 3 else None for i in range(k)],
            "step_1": 1,
            "group": "all",
            "os_days": os_days,
            "os_event": draw(st.lists(st.integers(0, 1), min_size=k, max_size=k)),
            "pfs_days": pfs_days,
            "pfs_event": draw(st.lists(st.integers(0, 1), min_size=k, max_size=k)),
            "crr_days": pfs_days,
            "crr_status": crr_status,
            "l1_best_response": best,
            "day100_response": draw(st.lists(categories, min_size=k, max_size=k)),
            "l2_best_response": [
                b if s else None
                for b, s in zip(draw(st.lists(categories, min_size=k, max_size=k)), second, strict=True)
            ],
            # the duration of the first line's response: responders only
            "dor_days": [d if r else None for d, r in zip(draw(ints), responded, strict=True)],
            "dor_event": [
                e if r else None
                for e, r in zip(
                    draw(st.lists(st.integers(0, 1), min_size=k, max_size=k)), responded, strict=True
                )
            ],
            "ttnt_days": draw(ints),
            "ttnt_event": draw(st.lists(st.integers(0, 1), min_size=k, max_size=k)),
        }
    )
    frame["l2_start"] = [
        pd.Timestamp(f"{y + 2}-01-01").date() if s else None for y, s in zip(years, second, strict=True)
    ]
    return frame


def with_response(cohort: pd.DataFrame) -> pd.DataFrame:
    """A hand-built cohort with the response facts and endpoints the report reads (none known)."""
    out = cohort.copy()
    for c in ("l1_best_response", "day100_response", "l2_best_response", "dor_days", "dor_event"):
        out[c] = None
    out["ttnt_days"], out["ttnt_event"] = out["os_days"], 0
    return out


def assert_nothing_small_leaves(data: dict[str, Any], n: int) -> None:
    out = release_outcomes(data, n)
    parsed = json.loads(render_outcomes(out, "json"))
    for key in NOT_COUNTS:
        parsed.pop(key, None)
    assert small_ints({k: v for k, v in parsed.items() if k not in NOT_COUNTS}, n) == []
    assert recoverable_pairs(parsed, n) == []
    page = render_outcomes(out, "html")
    assert bad_text(COUNT_CELLS.findall(page), n) == [] and bad_text(SVG_COUNTS.findall(page), n) == []
    rows = list(csv.DictReader(io.StringIO(render_outcomes(out, "csv"))))
    assert bad_text([r["value"] for r in rows if r["kind"] == "count"], n) == []


@settings(
    max_examples=20,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.generate],
)
@given(outcome_cohorts(), st.integers(min_value=2, max_value=15))
def test_no_count_below_the_threshold_leaves_the_outcomes_report(cohort: pd.DataFrame, n: int) -> None:
    data = build_outcomes_report(cohort, DEFN).data
    if data["n"] < n:
        with pytest.raises(ReportRefused, match="release threshold"):
            release_outcomes(data, n)
        return
    assert_nothing_small_leaves(data, n)


def test_the_naive_maintenance_comparison_and_unknown_factors_are_refused() -> None:
    cohort = outcome_cohorts().example() if False else None
    del cohort
    frame = pd.DataFrame(columns=["patient_key"])
    with pytest.raises(StudyError, match="immortal-time"):
        build_outcomes_report(frame, DEFN, by=["maintenance"], landmark_days=0)
    with pytest.raises(StudyError, match="unknown factor"):
        build_outcomes_report(frame, DEFN, by=["shoe_size"])


def test_export_columns_cli_and_a_released_page(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b", cohort_rows().rows))])
    assert res.exit_code == 0, res.output
    out = tmp_path / "o.csv"
    res = CliRunner().invoke(cli, ["cohort", "export", "transplant-outcomes", "--out", str(out)])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    assert header == [
        "patient_key",
        "iss_stage",
        "cytogenetic_risk",
        "os_days",
        "os_event",
        "pfs_days",
        "pfs_event",
        "crr_days",
        "crr_status",
        "dor_days",
        "dor_event",
        "ttnt_days",
        "ttnt_event",
    ]
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    assert len(rows) == 6 and {r["crr_status"] for r in rows} <= {"0", "1", "2"}
    res = CliRunner().invoke(cli, ["report", "outcomes", "--by", "iss_stage"])
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert set(data["endpoints"]) == {"os", "pfs", "relapse", "nrm"} and data["n"] == 6
    for e in data["endpoints"].values():
        assert {"events", "median_months", "median_ci_months", "rates"} <= set(e)
    assert set(data["strata"]["iss_stage"]["tests"]) == {"os", "pfs", "relapse", "nrm"}
    # a Methods section written from the definition and the derivation in force
    titles = [m["title"] for m in data["methods"]]
    assert titles == ["Lines of therapy", "Cohort", "Endpoints and censoring", "Statistics"]
    text = " ".join(m["text"] for m in data["methods"])
    assert "Aalen-Johansen" in text and "ISS stage" not in text and "iss stage" in text
    assert "death without relapse" in text or "competing event" in text
    page = tmp_path / "o.html"
    assert CliRunner().invoke(cli, ["report", "outcomes", "--out", str(page)]).exit_code == 0
    assert "<h2>Methods</h2>" in page.read_text()
    res = CliRunner().invoke(cli, ["report", "outcomes", "--min-cell", "11"])
    assert res.exit_code == 65 and "release threshold" in res.output  # 6 patients: nothing to release
    res = CliRunner().invoke(cli, ["report", "outcomes", "--maintenance-landmark-days", "0"])
    assert res.exit_code == 64 and "immortal-time" in res.output


def test_incidence_curves_stop_where_fewer_than_n_are_followed_and_the_stack_with_them() -> None:
    from registry.reports.outcomes import build_outcomes_report, release_outcomes
    from registry.reports.plots import stacked_incidence_figure

    rng = np.random.default_rng(5)
    n = 120
    days = rng.integers(30, 4000, n).astype(float)
    status = rng.choice([0, 1, 2], n, p=[0.3, 0.5, 0.2])
    cohort = pd.DataFrame(
        {
            "patient_key": [f"p{i}" for i in range(n)],
            "cutoff": pd.Timestamp("2026-06-30").date(),
            "iss_stage": "I", "riss_stage": "I", "cytogenetic_risk": "standard",
            "birth_date": pd.Timestamp("1955-01-01").date(),
            "index_transplant_date": pd.Timestamp("2012-03-01").date(),
            "l2_start": None, "maintenance_start": None, "maintenance_agents": None,
            "step_1": 1, "group": "all",
            "os_days": days, "os_event": (status == 2).astype(int),
            "pfs_days": days, "pfs_event": (status > 0).astype(int),
            "crr_days": days, "crr_status": status,
        }
    )  # fmt: skip
    internal = build_outcomes_report(with_response(cohort), DEFN, by=[]).data
    assert internal["curves"]["nrm"]["n_risk"][-1] >= 1  # the internal curve runs to the last follow-up
    out = release_outcomes(internal, 11)
    for name in ("relapse", "nrm"):
        c = out["curves"][name]
        assert "n_risk" not in c and c["stops_at_months"] is not None
        assert c["time_months"][-1] < max(days) / 30.4375
    fig = stacked_incidence_figure(out, 144)
    polys = fig.axes[0].collections
    drawn = max(float(p.get_paths()[0].vertices[:, 0].max()) for p in polys)
    assert drawn <= max(out["curves"]["relapse"]["stops_at_months"], out["curves"]["nrm"]["stops_at_months"])
