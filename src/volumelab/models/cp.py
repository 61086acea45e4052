"""CP (CANDECOMP/PARAFAC) tensor factorization, plain and deep, with its priors.

An order-``N`` tensor of shape ``dims`` with ``R`` components (``R`` is the width):

    T = sum_r F_0[:, r] (x) F_1[:, r] (x) ... (x) F_{N-1}[:, r]

Mode ``n``'s factor matrix ``F_n`` (``dims[n] x R``) is itself a depth-``d`` product in the
deep variant, with the activations of the matrix factorization between its layers. The
layers are kept in the layout of the mode-0 unfolding ``T_(0) = F_0 KR^T`` (``KR`` the
Khatri-Rao product of the other factors), which is what makes order 2 *exactly* the deep
matrix factorization:

* mode 0 (the output side): ``F_0 = W_d s(... s(W_1))`` with ``W_1 ... W_{d-1}`` of shape
  ``R x R`` and ``W_d`` of shape ``dims[0] x R``;
* modes ``n >= 1`` (the input side), stored transposed: ``G_n = F_n^T`` (``R x dims[n]``)
  ``= V_d s(... s(V_1))`` with ``V_1`` of shape ``R x dims[n]`` and the others ``R x R``.

The weights are ``[mode 1's layers, ..., mode N-1's layers, mode 0's layers]``. At order 2
and depth 1 they are ``[G_1 (R x cols), F_0 (rows x R)]``, the layers of the depth-2 matrix
factorization of width ``R``, and ``T = F_0 G_1`` is its forward pass: the prior, GD's
initialization and every result agree draw for draw (tested). At order 2 and depth ``d``
the linear model is the linear matrix factorization of depth ``2d``.

Prior (docs/design.md, "Tensors"): every layer but a mode's last is ``P / sqrt(R)``; the
last layer of mode 0 is ``P / sqrt(dims[0])`` and that of every other mode
``P * R^(-1/(2(N-1)))`` (``"paper"`` scaling: the matrix convention, with the input side's
``1/sqrt(k)`` shared among its ``N - 1`` modes), or every layer ``P / sqrt(fan_in)``
(``"fan_in"``). For the linear model with the Gaussian prior, every entry of ``T`` then has
variance ``1/dims[0]`` (paper) or ``1 / prod(dims[1:])`` (fan_in) at any ``R`` and depth, the
entries are uncorrelated, and the prior's expected generalization loss has the closed form
:meth:`CPModel.chance_gen_loss`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..errors import ModelError
from .activations import ACTIVATIONS
from .factorization import SCALINGS, factor_prior_description, normalize_frobenius
from .layers import PRIORS, Capabilities, LayeredModel, register_family, setting

__all__ = ["CPModel"]

#: ``E[P^2]`` of the prior's ``P``: standard normal, or uniform on ``[-1, 1]``.
_SECOND_MOMENT = {"gaussian": 1.0, "uniform": 1.0 / 3.0}


@register_family
@dataclass(frozen=True)
class CPModel(LayeredModel):
    """A (deep) CP factorization of an order-``N`` tensor of shape ``dims`` with ``width`` components.

    Attributes:
        dims: The tensor's shape (order ``N >= 2``).
        width: Number of components ``R >= 1``.
        depth: Layers per factor matrix ``d >= 1`` (1: the plain CP factorization).
        activation: Between the layers of a factor matrix (no effect at depth 1): ``"linear"``,
            ``"tanh"``, ``"leaky_relu"``, ``"relu"`` or an elementwise callable.
        prior: ``"gaussian"`` or ``"uniform"``.
        scaling: ``"paper"`` or ``"fan_in"`` (the module docstring).
        normalize: Divide ``T`` by ``||T||_F + 1e-6``.
        negative_slope: Slope of ``leaky_relu`` for negative inputs.
    """

    dims: tuple[int, ...]
    width: int = setting(5, minimum=1)
    depth: int = setting(1, minimum=1)
    activation: str | Callable[[torch.Tensor], torch.Tensor] = setting("linear", choices=ACTIVATIONS)
    prior: str = setting("gaussian", choices=PRIORS)
    scaling: str = setting("paper", choices=SCALINGS)
    normalize: bool = setting(False)
    negative_slope: float = setting(0.2)

    family = "cp"
    problem_orders = None  # any order: a matrix is an order-2 tensor
    capabilities = Capabilities(closed_form_chance=True)
    #: A draw is scored as the whole array ``T`` (flattened) by the task's linear measurements.
    scores_array = True

    def __post_init__(self) -> None:
        if isinstance(self.dims, (str, bytes)) or not isinstance(self.dims, Sequence):
            raise ModelError(f"dims must be a sequence of positive integers, got {self.dims!r}")
        dims = tuple(self.dims)
        if len(dims) < 2:
            raise ModelError(f"dims must give at least two sizes (order >= 2), got {dims!r}")
        if any(isinstance(size, bool) or not isinstance(size, int) or size < 1 for size in dims):
            raise ModelError(f"every size in dims must be a positive integer, got {dims!r}")
        object.__setattr__(self, "dims", dims)
        self._validate(("width", "depth"), SCALINGS)

    # ----------------------------------------------------------------- structure
    @property
    def order(self) -> int:
        return len(self.dims)

    @property
    def shape(self) -> tuple[int, ...]:
        """The shape of ``T`` (what the task measures)."""
        return self.dims

    @classmethod
    def shape_settings(cls, shape: tuple[int, ...]) -> dict:
        """``dims``: the measured tensor's shape."""
        return {"dims": tuple(int(size) for size in shape)}

    @property
    def is_linear(self) -> bool:
        return self.activation == "linear" or self.depth == 1

    def _mode_shapes(self, mode: int) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of one mode's layers, first to last."""
        r, d = self.width, self.depth
        if mode == 0:
            return ((r, r),) * (d - 1) + ((self.dims[0], r),)
        return ((r, self.dims[mode]),) + ((r, r),) * (d - 1)

    @cached_property
    def modes(self) -> tuple[int, ...]:
        """The modes in the order of their layers in the weight list: ``1, ..., N-1, 0``."""
        return tuple(range(1, self.order)) + (0,)

    @cached_property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of every layer: mode 1's ``d`` layers, ..., mode ``N-1``'s, then mode 0's."""
        return tuple(shape for mode in self.modes for shape in self._mode_shapes(mode))

    def _last_scale(self, mode: int) -> float:
        if mode == 0:
            return 1.0 / math.sqrt(self.dims[0])
        # 1 / sqrt(R) ** (1 / (N - 1)): at order 2 exactly the matrix model's 1 / sqrt(k).
        return 1.0 / math.sqrt(self.width) ** (1.0 / (self.order - 1))

    @property
    def layer_scales(self) -> tuple[float, ...]:
        """The prior's multiplier of each layer, in :attr:`layer_shapes`' order (the module docstring)."""
        if self.scaling == "fan_in":
            return tuple(1.0 / math.sqrt(inp) for _out, inp in self.layer_shapes)
        hidden = 1.0 / math.sqrt(self.width)
        return tuple(scale for mode in self.modes
                     for scale in (hidden,) * (self.depth - 1) + (self._last_scale(mode),))

    # ------------------------------------------------------------------- forward
    def factors(self, weights: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """``[F_0, G_1, ..., G_{N-1}]``: mode 0's factor ``(..., dims[0], R)`` and the others' transposed
        ``(..., R, dims[n])``, each the forward recursion of its layers (``LayeredModel._recursion``)."""
        if len(weights) != len(self.layer_shapes):
            raise ModelError(f"expected {len(self.layer_shapes)} weight matrices, got {len(weights)}")
        d = self.depth
        by_mode = {mode: weights[i * d:(i + 1) * d] for i, mode in enumerate(self.modes)}
        return [self._recursion(by_mode[mode][0], by_mode[mode]) for mode in range(self.order)]

    def forward(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """``T`` before the optional normalization: ``(..., *dims)``.

        Contracted as the mode-0 unfolding: ``F_0`` is spread over modes ``1 .. N-2`` by
        broadcasting (``(..., P, R) -> (..., P * dims[n], R)``), and the last mode is one
        ``torch.matmul`` with ``G_{N-1}``; at order 2 that is ``F_0 G_1``, the matrix model's product.
        """
        first, *rest = self.factors(weights)
        spread = first
        for factor in rest[:-1]:
            # (..., P, 1, R) * (..., 1, dims[n], R) -> (..., P * dims[n], R)
            spread = (spread.unsqueeze(-2) * factor.transpose(-1, -2).unsqueeze(-3)).flatten(-3, -2)
        unfolded = torch.matmul(spread, rest[-1])
        return unfolded.reshape(*unfolded.shape[:-2], *self.dims)

    def end_to_end(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """``T``, normalized when :attr:`normalize` is set: ``(..., *dims)``."""
        return self.normalize_output(self.forward(weights))

    def normalize_output(self, product: torch.Tensor, *, in_place: bool = False) -> torch.Tensor:
        if not self.normalize:
            return product
        return normalize_frobenius(product, tuple(range(-self.order, 0)), in_place=in_place)

    # ------------------------------------------------------------ for the task
    def outputs(self, weights: Sequence[torch.Tensor], tensors=None) -> torch.Tensor:
        """What the task scores: the flattened ``T``, ``(..., prod(dims))`` (row-major, as the problem's)."""
        return self.end_to_end(weights).flatten(-self.order)

    def problem_mismatch(self, problem) -> str | None:
        """Why ``problem`` cannot be scored on this model's outputs, or ``None``."""
        if problem.task == "supervised":
            return "a CP model needs a tensor (or matrix) problem (tensor-sensing, tensor-completion); use --model mlp"
        if tuple(problem.shape) != self.dims:
            return (f"model is {'x'.join(map(str, self.dims))} but the problem is "
                    f"{'x'.join(map(str, problem.shape))}")
        return None

    # --------------------------------------------------------------- closed forms
    def entry_variance(self) -> float:
        """Variance of every entry of ``T`` under the linear, unnormalized prior (any ``R``, depth, order).

        Modes are independent and each factor's entries are uncorrelated with mean 0, so
        ``Var T_i = R prod_n v_n`` with ``v_n`` the variance of mode ``n``'s factor entries,
        ``v_n = s_1^2 mu_2 prod_{j >= 2} (R s_j^2 mu_2)`` over its layers (``mu_2 = E P^2``,
        ``s_j`` the layer's scale, ``R`` the inner size of every layer after the first).
        """
        if not self.is_linear or self.normalize:
            raise ModelError("entry_variance is the closed form of the linear, unnormalized CP prior")
        mu2 = _SECOND_MOMENT[self.prior]
        total = float(self.width)
        for (_out, inp), scale in zip(self.layer_shapes, self.layer_scales):
            total *= scale * scale * mu2
        # Each mode's layers after its first contract over R: one factor R per such layer.
        return total * float(self.width) ** (self.order * (self.depth - 1))

    def chance_gen_loss(self, problem) -> float:
        """The prior's expected ``L_gen`` in closed form (linear, unnormalized prior; docs/design.md, "Tensors").

        ``E L_gen = (1/t) sum_B E<B, T - T*>^2 = Var(T_i) + (1/t) sum_B <B, T*>^2``: ``E T = 0``
        and the entries of ``T`` are uncorrelated with one variance, so ``E<B, T>^2 =
        Var(T_i) ||B||^2`` and every basis tensor has unit norm.
        """
        return self.entry_variance() + problem.mean_squared_target()

    def describe(self) -> dict:
        """A JSON-friendly description (used in results and reports)."""
        return {"family": self.family, "dims": list(self.dims), **factor_prior_description(self)}
