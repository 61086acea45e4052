"""Deep (possibly nonlinear) matrix factorization and its priors.

The model of arXiv 2506.03931 (Sec. 2), kept exact:

    W = W_d sigma(W_{d-1} sigma(... sigma(W_1)))

with ``W_1`` of shape ``k x cols``, hidden layers ``k x k`` and ``W_d`` of shape
``rows x k`` (``k`` the width, ``d`` the depth; ``d = 1`` means ``W = W_1``).

One definition, :meth:`FactorizationModel.end_to_end`, serves the single-instance
forward pass (GD, NGD) and the batched forward over any leading sample axes (G&C):
every layer is a tensor of shape ``(..., out, in)`` and ``torch.matmul`` broadcasts.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ModelError

__all__ = ["ACTIVATIONS", "PRIORS", "SCALINGS", "FactorizationModel", "NORMALIZE_EPS"]

#: Added to the Frobenius norm when normalizing (docs/design.md: ``W / (||W||_F + 1e-6)``).
NORMALIZE_EPS = 1e-6

ACTIVATIONS = ("linear", "tanh", "leaky_relu", "relu")
PRIORS = ("gaussian", "uniform")
SCALINGS = ("paper", "fan_in")


@dataclass(frozen=True)
class FactorizationModel:
    """A deep factorization ``rows x cols`` of width ``k`` and depth ``d``, with its prior.

    Attributes:
        rows: Rows of the end-to-end matrix.
        cols: Columns of the end-to-end matrix.
        width: Hidden width ``k >= 1`` (ignored when ``depth == 1``).
        depth: Number of layers ``d >= 1``.
        activation: ``"linear" | "tanh" | "leaky_relu" | "relu"`` or an elementwise callable.
        prior: ``"gaussian"`` (standard normal ``P``) or ``"uniform"`` (``P ~ U[-1, 1]``).
        scaling: ``"paper"``: every layer but the output is ``P / sqrt(k)``, the output
            layer ``P / sqrt(rows)``; ``"fan_in"``: every layer is ``P / sqrt(fan_in)``.
        normalize: Divide the end-to-end matrix by ``||W||_F + 1e-6``.
        negative_slope: Slope of ``leaky_relu`` for negative inputs.
    """

    rows: int
    cols: int
    width: int
    depth: int
    activation: str | Callable[[torch.Tensor], torch.Tensor] = "linear"
    prior: str = "gaussian"
    scaling: str = "paper"
    normalize: bool = False
    negative_slope: float = 0.2

    def __post_init__(self) -> None:
        for name in ("rows", "cols", "width", "depth"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.activation, str):
            if self.activation not in ACTIVATIONS:
                raise ModelError(
                    f"unknown activation {self.activation!r}; expected one of {', '.join(ACTIVATIONS)} "
                    "or a callable"
                )
        elif not callable(self.activation):
            raise ModelError(f"activation must be a name or a callable, got {self.activation!r}")
        if self.prior not in PRIORS:
            raise ModelError(f"unknown prior {self.prior!r}; expected one of {', '.join(PRIORS)}")
        if self.scaling not in SCALINGS:
            raise ModelError(f"unknown scaling {self.scaling!r}; expected one of {', '.join(SCALINGS)}")
        if not (math.isfinite(self.negative_slope)):
            raise ModelError(f"negative_slope must be finite, got {self.negative_slope!r}")

    # ----------------------------------------------------------------- structure
    @property
    def activation_name(self) -> str:
        if isinstance(self.activation, str):
            return self.activation
        return getattr(self.activation, "__name__", type(self.activation).__name__)

    @property
    def is_linear(self) -> bool:
        """True when the activation is the identity (only the named ``"linear"``)."""
        return self.activation == "linear" or self.depth == 1

    @property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of ``W_1, ..., W_d``."""
        if self.depth == 1:
            return ((self.rows, self.cols),)
        k = self.width
        return ((k, self.cols),) + ((k, k),) * (self.depth - 2) + ((self.rows, k),)

    @property
    def num_parameters(self) -> int:
        return sum(out * inp for out, inp in self.layer_shapes)

    @property
    def layer_scales(self) -> tuple[float, ...]:
        """Standard multiplier of the prior's ``P`` for each layer (docs/design.md, "Prior")."""
        shapes = self.layer_shapes
        if self.scaling == "fan_in":
            return tuple(1.0 / math.sqrt(inp) for _out, inp in shapes)
        hidden = 1.0 / math.sqrt(self.width)
        return (hidden,) * (len(shapes) - 1) + (1.0 / math.sqrt(self.rows),)

    # ------------------------------------------------------------------- forward
    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """The elementwise activation."""
        name = self.activation
        if callable(name):
            return name(x)
        if name == "linear":
            return x
        if name == "tanh":
            return torch.tanh(x)
        if name == "relu":
            return torch.relu(x)
        return F.leaky_relu(x, self.negative_slope)

    def end_to_end(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """The end-to-end matrix ``W`` from the layers.

        Args:
            weights: ``W_1, ..., W_d``, each of shape ``(..., out, in)`` with the same
                (broadcastable) leading sample axes.

        Returns:
            ``(..., rows, cols)``, normalized when :attr:`normalize` is set.
        """
        if len(weights) != self.depth:
            raise ModelError(f"expected {self.depth} weight matrices, got {len(weights)}")
        hidden = weights[0]
        for layer in weights[1:]:
            hidden = layer @ self.sigma(hidden)
        return self.normalize_output(hidden)

    def normalize_output(self, product: torch.Tensor) -> torch.Tensor:
        """Apply the optional normalization ``W / (||W||_F + 1e-6)`` over the last two axes."""
        if not self.normalize:
            return product
        norm = torch.linalg.matrix_norm(product, keepdim=True)
        return product / (norm + NORMALIZE_EPS)

    # -------------------------------------------------------------------- priors
    def sample_prior(
        self,
        num_samples: int,
        generator: torch.Generator,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """Draw ``num_samples`` independent weight tuples from the prior.

        The layers are drawn in order ``W_1, ..., W_d``, each for all samples at once,
        from ``generator`` alone.

        Returns:
            ``[W_1, ..., W_d]`` with ``W_j`` of shape ``(num_samples, out_j, in_j)``.
        """
        layers = []
        for (out, inp), scale in zip(self.layer_shapes, self.layer_scales):
            shape = (num_samples, out, inp)
            if self.prior == "gaussian":
                layer = torch.randn(shape, generator=generator, dtype=dtype, device=device)
            else:
                layer = torch.rand(shape, generator=generator, dtype=dtype, device=device).mul_(2).sub_(1)
            layers.append(layer.mul_(scale))
        return layers

    def initialize(
        self,
        init_scale: float,
        generator: torch.Generator,
        *,
        batch_shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """GD's small initialization: PyTorch's default linear-layer init times ``init_scale``.

        Entries are ``U(-1/sqrt(fan_in), 1/sqrt(fan_in)) * init_scale`` (docs/design.md, "GD").
        """
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ModelError(f"init_scale must be a positive finite number, got {init_scale!r}")
        layers = []
        for out, inp in self.layer_shapes:
            bound = init_scale / math.sqrt(inp)
            uniform = torch.rand((*batch_shape, out, inp), generator=generator, dtype=dtype, device=device)
            layers.append(uniform.mul_(2 * bound).sub_(bound))
        return layers

    def describe(self) -> dict:
        """A JSON-friendly description (used in results and reports)."""
        return {
            "rows": self.rows,
            "cols": self.cols,
            "width": self.width,
            "depth": self.depth,
            "activation": self.activation_name,
            "prior": self.prior,
            "scaling": self.scaling,
            "normalize": self.normalize,
            "negative_slope": self.negative_slope,
        }
