"""Deep diagonal linear networks: linear classifiers whose parametrization favours sparsity.

A linear predictor ``f(x) = <w, x>`` parametrized as

* ``form="product"``: ``w = u_1 * u_2 * ... * u_L`` (entrywise), ``L = depth`` vectors;
* ``form="difference"``: ``w = u_+^L - u_-^L`` (entrywise powers), two vectors.

Both are the same function class as a linear model (``depth`` 1 of the product form *is*
the linear model), so any difference between them under an optimizer comes from the
parametrization: GD from a small initialization finds sparse predictors on these
models, while natural gradient descent (invariant to the parametrization) should not.

Prior (G&C): every entry of every ``u`` is ``P * d^(-1/(2L))`` (``P`` standard normal or
uniform on ``[-1, 1]``), so that ``w``'s entries have variance ``1/d`` (product form with
the Gaussian prior), as a fan-in-scaled linear layer's. GD's initialization is
``init_scale`` times ones for every ``u`` (the small, balanced initialization of the
implicit-bias literature); for the difference form that is ``w = 0``.
GD's balanced start (``initialization="balanced"``, :meth:`DiagonalNetwork.initialize_balanced`) starts
every depth from the depth-1 model's start instead: ``w(0) = init_scale`` (product) or
``u_+^L = u_-^L = init_scale`` (difference).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..errors import ModelError
from .activations import activation_for
from .balanced import balanced_diagonal_factors, depth_one_start
from .layers import PRIORS, LayeredModel, register_family, setting

__all__ = ["DIAGONAL_FORMS", "DiagonalNetwork"]

DIAGONAL_FORMS = ("product", "difference")


@register_family
@dataclass(frozen=True)
class DiagonalNetwork(LayeredModel):
    """A deep diagonal linear network on ``in_features`` inputs.

    Attributes:
        in_features: Input dimension ``d``.
        depth: ``L >= 1``: the number of factors (product) or the power (difference).
        form: ``"product"`` or ``"difference"``.
        prior: ``"gaussian"`` or ``"uniform"``.
    """

    in_features: int
    depth: int = setting(2, minimum=1)
    form: str = setting("product", choices=DIAGONAL_FORMS, doc="product: w = u_1 * ... * u_L; difference: "
                        "w = u_+^L - u_-^L.")
    prior: str = setting("gaussian", choices=PRIORS)

    family = "diagonal"
    gnc_block_size = 1024

    def __post_init__(self) -> None:
        for name in ("in_features", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if self.form not in DIAGONAL_FORMS:
            raise ModelError(f"unknown diagonal form {self.form!r}; expected one of {', '.join(DIAGONAL_FORMS)}")
        if self.prior not in PRIORS:
            raise ModelError(f"unknown prior {self.prior!r}; expected one of {', '.join(PRIORS)}")
        object.__setattr__(self, "_activation_function", activation_for("linear"))

    @cached_property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """One ``(1, d)`` vector per factor (product) or ``u_+, u_-`` (difference)."""
        count = self.depth if self.form == "product" else 2
        return ((1, self.in_features),) * count

    @property
    def layer_scales(self) -> tuple[float, ...]:
        scale = self.in_features ** (-1.0 / (2 * self.depth))
        return (scale,) * len(self.layer_shapes)

    def linear_predictor(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """``w``: ``(..., d)`` from the factors (each ``(..., 1, d)``)."""
        if self.form == "product":
            w = weights[0]
            for u in weights[1:]:
                w = w * u
        else:
            w = weights[0].pow(self.depth) - weights[1].pow(self.depth)
        return w.squeeze(-2)

    def outputs(self, weights: Sequence[torch.Tensor], tensors) -> torch.Tensor:
        """``<w, x>`` on the task's inputs ``[X_train; X_test]``: ``(..., N)``."""
        w = self.linear_predictor(weights)
        return torch.matmul(w.unsqueeze(-2), tensors.inputs.transpose(-1, -2)).squeeze(-2)

    def initialize(self, init_scale: float, generator: torch.Generator, *, batch_shape: tuple[int, ...] = (),
                   dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """``init_scale`` times ones for every factor (``generator`` is not used: the start is deterministic)."""
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ModelError(f"init_scale must be a positive finite number, got {init_scale!r}")
        return [torch.full((*batch_shape, out, inp), float(init_scale), dtype=dtype, device=device)
                for out, inp in self.layer_shapes]

    def balanced_mismatch(self) -> str | None:
        """``None``: both forms have a balanced start (:meth:`initialize_balanced`)."""
        return None

    def initialize_balanced(self, init_scale: float, generator: torch.Generator, *, batch_shape: tuple[int, ...] = (),
                            dtype: torch.dtype = torch.float64,
                            device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The depth-1 start of the same form (:meth:`initialize` of the depth-1 model) at this depth, so every
        depth starts from the same predictor (at depth 1 exactly :meth:`initialize`'s factors).

        Product form: the depth-1 ``w(0) = init_scale`` (every entry) as ``depth`` factors of equal magnitude
        ``|w|^(1/L)`` (:func:`volumelab.models.balanced.balanced_diagonal_factors`; the first carries the signs).
        Difference form: ``w = p - n`` with ``p = u_+^L`` and ``n = u_-^L``; the start keeps the depth-1 model's
        ``p = n = init_scale``, ``u_+ = u_- = init_scale^(1/L)`` (``w(0) = 0``, as the random start's: a balanced
        start aligns ``p`` and ``n`` too, which the random start's ``u = init_scale`` does not).
        """
        start = depth_one_start(self, init_scale, generator, batch_shape=batch_shape, dtype=dtype, device=device)
        if self.depth == 1:
            return start
        if self.form == "product":
            return balanced_diagonal_factors(start[0], self.depth)
        # u_+ and u_- of the depth-1 model are init_scale > 0: their real L-th roots exist at any L.
        return [half.pow(1.0 / self.depth) for half in start]

    def problem_mismatch(self, problem) -> str | None:
        if problem.task != "supervised":
            return "a diagonal network needs a supervised problem (--data ...)"
        if problem.num_features != self.in_features:
            return f"model takes {self.in_features} input features but the problem has {problem.num_features}"
        return None

    def describe(self) -> dict:
        return {"family": self.family, "in_features": self.in_features, "depth": self.depth, "form": self.form,
                "prior": self.prior}
