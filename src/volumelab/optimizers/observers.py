"""Observers of a training loop: what GD and NGD record besides their own numbers.

The loop stays pure (it computes the runs and nothing else); an observer records. This
is the callback pattern of Optax's and BlackJAX's loops. An :class:`Observer` is a
frozen description (hashable, with its settings); :meth:`Observer.start` gives the
:class:`Recording` of one batch of runs, which the loop calls

* :meth:`Recording.before_step` before every step (``step``, the ``(S, P)`` parameters),
* :meth:`Recording.finish` once with the final parameters,
* :meth:`Recording.metrics` and :meth:`Recording.arrays` per run, for its result.

Observers never change a run's numbers: a run with observers has the losses, steps and
statuses of the run without them (tested). The built-in ones are here
(:class:`FinalOutputs`, :class:`Trajectory`); the NTK and laziness observer is a
diagnostic (:class:`volumelab.diagnostics.ntk.NTKLaziness`), passed in by whoever wants
it, so the optimizers do not depend on the diagnostics.

    >>> import volumelab as vl
    >>> from volumelab.optimizers.observers import FinalOutputs
    >>> problem = vl.make_sensing(rows=4, cols=4, rank=1, num_measurements=8, seed=0)
    >>> model = vl.FactorizationModel(rows=4, cols=4, width=4, depth=2)
    >>> result = vl.GradientDescent(lr=0.1, init_scale=0.3).run(problem, model, 10, observers=[FinalOutputs()])
    >>> sorted(result.arrays)
    ['W', 'layer_1', 'layer_2', 'outputs']
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..errors import OptimizerError

__all__ = ["FinalOutputs", "FinalRecording", "Observer", "Recording", "RunOutcome", "Trajectory", "TrainingContext"]


@dataclass(frozen=True)
class TrainingContext:
    """What an observer may read about a batch: the optimizer (its settings), the objective (the model,
    the task's tensors, ``layers``/``outputs`` of flat parameters), the budget and the initial ``(S, P)``
    parameters (a copy: the loop updates its own in place)."""

    optimizer: Any
    objective: Any
    budget: int
    initial: torch.Tensor


@dataclass(frozen=True)
class RunOutcome:
    """How one run of the batch ended, for per-run metrics.

    Attributes:
        index: The run's row in the batch.
        has_result: False for a diverged run or a failed solve (no final parameters to read).
        initial_train_loss: ``L_train`` before the first step (``None`` if not logged).
        final_train_loss: ``L_train`` at the end (``None`` without a result).
        steps: Steps the run took.
    """

    index: int
    has_result: bool
    initial_train_loss: float | None
    final_train_loss: float | None
    steps: int


class Recording:
    """One batch's record of an observer. Every hook does nothing unless a subclass says otherwise."""

    def before_step(self, step: int, params: torch.Tensor) -> None:
        """Called before step ``step`` updates ``params`` ``(S, P)`` (do not modify them)."""

    def finish(self, params: torch.Tensor) -> None:
        """Called once with the final ``(S, P)`` parameters."""

    def metrics(self, outcome: RunOutcome) -> dict[str, Any]:
        """Metrics this observer adds to the run's result."""
        return {}

    def arrays(self, index: int) -> dict[str, Any]:
        """Arrays this observer adds to run ``index``'s result (kept only for runs with a result)."""
        return {}


class FinalRecording(Recording):
    """A recording whose metrics read each run's end: it keeps the batch's :class:`TrainingContext` and, once the
    loop has finished, the final ``(S, P)`` parameters (``final``; ``None`` before)."""

    def __init__(self, context: TrainingContext) -> None:
        self.context = context
        self.final: torch.Tensor | None = None

    def finish(self, params: torch.Tensor) -> None:
        self.final = params


class Observer:
    """A description of what to record; :meth:`start` makes the batch's :class:`Recording`."""

    #: Whether :meth:`Recording.before_step` does anything (the loop skips the call otherwise).
    per_step = False

    def start(self, context: TrainingContext) -> Recording:
        raise NotImplementedError


class _KeptArrays(Recording):
    """A recording that ends with arrays of a leading run axis (``kept``); each run's result gets its row."""

    kept: dict  # set by the subclass: {} until finish()

    def arrays(self, index: int) -> dict[str, Any]:
        return {key: values[index] for key, values in self.kept.items()}


# --------------------------------------------------------------------------- final outputs
@dataclass(frozen=True)
class FinalOutputs(Observer):
    """Each run's final ``layer_1 .. layer_d`` and ``outputs`` (what the task scores: the flattened end-to-end
    matrix, or an MLP's outputs on ``[X_train; X_test]``), plus ``W`` (the whole array) for a family whose
    draw is the measured array, as NumPy arrays in the result's ``arrays`` (none for a diverged run)."""

    def start(self, context: TrainingContext) -> Recording:
        return _FinalRecording(context.objective)


class _FinalRecording(_KeptArrays):
    def __init__(self, objective) -> None:
        self.objective = objective
        self.kept: dict = {}

    def finish(self, params: torch.Tensor) -> None:
        objective = self.objective
        layers = objective.layers(params)
        kept = {f"layer_{j + 1}": layer.cpu().numpy().copy() for j, layer in enumerate(layers)}
        kept["outputs"] = objective.outputs(params).cpu().numpy()
        if objective.model.scores_array:  # a factorization's W, a CP model's T
            kept["W"] = objective.model.end_to_end(layers).cpu().numpy()
        self.kept = kept


# --------------------------------------------------------------------------- trajectories
@dataclass(frozen=True)
class Trajectory(Observer):
    """Every ``every`` steps (and at the end), each run's outputs along the run, in ``arrays``:
    ``trajectory`` ``(K, *outputs)`` (the end-to-end matrix of a factorization, an MLP's outputs on
    ``[X_train; X_test]``), ``trajectory_train`` ``(K, m)`` (what the training loss sees) and
    ``trajectory_steps`` ``(K,)``: the steps ``0, every, 2 every, ... < budget`` and the budget. A run that
    stopped early repeats its final outputs, so that runs of different batches line up."""

    every: int

    per_step = True

    def __post_init__(self) -> None:
        if isinstance(self.every, bool) or not isinstance(self.every, int) or self.every < 1:
            raise OptimizerError(f"a trajectory is recorded every positive number of steps, got {self.every!r}")

    def start(self, context: TrainingContext) -> Recording:
        return _TrajectoryRecording(self.every, context.objective, context.budget)


class _TrajectoryRecording(_KeptArrays):
    def __init__(self, every: int, objective, budget: int) -> None:
        self.every, self.objective, self.budget = every, objective, budget
        self.recorded: list[tuple[int, torch.Tensor]] = []
        self.kept: dict = {}

    def before_step(self, step: int, params: torch.Tensor) -> None:
        if step % self.every == 0:
            self.recorded.append((step, self.objective.outputs(params).clone()))

    def finish(self, params: torch.Tensor) -> None:
        objective, every, budget = self.objective, self.every, self.budget
        final = objective.outputs(params).clone()
        done = {step for step, _ in self.recorded}
        trajectory = self.recorded + [(step, final) for step in range(0, budget, every) if step not in done]
        trajectory.append((budget, final))
        steps = torch.tensor([step for step, _ in trajectory])
        outputs = torch.stack([values for _, values in trajectory], dim=1)  # (S, K, ...)
        size = outputs.shape[0]
        flat = outputs.reshape(size, outputs.shape[1], -1)
        train = torch.stack([objective.tensors.run(i).train_outputs(flat[i]) for i in range(size)])
        self.kept = {"trajectory": outputs.cpu().numpy(), "trajectory_train": train.cpu().numpy(),
                     "trajectory_steps": steps.expand(size, -1).numpy().copy()}


def check_observers(observers: Sequence[Observer]) -> tuple[Observer, ...]:
    """The observers as a tuple, each checked to be an :class:`Observer` (a one-line error otherwise)."""
    observers = tuple(observers)
    for observer in observers:
        if not isinstance(observer, Observer):
            raise OptimizerError(f"an observer must be a volumelab.optimizers.observers.Observer, "
                                 f"got {type(observer).__name__}")
    return observers
