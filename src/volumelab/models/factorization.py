"""Deep (possibly nonlinear) matrix factorization and its priors.

The model of arXiv 2506.03931 (Sec. 2), kept exact:

    W = W_d sigma(W_{d-1} sigma(... sigma(W_1)))

with ``W_1`` of shape ``k x cols``, hidden layers ``k x k`` and ``W_d`` of shape
``rows x k`` (``k`` the width, ``d`` the depth; ``d = 1`` means ``W = W_1``).

One definition of the forward pass, :meth:`FactorizationModel.forward`, serves the
single-instance forward (GD), the batched forward over any leading sample axes (G&C's
direct sampler: every layer is a tensor of shape ``(..., out, in)`` and
``torch.matmul`` broadcasts), the hand-written gradient (which asks it for the
pre- and post-activations) and the batch-last samplers (which pass their own product
kernel and the in-place activation). The activation is
:attr:`FactorizationModel.activation_function` (:mod:`volumelab.models.activations`),
the normalization :func:`normalize_frobenius`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ..errors import ModelError
from .activations import ACTIVATIONS, Activation, activation_for

__all__ = ["ACTIVATIONS", "PRIORS", "SCALINGS", "FactorizationModel", "NORMALIZE_EPS", "normalize_frobenius"]

#: Added to the Frobenius norm when normalizing (docs/design.md: ``W / (||W||_F + 1e-6)``).
NORMALIZE_EPS = 1e-6

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
        # Validates the activation. Not a field: derived from ``activation`` and
        # ``negative_slope``, made once.
        object.__setattr__(self, "_activation_function", activation_for(self.activation, self.negative_slope))
        if self.prior not in PRIORS:
            raise ModelError(f"unknown prior {self.prior!r}; expected one of {', '.join(PRIORS)}")
        if self.scaling not in SCALINGS:
            raise ModelError(f"unknown scaling {self.scaling!r}; expected one of {', '.join(SCALINGS)}")
        if not (math.isfinite(self.negative_slope)):
            raise ModelError(f"negative_slope must be finite, got {self.negative_slope!r}")

    # ----------------------------------------------------------------- structure
    @property
    def activation_function(self) -> Activation:
        """The activation's value, in-place form and backward (:mod:`volumelab.models.activations`)."""
        return self._activation_function

    @property
    def activation_name(self) -> str:
        return self._activation_function.name

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
        """The elementwise activation, out of place."""
        return self._activation_function(x)

    def forward(
        self,
        weights: Sequence[torch.Tensor],
        *,
        activate: Callable[[torch.Tensor], torch.Tensor] | None = None,
        multiply: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        pre: list[torch.Tensor] | None = None,
        post: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The model's forward pass: ``a_1 = W_1``, ``a_j = W_j sigma(a_{j-1})``, returns ``a_d``.

        This is the product before the optional normalization (:meth:`end_to_end` adds it).

        Args:
            weights: ``W_1, ..., W_d``. With the default ``multiply``, each of shape
                ``(..., out, in)`` with the same (broadcastable) leading sample axes.
            activate: The activation to apply; default :meth:`sigma` (out of place).
                The samplers pass ``activation_function.in_place`` on their scratch buffers.
            multiply: ``multiply(j, W_j, sigma(a_{j-1}))`` for ``j = 1 .. d - 1``
                (0-based layer index); default ``W_j @ sigma(a_{j-1})``. The batch-last
                samplers pass their product kernel, which also applies layer ``j``'s scale.
            pre: When given, receives ``a_1, ..., a_d`` (pre-activations; ``a_d`` unnormalized).
            post: When given, receives ``sigma(a_1), ..., sigma(a_{d-1})``.
        """
        if len(weights) != self.depth:
            raise ModelError(f"expected {self.depth} weight matrices, got {len(weights)}")
        if activate is None:
            activate = self._activation_function
        hidden = weights[0]
        if pre is not None:
            pre.append(hidden)
        for j in range(1, len(weights)):
            activated = activate(hidden)
            # torch.matmul, not the @ operator: the same kernel without the operator's Python wrapper.
            hidden = torch.matmul(weights[j], activated) if multiply is None else multiply(j, weights[j], activated)
            if post is not None:
                post.append(activated)
            if pre is not None:
                pre.append(hidden)
        return hidden

    def end_to_end(self, weights: Sequence[torch.Tensor]) -> torch.Tensor:
        """The end-to-end matrix ``W`` from the layers: :meth:`forward`, then :meth:`normalize_output`.

        Args:
            weights: ``W_1, ..., W_d``, each of shape ``(..., out, in)`` with the same
                (broadcastable) leading sample axes.

        Returns:
            ``(..., rows, cols)``, normalized when :attr:`normalize` is set.
        """
        return self.normalize_output(self.forward(weights))

    def normalize_output(
        self, product: torch.Tensor, dims: tuple[int, int] = (-2, -1), *, in_place: bool = False
    ) -> torch.Tensor:
        """The optional normalization ``W / (||W||_F + 1e-6)`` (:func:`normalize_frobenius`).

        ``dims`` are the matrix axes (``(0, 1)`` for the samplers' batch-last buffers).
        """
        if not self.normalize:
            return product
        return normalize_frobenius(product, dims, in_place=in_place)

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


def normalize_frobenius(
    product: torch.Tensor, dims: tuple[int, int] = (-2, -1), *, in_place: bool = False
) -> torch.Tensor:
    """``W / (||W||_F + 1e-6)``, the norm taken over the axes ``dims`` (docs/design.md, "Prior").

    Out of place, the norm is ``torch.linalg.vector_norm``, whose backward is defined at
    ``W = 0`` (autograd through a normalized model, e.g. a ReLU net whose units are all
    off). In place (the samplers' scratch buffers, never under autograd), it is
    ``sqrt(sum of squares)`` with the sum and the division written into ``product`` and the
    norm's own memory. The two forms differ by a few ulps of the norm (the reduction order
    differs), so each path keeps the form it has always used.
    """
    if in_place:
        norm = product.square().sum(dims, keepdim=True).sqrt_()
        return product.div_(norm.add_(NORMALIZE_EPS))
    norm = torch.linalg.vector_norm(product, dim=dims, keepdim=True)
    return product / (norm + NORMALIZE_EPS)
