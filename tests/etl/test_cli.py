"""The operator's commands: runs, quarantine export, validate with a quarantine CSV."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner

from registry.cli import cli
from tests.etl.bundles import base_rows, write_bundle


def test_runs_quarantine_and_validate(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    rows = base_rows()
    rows["treatments"][7]["dose_mg"] = "-3"
    rows["disease_events"][2]["event_type"] = "remission"
    b = write_bundle(tmp_path / "b", rows)
    runner = CliRunner()

    res = runner.invoke(cli, ["etl", "validate", str(b), "--quarantine-csv", str(tmp_path / "v.csv")])
    assert res.exit_code == 0, res.output
    assert "2 row(s) would be quarantined" in res.output
    with (tmp_path / "v.csv").open() as fh:
        assert {r["rule"] for r in csv.DictReader(fh)} == {"must_be_positive", "not_allowed"}
    res = runner.invoke(cli, ["etl", "runs"])
    assert "validate" not in res.output and res.output.count("\n") == 1  # a dry run writes nothing

    res = runner.invoke(cli, ["etl", "run", str(b)])
    assert res.exit_code == 0, res.output
    assert "quarantined" in res.output and "derived" in res.output
    res = runner.invoke(cli, ["etl", "runs"])
    assert "succeeded" in res.output and "TEST-SITE" in res.output

    res = runner.invoke(cli, ["etl", "quarantine"])
    lines = list(csv.DictReader(io.StringIO(res.output)))
    assert [(r["file"], r["row_number"], r["rule"]) for r in lines] == [
        ("disease_events", "4", "not_allowed"),
        ("treatments", "9", "must_be_positive"),
    ]
    assert "MRN-" not in res.output  # only pseudonyms leave the registry
    out = tmp_path / "q.csv"
    res = runner.invoke(cli, ["etl", "quarantine", "--run", "1", "--out", str(out)])
    assert res.exit_code == 0 and out.read_text().count("\n") == 3


def test_cohort_list_export_and_views(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b"))]).exit_code == 0
    res = runner.invoke(cli, ["cohort", "list"])
    assert "lenalidomide-relapse (v2)" in res.output
    out = tmp_path / "c.csv"
    res = runner.invoke(cli, ["cohort", "export", "lenalidomide-relapse", "--out", str(out)])
    assert res.exit_code == 0, res.output
    header = out.read_text().splitlines()[0].split(",")
    for col in ("patient_key", "group", "l2_start", "os_2l_days", "os_2l_event", "pfs_2l_days"):
        assert col in header
    res = runner.invoke(cli, ["cohort", "views"])
    assert "view cohort_lenalidomide_relapse" in res.output
    res = runner.invoke(cli, ["report", "study", "lenalidomide-relapse", "--endpoint", "pfs"])
    assert res.exit_code == 64 and "immortal-time" in res.output and "Traceback" not in res.output
    res = runner.invoke(cli, ["report", "study", "no-such-study"])
    assert res.exit_code == 64 and "no cohort named" in res.output
