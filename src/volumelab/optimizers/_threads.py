"""Run independent pieces of work on all cores, one intra-op thread each, in order.

PyTorch's random-number generation is serial per generator and its kernels on tiny
tensors are dominated by per-call overhead; both parallelize well across independent
pieces of work (G&C blocks, GD batches) and badly within one. Each worker thread runs
with one intra-op thread, so a piece is always computed by the same serial code and
the results do not depend on the number of workers or on ``torch.set_num_threads``.

Setting one thread in a pool worker also changes what the whole process sees: OpenMP's
default for threads that have not set their own count and MKL's count are process-wide
(measured: a fresh thread reads 1 after a worker set 1, while a thread that set its own
count keeps it). The worker's setting is therefore scoped (:func:`one_intra_op_thread`):
the process's default is saved when the first piece of work that lowers it starts and
restored when the last one ends, so two runs in one process (two threads of a user's, or
a driver and its in-process tasks) never restore it under each other, nothing is left
lowered afterwards, and the calling thread's own count is never touched.
:func:`configured_threads` gives the count as the user set it while work holds it lowered.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

import torch

__all__ = ["configured_threads", "map_in_threads", "one_intra_op_thread"]

T = TypeVar("T")

_LOCK = threading.Lock()
#: How many pieces of work are in :func:`one_intra_op_thread` now, and the count they lowered.
_ACTIVE = 0
_SAVED: int | None = None


def _in_fresh_thread(work: Callable[[], T]) -> T:
    """``work()`` in a new thread: it reads and writes the process's default, not the caller's own count."""
    result: list = []
    thread = threading.Thread(target=lambda: result.append(work()))
    thread.start()
    thread.join()
    return result[0]


def configured_threads() -> int:
    """The process's torch thread count as its user set it (the saved default while work holds it lowered)."""
    with _LOCK:
        return _SAVED if _ACTIVE else torch.get_num_threads()


@contextmanager
def one_intra_op_thread() -> Iterator[None]:
    """Scope for work whose pool threads set one intra-op thread: the first to enter saves the process's
    default, the last to leave restores it."""
    global _ACTIVE, _SAVED
    with _LOCK:
        if _ACTIVE == 0:
            _SAVED = _in_fresh_thread(torch.get_num_threads)
        _ACTIVE += 1
    try:
        yield
    finally:
        with _LOCK:
            _ACTIVE -= 1
            if _ACTIVE == 0:
                saved, _SAVED = _SAVED, None
                _in_fresh_thread(lambda: torch.set_num_threads(saved))


def map_in_threads(work: Callable[[int], T], count: int, workers: int) -> Iterator[T]:
    """Yield ``work(i)`` for ``i = 0 .. count - 1`` in order, computed by ``workers`` threads.

    At most ``2 * workers`` pieces are in flight, each on a pool thread with one intra-op
    thread. The process's default is back when the generator ends and no other work holds
    it lowered (:func:`one_intra_op_thread`); the calling thread's own count is not changed.
    """
    with one_intra_op_thread():
        pool = ThreadPoolExecutor(max_workers=max(1, workers), initializer=torch.set_num_threads, initargs=(1,))
        pending: deque = deque()
        next_index = 0
        try:
            while next_index < count or pending:
                while next_index < count and len(pending) < 2 * max(1, workers):
                    pending.append(pool.submit(work, next_index))
                    next_index += 1
                yield pending.popleft().result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
