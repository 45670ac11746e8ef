"""The named moments of a run (``STAGES``) and the observers told when a run reaches one.

A run calls ``reached(stage)`` at each of them; with no observer (every production run) that
does nothing. Tests install an observer (``observe``) that pauses the run there, so they can kill
the process or start a competing run at that exact moment (``tests/etl/paused_registry.py``
runs the ``registry`` command with such an observer). Nothing here reads the environment or a
file: a pause cannot be switched on in production by a stray variable.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

# in the order a run reaches them
STAGES = ("read", "validate", "stage", "merge", "retire", "quarantine", "commit", "derive")
STAGE_MEANING = {
    "read": "the first chunk read, nothing validated yet",
    "validate": "the first chunk validated, not staged",
    "stage": "the first chunk staged",
    "merge": "every file merged into the registry tables",
    "retire": "records absent from a full export retired",
    "quarantine": "the quarantine written",
    "commit": "every write of the load done, nothing committed",
    "derive": "the load committed, its patients flagged, nothing derived yet",
}
_OBSERVERS: list[Callable[[str], None]] = []


def reached(stage: str) -> None:
    """Tell the observers that the run reached ``stage`` (one of ``STAGES``)."""
    assert stage in STAGE_MEANING, stage
    for observer in tuple(_OBSERVERS):
        observer(stage)


@contextmanager
def observe(observer: Callable[[str], None]) -> Iterator[None]:
    """Call ``observer(stage)`` at every stage reached inside the block."""
    _OBSERVERS.append(observer)
    try:
        yield
    finally:
        _OBSERVERS.remove(observer)
