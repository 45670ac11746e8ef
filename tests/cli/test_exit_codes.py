"""Every documented exit code (registry.core.errors.EXIT_CODES, the table in
docs/operations.md) is produced by the CLI for the case it documents, with one clear line and
no traceback — except 70, a bug, which prints one. What the database engine changes (a load,
a refused bundle, the lock) runs on both engines; the rest on SQLite."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from registry.cli import cli
from registry.core.errors import (
    EXIT_CANT_CREATE,
    EXIT_CODES,
    EXIT_CONFIG,
    EXIT_DATA,
    EXIT_INTERRUPTED,
    EXIT_IOERR,
    EXIT_NO_INPUT,
    EXIT_OK,
    EXIT_SOFTWARE,
    EXIT_TEMPFAIL,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from registry.db.database import make_engine, writer_lock
from tests.etl.bundles import write_bundle

UNREACHABLE = "postgresql://postgres@127.0.0.1:1/x"


def run(*args: str) -> tuple[int, str]:
    res = CliRunner().invoke(cli, list(args))
    return res.exit_code, res.output


def one_clear_line(output: str) -> bool:
    return "Traceback" not in output and "error:" in output


def test_0_success(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("etl", "run", str(write_bundle(tmp_path / "b")))
    assert code == EXIT_OK, out
    code, out = run("doctor", "--format", "json")
    assert code == EXIT_OK and json.loads(out)["healthy"], out


@pytest.mark.parametrize(
    "args",
    [
        ["etl", "run", "--no-such-option", "x"],  # click's own usage errors exit 64, not 2
        ["db", "upgrade", "--from", "0001"],  # --from without --sql
        ["report", "study", "lenalidomide-relapse", "--format", "csv", "--min-cell", "5"],
        ["report", "study", "no-such-cohort"],
        ["db", "downgrade", "9999", "--yes"],
        ["db", "downgrade", "base"],  # destructive: needs --yes
        ["etl", "quarantine", "--run", "999"],  # an unknown run id, not an empty file
    ],
)
def test_64_usage(args: list[str], sqlite_cli_env) -> None:  # type: ignore[no-untyped-def]
    code, out = run(*args)
    assert code == EXIT_USAGE, out
    assert "Traceback" not in out


def test_65_bundle_refused(cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    bundle = write_bundle(tmp_path / "b")
    (bundle / "manifest.json").write_text("{not json")
    code, out = run("etl", "run", str(bundle))
    assert code == EXIT_DATA and "bundle refused" in out and one_clear_line(out), out


def test_66_no_such_bundle(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    code, out = run("etl", "run", str(tmp_path / "nowhere"))
    assert code == EXIT_NO_INPUT and "does not exist" in out, out


def test_69_database_unreachable() -> None:
    code, out = run("--database-url", UNREACHABLE, "db", "current")
    assert code == EXIT_UNAVAILABLE and "unreachable" in out and one_clear_line(out), out


def test_70_a_bug_prints_its_traceback(sqlite_cli_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import registry.cohorts.definition as definition

    def broken() -> list[str]:
        raise RuntimeError("simulated bug")

    monkeypatch.setattr(definition, "builtin_names", broken)
    code, out = run("cohort", "list")
    assert code == EXIT_SOFTWARE and "internal error (RuntimeError)" in out and "Traceback" in out, out


@pytest.mark.parametrize("command", ["report", "cohort"])
def test_73_output_into_a_missing_folder(command: str, sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out_file = str(tmp_path / "missing" / "x.csv")
    args = (
        ["report", "study", "lenalidomide-relapse", "--out", out_file]
        if command == "report"
        else ["cohort", "export", "lenalidomide-relapse", "--out", out_file]
    )
    code, out = run(*args)
    assert code == EXIT_CANT_CREATE and "does not exist" in out and one_clear_line(out), out


def test_74_disk_full(sqlite_cli_env, monkeypatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # the real case (a 3 MB tmpfs filling up mid-load) is tests/etl/test_disk_full.py (needs root)
    import sqlite3

    from sqlalchemy.exc import OperationalError

    import etl.pipeline

    def full(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise OperationalError("INSERT ...", {}, sqlite3.OperationalError("database or disk is full"))

    monkeypatch.setattr(etl.pipeline, "run_bundle", full)
    code, out = run("etl", "run", str(write_bundle(tmp_path / "b")))
    assert code == EXIT_IOERR and "disk is full" in out and one_clear_line(out), out


def test_75_lock_held(cli_env, db_url: str, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    engine = make_engine(db_url)
    try:
        with writer_lock(engine):
            code, out = run("etl", "run", str(write_bundle(tmp_path / "b")))
    finally:
        engine.dispose()
    assert code == EXIT_TEMPFAIL and "another run holds the lock" in out, out


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (["--database-url", "postgresql+psycopg2://u@127.0.0.1/x", "db", "current"], "driver"),
        (["--database-url", "sqlite:///{tmp}/none.db", "etl", "runs"], "no registry database"),
        (["--database-url", "sqlite:///{tmp}/none.db", "doctor"], "no registry database"),
        (["report", "study", "{tmp}/broken.toml"], "step 2"),
    ],
)
def test_78_configuration(args: list[str], text: str, sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    definition = (
        Path(__file__).resolve().parents[2] / "registry/cohorts/lenalidomide-relapse.toml"
    ).read_text()
    broken = definition.replace(
        'condition = "relapse_date IS NOT NULL', 'condition = "no_such_column IS NOT NULL', 1
    )
    (tmp_path / "broken.toml").write_text(broken)
    code, out = run(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert code == EXIT_CONFIG and text in out and "Traceback" not in out, out
    assert not (tmp_path / "none.db").exists()  # reading commands never create a registry


def test_130_interrupted(sqlite_cli_env, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Ctrl-C as the library reports it (processes and worker pools: tests/cli/test_interrupt.py)."""
    import registry.derive.run as run_module

    def interrupted(*_args: object, **_kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(run_module, "_derive", interrupted)
    code, out = run("derive", "--all")
    assert code == EXIT_INTERRUPTED and out.strip().startswith("interrupted; nothing was changed"), out
    assert "Traceback" not in out


def test_every_documented_code_has_its_test_and_nothing_undocumented_is_tested() -> None:
    tested = {int(n.split("_")[1]) for n in globals() if n.startswith("test_") and n.split("_")[1].isdigit()}
    assert tested == set(EXIT_CODES)
