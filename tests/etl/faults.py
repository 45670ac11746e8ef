"""Run the `registry` command in a child process that pauses at a load stage (the fault hook
REGISTRY_FAULT_PAUSE_FILE / REGISTRY_FAULT_STAGE), so a test can kill it or read beside it."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import TEST_KEY


def start_paused(
    db_url: str, args: list[str], marker: Path, stage: str = "commit", pause_seconds: float = 60
) -> subprocess.Popen[str]:
    """Start ``registry ARGS`` and return once it has reached ``stage`` (it then sleeps
    ``pause_seconds`` and goes on)."""
    env = {
        **os.environ,
        "REGISTRY_DATABASE_URL": db_url,
        "REGISTRY_PSEUDONYM_KEY": TEST_KEY,
        "REGISTRY_FAULT_PAUSE_FILE": str(marker),
        "REGISTRY_FAULT_STAGE": stage,
        "REGISTRY_FAULT_PAUSE_SECONDS": str(pause_seconds),
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "registry.cli", *args],
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 60
    while not marker.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.time() < deadline, f"the run never reached {stage}"
        time.sleep(0.02)
    return proc
