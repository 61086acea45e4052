"""Executors: where sweep tasks run. In-process, a local process pool, or Ray.

Every task is a pure function of its settings and seeds, so all executors give the
same rows; they differ only in where and in what order tasks finish. Results come
back to the driver, which alone writes to the store.

A task whose ``single_threaded`` attribute is true computes on one thread (its
method's registration says when: gradient descent on the CPU, whose
``GradientDescent.run_batch`` runs a batch serially, so its result does not depend
on where it runs). Such tasks are bound by Python's interpreter lock more
than by arithmetic (hundreds of tiny tensor operations per step), so threads in one
process do not run them faster; the in-process executor hands them to one helper
process per core instead.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Protocol

from ..errors import VolumelabError

logger = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor", "make_executor"]

EXECUTORS = ("local", "ray")

#: Total task cost (``SweepTask.cost`` units) of single-threaded tasks below which the
#: in-process executor runs them here, one after the other: about 10 s of gradient
#: descent at width 5, several times what starting the helper processes costs (about 2 s).
HELPER_MIN_COST = 1e9


def threads_per_worker(workers: int) -> int:
    """Torch threads for each of ``workers`` processes sharing this machine's cores."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _exit_with_parent(parent: int) -> None:
    while True:
        time.sleep(0.5)
        if os.getppid() != parent:
            os._exit(1)


def _init_process_worker(threads: int, parent: int) -> None:
    """Set the torch threads and end this worker when the driver dies (even by SIGKILL)."""
    _init_worker(threads)
    threading.Thread(target=_exit_with_parent, args=(parent,), name="volumelab-watch-parent", daemon=True).start()


def _ready() -> int:
    """A no-op task: submitting one per worker starts the processes (and their imports) early."""
    return os.getpid()


def _is_single_threaded(task: Any) -> bool:
    return bool(getattr(task, "single_threaded", False))


def _runs_off_cpu(task: Any) -> bool:
    """The task computes on an accelerator (its ``device`` attribute), leaving the cores free."""
    return str(getattr(task, "device", "cpu")) != "cpu"


class Executor(Protocol):
    def map_unordered(self, function: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]: ...

    def close(self) -> None: ...


class InProcessExecutor:
    """Runs tasks in this process, with every core busy.

    Tasks that use all cores themselves (e.g. Guess & Check spreads its blocks over
    threads) run here one after the other, in the given order. Then the single-threaded
    tasks (e.g. gradient descent on the CPU) run concurrently in ``helpers`` helper processes with one torch thread each, and come
    back as each finishes; the helpers start while the first tasks run. When every task
    that runs here computes on an accelerator (e.g. sampling on a GPU), the cores are free, so the
    helpers work on the single-threaded tasks *while* those run. When there is only one
    core, one single-threaded task, or little single-threaded work (total cost below
    ``min_helper_cost``), they run here too. A single-threaded task computes the same
    wherever it runs, so the rows are those of running every task one by one.

    Args:
        helpers: Helper processes; ``None`` uses ``torch.get_num_threads()`` (the cores).
        min_helper_cost: ``None``: :data:`HELPER_MIN_COST`.
    """

    name = "in-process"

    def __init__(self, helpers: int | None = None, min_helper_cost: float | None = None) -> None:
        if helpers is not None and helpers < 1:
            raise VolumelabError(f"helpers must be at least 1, got {helpers}")
        self.helpers = helpers
        self.min_helper_cost = min_helper_cost

    def map_unordered(self, function, tasks):
        import torch

        tasks = list(tasks)
        single = [task for task in tasks if _is_single_threaded(task)]
        helpers = min(self.helpers or torch.get_num_threads(), len(single))
        pool = None
        min_cost = HELPER_MIN_COST if self.min_helper_cost is None else self.min_helper_cost
        if helpers > 1 and sum(float(getattr(task, "cost", 0.0)) for task in single) >= min_cost:
            pool = ProcessPoolExecutor(helpers, threads=1)
            pool.start()
        here = [task for task in tasks if not _is_single_threaded(task)]
        try:
            if pool is not None and here and all(_runs_off_cpu(task) for task in here):
                logger.debug("running %d single-threaded tasks in %d helper processes while %d accelerator "
                             "tasks run here", len(single), helpers, len(here))
                futures = pool.submit_all(function, single)
                for task in here:
                    yield function(task)
                    yield from pool.pop_finished(futures)
                yield from pool.as_completed(futures)
                return
            for task in here:
                yield function(task)
            if pool is not None:
                logger.debug("running %d single-threaded tasks in %d helper processes", len(single), helpers)
                yield from pool.map_unordered(function, single)
            else:
                for task in single:
                    yield function(task)
        finally:
            if pool is not None:
                pool.close()

    def close(self) -> None:
        pass


class ProcessPoolExecutor:
    """A pool of ``workers`` local processes (spawned), each with ``cores // workers`` torch threads.

    Args:
        workers: Processes.
        threads: Torch threads per process; ``None``: ``cores // workers``.

    A worker exits by itself when the process that started it dies.
    """

    name = "process pool"

    def __init__(self, workers: int, *, threads: int | None = None) -> None:
        import concurrent.futures
        import multiprocessing

        self.workers = workers
        self._pool = concurrent.futures.ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=_init_process_worker,
            initargs=(threads or threads_per_worker(workers), os.getpid()),
        )

    def start(self) -> None:
        """Start the worker processes now (otherwise they start with the first tasks)."""
        for _ in range(self.workers):
            self._pool.submit(_ready)

    def submit_all(self, function, tasks) -> list:
        """Start every task now; returns their futures (see :meth:`pop_finished`, :meth:`as_completed`)."""
        return [self._pool.submit(function, task) for task in tasks]

    @staticmethod
    def pop_finished(futures: list) -> Iterator[Any]:
        """Results of the futures that are done, removed from ``futures``; does not wait."""
        for future in [f for f in futures if f.done()]:
            futures.remove(future)
            yield future.result()

    @staticmethod
    def as_completed(futures: list) -> Iterator[Any]:
        """Results of all ``futures`` as they finish; unfinished ones are cancelled if the caller stops."""
        import concurrent.futures

        try:
            for future in concurrent.futures.as_completed(futures):
                yield future.result()
        finally:
            for future in futures:
                future.cancel()

    def map_unordered(self, function, tasks):
        yield from self.as_completed(self.submit_all(function, tasks))

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
