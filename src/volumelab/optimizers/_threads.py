"""Run independent pieces of work on all cores, one intra-op thread each, in order.

PyTorch's random-number generation is serial per generator and its kernels on tiny
tensors are dominated by per-call overhead; both parallelize well across independent
pieces of work (G&C blocks, GD batches) and badly within one. Each worker thread runs
with one intra-op thread, so a piece is always computed by the same serial code and
the results do not depend on the number of workers or on ``torch.set_num_threads``.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

import torch

__all__ = ["map_in_threads"]

T = TypeVar("T")


def map_in_threads(work: Callable[[int], T], count: int, workers: int) -> Iterator[T]:
    """Yield ``work(i)`` for ``i = 0 .. count - 1`` in order, computed by ``workers`` threads.

    At most ``2 * workers`` pieces are in flight. ``torch.set_num_threads(1)`` in a thread
    also lowers PyTorch's process-wide default, so the caller's setting is restored
    afterwards.
    """
    saved_threads = torch.get_num_threads()
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
        torch.set_num_threads(saved_threads)
