"""Executors: where sweep tasks run. In-process, a local process pool, or Ray.

Every task is a pure function of its settings and seeds, so all executors give the
same rows; they differ only in where and in what order tasks finish. Results come
back to the driver, which alone writes to the store.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ..errors import VolumelabError

logger = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "ray")


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


class Executor(Protocol):
    def map_unordered(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Runs tasks one after the other in this process."""

    name = "in-process"

    def map_unordered(self, function, tasks):
        for task in tasks:
            yield function(task)

    def close(self) -> None:
        pass


class ProcessPoolExecutor:
    """A pool of ``workers`` local processes (spawned), each with ``cores // workers`` torch threads."""

    name = "process pool"

    def __init__(self, workers: int) -> None:
        import concurrent.futures
        import multiprocessing

        self.workers = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_worker,
            initargs=(threads_per_worker(workers),),
        )

    def map_unordered(self, function, tasks):
        import concurrent.futures

        futures = [self._pool.submit(function, task) for task in tasks]
        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def _ray_call(function, task, threads):
    _init_worker(threads)
    return function(task)


class RayExecutor:
    """Runs tasks as Ray tasks: a local Ray instance by default, a cluster with ``address``.

    Args:
        workers: CPUs of the local Ray instance (ignored when joining a cluster).
        address: ``"auto"`` or ``"ray://host:port"`` of a running cluster; ``None`` starts one locally.
    """

    name = "ray"

    def __init__(self, workers: int, address: str | None = None) -> None:
        try:
            import ray
        except ImportError:
            raise VolumelabError(
                "the Ray executor needs Ray; install it with: pip install 'volumelab[ray]'"
            ) from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            options: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                                       "configure_logging": False}
            if address is None:
                options["num_cpus"] = workers
            else:
                options["address"] = address
            ray.init(**options)
            self._started = True
        self._threads = threads_per_worker(workers) if address is None else 1
        self._remote = ray.remote(num_cpus=1)(_ray_call)

    def map_unordered(self, function, tasks):
        ray = self._ray
        function_ref = ray.put(function)
        pending = [self._remote.remote(function_ref, task, self._threads) for task in tasks]
        try:
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield ray.get(done[0])
        finally:
            for ref in pending:
                ray.cancel(ref, force=True)

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_executor(kind: str = "local", workers: int = 1, address: str | None = None) -> Executor:
    """``local`` with one worker runs in-process; with more, a process pool; ``ray`` uses Ray."""
    if workers < 1:
        raise VolumelabError(f"workers must be at least 1, got {workers}")
    if kind == "local":
        if address is not None:
            raise VolumelabError("--address only applies to --executor ray")
        return InProcessExecutor() if workers == 1 else ProcessPoolExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    raise VolumelabError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
