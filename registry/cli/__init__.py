"""The ``registry`` command, on top of everything: one module per noun (``db``, ``etl``,
``cohort``, ``report``, ``patient``, ``doctor``, ``demo``), each a thin layer that parses
options, calls one library function and renders its result. ``base`` holds the group, the
shared context and the exit-code contract."""

from registry.cli import cohort, db, demo, doctor, dq, etl, nightly, patient, report  # noqa: F401 - registers the commands
from registry.cli.base import cli, main

__all__ = ["cli", "main"]
