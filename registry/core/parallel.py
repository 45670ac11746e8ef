"""Handing work to a process pool with a bound on what waits in memory."""

from __future__ import annotations

import collections
import contextlib
import ctypes
import multiprocessing
import os
import signal
import threading
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


def end_with_parent(parent: int) -> None:
    """Linux: a worker ends (SIGTERM, quietly) when the process that forked it (``parent``,
    its pid taken before the fork) dies, instead of living on as an orphan that writes
    broken-pipe tracebacks. The pid comes from the parent: read in the worker, it would already
    be the reaper's when the parent died before the worker first ran (seen under load)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return  # not Linux: the pool's own shutdown is all there is
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(0)


def ignore_interrupts() -> None:
    """A worker process's first step: Ctrl-C reaches the whole process group, and only the
    parent decides what an interruption means (it ends the pool; a worker that handled it too
    would print its own traceback)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def forked_pool(
    workers: int, initializer: Callable[..., None] | None = None, initargs: tuple[Any, ...] = ()
) -> Iterator[Pool]:
    """A pool of forked workers that never handle Ctrl-C. SIGINT is blocked while the workers
    are forked (each starts by ignoring it, so none sees one before its first instruction) and
    unblocked once the pool is in place: a Ctrl-C that came meanwhile is raised then, inside the
    block, whose end (an interruption included) terminates the workers."""

    parent = os.getpid()

    def start(*args: Any) -> None:
        ignore_interrupts()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        end_with_parent(parent)
        if initializer is not None:
            initializer(*args)

    main = threading.current_thread() is threading.main_thread()
    if main:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        pool = multiprocessing.get_context("fork").Pool(workers, initializer=start, initargs=initargs)
    except BaseException:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        raise
    with pool:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        yield pool
