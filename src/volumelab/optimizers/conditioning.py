"""What Guess & Check's estimators share: how draws are scored, the conditioning settings, the registry.

G&C estimates the prior conditioned on ``score < eps``, where the score is the training
loss (``accept="train_loss"``, the paper's G&C) or a classifier's training error
(``accept="train_error"``). Each estimator of that conditional law (independent draws,
:mod:`.rejection`; subset simulation, :mod:`.subset`) is its own frozen dataclass with
only its own settings, built on :class:`ConditionalEstimator` (``eps``, ``accept`` and
where it runs) and the scorers here, and registered by name with
:func:`register_estimator`: the command line's ``gnc --method NAME`` and its options,
and a sweep's ``gnc`` method (``method: NAME``), are generated from the registry, so a new
estimator is one file (see docs/design.md, "Add an estimator").
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..settings import setting, setting_fields
from ..errors import OptimizerError
from ..samplers.workspace import Workspace, scratch
from .base import Metric, ResultSchema, format_value

__all__ = ["ACCEPT_CRITERIA", "CONDITIONAL_METRICS", "ConditionalEstimator", "conditional_lines", "LossContraction", "OutputScorer", "check_finite",
           "estimators", "register_estimator", "scorer_for", "unregister_estimator"]

#: What a draw must bring below ``eps`` to be accepted: a score row of the task.
ACCEPT_CRITERIA = ("train_loss", "train_error")


class LossContraction:
    """Train and generalization losses of a batch of draws, float32 where that is exact enough.

    The contraction is the task's (:meth:`ProblemTensors.batch_last_residuals` and
    :meth:`ProblemTensors.batch_last_losses`): with ``O`` the ``(m + t, rows * cols)``
    stacked flattened measurement and test matrices and ``V`` the ``(rows * cols, n)``
    draws, ``R = O V - b`` holds every residual; ``M (R * R)`` with the ``(2, m + t)``
    averaging matrix ``M`` gives both losses. This class only decides the precision.

    Float64 draws are contracted in float64. Float32 draws are contracted in float32
    (half the cost of casting them and contracting in float64), and every draw whose
    float32 training loss is below ``2 eps`` (every draw that could be accepted, with a
    factor-2 margin over the float32 error, which is about 1e-6 of the loss) gets both
    losses recomputed in float64 from the same float32 draw. Acceptance decisions and
    the accepted draws' statistics are therefore float64 exactly as if every draw had
    been contracted in float64; only the prior's (all draws') statistics use float32
    losses, whose relative error (~1e-6) lies far below their standard errors. For
    ``eps < 1e-6``, where float32 residuals could come within a factor 2 of ``eps``,
    every draw is contracted in float64.
    """

    #: The matrix tasks score only the two losses (no task metrics besides them).
    metric_names: tuple[str, ...] = ()
    #: Nor any error score (:class:`OutputScorer`'s ``score_names``).
    score_names: tuple[str, ...] = ()
    #: Inputs a draw's activations span (the matrix tasks have none: a draw is ``W``).
    points: int = 1
    #: Below this eps every draw is contracted in float64.
    FLOAT64_BELOW_EPS = 1e-6

    def __init__(self, problem: Problem, device: torch.device, eps: float) -> None:
        # The task's contraction (ProblemTensors' batch-last GEMMs), in both precisions.
        self.exact = problem.tensors(device, torch.float64)
        self.fast = self.exact.to(torch.float32)
        self.candidate_below = 2.0 * eps
        self.float32_allowed = eps >= self.FLOAT64_BELOW_EPS

    def _float64(self, flat: torch.Tensor, workspace: Workspace | None) -> torch.Tensor:
        """Float64 ``(2, n)`` losses of flattened draws ``flat (rows * cols, n)``."""
        count = flat.shape[1]
        device = flat.device
        flat64 = scratch(workspace, "loss_flat", tuple(flat.shape), torch.float64, device).copy_(flat)
        residual = scratch(workspace, "loss_residual", (self.exact.num_outputs, count), torch.float64, device)
        return self.exact.batch_last_losses(self.exact.batch_last_residuals(flat64, out=residual))

    def __call__(self, draws: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
        """Losses of ``draws (n, rows, cols)`` (``(n, *shape)`` of any order): a float64 ``(2, n)`` tensor,
        rows ``(train, gen)``.

        With a ``workspace`` the temporaries reuse its memory.
        """
        count = draws.shape[0]
        batch_last = draws.movedim(0, -1)
        if batch_last.is_contiguous():  # the fast samplers' layout: no transpose copy
            flat = batch_last.reshape(-1, count)
        else:
            flat = draws.reshape(count, -1).T
        if flat.dtype != torch.float32 or not self.float32_allowed:
            return self._float64(flat, workspace)
        device = flat.device
        residual = scratch(workspace, "loss_residual32", (self.fast.num_outputs, count), torch.float32, device)
        losses32 = self.fast.batch_last_losses(self.fast.batch_last_residuals(flat, out=residual),
                                               out=scratch(workspace, "loss_pair32", (2, count), torch.float32, device))
        losses = scratch(workspace, "loss_pair", (2, count), torch.float64, device).copy_(losses32)
        candidates = torch.lt(losses32[0], self.candidate_below).nonzero().flatten()
        if candidates.numel():
            losses[:, candidates] = self._float64(flat[:, candidates], None)
        return losses


class OutputScorer:
    """Scores of draws of any model family whose task scores its outputs (an MLP on supervised data).

    A draw is the model's layers (the ``direct`` sampler); the task's tensors turn the
    model's outputs into ``(L_train, L_gen, *extra metrics)``. Float32 draws run the
    forward pass in float32, their scores are taken in float64 from those outputs, and
    every draw whose training loss is below ``2 eps`` (any that could be accepted) is
    scored again from a float64 forward pass of the same draw, as
    :class:`LossContraction` does for matrices: acceptance and the accepted draws'
    statistics are float64 throughout.

    With ``accept="train_error"`` every draw is scored from a float64 forward pass. The
    candidate margin does not transfer to a 0/1 criterion: a training point counts as
    an error when ``y f(x) <= 0``, and a float32 output within rounding of 0 can have
    either sign however large or small the draw's loss is, so no threshold on the
    float32 loss (or error) picks out every draw whose float64 training error could be
    0. Scoring everything in float64 makes each decision exactly the float64 one, at
    the cost of the float64 forward pass.
    """

    FLOAT64_BELOW_EPS = LossContraction.FLOAT64_BELOW_EPS

    def __init__(self, model, problem, device: torch.device, eps: float, accept: str = "train_loss",
                 error_scores: bool = False, train_threshold: float | None = None,
                 normalized_loss: bool = False) -> None:
        self.model = model
        self.exact = problem.tensors(device, torch.float64)
        self.fast = self.exact.to(torch.float32)
        #: With ``normalized_loss`` also Chiang et al.'s weight-normalized training loss
        #: (:meth:`~volumelab.problems.SupervisedTensors.normalized_train_loss`), reported as a metric.
        self.metric_names = tuple(self.exact.metric_names) + (("normalized_train_loss",) if normalized_loss else ())
        #: With ``error_scores`` the rows end with the error counts whose ties the margins break
        #: (:meth:`~volumelab.problems.SupervisedTensors.error_scores`), the subset ladder's scores, and with a
        #: ``train_threshold`` ``t`` on the first of them also ``test_given_train_score``: the training score where
        #: it is ``>= t``, else ``t`` times half the test score (``< t``: the test score is at most 3/2), a score
        #: whose thresholds below ``t`` are the sets "below ``t`` on the training score, and this far down on
        #: the test score".
        self.score_names = ("train_error_score", "test_error_score") if error_scores else ()
        self.train_threshold = train_threshold
        #: Inputs a draw's activations span (train and test): what bounds a chunk of draws in memory.
        self.points = int(self.exact.inputs.shape[-2])
        if train_threshold is not None:
            if not error_scores:
                raise OptimizerError("a train_threshold needs the error scores (error_scores=True)")
            self.score_names += ("test_given_train_score",)
        self.candidate_below = 2.0 * eps
        self.float32_allowed = eps >= self.FLOAT64_BELOW_EPS and accept == "train_loss"

    def _scores(self, layers, tensors) -> torch.Tensor:
        return self.scores_from_outputs(self.model.outputs(layers, tensors), layers)

    def scores_from_outputs(self, outputs: torch.Tensor, layers=None) -> torch.Tensor:
        """Scores ``(rows, n)`` float64 of the model's outputs ``(n, N)`` on the task's inputs (train, then test);
        ``layers`` (the draws' layers) only for the normalized training loss."""
        outputs = outputs.to(torch.float64)
        train, gen = self.exact.losses(outputs)
        extra = self.exact.extra_metrics(outputs)
        if "normalized_train_loss" in self.metric_names:
            if layers is None:
                raise OptimizerError("the normalized training loss needs the draws' layers")
            extra["normalized_train_loss"] = self.exact.normalized_train_loss(outputs, layers)
        if self.score_names:
            extra.update(self.exact.error_scores(outputs))
        if self.train_threshold is not None:
            train_score, threshold = extra["train_error_score"], self.train_threshold
            extra["test_given_train_score"] = torch.where(train_score < threshold,
                                                          threshold * 0.5 * extra["test_error_score"], train_score)
        return torch.stack([train, gen, *(extra[name] for name in (*self.metric_names, *self.score_names))])

    def __call__(self, draws, workspace: Workspace | None = None) -> torch.Tensor:
        """Scores of ``draws`` (the layers, each ``(n, out, in)``): float64 ``(rows, n)``."""
        if draws[0].dtype != torch.float32 or not self.float32_allowed:
            return self._scores([layer.to(torch.float64) for layer in draws], self.exact)
        scores = self._scores(draws, self.fast)
        candidates = torch.lt(scores[0], self.candidate_below).nonzero().flatten()
        if candidates.numel():
            scores[:, candidates] = self._scores([layer[candidates].to(torch.float64) for layer in draws],
                                                 self.exact)
        return scores


def scorer_for(model, problem, device: torch.device, eps: float, accept: str = "train_loss",
               error_scores: bool = False, train_threshold: float | None = None, normalized_loss: bool = False):
    """How a block of draws becomes scores: the matrix tasks' contraction, or the generic output scorer (with
    ``error_scores`` its rows end with the margin-broken error counts, :class:`OutputScorer`)."""
    if model.scores_array:  # a factorization's W, a CP model's T
        return LossContraction(problem, device, eps)
    return OutputScorer(model, problem, device, eps, accept, error_scores, train_threshold, normalized_loss)


def check_finite(losses: torch.Tensor, model) -> None:
    if not bool(torch.isfinite(losses).all()):
        raise OptimizerError(
            f"non-finite losses in prior draws of {model.describe()}; the prior "
            "overflowed (use dtype='float64' or the normalized prior)"
        )


def _positive_int_or_none(name: str, value) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise OptimizerError(f"{name} must be a positive integer or None, got {value!r}")


@dataclass(frozen=True)
class ConditionalEstimator:
    """An estimator of the prior conditioned on ``score < eps``: the settings every G&C estimator has.

    Attributes:
        eps: Acceptance threshold: a draw is accepted when its ``accept`` score is below it; 0 with
            ``accept="train_error"`` accepts the draws with no training errors (:meth:`threshold`).
        accept: What must be below ``eps``: ``"train_loss"`` (``L_train``, the paper's G&C) or
            ``"train_error"`` (the training error of a classification task, the logistic loss; any
            ``eps`` in ``(0, 1/n]`` conditions on 100% training accuracy).
        device: ``"auto" | "cpu" | "cuda"``.
        progress: Show a progress bar.
        workers: CPU threads working in parallel; ``None`` uses the torch thread count. The result
            never depends on it.

    A subclass declares ``name`` (its ``--method``), ``budget_unit`` (what its budget counts),
    ``schema`` (its :class:`~volumelab.optimizers.base.ResultSchema`), its own fields (those made by
    :func:`~volumelab._settings.setting` are the ones users set) and ``run(problem, model, budget, seed)``.
    """

    eps: float
    accept: str = setting("train_loss", choices=ACCEPT_CRITERIA,
                          doc="What must be below --eps: the training loss, or the training error of a classifier "
                              "(--model mlp, logistic loss; any eps <= 1/n accepts exactly the draws with 100% "
                              "training accuracy).")
    device: str = "auto"
    progress: bool = False
    workers: int | None = None

    name: ClassVar[str] = ""
    #: A few words on what it is (``volumelab gnc --help`` lists it under ``--method``).
    summary: ClassVar[str] = ""
    budget_unit: ClassVar[str] = "prior draws"
    #: The budget the ``gnc`` command uses when ``--samples`` is not given.
    default_budget: ClassVar[int] = 1_000_000
    schema: ClassVar[ResultSchema | None] = None

    def __post_init__(self) -> None:
        if self.accept not in ACCEPT_CRITERIA:
            raise OptimizerError(f"accept must be one of {', '.join(ACCEPT_CRITERIA)}, got {self.accept!r}")
        _positive_int_or_none("workers", self.workers)
        no_errors = self.eps == 0 and self.accept == "train_error"
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and (self.eps > 0 or no_errors)):
            raise OptimizerError(f"eps must be a positive finite number (0 only with accept='train_error': no "
                                 f"training errors), got {self.eps!r}")

    def threshold(self, problem) -> float:
        """What a draw's ``accept`` score must be below: ``eps``; for ``eps = 0`` with ``accept="train_error"``
        (no training errors) half the smallest non-zero training error, ``1 / (2 n)``: the same draws as any
        ``eps`` in ``(0, 1/n]``, and a threshold the subset ladder can descend to."""
        if self.eps == 0:
            return 0.5 / problem.num_train
        return float(self.eps)

    def check_run(self, problem, model, budget) -> None:
        """The checks every estimator makes before it draws: the budget, the model's fit to the problem and
        that the task reports the ``accept`` score."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise OptimizerError(f"the number of samples must be a positive integer, got {budget!r}")
        mismatch = model.problem_mismatch(problem)
        if mismatch:
            raise OptimizerError(mismatch)
        if self.accept != "train_loss" and self.accept not in problem.tensors("cpu").metric_names:
            raise OptimizerError(
                f"accept={self.accept!r} needs a task that reports {self.accept} (a supervised problem with the "
                "logistic loss); this one reports only train_loss and gen_loss: use accept='train_loss'")

    def resolved(self, model, device_type: str) -> dict[str, Any]:
        """What this estimator's settings resolve to on this machine and that decides its random numbers
        (a sweep's run key records it); nothing by default."""
        return {}


_ESTIMATORS: dict[str, type] = {}


def register_estimator(estimator: type) -> type:
    """Class decorator: offer ``estimator`` (a :class:`ConditionalEstimator`) by its ``name`` as
    ``volumelab gnc --method NAME``, with its settings as options, and as ``method: NAME`` of a sweep's G&C."""
    if not (isinstance(estimator, type) and issubclass(estimator, ConditionalEstimator) and estimator.name):
        raise TypeError(f"{estimator!r} is not a ConditionalEstimator subclass with a name")
    _ESTIMATORS[estimator.name] = estimator
    return estimator


def estimators() -> dict[str, type]:
    """The registered G&C estimators by name, in registration order."""
    return dict(_ESTIMATORS)


# ------------------------------------------------------------------ what every estimator reports
#: The metrics every G&C estimator reports, with one meaning each (an estimator adds its own).
CONDITIONAL_METRICS = (
    Metric("gen_loss", "mean generalization (test) loss under the conditional law, i.e. of the accepted draws; "
                       "None when nothing was accepted"),
    Metric("train_loss", "mean training loss under the conditional law"),
    Metric("prior_gen_loss", "mean generalization (test) loss of prior draws: the chance level"),
    Metric("prior_train_loss", "mean training loss of prior draws"),
    Metric("test_error", "mean test error under the conditional law", when="classification tasks"),
    Metric("prior_test_error", "mean test error of prior draws", when="classification tasks"),
    Metric("train_error", "mean training error under the conditional law", when="classification tasks"),
    Metric("prior_train_error", "mean training error of prior draws", when="classification tasks"),
    Metric("log_volume", "natural log of the prior volume P(score < eps); None when not estimated"),
    Metric("acceptance_rate", "P(score < eps), the prior volume itself"),
    Metric("min_train_loss", "the smallest training loss of any draw scored", kind="value"),
    Metric("ess", "effective sample size of the conditional means", kind="value"),
    Metric("eps", "the threshold (echoed setting)", kind="value"),
    Metric("accept", "the score conditioned on (echoed setting)", kind="value"),
)


def conditional_lines(result, scored: str) -> list[str]:
    """The lines every G&C result prints: the conditional and the prior's (chance) losses and test errors."""
    metrics, errors = result.metrics, result.standard_errors
    chance = "gen. loss" if scored == "generalization loss" else "test loss"
    lines = [f"G&C {scored}:".ljust(27) + format_value(metrics["gen_loss"], errors.get("gen_loss")),
             f"prior (chance) {chance}:".ljust(27) + format_value(metrics["prior_gen_loss"],
                                                               errors.get("prior_gen_loss"))]
    if "test_error" in metrics:
        lines.append("G&C test error:".ljust(27) + format_value(metrics["test_error"], errors.get("test_error")))
        lines.append("prior test error:".ljust(27) + format_value(metrics["prior_test_error"],
                                                                errors.get("prior_test_error")))
    return lines


def unregister_estimator(name: str) -> None:
    """Remove a registered estimator (tests, plug-ins that replace one); a ``KeyError`` when none has ``name``."""
    del _ESTIMATORS[name]
