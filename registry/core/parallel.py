"""Handing work to a process pool with a bound on what waits in memory."""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable, Iterator
from multiprocessing.pool import Pool
from typing import Any, TypeVar

T = TypeVar("T")


def in_order(
    pool: Pool, fn: Callable[[Any], Any], items: Iterable[T], task: Callable[[T], Any], in_flight: int
) -> Iterator[tuple[T, Any]]:
    """Each item with ``fn(task(item))`` computed by the pool, in the items' order, with at most
    ``in_flight`` tasks handed out and not yet taken by the caller (``Pool.imap`` hands every
    task out at once, and results the caller has not taken pile up in its memory)."""
    waiting: collections.deque[tuple[T, Any]] = collections.deque()
    for item in items:
        waiting.append((item, pool.apply_async(fn, (task(item),))))
        if len(waiting) >= in_flight:
            done, result = waiting.popleft()
            yield done, result.get()
    while waiting:
        done, result = waiting.popleft()
        yield done, result.get()
