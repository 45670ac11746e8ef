"""Run the `registry` command in a child process that pauses at a stage of its run (an observer
of ``etl/checkpoints.py`` installed by ``tests/etl/paused_registry.py``), so a test can kill it or
read beside it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_KEY

ROOT = Path(__file__).resolve().parents[2]  # the checkout: ``tests`` is importable from there


def paused_command(marker: Path, stage: str, seconds: float, args: list[str]) -> list[str]:
    """The command line of ``registry ARGS`` paused at ``stage`` (see paused_registry.py)."""
    return [sys.executable, "-m", "tests.etl.paused_registry", str(marker), stage, str(seconds), "--", *args]


def as_a_terminal_job() -> None:
    """In a child before it runs: Ctrl-C as a terminal's foreground job gets it (the default
    action, unblocked), whatever the test process itself had inherited for SIGINT (seen: a
    test-suite worker ignoring it, which every child would inherit)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def start_paused(
    db_url: str, args: list[str], marker: Path, stage: str = "commit", pause_seconds: float = 60
) -> subprocess.Popen[str]:
    """Start ``registry ARGS`` and return once it has reached ``stage`` (it then sleeps
    ``pause_seconds`` and goes on). Ctrl-C reaches it as it would a terminal's job."""
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": db_url,
        "REGISTRY_PSEUDONYM_KEY": TEST_KEY,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
    }
    proc = subprocess.Popen(
        paused_command(marker, stage, pause_seconds, args),
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=as_a_terminal_job,
    )
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"the run never reached {stage}"
        time.sleep(0.02)
    return proc
