"""Guess & Check (arXiv 2506.03931, Sec. 2): the prior conditioned on fitting the training data.

G&C draws weights from the prior until the training loss is below ``eps``; statistically
it samples the prior conditioned on ``L_train < eps`` (or, with ``accept="train_error"``,
on a classifier's training error: with ``eps <= 1/n`` that is 100% training accuracy, the
criterion of the volume hypothesis on real data, Chiang et al., ICLR 2023).

Two estimators of that law are built in, each its own object with its own settings and
declared results: :class:`~volumelab.optimizers.rejection.RejectionGuessCheck`
(independent prior draws, the paper's G&C) and
:class:`~volumelab.optimizers.subset.SubsetGuessCheck` (subset simulation, for ``eps``
far below rejection's reach). Both share the scorers of
:mod:`~volumelab.optimizers.conditioning` and are registered there by name.

:class:`GuessCheck` is the one entry point by name, ``GuessCheck(eps, method=NAME, ...)``:
it holds the settings of the built-in estimators (a sweep's ``gnc`` method and its run
keys are generated from its fields), checks them, and runs the estimator ``method``
names with the settings that estimator has (:meth:`GuessCheck.estimator`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import OptimizerError
from ..problems import Problem
from .base import RunResult
from .conditioning import ACCEPT_CRITERIA, ConditionalEstimator, estimators
from .rejection import ACCEPTANCE_CONFIDENCE, RejectionGuessCheck, acceptance_rate_interval, block_size_for
from .subset import KERNELS, SubsetGuessCheck

__all__ = ["ACCEPTANCE_CONFIDENCE", "ACCEPT_CRITERIA", "KERNELS", "METHODS", "GuessCheck", "RejectionGuessCheck",
           "SubsetGuessCheck", "acceptance_rate_interval", "block_size_for"]

#: The built-in estimators' names (``estimators()`` also lists any registered later).
METHODS = ("rejection", "subset")


@dataclass(frozen=True)
class GuessCheck:
    """Guess & Check by the estimator ``method`` names, with the built-in estimators' settings.

    Attributes:
        eps, accept, device, progress, workers: As every estimator's
            (:class:`~volumelab.optimizers.conditioning.ConditionalEstimator`).
        method: A registered estimator: ``"rejection"`` (independent prior draws, the paper's G&C) or
            ``"subset"`` (subset simulation; the budget then counts model evaluations).
        sampler, batch_size, dtype, memory_fraction, keep_samples: Rejection's
            (:class:`~volumelab.optimizers.rejection.RejectionGuessCheck`); with ``method="subset"`` they do
            not apply (``keep_samples`` must then be 0).
        population, level_fraction, replicates, kernel, moves, tie_break, condition_test, test_eps, loss_bins,
        independent_ladders:
            Subset simulation's (:class:`~volumelab.optimizers.subset.SubsetGuessCheck`).

    Every setting is checked whichever method runs, so a bad value is an error, never ignored.
    """

    eps: float
    sampler: str = "auto"
    batch_size: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    memory_fraction: float = 0.25
    progress: bool = False
    workers: int | None = None
    keep_samples: int = 0
    accept: str = "train_loss"
    method: str = "rejection"
    population: int = 500
    level_fraction: float = 0.1
    replicates: int = 8
    kernel: str = "pcn"
    moves: int = 5
    tie_break: str = "margin"
    condition_test: bool = False
    test_eps: float | None = None
    loss_bins: int = 0
    independent_ladders: bool = False

    def __post_init__(self) -> None:
        if self.method not in estimators():
            raise OptimizerError(f"method must be one of {', '.join(estimators())}, got {self.method!r}")
        self._build(SubsetGuessCheck)
        if self.keep_samples and "keep_samples" not in _field_names(estimators()[self.method]):
            raise OptimizerError("keep_samples is only available with method='rejection'")
        for name in ("condition_test", "loss_bins", "independent_ladders"):
            if getattr(self, name) and name not in _field_names(estimators()[self.method]):
                raise OptimizerError(f"{name} is only available with method='subset'")
        self._build(RejectionGuessCheck)
        self.estimator()

    def _build(self, estimator: type) -> ConditionalEstimator:
        mine = _field_names(type(self))
        return estimator(**{name: getattr(self, name) for name in _field_names(estimator) if name in mine})

    def estimator(self) -> ConditionalEstimator:
        """The estimator ``method`` names, with the settings it has."""
        return self._build(estimators()[self.method])

    def run(self, problem: Problem, model, budget: int, seed: int = 0) -> RunResult:
        """Run the estimator (:meth:`estimator`): ``budget`` prior draws (rejection) or model evaluations
        (subset), seeded by ``seed``. The result's metrics are those of the estimator's ``schema``."""
        return self.estimator().run(problem, model, budget, seed=seed)


def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(item.name for item in dataclasses.fields(cls))
