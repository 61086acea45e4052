"""The generic sweep driver: plan tasks from a config, run them, store every row at once.

One driver runs every sweep; nothing here knows which field a sweep varies, which
problem or model kind it uses, or which methods it runs: those come from their
registrations (:mod:`volumelab.experiments.kinds`, :mod:`volumelab.experiments.methods`).

A *task* is one (point, method) pair and the seeds still to run: a method registered
as ``batched`` gets one task per point with all unfinished seeds, any other one task
per seed. Each task returns its rows (the method's own and its extra rows) and the
driver writes them in one transaction as soon as it finishes. Tasks a method marks
single-threaded run concurrently, one per core, in the in-process executor (see
:mod:`volumelab.experiments.executors`).

A sweep runs in one replicate *stream* (``volumelab run --stream K``, or ``stream:`` in
its config). Tasks carry the user's seeds and the stream; :func:`execute_task` alone maps
them (and ``problem_seed``) through :func:`volumelab._rng.stream_seed` before building
problems and calling runners, so every random stream of a run changes with ``K`` while
stream 0 computes exactly what it did before streams existed. A row keeps the user's
seed (runs pair by it across methods); its key and config record the stream.
"""

from __future__ import annotations

import json
import logging
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from tqdm.auto import tqdm

from .config import (
    ConfigError,
    ResolvedPoint,
    SweepConfig,
    _validate_method,
    load_sweep,
    legacy_run_key,
    resolve_points,
    run_key,
)
from .._rng import stream_seed
from .executors import ShardDone, check_job_parameters, make_executor
from .keys import KEY_FORMAT
from .kinds import build_model, build_problem, model_size, problem_shape, validate_model, validate_problem
from .methods import get_method
from .progress import TaskSize, TimeLeftEstimator, accepts_keyword
from ..errors import StoreError, VolumelabError
from .shards import SHARDS_FOLDER, merge_shards
from .store import DATABASE_NAME, ResultRow, ResultsStore, encode_arrays, utc_now

logger = logging.getLogger(__name__)

__all__ = ["SweepOutcome", "SweepPlan", "SweepTask", "describe_work", "execute_task", "migrate_store", "plan_sweep",
           "run_sweep"]

#: Called after each finished task with ``(runs done, runs to do, share of the work done, seconds)``, and with the
#: keyword ``seconds_left`` (the :class:`~volumelab.experiments.progress.TimeLeftEstimator`'s wall seconds left)
#: if it accepts one. The share is of the compute seconds the estimator predicts for the whole sweep.
ProgressCallback = Callable[..., None]


@dataclass(frozen=True)
class SweepTask:
    """Everything one worker needs; plain data so it pickles to any executor.

    ``extra_keys`` holds, per seed, the keys of the method's extra rows (one per
    :class:`~volumelab.experiments.methods.ExtraRows` it registers). ``method_module``
    registers the method, for a worker process where it is not registered yet. ``seeds``
    and ``problem_seed`` are the user's; ``stream`` is the replicate stream they are
    mapped through when the task runs.
    """

    sweep: str
    scale: str
    point: int
    coords: dict
    x: Any
    method: str
    method_type: str
    problem: dict
    model: dict
    settings: dict
    seeds: tuple[int, ...]
    keys: tuple[str, ...]
    extra_keys: tuple[tuple[str, ...], ...]
    cost: float
    single_threaded: bool = False
    device: str = "cpu"
    work: tuple[float, str] = (1.0, "runs")
    problem_seed: int | None = None
    method_module: str = ""
    stream: int = 0
    rule_digest: str = ""
    #: The method's observer options and their defaults (what its runs may record besides their numbers).
    observer_options: dict = field(default_factory=dict)
    #: The same runs' keys in key format 1 (:func:`~volumelab.experiments.config.legacy_run_key`), own and
    #: extra rows in the order of ``keys`` and ``extra_keys``: what a store written before format 2 holds.
    legacy_keys: tuple[str, ...] = ()

    @property
    def num_rows(self) -> int:
        return len(self.keys) + sum(len(k) for k in self.extra_keys)


@dataclass
class SweepPlan:
    """The resolved points and all tasks of a sweep at one scale, in one replicate stream."""

    config: SweepConfig
    scale: str
    points: list[ResolvedPoint]
    tasks: list[SweepTask]
    source: str = "<config>"
    stream: int = 0

    @property
    def keys(self) -> list[str]:
        keys = []
        for task in self.tasks:
            keys.extend(task.keys)
            keys.extend(k for per_seed in task.extra_keys for k in per_seed)
        return keys

    @property
    def legacy_keys(self) -> list[str]:
        """:attr:`keys` in key format 1, in the same order."""
        return [key for task in self.tasks for key in task.legacy_keys]

    def legacy_renames(self) -> dict[str, str]:
        """Every planned row's key in format 1 -> its key now (see :func:`migrate_store`)."""
        renames = {}
        for task in self.tasks:
            current = [*task.keys, *(k for per_seed in task.extra_keys for k in per_seed)]
            renames.update(zip(task.legacy_keys, current))
        return renames


@dataclass
class SweepOutcome:
    """What a call of :func:`run_sweep` did."""

    out_dir: Path
    planned_rows: int
    stored_before: int
    ran_rows: int
    seconds: float
    plan: SweepPlan = field(repr=False)
    stale_rows: int = 0

    @property
    def complete(self) -> bool:
        return self.stored_before + self.ran_rows >= self.planned_rows


def _cost(point: ResolvedPoint, work: tuple[float, str], num_seeds: int) -> float:
    """A rough relative cost for scheduling the most expensive tasks first."""
    return work[0] * model_size(point.model) * num_seeds


def _build_model(problem, model):
    """The model of settings ``model`` for the problem of settings ``problem``."""
    return build_model(model, problem_shape(problem))


def _with_device(settings, device: str | None):
    """``settings`` with its ``device`` replaced (``volumelab run --device``), if it has one."""
    if device is None or "device" not in type(settings).model_fields:
        return settings
    return settings.model_copy(update={"device": device})


def _check_stream(stream: Any) -> int:
    """``stream`` if it is a non-negative integer; a :class:`ConfigError` otherwise."""
    if isinstance(stream, bool) or not isinstance(stream, int) or stream < 0:
        raise ConfigError(f"stream must be a non-negative integer (0 is the original experiment), got {stream!r}")
    return stream


def plan_sweep(config: SweepConfig, scale: str | None = None, *, source: str = "<config>",
               device: str | None = None, stream: int | None = None) -> SweepPlan:
    """Resolve the grid and split it into tasks (nothing runs).

    Args:
        config: The sweep.
        scale: A scale the config defines; ``None`` for its base values.
        source: The config's file name, for error messages.
        device: Replace every method's ``device`` setting (``"auto" | "cpu" | "cuda"``).
        stream: The replicate stream (``volumelab run --stream``); ``None``: the
            config's ``stream`` (0 unless it sets one). The plan's ``config`` carries it.

    Raises:
        ConfigError: the config does not resolve, a method cannot run on its model at some point (its
            runner's ``mismatch``), or ``stream`` is not a non-negative integer.
    """
    stream = config.stream if stream is None else _check_stream(stream)
    if stream != config.stream:
        config = config.model_copy(update={"stream": stream})
    scale = config.base_scale if scale is None else scale
    points = resolve_points(config, scale, source=source)
    x_field = config.x_field
    seeds = config.seed_list
    study = config.study()
    digest = study.digest() if study is not None else ""
    tasks = []
    for point in points:
        x = point.coords.get(x_field) if x_field else None
        for method, settings in point.methods.items():
            settings = _with_device(settings, device)
            point.methods[method] = settings
            spec = get_method(settings.type)
            model = _build_model(point.problem, point.model_for(method))
            mismatch = spec.runner.model_mismatch(model, settings)
            if mismatch:
                where = ", ".join(f"{k}={v!r}" for k, v in point.coords.items()) or "the single point"
                raise ConfigError(f"{source}: at grid point {where} (scale {scale}): methods.{method}: {mismatch}")
            resolved = spec.runner.resolved_settings(model, settings)
            keys = [run_key(point, method, s, resolved=resolved, stream=stream) for s in seeds]
            extras = [tuple(f"{k}:{extra.type}" for extra in spec.extra_rows) for k in keys]
            olds = [legacy_run_key(config.name, point, method, s, resolved=resolved, stream=stream) for s in seeds]
            old_extras = [tuple(f"{k}:{extra.type}" for extra in spec.extra_rows) for k in olds]
            groups = [list(range(len(seeds)))] if spec.runner.batched else [[i] for i in range(len(seeds))]
            work = spec.work_of(settings)
            for group in groups:
                tasks.append(SweepTask(
                    sweep=config.name, scale=scale, point=point.index, coords=dict(point.coords), x=x,
                    method=method, method_type=settings.type, problem=point.problem.model_dump(),
                    model=point.model.model_dump(), settings=settings.model_dump(),
                    seeds=tuple(seeds[i] for i in group), keys=tuple(keys[i] for i in group),
                    extra_keys=tuple(extras[i] for i in group), cost=_cost(point, work, len(group)),
                    single_threaded=spec.runner.is_single_threaded(settings),
                    device=resolved["device_type"], work=work, problem_seed=point.problem_seed,
                    method_module=spec.module, stream=stream, rule_digest=digest,
                    legacy_keys=tuple(olds[i] for i in group) + tuple(k for i in group for k in old_extras[i]),
                    observer_options={option.name: option.default for option in spec.observers},
                ))
    plan = SweepPlan(config, scale, points, tasks, source, stream)
    _check_distinct_runs(plan)
    return plan


def _check_distinct_runs(plan: SweepPlan) -> None:
    """Two methods of a sweep whose runs have one key (keys hold no names) are the same computation stored once:
    a config error naming them. (One method's runs at two points may share a key, e.g. a trainer whose settings
    do not depend on a grid field only its sampler reads: run and stored once, as always.)"""
    seen: dict[str, tuple] = {}
    for task in plan.tasks:
        for seed, key in zip(task.seeds, task.keys):
            first = seen.setdefault(key, (task.method, task.point))
            if first[0] != task.method:
                raise ConfigError(
                    f"{plan.source}: methods {first[0]!r} (point {first[1]}) and {task.method!r} (point {task.point})"
                    f" are the same runs (same type, problem, model and settings; seed {seed}); remove one or make "
                    "them differ")


def _forget_unobserved(store: ResultsStore, plan: SweepPlan) -> int:
    """Delete the stored runs that lack what the plan's observers ask to record, so they run again.

    Observer options (``keep_outputs``, ``trajectory_every``, ``ntk_metrics``, ``limit_directions``) are not in the run key: they never
    change a run's numbers. A stored run is reused when it recorded the options a task now asks for (or the task
    asks for none); one that did not (stored without ``keep_outputs``, now asked for its outputs) is rerun,
    with its extra rows.
    """
    asking = []
    for task in plan.tasks:
        request = {name: task.settings[name] for name in task.observer_options
                   if task.settings.get(name) != task.observer_options[name]}
        if request:
            asking.extend((key, extras, request) for key, extras in zip(task.keys, task.extra_keys))
    if not asking:
        return 0
    recorded = store.method_settings(key for key, _, _ in asking)
    stale = [row for key, extras, request in asking if key in recorded
             and any(recorded[key].get(name) != value for name, value in request.items()) for row in (key, *extras)]
    if stale:
        logger.info("%s: %d stored runs did not record what the observers now ask for; they run again",
                    plan.config.name, len(stale))
        store.delete(stale)
    return len(stale)


def _refuse_newer(store: ResultsStore, version: int) -> None:
    """A store with runs of a newer results version was written by a newer volumelab: its rows would be rerun and
    then mixed up with the newer ones on the next newer run; refuse it instead."""
    newest = store.newest_results_version()
    if newest is not None and newest > version:
        raise StoreError(f"{store.path} holds runs of results version {newest}, written by a newer volumelab (this "
                         f"one writes version {version}); upgrade volumelab, or use another --out")


def migrate_store(store: ResultsStore, plan: SweepPlan) -> int:
    """Rename the rows of ``plan``'s runs that ``store`` holds under their key-format-1 keys (stores written before
    sweep and method names left the key) to their keys now, in place; returns how many were renamed."""
    moved = store.migrate_keys(plan.legacy_renames())
    if moved:
        logger.info("%s: %d stored runs moved to the current run keys (key format %d)", plan.config.name, moved,
                    KEY_FORMAT)
    return moved


def describe_work(tasks: list[SweepTask]) -> str:
    """The work of ``tasks`` in words: stored rows and, per unit, the total (e.g. ``3.2e+10 <unit>``).

    A run stores one row per seed and method, plus the method's extra rows (e.g. a chance level).
    """
    runs = sum(t.num_rows for t in tasks)
    totals: dict[str, float] = {}
    for task in tasks:
        amount, unit = task.work
        totals[unit] = totals.get(unit, 0.0) + amount * len(task.seeds)
    parts = [f"{amount:.3g} {unit}" for unit, amount in totals.items() if unit != "runs"]
    return f"{runs} runs" + (f" ({', '.join(parts)})" if parts else "")


def execute_task(task: SweepTask) -> list[ResultRow]:
    """Run one task and return its rows (called in the worker).

    The task's seeds and ``problem_seed`` go through :func:`~volumelab._rng.stream_seed`
    here, the one place problems are built and runners called, so a stream other than 0
    changes every random stream of the run. Such a row's config records ``stream``, the
    seed its run used (``run_seed``) and the seed its problem was made from
    (``problem_seed``, so the problem can be rebuilt from the row); a stream-0 row's
    config is as before streams existed.
    """
    from .. import __version__, _results_version
    import torch

    spec = get_method(task.method_type, task.method_module)
    problem_settings = validate_problem(task.problem)
    settings = _validate_method(task.method, task.settings)
    model_settings = validate_model({**task.model, **settings.model})
    run_seeds = [stream_seed(seed, task.stream) for seed in task.seeds]
    if task.problem_seed is not None:  # one problem for every seed
        problem_seeds = [stream_seed(task.problem_seed, task.stream)] * len(task.seeds)
        problems = [build_problem(problem_settings, problem_seeds[0])] * len(task.seeds)
    else:
        problem_seeds = run_seeds
        problems = [build_problem(problem_settings, seed) for seed in run_seeds]
    model = _build_model(problem_settings, model_settings)
    started = utc_now()
    clock = time.perf_counter()
    results = spec.runner.run(problems, model, settings, run_seeds)
    seconds = (time.perf_counter() - clock) / len(task.seeds)
    finished = utc_now()
    rows = []
    for seed, run_seed, problem_seed, key, extra_keys, result in zip(
            task.seeds, run_seeds, problem_seeds, task.keys, task.extra_keys, results):
        config = {"sweep": task.sweep, "scale": task.scale, "point": task.point, "coords": task.coords,
                  "problem": task.problem, "model": task.model,
                  "method": {"name": task.method, **task.settings}, "seed": seed}
        if task.stream != 0:
            config.update(stream=task.stream, run_seed=run_seed, problem_seed=problem_seed)
        elif task.problem_seed is not None:
            config["problem_seed"] = task.problem_seed
        if task.rule_digest:  # the rule its sweep's claim was declared under when it ran
            config["rule_digest"] = task.rule_digest
        common = dict(sweep=task.sweep, scale=task.scale, point=task.point, x=task.x, coords=task.coords,
                      seed=seed, config=config, seconds=seconds, started_at=started, finished_at=finished,
                      volumelab_version=__version__, torch_version=torch.__version__,
                      results_version=_results_version.RESULTS_VERSION,
                      diagnostics=dict(result.diagnostics, batch_seeds=len(task.seeds)))
        rows.append(ResultRow(run_key=key, method=task.method, method_type=task.method_type,
                              status=result.status, metrics=dict(result.metrics),
                              standard_errors=dict(result.standard_errors),
                              arrays=encode_arrays(result.arrays), **common))
        for extra, extra_key in zip(spec.extra_rows, extra_keys):
            status, metrics, errors = extra.build(result)
            rows.append(ResultRow(run_key=extra_key, method=extra.row_name(task.method), method_type=extra.type,
                                  status=status, metrics=metrics, standard_errors=errors, **common))
    return rows


def _remaining(task: SweepTask, done: set[str]) -> SweepTask | None:
    """The task restricted to seeds with a missing row (or ``None`` when all are stored)."""
    keep = [i for i, (k, extras) in enumerate(zip(task.keys, task.extra_keys))
            if k not in done or any(e not in done for e in extras)]
    if not keep:
        return None
    if len(keep) == len(task.seeds):
        return task
    pick = lambda values: tuple(values[i] for i in keep)  # noqa: E731
    return SweepTask(**{**task.__dict__, "seeds": pick(task.seeds), "keys": pick(task.keys),
                        "extra_keys": pick(task.extra_keys), "cost": task.cost * len(keep) / len(task.seeds)})


#: Files a sweep writes into its output folder (``--force`` removes them before another sweep uses it).
_OUTPUTS = (DATABASE_NAME, f"{DATABASE_NAME}-wal", f"{DATABASE_NAME}-shm", "results.csv", "report.md",
            "report.html", "sweep.yaml", "resolved.json", "plots", SHARDS_FOLDER, "submitit")


def folder_sweep(out_dir: Path) -> tuple[str, str] | None:
    """``(sweep, scale)`` of the sweep whose outputs ``out_dir`` holds, or ``None`` if it holds none."""
    resolved = out_dir / "resolved.json"
    if resolved.is_file():
        try:
            data = json.loads(resolved.read_text(encoding="utf-8"))
            return str(data["sweep"]), str(data["scale"])
        except (ValueError, KeyError, TypeError):
            pass
    if (out_dir / DATABASE_NAME).is_file():
        with ResultsStore(out_dir) as store:
            pairs = store.sweeps()
        if pairs:
            return pairs[0]
    return None


def claim_output_folder(out_dir: Path, sweep: str, scale: str, *, force: bool = False) -> None:
    """Make sure ``out_dir`` is free for ``(sweep, scale)``.

    A folder that holds the outputs of the same sweep at the same scale is resumed. One
    that holds another sweep (or scale) is refused, since its CSV and report would be
    overwritten and its plots left behind; with ``force`` its outputs are removed first.

    Raises:
        ConfigError: the folder holds another sweep and ``force`` is false.
    """
    held = folder_sweep(out_dir)
    if held is None or held == (sweep, scale):
        return
    if not force:
        raise ConfigError(
            f"output folder {str(out_dir)!r} holds the results of sweep {held[0]!r} (scale {held[1]}), not "
            f"{sweep!r} (scale {scale}); choose another --out, or pass --force to delete its outputs first")
    logger.warning("removing the outputs of sweep %r (scale %s) from %s", held[0], held[1], out_dir)
    for name in _OUTPUTS:
        path = out_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run_sweep(
    config: SweepConfig | str | Path,
    *,
    scale: str | None = None,
    out_dir: str | Path,
    executor: str = "local",
    workers: int = 1,
    address: str | None = None,
    progress: bool | ProgressCallback | None = None,
    device: str | None = None,
    force: bool = False,
    stream: int | None = None,
    job_parameters: dict | None = None,
) -> SweepOutcome:
    """Run every unfinished (point, seed, method) of a sweep and store each row at once.

    Args:
        config: A validated config or the path of a YAML file.
        scale: A scale defined in the config's ``scales``, or ``None`` for its base
            values (labelled ``base_scale``: ``paper`` for the packaged figures).
        out_dir: Output folder; holds ``results.sqlite`` (created if missing).
        executor: ``"local"`` (in-process, or a process pool when ``workers > 1``), ``"ray"``, or ``"slurm"`` /
            ``"submitit-local"`` (a job array through submitit whose jobs write shard stores, merged here; see
            :mod:`volumelab.experiments.shards`).
        workers: Parallel workers (the jobs of a ``slurm`` or ``submitit-local`` array).
        address: Ray cluster address (``--executor ray`` only).
        progress: ``True`` for a progress bar, a callable for progress reports after each
            task (see :data:`ProgressCallback`), ``None`` for a bar when stderr is a terminal.
        device: Replace every method's ``device`` setting.
        force: Reuse an output folder that holds another sweep, deleting its outputs.
        stream: The replicate stream (see :func:`plan_sweep`); ``None``: the config's.
            Rows of several streams share an output folder; each run finds and reports
            only its own stream's rows.
        job_parameters: submitit's executor parameters (``slurm`` and ``submitit-local`` only), e.g.
            ``{"slurm_partition": "cpu", "timeout_min": 120, "cpus_per_task": 4}``.

    Returns:
        A :class:`SweepOutcome`. Rerunning a finished sweep runs nothing. Rows stored by
        an older :data:`~volumelab.RESULTS_VERSION` never match a current key: they are
        rerun, counted in ``stale_rows`` and left out of the outputs.

    Raises:
        ConfigError: the config is invalid, or ``out_dir`` holds another sweep.
        VolumelabError: a job of a ``slurm`` or ``submitit-local`` array failed (after every other job ended and
            what each stored was merged).
    """
    from .. import _results_version

    version = _results_version.RESULTS_VERSION
    check_job_parameters(executor, job_parameters)
    source = "<config>"
    if not isinstance(config, SweepConfig):
        source = str(config)
        config = load_sweep(config)
    plan = plan_sweep(config, scale, source=source, device=device, stream=stream)
    config = plan.config
    out_dir = Path(out_dir)
    claim_output_folder(out_dir, config.name, plan.scale, force=force)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "sweep.yaml").write_text(
        yaml.safe_dump(json.loads(config.model_dump_json()), sort_keys=False), encoding="utf-8")
    (out_dir / "resolved.json").write_text(json.dumps(
        {"sweep": config.name, "scale": plan.scale, "stream": plan.stream, "points": [
            {"index": p.index, "coords": p.coords, **p.as_dict()} for p in plan.points]}, indent=1, default=str),
        encoding="utf-8")
    start = time.perf_counter()
    with ResultsStore(out_dir) as store:
        _refuse_newer(store, version)
        store.discard_damaged()  # rows that fail their checksum: deleted here, so they run again below
        merge_shards(store, out_dir)  # what earlier jobs of an array stored (after their driver stopped, too)
        migrate_store(store, plan)
        _forget_unobserved(store, plan)
        done = store.existing_keys(plan.keys)
        stale = store.count_other_versions(config.name, plan.scale, version)
        if stale:
            logger.warning("%s (%s): %d stored runs were computed by an older version of the code (results "
                           "version before %d); they are rerun and left out of the outputs",
                           config.name, plan.scale, stale, version)
        todo = [t for t in (_remaining(task, done) for task in plan.tasks) if t is not None]
        todo.sort(key=lambda t: -t.cost)
        planned = len(plan.keys)
        stored_before = len(done)
        ran = 0
        if todo:
            logger.info("%s (%s): %d of %d runs to do in %d tasks", config.name, plan.scale,
                        planned - stored_before, planned, len(todo))
            report = progress if callable(progress) else None
            show = (sys.stderr.isatty() if progress is None else bool(progress)) and report is None
            pool = make_executor(executor, workers, address, folder=out_dir, job_parameters=job_parameters)
            failures: list[str] = []
            try:
                # The bar's share and time left are the estimator's (learned from the finished tasks).
                estimator = TimeLeftEstimator({index: TaskSize(task.method, task.cost / len(task.seeds),
                                                               len(task.seeds), _cost_group(task, config.x_field))
                                               for index, task in enumerate(todo)})
                unfinished: dict[str, list[int]] = {}  # a task's first run key -> the unfinished tasks that have it
                for index, task in enumerate(todo):
                    unfinished.setdefault(task.keys[0], []).append(index)
                keyword = report is not None and accepts_keyword(report, "seconds_left")
                with tqdm(total=1.0, disable=not show, desc=f"{config.name} ({plan.scale})",
                          unit="", bar_format="{l_bar}{bar}| {postfix} [{elapsed}]") as bar:
                    bar.set_postfix_str(f"0/{planned - stored_before} runs, time left: estimating...")
                    for rows in pool.map_unordered(execute_task, todo):
                        if isinstance(rows, ShardDone):  # a job of an array ended: merge what it stored
                            added, finished = _merge_job(store, rows, todo, failures, unfinished)
                            ran += added
                        else:
                            ran += store.add(rows)
                            index = _task_of(rows, unfinished)
                            # A row's seconds are its task's compute seconds per seed.
                            finished = [(index, rows[0].seconds * len(todo[index].seeds))]
                        for index, task_seconds in finished:
                            estimator.finished(index, task_seconds)
                        seconds = time.perf_counter() - start
                        left = estimator.estimate(seconds)
                        if left is None:
                            bar.set_postfix_str(f"{ran}/{planned - stored_before} runs, time left: estimating...")
                        else:
                            bar.n = left.share_done
                            bar.set_postfix_str(f"{ran}/{planned - stored_before} runs, "
                                                f"~{tqdm.format_interval(left.seconds)} left")
                        if report is not None:
                            extra = {"seconds_left": left.seconds if left else None} if keyword else {}
                            report(ran, planned - stored_before, left.share_done if left else 0.0, seconds, **extra)
            finally:
                pool.close()
                if getattr(pool, "writes_shards", False):  # stopped early: keep what the cancelled jobs stored
                    ran += sum(merged.added for merged in merge_shards(store, out_dir))
            if failures:
                raise VolumelabError(f"{len(failures)} of the sweep's jobs failed; the runs they and the others "
                                     f"finished are stored, rerun the same command to retry the rest. First: "
                                     f"{failures[0]}")
    return SweepOutcome(out_dir, planned, stored_before, ran, time.perf_counter() - start, plan, stale)


def _merge_job(store: ResultsStore, done: ShardDone, todo: list[SweepTask], failures: list[str],
               unfinished: dict[str, list[int]]) -> tuple[int, list[tuple[int, float]]]:
    """Merge the shard of a job that ended; returns ``(rows added, [(index in todo, compute seconds)] of the
    tasks it finished)``, taking those out of ``unfinished`` (see :func:`_task_of`)."""
    if done.error is not None:
        logger.error("%s", done.error)
        failures.append(done.error)
    if not done.path.is_file():  # the job ended before storing anything
        return 0, []
    merged = store.merge(done.path)
    if merged.damaged:
        logger.warning("%s: %d rows fail verification and were not merged; their runs run again on the next run",
                       done.path, len(merged.damaged))
    stored = {row["run_key"]: row["seconds"] for row in store.fetch(keys=[key for key, left in unfinished.items()
                                                                           if left])}
    finished = []
    for key, seconds in stored.items():
        for index in unfinished.pop(key, []):
            finished.append((index, float(seconds or 0.0) * len(todo[index].seeds)))
    return merged.added, finished


def _cost_group(task: SweepTask, x_field: str | None) -> str:
    """The task's grid coordinates other than the swept axis: tasks of one method that may cost more or less at
    every size (e.g. an activation), for the time-left estimate."""
    return json.dumps({field: value for field, value in sorted(task.coords.items()) if field != x_field},
                      default=str)


def _task_of(rows: list[ResultRow], unfinished: dict[str, list[int]]) -> int:
    """The index of the task whose rows ``rows`` are, taken out of ``unfinished`` (the unfinished tasks by their
    first run key; two tasks of one method at two points may run the same runs, under one key)."""
    return next(unfinished[row.run_key].pop(0) for row in rows if unfinished.get(row.run_key))
