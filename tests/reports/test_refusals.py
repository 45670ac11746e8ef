"""A report refuses (exit 65, a message naming what to do) rather than describe a wrong state:
patients awaiting derivation, a data cutoff after the data or before the first transplant, an
empty registry or cohort. A request that cannot be answered is a usage error (64) first."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from registry.cli import cli
from registry.core.errors import EXIT_DATA, EXIT_OK
from tests.cohorts.test_registry_flow import Rows, cohort_rows
from tests.etl.bundles import write_bundle


def report(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, ["report", "study", "lenalidomide-relapse", *args])
    return res.exit_code, res.output


def etl(*args: str) -> None:
    res = CliRunner().invoke(cli, ["etl", "run", *args])
    assert res.exit_code == EXIT_OK, res.output


def test_a_report_refuses_while_patients_await_derivation(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = write_bundle(tmp_path / "b", cohort_rows().rows)
    etl(str(bundle), "--no-derive")
    code, out = report()
    assert code == EXIT_DATA and "await derivation" in out and "registry derive" in out, out
    assert "Traceback" not in out
    assert CliRunner().invoke(cli, ["derive"]).exit_code == EXIT_OK
    code, out = report()
    assert code == EXIT_OK, out


def test_as_of_outside_the_data_and_an_empty_registry_are_refused(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = report()
    assert code == EXIT_DATA and "no patients" in out, out
    etl(str(write_bundle(tmp_path / "b", cohort_rows().rows)))
    code, out = report("--as-of", "2030-01-01")  # the site's cutoff is 2026-06-30
    assert code == EXIT_DATA and "after the latest data cutoff (2026-06-30)" in out, out
    code, out = report("--as-of", "1990-01-01")
    assert code == EXIT_DATA and "before the first transplant" in out, out
    code, out = report("--as-of", "2026-06-30")
    assert code == EXIT_OK, out


def test_an_empty_cohort_is_refused(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    r = Rows()
    r.patient("FF")
    r.induction_and_asct("FF")  # a transplant, never a relapse: nobody in the cohort
    r.fu("FF", "2026-01-01")
    etl(str(write_bundle(tmp_path / "b", r.rows)))
    code, out = report("--format", "html")
    assert code == EXIT_DATA and "cohort lenalidomide-relapse is empty" in out, out
    assert "<html" not in out


def test_a_definition_that_does_not_fit_the_report_names_the_report_that_does(sqlite_cli_env) -> None:  # type: ignore[no-untyped-def]
    res = CliRunner().invoke(cli, ["report", "study", "transplant-outcomes"])
    assert res.exit_code == 64 and "Traceback" not in res.output, res.output
    assert "compares no groups" in res.output and "registry report outcomes" in res.output


def test_out_infers_the_format_and_a_contradiction_is_a_usage_error(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    etl(str(write_bundle(tmp_path / "b", cohort_rows().rows)))
    code, out = report("--out", str(tmp_path / "r.html"))
    assert code == EXIT_OK, out
    assert (tmp_path / "r.html").read_text().startswith("<!doctype html>")
    code, out = report("--out", str(tmp_path / "r.json"))
    assert code == EXIT_OK and (tmp_path / "r.json").read_text().lstrip().startswith("{")
    code, out = report("--out", str(tmp_path / "x.html"), "--format", "json")
    assert code == 64 and "contradicts" in out and not (tmp_path / "x.html").exists(), out
    res = CliRunner().invoke(cli, ["report", "outcomes", "--out", str(tmp_path / "o.html")])
    assert res.exit_code == EXIT_OK and (tmp_path / "o.html").read_text().startswith("<!doctype html>")
