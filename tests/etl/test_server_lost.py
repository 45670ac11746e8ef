"""A PostgreSQL server that stops in the middle of a load: the run exits 69 (unavailable) with
one clear line, and once the server is back the registry is exactly as before and the re-run
completes. The test starts a private throwaway cluster (initdb + pg_ctl, as the postgres user
when run as root) and is skipped, with the reason, where one cannot be started."""

from __future__ import annotations

import glob
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text

from registry.db.models import Base
from tests.conftest import TEST_KEY
from tests.etl.bundles import write_bundle
from tests.etl.faults import start_paused
from tests.etl.test_crash_matrix import _second_night


def _bin(name: str) -> str | None:
    found = shutil.which(name) or sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return found if isinstance(found, str) else (found[-1] if found else None)


class Cluster:
    def __init__(self) -> None:
        initdb, self.pg_ctl = _bin("initdb"), _bin("pg_ctl")
        if not initdb or not self.pg_ctl:
            pytest.skip("no initdb/pg_ctl on this machine: a private PostgreSQL cluster cannot be started")
        self.prefix: list[str] = []
        self.root = Path(tempfile.mkdtemp(prefix="registry-pg-"))
        if os.geteuid() == 0:  # initdb refuses root: run the cluster as the postgres user
            runuser = shutil.which("runuser")
            try:
                user = pwd.getpwnam("postgres")
            except KeyError:
                user = None
            if not runuser or user is None:
                pytest.skip("running as root without runuser or a postgres user: no private cluster")
            self.prefix = [runuser, "-u", "postgres", "--"]
            os.chown(self.root, user.pw_uid, user.pw_gid)
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.data = self.root / "data"
        done = self._run([initdb, "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"])
        if done.returncode != 0:
            pytest.skip(f"initdb failed here: {done.stderr.strip()[:200]}")
        self.start()

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*self.prefix, *args], capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off"
        done = self._run(
            [self.pg_ctl, "-D", str(self.data), "-o", options, "-l", str(self.root / "log"), "-w", "start"]
        )
        if done.returncode != 0:
            pytest.skip(f"the private PostgreSQL cluster did not start: {done.stderr.strip()[:200]}")

    def stop(self, mode: str = "fast") -> None:
        self._run([self.pg_ctl, "-D", str(self.data), "-m", mode, "-w", "stop"])

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    try:
        yield c
    finally:
        c.stop("immediate")
        shutil.rmtree(c.root, ignore_errors=True)


def _state(url: str) -> dict[str, list[str]]:
    engine = create_engine(url)
    with engine.connect() as conn:
        out = {
            t.name: sorted(map(repr, conn.execute(text(f"SELECT * FROM {t.name}")).all()))
            for t in Base.metadata.sorted_tables
            if t.name != "etl_runs"
        }
    engine.dispose()
    return out


def _registry(url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REGISTRY_DATABASE_URL": url, "REGISTRY_PSEUDONYM_KEY": TEST_KEY}
    return subprocess.run(
        [os.sys.executable, "-m", "registry.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_the_server_stopping_mid_load_exits_69_and_loses_nothing(cluster: Cluster, tmp_path: Path) -> None:
    assert _registry(cluster.url, "db", "upgrade").returncode == 0
    first = _registry(cluster.url, "etl", "run", str(write_bundle(tmp_path / "night1")))
    assert first.returncode == 0, first.stderr
    before = _state(cluster.url)
    night2 = _second_night(tmp_path)
    proc = start_paused(
        cluster.url, ["etl", "run", str(night2)], tmp_path / "paused", "merge", pause_seconds=3
    )
    cluster.stop("immediate")  # the server goes away while the load holds its transaction
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 69, err
    assert "Traceback" not in err and err.strip().startswith("error:"), err
    cluster.start()
    assert _state(cluster.url) == before  # nothing of the interrupted load is in the registry
    again = _registry(cluster.url, "etl", "run", str(night2))
    assert again.returncode == 0, again.stderr
    assert _state(cluster.url) != before


def test_the_server_stopping_during_the_derivation_says_the_load_was_committed(
    cluster: Cluster, tmp_path: Path
) -> None:
    """The message comes from what was committed: the load was, its derivation was not."""
    assert _registry(cluster.url, "db", "upgrade").returncode == 0
    proc = start_paused(
        cluster.url,
        ["etl", "run", str(write_bundle(tmp_path / "b"))],
        tmp_path / "paused",
        "derive",
        pause_seconds=3,
    )
    cluster.stop("immediate")  # the load committed; the derivation has not started
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 69, err
    assert "run 1's load was committed, its derivation was not" in err and "nothing of the run" not in err, (
        err
    )
    cluster.start()
    engine = create_engine(cluster.url)
    with engine.connect() as conn:
        status = conn.execute(text("SELECT status FROM etl_runs")).scalars().all()
        flagged = conn.execute(text("SELECT COUNT(*) FROM patients WHERE needs_derivation")).scalar()
    engine.dispose()
    assert status == ["succeeded"] and flagged == 3  # committed, recorded, waiting for `registry derive`
