"""Deep fully connected networks (MLPs) on supervised data: the second model family.

    f(x) = W_d sigma(W_{d-1} sigma(... sigma(W_1 x)))

with ``W_1`` of shape ``k x in_features``, hidden layers ``k x k`` and ``W_d`` of shape
``1 x k`` (one output: a regression value or a classification margin); ``d = 1`` is the
linear model ``f(x) = W_1 x``. No biases.

The forward pass is the factorization's recursion (:meth:`LayeredModel.propagate`)
started from ``a_1 = W_1 X^T``: on ``N`` inputs stacked as ``X (N, in_features)``, every
``a_j`` is ``(..., out_j, N)`` and the outputs are ``a_d`` without its unit axis,
``(..., N)``, for any leading sample axes (G&C's draws, GD's runs).

The prior is the standard one (``scaling="fan_in"``): every entry of ``W_j`` is
``P / sqrt(fan_in_j)`` with ``P`` standard normal or uniform on ``[-1, 1]``, so that
pre-activations stay of order one at any width and depth.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..errors import ModelError
from .layers import LayeredModel

__all__ = ["MLPModel", "MLP_SCALINGS"]

MLP_SCALINGS = ("fan_in",)


@dataclass(frozen=True)
class MLPModel(LayeredModel):
    """A depth-``d``, width-``k`` MLP with one output and its prior.

    Attributes:
        in_features: Input dimension.
        width: Hidden width ``k >= 1`` (ignored when ``depth == 1``).
        depth: Number of weight matrices ``d >= 1``.
        activation: ``"linear" | "tanh" | "leaky_relu" | "relu"`` or an elementwise callable.
        prior: ``"gaussian"`` or ``"uniform"`` (see the module docstring).
        scaling: ``"fan_in"`` (the standard prior).
        negative_slope: Slope of ``leaky_relu`` for negative inputs.
    """

    in_features: int
    width: int
    depth: int
    activation: str | Callable[[torch.Tensor], torch.Tensor] = "relu"
    prior: str = "gaussian"
    scaling: str = "fan_in"
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        self._validate(("in_features", "width", "depth"), MLP_SCALINGS)

    family = "mlp"
    #: Draws per G&C randomness block. Fixed, because a draw's memory is its activations
    #: on every input (width x points), which the model does not know: 128 draws of width
    #: 160 on 1,500 points take about 120 MiB in float32.
    gnc_block_size = 128
    #: The fast samplers and the hand-written gradient are the factorization's.
    is_linear = False
    normalize = False

    @cached_property  # made once: the forward pass checks the layer count on every call
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of ``W_1, ..., W_d``."""
        if self.depth == 1:
            return ((1, self.in_features),)
        k = self.width
        return ((k, self.in_features),) + ((k, k),) * (self.depth - 2) + ((1, k),)

    @property
    def layer_scales(self) -> tuple[float, ...]:
        """``1 / sqrt(fan_in)`` for every layer."""
        return tuple(1.0 / math.sqrt(inp) for _out, inp in self.layer_shapes)

    def forward(self, weights: Sequence[torch.Tensor], inputs: torch.Tensor, *,
                pre: list[torch.Tensor] | None = None, post: list[torch.Tensor] | None = None) -> torch.Tensor:
        """``f`` on every input: ``(..., N)``.

        Args:
            weights: ``W_1, ..., W_d``, each ``(..., out, in)`` with broadcastable leading axes.
            inputs: ``(N, in_features)``, or ``(..., N, in_features)`` with leading axes
                broadcastable against the weights' (one data set per run).
            pre, post: As for :meth:`LayeredModel.propagate`.
        """
        if inputs.shape[-1] != self.in_features:
            raise ModelError(f"inputs have {inputs.shape[-1]} features, the model takes {self.in_features}")
        first = torch.matmul(weights[0], inputs.transpose(-1, -2))
        return self.propagate(first, weights, pre=pre, post=post).squeeze(-2)

    def linear_predictor(self, weights: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """``w = W_d ... W_1`` ``(..., d)`` of a deep *linear* network (``activation="linear"``); else ``None``."""
        if self.activation != "linear":
            return None
        product = weights[0]
        for layer in weights[1:]:
            product = torch.matmul(layer, product)
        return product.squeeze(-2)

    def outputs(self, weights: Sequence[torch.Tensor], tensors) -> torch.Tensor:
        """What the task scores: ``f`` on the task's inputs ``[X_train; X_test]``, ``(..., N)``."""
        return self.forward(weights, tensors.inputs)

    def problem_mismatch(self, problem) -> str | None:
        """Why ``problem`` cannot be scored on this model's outputs, or ``None``."""
        if getattr(problem, "task", None) != "supervised":
            return "an MLP needs a supervised problem (--data ...); use --model factorization for matrix problems"
        if problem.num_features != self.in_features:
            return f"model takes {self.in_features} input features but the problem has {problem.num_features}"
        return None

    def describe(self) -> dict:
        """A JSON-friendly description (used in results and reports)."""
        return {"family": self.family, "in_features": self.in_features, "width": self.width, "depth": self.depth,
                "activation": self.activation_name, "prior": self.prior, "scaling": self.scaling,
                "negative_slope": self.negative_slope}
