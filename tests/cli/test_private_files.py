"""Files the registry creates are private to its account: the SQLite registry, its lock, the
reports (0600; folders 0700). `registry doctor` warns about a registry others can read."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from click.testing import CliRunner

from registry.cli import cli
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_new_files_are_0600_and_doctor_warns_about_a_readable_registry(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    db = tmp_path / "registry.db"
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("REGISTRY_PSEUDONYM_KEY", TEST_KEY)
    bundle = write_bundle(tmp_path / "b")
    umask = os.umask(0o022)  # a typical shell's: new files would be 0644
    try:
        runner = CliRunner()
        assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
        assert runner.invoke(cli, ["etl", "run", str(bundle)]).exit_code == 0
        out = tmp_path / "reports" / "study.html"
        (tmp_path / "reports").mkdir()
        res = runner.invoke(
            cli, ["report", "study", "lenalidomide-relapse", "--format", "html", "--out", str(out)]
        )
        assert res.exit_code == 0, res.output
        created = [db, tmp_path / "registry.db.lock", out]
        assert all(_mode(p) == 0o600 for p in created), {p.name: oct(_mode(p)) for p in created}
        assert os.umask(0o022) == 0o022  # the caller's umask is restored after the command
        res = runner.invoke(cli, ["doctor"])
        assert "(private)" in res.output
        db.chmod(0o644)
        res = runner.invoke(cli, ["doctor"])
        assert res.exit_code == 0 and "WARNING: -rw-r--r--" in res.output
    finally:
        os.umask(umask)


def test_reports_can_be_shared_with_one_group_and_nothing_else_is(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import grp

    group = grp.getgrgid(os.getgid()).gr_name  # a group this account may give files to
    db = tmp_path / "registry.db"
    monkeypatch.setenv("REGISTRY_DATABASE_URL", f"sqlite:///{db}")
    monkeypatch.setenv("REGISTRY_PSEUDONYM_KEY", TEST_KEY)
    monkeypatch.setenv("REGISTRY_REPORT_GROUP", group)
    runner = CliRunner()
    assert runner.invoke(cli, ["db", "upgrade"]).exit_code == 0
    assert runner.invoke(cli, ["etl", "run", str(write_bundle(tmp_path / "b"))]).exit_code == 0
    page, figs, table = tmp_path / "study.html", tmp_path / "figs", tmp_path / "patients.csv"
    args = [
        "report",
        "study",
        "lenalidomide-relapse",
        "--out",
        str(page),
        "--format",
        "html",
        "--figures",
        str(figs),
    ]
    assert runner.invoke(cli, args).exit_code == 0
    assert _mode(page) == 0o640 and page.stat().st_gid == grp.getgrnam(group).gr_gid
    assert _mode(figs) == 0o750 and all(_mode(f) == 0o640 for f in figs.iterdir())
    res = runner.invoke(
        cli, ["report", "study", "lenalidomide-relapse", "--format", "csv", "--out", str(table)]
    )
    assert res.exit_code == 0
    assert _mode(table) == 0o600 and _mode(db) == 0o600  # the per-patient table and the registry stay private
    monkeypatch.setenv("REGISTRY_REPORT_GROUP", "no-such-group-here")
    page.unlink()
    res = runner.invoke(cli, args)
    assert res.exit_code == 78 and "report group 'no-such-group-here' does not exist" in res.output
    assert not page.exists()  # refused before any work
