"""Executors: where sweep tasks run. In-process, a local process pool, Ray, or jobs of a SLURM array.

Every task is a pure function of its settings and seeds, so all executors give the
same rows; they differ only in where and in what order tasks finish. Results of the
in-process, process-pool and Ray executors come back to the driver, which alone writes to
the store. The jobs of :class:`SubmititExecutor` (``slurm``, ``submitit-local``) each write
their own shard store instead, which the driver merges (:mod:`volumelab.experiments.shards`).

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
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ..errors import VolumelabError

logger = logging.getLogger(__name__)

__all__ = ["EXECUTORS", "Executor", "InProcessExecutor", "ProcessPoolExecutor", "RayExecutor", "ShardDone",
           "SubmititExecutor", "make_executor"]

EXECUTORS = ("local", "ray", "slurm", "submitit-local")

#: Executors whose jobs write shard stores (:class:`SubmititExecutor`), with submitit's name of their cluster.
SHARD_EXECUTORS = {"slurm": "slurm", "submitit-local": "local"}

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


@dataclass(frozen=True)
class ShardDone:
    """A job of :class:`SubmititExecutor` ended: its shard store, and why it failed (``None`` when it did not)."""

    path: Path
    error: str | None = None


def _balanced(tasks: list[Any], jobs: int) -> list[list[Any]]:
    """``tasks`` in ``jobs`` groups of about equal total cost (the costliest first, each to the lightest group)."""
    groups: list[list[Any]] = [[] for _ in range(jobs)]
    loads = [0.0] * jobs
    for task in sorted(tasks, key=lambda t: -float(getattr(t, "cost", 0.0))):
        lightest = loads.index(min(loads))
        groups[lightest].append(task)
        loads[lightest] += float(getattr(task, "cost", 0.0))
    return [group for group in groups if group]


class SubmititExecutor:
    """Runs a sweep's tasks as a job array through submitit: SLURM (``cluster="slurm"``) or local processes
    (``cluster="local"``, the same code path on one machine, which is how it is tested).

    The tasks are split into ``jobs`` groups of about equal cost, one job each. A job runs its tasks one after the
    other and stores each one's rows in its own shard store (:func:`~volumelab.experiments.shards.run_shard`);
    :meth:`map_unordered` yields a :class:`ShardDone` as each job ends, and the driver merges that shard. When
    the driver stops (Ctrl-C, SIGTERM) the jobs still running are cancelled; what they stored is merged on the
    next run.

    Args:
        cluster: submitit's cluster, ``"slurm"`` or ``"local"``.
        jobs: Jobs in the array (at most one per task).
        folder: The sweep's output folder: shards go to ``<folder>/shards``, submitit's files and the jobs' logs to
            ``<folder>/submitit``.
        parameters: submitit's executor parameters (``timeout_min``, ``slurm_partition``, ``cpus_per_task``,
            ``mem_gb``, ``slurm_array_parallelism``, ...); ``timeout_min`` defaults to 24 hours.
        poll_seconds: How often to look for finished jobs; ``None``: 0.5 s locally, 15 s on SLURM.
    """

    name = "submitit"
    #: Its jobs write shard stores; the driver merges them instead of storing returned rows.
    writes_shards = True

    def __init__(self, cluster: str, jobs: int, folder: str | Path, parameters: dict | None = None,
                 poll_seconds: float | None = None) -> None:
        try:
            import submitit
        except ImportError:
            raise VolumelabError("the slurm and submitit-local executors need submitit; install it with: "
                                 "pip install 'volumelab[slurm]'") from None
        if jobs < 1:
            raise VolumelabError(f"jobs must be at least 1, got {jobs}")
        if cluster == "slurm" and shutil.which("sbatch") is None:
            raise VolumelabError("--executor slurm needs SLURM's sbatch on this machine's PATH (run volumelab on the "
                                 "cluster's login node); --executor submitit-local runs the same jobs on this machine")
        self.cluster, self.jobs, self.folder = cluster, jobs, Path(folder)
        self.poll_seconds = poll_seconds if poll_seconds is not None else (0.5 if cluster == "local" else 15.0)
        self._executor = submitit.AutoExecutor(folder=self.folder / "submitit" / "%j", cluster=cluster)
        settings = {"timeout_min": 24 * 60, "name": f"volumelab-{self.folder.name}", **(parameters or {})}
        try:
            self._executor.update_parameters(**settings)
        except (ValueError, TypeError, AssertionError, NameError) as exc:  # submitit's ways of refusing one
            text = " ".join(str(exc).split())
            first = text.split(". ")[0] if text else type(exc).__name__
            raise VolumelabError(f"submitit refused the job parameters {sorted(parameters or {})}: {first} (see "
                                 "submitit's AutoExecutor.update_parameters for the names)") from None
        self._pending: list = []

    def map_unordered(self, function, tasks):
        from .shards import SHARDS_FOLDER, run_shard

        groups = _balanced(list(tasks), self.jobs)
        if not groups:
            return
        shards = self.folder / SHARDS_FOLDER
        shards.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        paths = [shards / f"{stamp}-{os.getpid()}-{index:03d}.sqlite" for index in range(len(groups))]
        # A local job gets its share of this machine's cores; a SLURM job uses those SLURM gave it.
        threads = threads_per_worker(len(groups)) if self.cluster == "local" else None
        jobs = self._executor.map_array(run_shard, [function] * len(groups), groups, [str(p) for p in paths],
                                        [threads] * len(groups))
        logger.info("submitted %d %s jobs (%s); their logs are in %s", len(jobs), self.cluster,
                    jobs[0].job_id.split("_")[0] if jobs else "", self.folder / "submitit")
        self._pending = list(zip(jobs, paths))
        try:
            while self._pending:
                finished = [(job, path) for job, path in self._pending if job.done()]
                for item in finished:
                    self._pending.remove(item)
                    job, path = item
                    yield ShardDone(path, self._failure(job))
                if not finished:
                    time.sleep(self.poll_seconds)
        finally:
            self.close()

    @staticmethod
    def _failure(job) -> str | None:
        """Why ``job`` failed, in one line with its log, or ``None`` when it succeeded."""
        try:
            error = job.exception()
        except Exception as exc:  # submitit could not read the job's outcome (e.g. it was killed)
            error = exc
        if error is None:
            return None
        # submitit's error holds the job's traceback; its last "SomeError: message" line says what went wrong.
        lines = [line.strip() for line in str(error).splitlines()]
        raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b", line)]
        last = raised[-1] if raised else next((line for line in reversed(lines) if line), type(error).__name__)
        return f"job {job.job_id} failed ({last}); its log: {job.paths.stderr}"

    def close(self) -> None:
        pending, self._pending = self._pending, []
        for job, _ in pending:
            try:
                job.cancel(check=False)
            except Exception:  # already ended
                pass
        if pending:
            logger.warning("cancelled %d unfinished %s jobs; what they stored is merged on the next run",
                           len(pending), self.cluster)


def check_job_parameters(kind: str, job_parameters: dict | None) -> None:
    """Job parameters are for the executors that submit jobs (``slurm``, ``submitit-local``) only."""
    if job_parameters and kind not in SHARD_EXECUTORS:
        raise VolumelabError(f"--job-param only applies to --executor slurm or submitit-local, not {kind}")


def make_executor(kind: str = "local", workers: int = 1, address: str | None = None, *,
                  folder: str | Path | None = None, job_parameters: dict | None = None) -> Executor:
    """``local`` with one worker runs in-process; with more, a process pool; ``ray`` uses Ray; ``slurm`` and
    ``submitit-local`` run ``workers`` jobs of an array writing shard stores in ``folder`` (the sweep's output
    folder), with submitit's ``job_parameters``."""
    if workers < 1:
        raise VolumelabError(f"workers must be at least 1, got {workers}")
    check_job_parameters(kind, job_parameters)
    if kind in SHARD_EXECUTORS:
        if address is not None:
            raise VolumelabError("--address only applies to --executor ray")
        if folder is None:
            raise VolumelabError(f"the {kind} executor needs the sweep's output folder")
        return SubmititExecutor(SHARD_EXECUTORS[kind], workers, folder, job_parameters)
    if kind == "local":
        if address is not None:
            raise VolumelabError("--address only applies to --executor ray")
        return InProcessExecutor() if workers == 1 else ProcessPoolExecutor(workers)
    if kind == "ray":
        return RayExecutor(workers, address)
    raise VolumelabError(f"unknown executor {kind!r}; expected one of {', '.join(EXECUTORS)}")
