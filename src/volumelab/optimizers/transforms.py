"""GD's step rules as small composable transforms: gradient -> preconditioner -> momentum -> step size.

A transform has the shape ``init(params) -> state`` and
``update(update, state, context) -> (update, state)``; :func:`chain` composes them
left to right. Everything is batched over a leading run axis ``S``: parameters and
gradients are ``(S, P)``.

An :class:`Update` carries a direction ``(S, P)`` and a pending per-run factor
``(S, 1)`` (or a 0-d tensor) that multiplies it. Scalar preconditioners (the paper's
global RMS step) and the step size only multiply the factor; a transform that needs
the update itself (momentum, a Gauss-Newton solve) calls :meth:`Update.materialize`
first. The optimizer applies ``params -= factor * direction`` once. So a chain of
scalar steps costs one pass over the parameters, and the rounding is that of the
paper's formula written directly: ``lr * s`` first, then one multiply-add.

Transforms here:

* :func:`identity`: no preconditioning.
* :func:`scale_by_group_rms` (arXiv 2506.03931, the authors' optimizer): divide by
  ``sqrt(bias-corrected EMA of ||g||^2) + eps``, one scalar per run.
* :func:`scale_by_adam`: Adam's per-coordinate step (Kingma & Ba 2015, Algorithm 1), bias-corrected.
* :func:`trace_momentum`: heavy-ball ``m <- beta m + u``, frozen for stopped runs.
* :func:`scale_by_learning_rate`: multiply by ``lr``.

A Gauss-Newton / Fisher preconditioner (natural gradient descent) plugs in as another
transform in the preconditioner slot: its ``update`` gets the parameters and the
objective through the :class:`StepContext`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch

__all__ = [
    "GradientTransformation",
    "StepContext",
    "Update",
    "chain",
    "identity",
    "scale_by_adam",
    "scale_by_group_rms",
    "scale_by_learning_rate",
    "scale_by_parameter",
    "trace_momentum",
]


@dataclass
class Update:
    """``factor * direction``, with the per-run factor kept apart until it must be applied.

    Attributes:
        direction: ``(S, P)``; transforms may modify it in place (it is the step's own buffer).
        factor: ``None`` (one), a 0-d tensor, or ``(S, 1)``.
    """

    direction: torch.Tensor
    factor: torch.Tensor | None = None
    #: The factor is this update's own tensor (may be multiplied in place), not a transform's state.
    owns_factor: bool = False

    def scaled(self, factor: torch.Tensor, *, owned: bool = False) -> "Update":
        """The update times ``factor`` (0-d or ``(S, 1)``), without touching the direction (in place).

        ``owned``: ``factor`` is a fresh tensor the update may modify; a transform's state
        (a step size, a saved scale) is never modified: the first product is a new tensor.
        """
        if self.factor is None:
            self.factor, self.owns_factor = factor, owned
        elif self.owns_factor and (factor.ndim == 0 or factor.shape == self.factor.shape):
            self.factor.mul_(factor)
        else:
            self.factor, self.owns_factor = self.factor * factor, True
        return self

    def materialize(self) -> torch.Tensor:
        """The direction with the factor applied (in place): ``(S, P)``."""
        if self.factor is not None:
            self.direction.mul_(self.factor)
            self.factor, self.owns_factor = None, False
        return self.direction


class StepContext:
    """What a transform may read besides the update.

    Attributes:
        step: Index of the step (0-based).
        active: ``(S,)`` bool, runs still training; stopped runs must stay frozen.
        params: ``(S, P)`` current parameters (read only).
        objective: The objective (for curvature-based preconditioners).
        gradient: The step's gradient as the chain received it (stopped runs' rows zero), or ``None``.
        failures: Runs a transform stopped this step (:meth:`fail`): index -> reason.
    """

    __slots__ = ("step", "active", "params", "objective", "gradient", "_raw_sq_norm", "_sq_norm", "_zero", "failures",
                 "_version")

    def __init__(self, step: int, active: torch.Tensor, params: torch.Tensor, objective: Any = None,
                 gradient: torch.Tensor | None = None, raw_sq_norm: torch.Tensor | None = None,
                 zero: torch.Tensor | None = None) -> None:
        self.step, self.active, self.params, self.objective = step, active, params, objective
        self.gradient, self._raw_sq_norm, self._sq_norm, self._zero = gradient, raw_sq_norm, None, zero
        # The gradient's in-place version counter now: a transform that scales it in place
        # (materialize, or its own in-place edit) bumps it, and the saved norm is then stale.
        self._version = gradient._version if gradient is not None else None
        self.failures: dict[int, str] = {}

    def fail(self, index: int, reason: str) -> None:
        """Stop run ``index`` at this step (its update row must be zero): e.g. a solve that failed.

        The run is marked inactive at once, so the transforms after this one freeze it too.
        """
        self.active[index] = False
        self.failures[index] = reason

    def squared_norm(self, direction: torch.Tensor) -> torch.Tensor:
        """``||direction||^2`` per run, ``(S,)``.

        When ``direction`` is the step's gradient itself, unmodified since the step began,
        this is the squared norm the optimizer already took for its finiteness check (zero
        for stopped runs, whose gradient rows are zero): the same numbers as computing it
        again, once per step. Once an earlier transform has changed the gradient in place
        (e.g. materialized a step size into it), the norm is computed afresh.
        """
        if (direction is not self.gradient or self._raw_sq_norm is None
                or direction._version != self._version):
            return torch.linalg.vecdot(direction, direction)
        if self._sq_norm is None:
            zero = self._zero if self._zero is not None else 0.0
            self._sq_norm = torch.where(self.active, self._raw_sq_norm, zero)
        return self._sq_norm


class GradientTransformation(NamedTuple):
    """``init(params) -> state`` and ``update(update, state, context) -> (update, state)``."""

    init: Callable[[torch.Tensor], Any]
    update: Callable[[Update, Any, StepContext], tuple[Update, Any]]


def identity() -> GradientTransformation:
    """No preconditioning: the update passes unchanged."""
    return GradientTransformation(lambda params: None, lambda update, state, context: (update, state))


def scale_by_group_rms(*, decay: float = 0.99, eps: float = 1e-6) -> GradientTransformation:
    """The paper's global adaptive step: one scalar per run for all parameters.

    ``v <- decay v + (1 - decay) ||g||^2`` and the update is divided by
    ``sqrt(v / (1 - decay^(t+1))) + eps`` (bias-corrected, t the step index).

    Args:
        decay: EMA decay of the squared gradient norm.
        eps: Added to the root mean square.
    """

    def init(params: torch.Tensor) -> torch.Tensor:
        return torch.zeros(params.shape[0], dtype=params.dtype, device=params.device)

    def update(update: Update, ema: torch.Tensor, context: StepContext) -> tuple[Update, torch.Tensor]:
        direction = update.materialize()
        ema.lerp_(context.squared_norm(direction), 1 - decay)
        corrected = ema * (1.0 / (1 - decay ** (context.step + 1)))
        scale = corrected.sqrt_().add_(eps).reciprocal_()
        return update.scaled(scale.unsqueeze(1), owned=True), ema

    return GradientTransformation(init, update)


def scale_by_adam(*, beta1: float = 0.9, beta2: float = 0.999, eps: float = 1e-8) -> GradientTransformation:
    """Adam's per-coordinate step (Kingma & Ba 2015, Algorithm 1), without the step size.

    With ``g`` the update received and ``t`` the 1-based step (``context.step + 1``)::

        m <- beta1 m + (1 - beta1) g,      v <- beta2 v + (1 - beta2) g^2        (per coordinate)
        u  = (m / (1 - beta1^t)) / (sqrt(v / (1 - beta2^t)) + eps)

    A stopped run's update is exactly zero (its moments keep decaying but are never applied), so it
    stays frozen. The learning rate (and muP's per-layer rates) multiply ``u`` afterwards.

    Args:
        beta1: Decay of the first moment (the gradient's average), in ``[0, 1)``.
        beta2: Decay of the second moment (the squared gradient's average), in ``[0, 1)``.
        eps: Added to the root of the bias-corrected second moment.
    """

    def init(params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"first": torch.zeros_like(params), "second": torch.zeros_like(params)}

    def update(update: Update, state: dict, context: StepContext) -> tuple[Update, dict]:
        gradient = update.materialize()
        first, second = state["first"], state["second"]
        first.lerp_(gradient, 1 - beta1)
        second.mul_(beta2).addcmul_(gradient, gradient, value=1 - beta2)
        count = context.step + 1
        denominator = torch.div(second, 1 - beta2 ** count).sqrt_().add_(eps)
        # Written into the step's own buffer (the gradient's): the moments are state and stay untouched.
        direction = torch.div(first, denominator, out=gradient).mul_(1 / (1 - beta1 ** count))
        direction.mul_(context.active.unsqueeze(1))
        return Update(direction), state

    return GradientTransformation(init, update)


def trace_momentum(beta: float) -> GradientTransformation:
    """Heavy-ball momentum ``m <- beta m + u``; the update becomes ``m``.

    A stopped run's buffer is zeroed (``beta`` is masked by ``active``), so with its
    zeroed gradient its update is exactly zero.
    """

    def init(params: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"buffer": torch.zeros_like(params),
                "beta": torch.tensor(beta, dtype=params.dtype, device=params.device)}

    def update(update: Update, state: dict, context: StepContext) -> tuple[Update, dict]:
        direction = update.materialize()
        buffer = state["buffer"].mul_(torch.mul(context.active, state["beta"]).unsqueeze(1)).add_(direction)
        return Update(buffer), state

    return GradientTransformation(init, update)


def scale_by_learning_rate(lr: float) -> GradientTransformation:
    """Multiply the update by the step size ``lr``."""

    def init(params: torch.Tensor) -> torch.Tensor:
        return torch.tensor(lr, dtype=params.dtype, device=params.device)

    def update(update: Update, rate: torch.Tensor, context: StepContext) -> tuple[Update, torch.Tensor]:
        return update.scaled(rate), rate

    return GradientTransformation(init, update)


def scale_by_parameter(factors: torch.Tensor) -> GradientTransformation:
    """Multiply each parameter's update by its own factor: per-layer learning rates (e.g. muP's).

    Args:
        factors: ``(P,)`` one factor per parameter, shared by every run.
    """

    def init(params: torch.Tensor) -> torch.Tensor:
        if factors.shape != params.shape[1:]:
            raise ValueError(f"need one factor per parameter ({params.shape[1]}), got shape {tuple(factors.shape)}")
        return factors.to(dtype=params.dtype, device=params.device)

    def update(update: Update, row: torch.Tensor, context: StepContext) -> tuple[Update, torch.Tensor]:
        # Out of place: the direction may be a transform's state (momentum's buffer).
        return Update(update.direction * row, update.factor, update.owns_factor), row

    return GradientTransformation(init, update)


def chain(*transforms: GradientTransformation) -> GradientTransformation:
    """Apply ``transforms`` left to right; the state is the list of their states."""

    def init(params: torch.Tensor) -> list:
        return [t.init(params) for t in transforms]

    updates = tuple(t.update for t in transforms)

    def update(update: Update, state: tuple, context: StepContext) -> tuple[Update, tuple]:
        states = list(state)
        for index, transform_update in enumerate(updates):
            update, states[index] = transform_update(update, states[index], context)
        return update, states

    return GradientTransformation(init, update)
