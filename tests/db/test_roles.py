"""Analysts' access. PostgreSQL: a role made by `registry db grant-analyst` reads the views and
nothing else (no base table, no quarantine, no write, no CREATE), keeps that access across a
`registry db upgrade`, and loses it with revoke-analyst. SQLite: an analyst copy holds only
the views' data."""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import Engine, text
from sqlalchemy.exc import ProgrammingError

from etl.pipeline import run_bundle
from registry.cli import cli
from registry.db.views import VIEWS
from tests.conftest import TEST_KEY
from tests.db.analysts import as_role, drop_analyst_roles
from tests.etl.bundles import base_rows, write_bundle

KEY = TEST_KEY.encode()


def test_an_analyst_role_reads_the_views_and_nothing_else(
    engine: Engine, db_url: str, cli_env, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    if engine.dialect.name != "postgresql":  # a PostgreSQL feature; SQLite has analyst-copy
        assert CliRunner().invoke(cli, ["db", "grant-analyst", "ana"]).exit_code == 64
        return
    rows = base_rows()
    rows["treatments"][7]["dose_mg"] = "-1"  # one row in the quarantine
    run_bundle(engine, write_bundle(tmp_path / "b", rows), KEY)
    role = f"ana_{uuid.uuid4().hex[:8]}"
    runner = CliRunner()
    try:
        res = runner.invoke(cli, ["db", "grant-analyst", role, "--login"])
        assert res.exit_code == 0, res.output
        assert runner.invoke(cli, ["db", "grant-analyst", role, "--login"]).exit_code == 0  # idempotent
        analyst = as_role(db_url, role)
        with analyst.connect() as conn:
            for view in VIEWS:
                conn.execute(text(f"SELECT * FROM {view.name}")).all()
            assert conn.execute(text("SELECT count(*) FROM v_patients")).scalar() == 3
            for forbidden in (
                "SELECT * FROM patients",
                "SELECT * FROM quarantine",
                "SELECT * FROM etl_runs",
                "INSERT INTO drugs (generic_name, drug_class, vocabulary_version) VALUES ('x', 'other', 'x')",
                "DELETE FROM patients",
                "CREATE TABLE mine (x int)",
                "CREATE VIEW mine AS SELECT 1",
                "CREATE TEMP TABLE mine (x int)",  # no TEMP on the registry's database
                "CREATE FUNCTION pg_temp.mine() RETURNS int LANGUAGE sql AS 'SELECT 1'",
            ):
                with pytest.raises(ProgrammingError, match="permission denied"):
                    conn.execute(text(forbidden))
        # the access survives an upgrade, which recreates the views
        assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
        with analyst.connect() as conn:
            assert conn.execute(text("SELECT count(*) FROM v_treatments")).scalar() == 7  # one quarantined
            conn.execute(text("SELECT study_group, birth_year FROM cohort_lenalidomide_relapse")).all()
        assert runner.invoke(cli, ["db", "revoke-analyst", role]).exit_code == 0
        with analyst.connect() as conn, pytest.raises(ProgrammingError, match="permission denied"):
            conn.execute(text("SELECT * FROM v_patients"))
        analyst.dispose()
    finally:
        drop_analyst_roles(engine, role)  # roles are the server's: leave none behind


def test_an_analyst_copy_holds_only_the_views(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    runner = CliRunner()
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b"))]).exit_code == 0
    out = tmp_path / "for-analysts.db"
    res = runner.invoke(cli, ["db", "analyst-copy", str(out)])
    assert res.exit_code == 0, res.output
    with sqlite3.connect(out) as conn:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert tables == {v.name for v in VIEWS}
        assert conn.execute("SELECT count(*) FROM v_patients").fetchone()[0] == 3
    assert runner.invoke(cli, ["db", "analyst-copy", str(out)]).exit_code == 64  # never overwritten
