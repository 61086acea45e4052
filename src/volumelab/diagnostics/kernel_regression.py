"""The kernel predictor of the empirical NTK at initialization, and how far a GD run ends from it.

For a model at its initial layers ``theta_0`` with outputs ``f_0``, training inputs ``X`` (``n``
points), targets ``y`` and the empirical NTK ``K(x, x') = <df_0(x)/dtheta, df_0(x')/dtheta>``
(:mod:`volumelab.diagnostics.ntk`), the *kernel predictor* is kernel regression from the initial
function,

    f_K(x) = f_0(x) + K(x, X) K(X, X)^{-1} (y - f_0(X)),

the function the linearized model ``f_0 + J (theta - theta_0)`` reaches when GD (or its flow) on the
squared loss runs to convergence from ``theta_0`` (Lee et al. 2019, Sec. 2.2; Jacot et al. 2018): the
linearized iterates move ``theta`` in the row space of ``J = df_0(X)/dtheta`` only, so their limit is
the interpolant of the training set nearest to ``theta_0``,

    delta* = J^T K(X, X)^{-1} (y - f_0(X)),    ||delta*|| = sqrt((y - f_0)^T K^{-1} (y - f_0)),

the *minimum-norm distance*: no parameter change smaller than it fits the training data to first
order. A wide network in the lazy regime (arXiv 2205.13507, "GD's implicit regularization") ends
near both: its function near ``f_K``, its weights about ``||delta*||`` from their start.

:func:`ntk_on_task_inputs` is the NTK on every input of a task (training, then test points):
for a model whose per-input gradients are outer products (an MLP's, :meth:`MLPModel.gradient_factors`)
it is ``sum_j (G_j G_j^T) * (A_j A_j^T)`` from one forward and backward pass, ``O(N^2 k)`` per
layer; any other model's goes through :func:`~volumelab.diagnostics.ntk.empirical_ntk` on the task's
inputs. Both are in the layers' dtype (float64 from GD) and tested against a plain ``jacrev`` loop.
:func:`kernel_predictor` solves with a Cholesky factor of ``K(X, X)`` and refuses (an exception, never a
made-up value) a ``K(X, X)`` that is singular relative to its scale. :class:`KernelRegression` is the
observer of a GD run that records the distances.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..errors import ProblemError, VolumelabError
from ..optimizers.observers import FinalRecording, Observer, Recording, RunOutcome, TrainingContext
from ..problems import SupervisedProblem, SupervisedTensors
from .ntk import _check_layers, _check_model, empirical_ntk, outer_product_gram

__all__ = ["KERNEL_METRICS", "KernelPrediction", "KernelRegression", "SingularKernelError", "kernel_predictor",
           "ntk_on_task_inputs"]

logger = logging.getLogger(__name__)

#: The metrics :class:`KernelRegression` adds to a run's result.
KERNEL_METRICS = ("kernel_gen_loss", "kernel_distance", "param_distance", "min_norm_distance", "distance_ratio")


class SingularKernelError(VolumelabError):
    """``K(X, X)`` is singular relative to its scale: the kernel predictor and the minimum-norm distance do not
    exist (the training outputs' Jacobian has rank below ``n``, e.g. two equal training inputs)."""


def _supervised_tensors(problem, dtype: torch.dtype, device) -> SupervisedTensors:
    if isinstance(problem, SupervisedTensors):
        if problem.stacked:
            raise ProblemError("the task tensors are stacked (one set per run); pass one run's: tensors.run(index)")
        return problem.to(dtype) if problem.inputs.dtype != dtype else problem
    if isinstance(problem, SupervisedProblem):
        return problem.tensors(device, dtype)
    raise ProblemError(f"the kernel predictor needs a supervised problem (or its tensors), "
                       f"got {type(problem).__name__}")


def ntk_on_task_inputs(model, layers: Sequence[torch.Tensor], problem) -> torch.Tensor:
    """The empirical NTK ``J J^T`` on every input of a supervised task, ``[X_train; X_test]``: ``(n + t, n + t)``.

    Args:
        model: A model family on supervised data (an :class:`~volumelab.models.MLPModel`, a diagonal network),
            with its declared :class:`~volumelab.models.Capabilities`.
        layers: ``(W_1, ..., W_d)`` without a sample axis; their dtype and device are the computation's.
        problem: A :class:`~volumelab.problems.SupervisedProblem`, or one run's task tensors.

    Returns:
        ``K`` in the layers' dtype; its top-left ``n x n`` block is :func:`empirical_ntk`'s Gram.
    """
    _check_model(model)
    layers = _check_layers(model, layers)
    tensors = _supervised_tensors(problem, layers[0].dtype, layers[0].device)
    if model.capabilities.outer_product_gradients:
        gram = outer_product_gram(model, layers, tensors.inputs)
        return (gram + gram.T) / 2
    return empirical_ntk(model, layers, tensors.on_inputs(tensors.inputs))


@dataclass(frozen=True)
class KernelPrediction:
    """The kernel predictor of the NTK at a model's initial layers (the module docstring), float64.

    Attributes:
        initial_outputs: ``f_0`` on ``[X_train; X_test]``, ``(n + t,)``.
        outputs: ``f_K`` on ``[X_train; X_test]``, ``(n + t,)`` (``y`` on the training points, to rounding).
        coefficients: ``K(X, X)^{-1} (y - f_0(X))``, ``(n,)``.
        min_norm_distance: ``sqrt((y - f_0(X))^T K(X, X)^{-1} (y - f_0(X)))``, the smallest ``||theta - theta_0||``
            with which the linearized model fits the training set.
        lambda_min: Smallest eigenvalue of ``K(X, X)``.
        lambda_max: Largest eigenvalue of ``K(X, X)``.
        num_train: ``n``.
    """

    initial_outputs: torch.Tensor
    outputs: torch.Tensor
    coefficients: torch.Tensor
    min_norm_distance: float
    lambda_min: float
    lambda_max: float
    num_train: int


def kernel_predictor(model, layers: Sequence[torch.Tensor], problem) -> KernelPrediction:
    """Kernel regression from the initial function with the empirical NTK at ``layers`` (the module docstring).

    ``K(X, X)`` is factored by Cholesky; ``alpha = K^{-1} r`` with ``r = y - f_0(X)``, and the minimum-norm
    distance is ``||L^{-1} r||`` (``K = L L^T``), which equals ``sqrt(r^T alpha)`` without its cancellation.

    Args:
        model: A model family on supervised data.
        layers: The initial ``(W_1, ..., W_d)``, no sample axis (float64 for a float64 answer).
        problem: A supervised problem, or one run's task tensors. Its targets are regressed whatever its loss
            (the predictor is GD's limit for the squared loss).

    Returns:
        A :class:`KernelPrediction`.

    Raises:
        SingularKernelError: ``lambda_min(K(X, X)) <= n * eps * lambda_max`` (the rank tolerance of an ``n x n``
            matrix in the layers' dtype), or the Cholesky factorization fails.
    """
    layers = _check_layers(model, layers)
    tensors = _supervised_tensors(problem, layers[0].dtype, layers[0].device)
    n = tensors.num_train
    gram = ntk_on_task_inputs(model, layers, tensors)
    train = gram[:n, :n]
    eigenvalues = torch.linalg.eigvalsh(train)
    lambda_min, lambda_max = float(eigenvalues[0]), float(eigenvalues[-1])
    tolerance = n * torch.finfo(train.dtype).eps * max(lambda_max, 0.0)
    if not (lambda_max > 0 and lambda_min > tolerance):
        raise SingularKernelError(
            f"the NTK on the {n} training inputs is singular relative to its scale (lambda_min {lambda_min:.3g}, "
            f"lambda_max {lambda_max:.3g}, tolerance n * eps * lambda_max = {tolerance:.3g}): there is no kernel "
            "predictor or minimum-norm distance; remove repeated training inputs or widen the model")
    factor, info = torch.linalg.cholesky_ex(train)
    if int(info) != 0:
        raise SingularKernelError(f"the Cholesky factorization of the {n} x {n} NTK failed at its pivot {int(info)} "
                                  f"(lambda_min {lambda_min:.3g}, lambda_max {lambda_max:.3g})")
    with torch.no_grad():
        initial = model.outputs([layer.unsqueeze(0) for layer in layers], tensors)[0]
    residual = tensors.targets[:n] - initial[:n]
    whitened = torch.linalg.solve_triangular(factor, residual.unsqueeze(-1), upper=False)
    coefficients = torch.linalg.solve_triangular(factor.T, whitened, upper=True).squeeze(-1)
    outputs = initial + gram[:, :n] @ coefficients
    return KernelPrediction(initial, outputs, coefficients, float(torch.linalg.vector_norm(whitened)), lambda_min,
                            lambda_max, n)


# ----------------------------------------------------------------- the observer of a GD run
@dataclass(frozen=True)
class KernelRegression(Observer):
    """A GD/NGD observer (:mod:`volumelab.optimizers.observers`): each run's end against the kernel predictor of
    the NTK at its own initialization (:func:`kernel_predictor`), on a supervised task with the squared loss.

    Metrics (:data:`KERNEL_METRICS`):

    * ``kernel_gen_loss``: the kernel predictor's test loss (the task's loss on ``f_K``);
    * ``kernel_distance``: ``||f_T - f_K|| / ||f_K - f_0||`` over the test inputs, the distance of the trained
      network's test outputs from the kernel predictor's, relative to how far the kernel predictor moves them
      from the initial function (the part the training set decides; dividing by ``||f_K||`` would let the
      random ``f_0`` of the ntk parametrization, of order 1, set the scale);
    * ``param_distance``: ``||theta_T - theta_0||`` over every stored weight;
    * ``min_norm_distance``: ``sqrt((y - f_0)^T K^{-1} (y - f_0))``, the smallest distance with which the
      linearized model fits the training set;
    * ``distance_ratio``: ``param_distance / min_norm_distance`` (1 for the linearized model trained to
      convergence).

    A run without final parameters (diverged) has only the first and the fourth; a singular ``K(X, X)`` gives
    none (``None``, logged).
    """

    def start(self, context: TrainingContext) -> Recording:
        tensors = context.objective.tensors
        if not isinstance(tensors, SupervisedTensors) or tensors.loss != "squared":
            task = f"the {tensors.loss} loss" if isinstance(tensors, SupervisedTensors) else type(tensors).__name__
            raise ProblemError(f"kernel_metrics needs a supervised task with the squared loss (kernel regression is "
                               f"the limit of linearized GD there), got {task}")
        return _KernelRecording(context)


class _KernelRecording(FinalRecording):
    def metrics(self, outcome: RunOutcome) -> dict:
        objective = self.context.objective
        model, tensors = objective.model, objective.tensors.run(outcome.index)
        initial = self.context.initial[outcome.index]
        out: dict = dict.fromkeys(KERNEL_METRICS)
        layers = [layer[0] for layer in objective.layers(initial.unsqueeze(0))]
        try:
            prediction = kernel_predictor(model, layers, tensors)
        except SingularKernelError as error:
            logger.warning("run %d: no kernel metrics: %s", outcome.index, error)
            return out
        out["kernel_gen_loss"] = float(tensors.losses(prediction.outputs)[1])
        out["min_norm_distance"] = prediction.min_norm_distance
        if not outcome.has_result:
            return out
        final = self.final[outcome.index]
        with torch.no_grad():
            trained = model.outputs(objective.layers(final.unsqueeze(0)), tensors)[0]
        n = tensors.num_train
        moved = float(torch.linalg.vector_norm(prediction.outputs[n:] - prediction.initial_outputs[n:]))
        apart = float(torch.linalg.vector_norm(trained[n:] - prediction.outputs[n:]))
        out["kernel_distance"] = apart / moved if moved > 0 else None
        distance = float(torch.linalg.vector_norm(final - initial))
        out["param_distance"] = distance
        bound = prediction.min_norm_distance
        out["distance_ratio"] = distance / bound if bound > 0 and math.isfinite(distance) else None
        return out
