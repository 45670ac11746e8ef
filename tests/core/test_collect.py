"""The derivation's garbage-collector settings: set for the body, restored after it (also
after an error and when nested); a reference cycle made in the body is still collected."""

from __future__ import annotations

import gc
import weakref

import pytest

from registry.core.collect import BULK_THRESHOLDS, fewer_collections


class _Node:
    def __init__(self) -> None:
        self.other: _Node | None = None


def test_settings_hold_in_the_body_and_are_restored_after_it() -> None:
    before = gc.get_threshold()
    assert gc.get_freeze_count() == 0
    with fewer_collections():
        assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_freeze_count() > 0  # what existed before is frozen
        with fewer_collections():  # nested: the outer one's settings stand
            assert gc.get_threshold() == BULK_THRESHOLDS
        assert gc.get_threshold() == BULK_THRESHOLDS and gc.get_freeze_count() > 0
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0
    with pytest.raises(RuntimeError), fewer_collections():
        raise RuntimeError("a failed derivation")
    assert gc.get_threshold() == before and gc.get_freeze_count() == 0


def test_a_cycle_made_in_the_body_is_not_frozen() -> None:
    with fewer_collections():
        a, b = _Node(), _Node()
        a.other, b.other = b, a
        gone = weakref.ref(a)
        del a, b
        gc.collect(0)  # what the collector runs after BULK_THRESHOLDS[0] allocations
        assert gone() is None
