"""``python -m tests.etl.paused_registry MARKER STAGE SECONDS -- ARGS...``: the ``registry``
command with ARGS, paused at a stage of its run (``etl/checkpoints.py``): on reaching STAGE it
creates MARKER, then sleeps SECONDS and goes on. The crash and lock tests start it in a child
process, wait for MARKER, then kill it or run beside it. Production code has no such switch: the
pause is this observer, installed here."""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv: list[str]) -> None:
    marker, stage, seconds, sep, *args = argv
    assert sep == "--", "usage: MARKER STAGE SECONDS -- ARGS..."

    from etl import checkpoints
    from registry.cli import cli

    def pause(reached: str) -> None:
        if reached == stage:
            Path(marker).touch()
            time.sleep(float(seconds))

    with checkpoints.observe(pause):
        cli.main(args=args, prog_name="registry")


if __name__ == "__main__":
    main(sys.argv[1:])
