"""Ctrl-C: exit 130, one line that says what was kept, no worker tracebacks, the registry as
before (a derivation is one transaction; an interrupted load is recorded as interrupted)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlalchemy import func, select

from etl.pipeline import run_bundle
from etl.synth import write_bundle
from registry.db.database import make_engine
from registry.db.models import DerivationRun, EtlRun, Patient
from tests.conftest import TEST_KEY
from tests.etl.faults import as_a_terminal_job, start_paused


def _children(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []


def test_ctrl_c_during_derive_all_exits_130_with_one_line(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = sqlite_cli_env["REGISTRY_DATABASE_URL"]
    write_bundle(tmp_path / "b", patients=2500, seed=3)
    engine = make_engine(url)
    run_bundle(engine, tmp_path / "b", TEST_KEY.encode(), derive=False)
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry", "derive", "--all", "--workers", "2"],
        env={**os.environ, **sqlite_cli_env},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=as_a_terminal_job,
    )
    deadline = time.time() + 60
    while len(_children(proc.pid)) < 2:  # the worker processes are deriving
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline
        time.sleep(0.01)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err.strip().splitlines() == [
        "interrupted; nothing was changed (the derivation is one transaction; the patients it had not "
        "stored stay flagged for the next one)"
    ]
    with engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(DerivationRun)).scalar() == 0
        assert conn.execute(select(func.count()).where(Patient.needs_derivation)).scalar() == 2500
    engine.dispose()


def test_ctrl_c_during_a_load_is_recorded_as_interrupted(sqlite_cli_env, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    url = sqlite_cli_env["REGISTRY_DATABASE_URL"]
    write_bundle(tmp_path / "b", patients=60, seed=4)
    proc = start_paused(url, ["etl", "run", str(tmp_path / "b")], tmp_path / "paused", stage="merge")
    proc.send_signal(signal.SIGINT)
    _out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "Traceback" not in err
    assert err.strip().splitlines()[-1] == "interrupted; nothing was changed (run 1 recorded as interrupted)"
    engine = make_engine(url)
    with engine.connect() as conn:
        assert conn.execute(select(EtlRun.status)).scalars().all() == ["interrupted"]
        assert conn.execute(select(func.count()).select_from(Patient)).scalar() == 0
    engine.dispose()
