"""SQLite on a full disk: the load is refused with one clear line (exit 74), the registry file is
intact (integrity check, every table as before), and the load completes once there is space. The
disk is a small tmpfs mounted for the test; skipped, with the reason, where mounting is not
permitted (a non-root account)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from etl.synth import write_bundle as synthetic_bundle
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root: the full-disk case cannot be staged here")
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mount)], capture_output=True, check=False
    )
    if done.returncode != 0:
        pytest.skip(f"tmpfs mount not permitted here: {done.stderr.decode().strip()[:120]}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def _registry(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
    return subprocess.run(
        [sys.executable, "-m", "registry.cli", *args], env=env, capture_output=True, text=True, check=False
    )


def _tables(path: Path) -> dict[str, list[tuple]]:  # type: ignore[type-arg]
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]
        return {n: sorted(map(repr, conn.execute(f'SELECT * FROM "{n}"'))) for n in names if n != "etl_runs"}


def test_a_full_disk_is_one_clear_line_and_an_intact_registry(small_disk: Path, tmp_path: Path) -> None:
    db = small_disk / "registry.db"
    url = f"sqlite:///{db}"
    assert _registry(url, "db", "upgrade").returncode == 0
    first = _registry(url, "etl", "run", str(write_bundle(tmp_path / "small")))
    assert first.returncode == 0, first.stderr
    before = _tables(db)
    big = tmp_path / "big"
    synthetic_bundle(big, patients=1500, seed=3)  # far more than the disk holds
    res = _registry(url, "etl", "run", str(big))
    assert res.returncode == 74, res.stderr
    assert "Traceback" not in res.stderr and "disk is full" in res.stderr
    assert _tables(db) == before  # rolled back: the registry file is as it was
    subprocess.run(["umount", "-l", str(small_disk)], check=True)  # "free space": a bigger disk
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(small_disk)], check=True)
    assert _registry(url, "db", "upgrade").returncode == 0
    assert _registry(url, "etl", "run", str(big)).returncode == 0
