"""How long a sweep has left, learned from the tasks it has finished.

A sweep's tasks differ in cost by orders of magnitude across methods (a Guess & Check
draw and a gradient-descent step are not one unit of work) and across sizes, so a
static cost model cannot say how long the rest takes. :class:`TimeLeftEstimator`
measures it instead: each finished task reports its compute seconds, and the
estimator predicts the unfinished tasks' compute seconds from the finished tasks of
the same method at other sizes, then converts compute seconds into wall seconds with
the concurrency the sweep has shown so far.

The model, per method ``m`` (a sweep's method name: one set of settings) and *group*
``g`` (the task's grid coordinates other than the swept axis, e.g. the activation when
the sweep varies the width), for a task of ``n`` seeds whose work per seed is ``c``
(``SweepTask.cost / n``: the method's work amount times the model's size)::

    seconds = n * k_mg * c ** b_m

* ``b_m`` (the *exponent*) comes from a least-squares fit of ``log(seconds / n)``
  against ``log c`` within the groups of the method's finished tasks (one intercept per
  group: a group that costs more at every size does not tilt the slope when groups
  finish at different sizes), shrunk towards :data:`PRIOR_EXPONENT` by a normal prior
  of standard deviation :data:`PRIOR_EXPONENT_SD` (the posterior mean of a Bayesian
  line fit, with the noise variance estimated from the residuals), and kept in
  ``[0, MAX_EXPONENT]``. While no group has finished at two sizes the data say nothing
  about ``b_m``: it is the prior's 1/2, the exponent whose worst error (in factors) is
  least when the truth lies anywhere between a fixed cost per task (0) and a cost
  proportional to the work (1).
* ``k_mg`` makes the model's total over the group's finished tasks equal to their
  measured total (a ratio estimator), so the prediction is unbiased for a sum of tasks
  like the seen ones, however much they scatter (the scatter of a log-scale fit would
  otherwise bias the sum low). A group with no finished task takes the method's ``k_m``,
  the same ratio over all the method's finished tasks.
* A method with no finished task is predicted at the *pooled rate* of all finished
  tasks: their seconds per unit of work (``b = 1``). Methods measure work in their
  own units, so this is a guess until the method's first task finishes.

Wall time: ``seconds left = predicted compute seconds left / concurrency``, where
``concurrency = finished compute seconds / elapsed wall seconds``. Equivalently the
elapsed time scaled by the ratio of the predicted work left to the work done, so
whatever the measured compute seconds leave out (building problems, storing rows, a
machine shared with other processes) is carried into the estimate.

What it assumes: a task's compute seconds depend on its method, its group and its work
per seed as above, with one exponent for all groups of a method; the concurrency seen so far holds
for the rest (an executor that changes how many tasks run at once, e.g. the
in-process executor's helper processes for single-threaded tasks, moves the truth
away from the estimate until the new phase has finished a few tasks); tasks in flight
count as not started. Before any task has finished there is no estimate
(:meth:`TimeLeftEstimator.estimate` returns ``None``).
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable, Hashable, Iterable, Mapping
from dataclasses import dataclass, field

__all__ = ["MAX_EXPONENT", "PRIOR_EXPONENT", "PRIOR_EXPONENT_SD", "MethodFit", "TaskSize", "TimeLeft",
           "TimeLeftEstimator", "accepts_keyword", "fit_method"]

#: The exponent of seconds against work per seed before the data say otherwise: halfway (in log) between a
#: fixed cost per task (0) and a cost proportional to the work (1), the choice whose worst error is least.
PRIOR_EXPONENT = 0.5
#: The prior's standard deviation: [0, 1] is its one-standard-deviation range.
PRIOR_EXPONENT_SD = 0.5
#: Fitted exponents are kept in [0, this]: more work never takes less time, and a steeper fit from a few noisy
#: tasks would predict the small ones (which run last) as nearly free.
MAX_EXPONENT = 2.0
#: The least residual variance (log seconds) assumed in the fit, so that a few tasks that happen to lie on a
#: line do not outweigh the prior.
_MIN_NOISE_VARIANCE = 0.01


@dataclass(frozen=True)
class TaskSize:
    """What the estimator knows of a task before it runs.

    Attributes:
        method: The method's name in the sweep (tasks of one name share settings).
        work: Work per seed (e.g. draws or steps times the model's size); values below 1
            count as 1 (a fraction of a unit is not a size).
        seeds: Seeds the task runs.
        group: Tasks of one method that may cost more or less at every size than the
            others (the driver: the grid coordinates other than the swept axis).
    """

    method: str
    work: float
    seeds: int = 1
    group: Hashable = None

    @property
    def log_work(self) -> float:
        return math.log(max(float(self.work), 1.0))


@dataclass(frozen=True)
class MethodFit:
    """Seconds per seed of a method's tasks: ``scale * work ** exponent``, with a scale per group it has seen.

    Attributes:
        scale: ``k_m`` of the module's model (for a group not seen yet).
        exponent: ``b_m`` of the module's model.
        tasks: Finished tasks it was fitted to (0: the pooled rate of other methods).
        group_scales: ``k_mg`` of each group with a finished task.
    """

    scale: float
    exponent: float
    tasks: int
    group_scales: Mapping[Hashable, float] = field(default_factory=dict)

    def seconds(self, task: TaskSize) -> float:
        """Predicted compute seconds of ``task`` (all its seeds)."""
        scale = self.group_scales.get(task.group, self.scale)
        return task.seeds * scale * math.exp(self.exponent * task.log_work)


@dataclass(frozen=True)
class TimeLeft:
    """An estimate of the time a sweep has left.

    Attributes:
        seconds: Wall seconds left.
        share_done: The share of the sweep's predicted compute seconds that is done (0 to 1).
        concurrency: Finished compute seconds per elapsed wall second.
        compute_left: Predicted compute seconds of the unfinished tasks.
    """

    seconds: float
    share_done: float
    concurrency: float
    compute_left: float


def fit_method(finished: Iterable[tuple[TaskSize, float]]) -> MethodFit | None:
    """The model of one method from its finished ``(task, compute seconds)`` pairs; ``None`` if there are none.

    The exponent is the posterior mean of the common slope of ``log(seconds / seeds)``
    against ``log work`` within groups (weighted least squares with one intercept per
    group, each task weighted by its seeds) under a normal prior (:data:`PRIOR_EXPONENT`,
    :data:`PRIOR_EXPONENT_SD`), with the residual variance of the least-squares fit as the
    noise variance (at least :data:`_MIN_NOISE_VARIANCE`; without a residual degree of
    freedom or a group seen at two sizes: the prior alone), then clipped to
    ``[0, MAX_EXPONENT]``. Each group's scale, and the method's over all groups, make the
    fitted total over their finished tasks equal to the measured total.
    """
    pairs = [(task, max(float(seconds), 0.0)) for task, seconds in finished]
    if not pairs:
        return None
    groups: dict[Hashable, list[tuple[float, float, float]]] = {}  # group -> (weight, log work, log seconds)
    for task, seconds in pairs:
        # A batched task's per-seed seconds are a mean over its seeds: weight it by them.
        groups.setdefault(task.group, []).append(
            (float(task.seeds), task.log_work, math.log(max(seconds / task.seeds, 1e-9))))
    sxx = sxy = 0.0
    centred = []
    for points in groups.values():
        total = sum(w for w, _, _ in points)
        x_mean = sum(w * x for w, x, _ in points) / total
        y_mean = sum(w * y for w, _, y in points) / total
        centred += [(w, x - x_mean, y - y_mean) for w, x, y in points]
        sxx += sum(w * (x - x_mean) ** 2 for w, x, _ in points)
        sxy += sum(w * (x - x_mean) * (y - y_mean) for w, x, y in points)
    exponent = PRIOR_EXPONENT
    degrees = sum(w for w, _, _ in centred) - len(groups) - 1  # weights count seeds; one intercept per group
    if sxx > 1e-12 and len(pairs) > len(groups) + 1 and degrees > 0:
        slope = sxy / sxx
        noise = max(sum(w * (y - slope * x) ** 2 for w, x, y in centred) / degrees, _MIN_NOISE_VARIANCE)
        # Posterior mean of a slope with prior N(PRIOR_EXPONENT, PRIOR_EXPONENT_SD^2) and a likelihood of
        # precision sxx / noise around the least-squares slope.
        data_precision, prior_precision = sxx / noise, 1.0 / PRIOR_EXPONENT_SD ** 2
        exponent = (data_precision * slope + prior_precision * PRIOR_EXPONENT) / (data_precision + prior_precision)
    exponent = min(max(exponent, 0.0), MAX_EXPONENT)
    measured: dict[Hashable, float] = {}
    fitted: dict[Hashable, float] = {}
    for task, seconds in pairs:
        measured[task.group] = measured.get(task.group, 0.0) + seconds
        fitted[task.group] = fitted.get(task.group, 0.0) + task.seeds * math.exp(exponent * task.log_work)
    return MethodFit(scale=sum(measured.values()) / sum(fitted.values()), exponent=exponent, tasks=len(pairs),
                     group_scales={group: measured[group] / fitted[group] for group in measured})


class TimeLeftEstimator:
    """Predicts a sweep's remaining wall time from its finished tasks (see the module's docstring).

    Args:
        tasks: Every task still to run, by a name the caller reports it finished under.

    >>> estimator = TimeLeftEstimator({"a": TaskSize("mine", 10.0), "b": TaskSize("mine", 10.0)})
    >>> estimator.estimate(elapsed=1.0) is None   # nothing finished: no number
    True
    >>> estimator.finished("a", seconds=2.0)
    >>> estimator.estimate(elapsed=2.0).seconds
    2.0
    """

    def __init__(self, tasks: Mapping[Hashable, TaskSize]) -> None:
        self._pending: dict[Hashable, TaskSize] = dict(tasks)
        self._done: dict[str, list[tuple[TaskSize, float]]] = {}
        self._compute_done = 0.0

    @property
    def tasks_done(self) -> int:
        return sum(len(pairs) for pairs in self._done.values())

    def finished(self, name: Hashable, seconds: float) -> None:
        """Record that task ``name`` finished after ``seconds`` compute seconds (all its seeds).

        Raises:
            KeyError: ``name`` is not a pending task.
        """
        task = self._pending.pop(name)
        seconds = max(float(seconds), 0.0)
        self._done.setdefault(task.method, []).append((task, seconds))
        self._compute_done += seconds

    def fits(self) -> dict[str, MethodFit]:
        """The model of each method that has a pending task: its own fit, or the pooled rate (``tasks == 0``).

        Empty before any task has finished.
        """
        if not self._done:
            return {}
        pooled_work = sum(task.seeds * max(task.work, 1.0) for pairs in self._done.values() for task, _ in pairs)
        pooled = MethodFit(scale=self._compute_done / pooled_work, exponent=1.0, tasks=0)
        fits = {}
        for method in {task.method for task in self._pending.values()}:
            fits[method] = fit_method(self._done[method]) if method in self._done else pooled
        return fits

    def compute_left(self) -> float | None:
        """Predicted compute seconds of the pending tasks; ``None`` before any task has finished."""
        if not self._done:
            return None
        fits = self.fits()
        return sum(fits[task.method].seconds(task) for task in self._pending.values())

    def estimate(self, elapsed: float) -> TimeLeft | None:
        """The time left after ``elapsed`` wall seconds; ``None`` before any task has finished.

        Args:
            elapsed: Wall seconds since the first task started (or since the sweep started).
        """
        left = self.compute_left()
        if left is None:
            return None
        done = self._compute_done
        if done <= 0.0 or elapsed <= 0.0:
            # Finished tasks that took no measurable time: nothing to scale by; report what is known.
            share = 1.0 if left <= 0.0 else 0.0
            return TimeLeft(seconds=left, share_done=share, concurrency=1.0, compute_left=left)
        concurrency = done / elapsed
        return TimeLeft(seconds=left / concurrency, share_done=done / (done + left), concurrency=concurrency,
                        compute_left=left)


def accepts_keyword(function: Callable, name: str) -> bool:
    """Whether ``function`` can be called with the keyword argument ``name`` (a progress callback written before
    that keyword existed is called without it)."""
    try:
        parameters = inspect.signature(function).parameters.values()
    except (TypeError, ValueError):  # no signature to read (some builtins)
        return False
    return any(p.kind is p.VAR_KEYWORD or (p.name == name and p.kind is not p.POSITIONAL_ONLY) for p in parameters)
