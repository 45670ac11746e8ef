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
