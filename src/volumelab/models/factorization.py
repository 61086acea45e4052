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
from functools import cached_property

import torch

from ..errors import ModelError
from .activations import ACTIVATIONS
from .balanced import balanced_product_start
from .layers import PRIORS, Capabilities, LayeredModel, register_family, setting

__all__ = ["ACTIVATIONS", "PRIORS", "SCALINGS", "FactorizationModel", "NORMALIZE_EPS", "normalize_frobenius"]

#: Added to the Frobenius norm when normalizing (docs/design.md: ``W / (||W||_F + 1e-6)``).
NORMALIZE_EPS = 1e-6

SCALINGS = ("paper", "fan_in")


@register_family
@dataclass(frozen=True)
class FactorizationModel(LayeredModel):
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
        weight_mean: Mean of every entry of the Gaussian prior's ``P`` (before the layer's
            scale); 0 is the paper's zero-mean prior, which Theorem 1 assumes. A non-zero
            mean needs ``prior="gaussian"``.
    """

    rows: int
    cols: int
    width: int = setting(5, minimum=1, doc="Hidden width k (of a CP model: the number of components R).")
    depth: int = setting(2, minimum=1, doc="Depth d (of a CP model: the layers of each factor matrix).")
    activation: str | Callable[[torch.Tensor], torch.Tensor] = setting(
        "linear", choices=ACTIVATIONS, doc="Activation between layers (leaky_relu: slope --negative-slope).")
    prior: str = setting("gaussian", choices=PRIORS,
                         doc="Distribution P of the weights: standard normal or uniform on [-1, 1].")
    scaling: str = setting("paper", choices=SCALINGS, doc="paper: hidden layers P/sqrt(width), output layer "
                           "P/sqrt(rows); fan_in: every layer P/sqrt(its fan-in).")
    normalize: bool = setting(False, doc="Normalize W (a CP model's T) to unit Frobenius norm.")
    negative_slope: float = setting(0.2, doc="Slope of leaky_relu for negative inputs.")
    weight_mean: float = setting(0.0, doc="Mean of every entry of the Gaussian prior's P before the layer's "
                                 "scale (Theorem 1 assumes 0).")

    def __post_init__(self) -> None:
        self._validate(("rows", "cols", "width", "depth"), SCALINGS)
        if isinstance(self.weight_mean, bool) or not isinstance(self.weight_mean, (int, float)) \
                or not math.isfinite(self.weight_mean):
            raise ModelError(f"weight_mean must be a finite number, got {self.weight_mean!r}")
        if self.weight_mean != 0 and self.prior != "gaussian":
            raise ModelError(f"weight_mean {self.weight_mean!r} needs the gaussian prior, not {self.prior!r}")

    # ----------------------------------------------------------------- structure
    @property
    def is_linear(self) -> bool:
        """True when the activation is the identity (only the named ``"linear"``)."""
        return self.activation == "linear" or self.depth == 1

    @cached_property  # made once: the forward pass checks the layer count on every call
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of ``W_1, ..., W_d``."""
        if self.depth == 1:
            return ((self.rows, self.cols),)
        k = self.width
        return ((k, self.cols),) + ((k, k),) * (self.depth - 2) + ((self.rows, k),)

    @property
    def layer_scales(self) -> tuple[float, ...]:
        """Standard multiplier of the prior's ``P`` for each layer (docs/design.md, "Prior")."""
        shapes = self.layer_shapes
        if self.scaling == "fan_in":
            return tuple(1.0 / math.sqrt(inp) for _out, inp in shapes)
        hidden = 1.0 / math.sqrt(self.width)
        return (hidden,) * (len(shapes) - 1) + (1.0 / math.sqrt(self.rows),)

    # --------------------------------------------------------- GD's balanced start
    def balanced_mismatch(self) -> str | None:
        """Why there is no balanced start at these settings, or ``None``: it needs the linear model (a product of
        matrices) and, above depth 1, a width of at least ``min(rows, cols)``, the rank of the depth-1 start."""
        if self.depth == 1:
            return None
        if not self.is_linear:
            return (f"the balanced initialization needs a linear factorization (a product of matrices); this one "
                    f"has activation {self.activation_name} between its layers: use activation linear or the random "
                    "initialization")
        need = min(self.rows, self.cols)
        if self.width < need:
            return (f"the balanced initialization at depth {self.depth} needs width >= min(rows, cols) = {need}, the "
                    f"rank of the depth-1 start W(0) (no product through a narrower width equals it); got width "
                    f"{self.width}")
        return None

    def initialize_balanced(self, init_scale: float, generator: torch.Generator, *, batch_shape: tuple[int, ...] = (),
                            dtype: torch.dtype = torch.float64,
                            device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The depth-1 start ``W(0)`` (:meth:`initialize` of the depth-1 model: the same draw from ``generator``)
        as ``depth`` balanced factors through the width (:func:`volumelab.models.balanced.balanced_factors`): the
        same ``W(0)`` at every depth, and at depth 1 exactly :meth:`initialize`'s layers."""
        return balanced_product_start(self, init_scale, generator, batch_shape=batch_shape, dtype=dtype,
                                      device=device)

    # ------------------------------------------------------------------- forward
    def forward(self, weights: Sequence[torch.Tensor], **hooks) -> torch.Tensor:
        """The model's forward pass: ``a_1 = W_1``, ``a_j = W_j sigma(a_{j-1})``, returns ``a_d``.

        This is the product before the optional normalization (:meth:`end_to_end` adds it).

        Args:
            weights: ``W_1, ..., W_d``. With the default ``multiply``, each of shape
                ``(..., out, in)`` with the same (broadcastable) leading sample axes.
            hooks: ``activate``, ``multiply``, ``pre``, ``post`` of :meth:`LayeredModel.propagate`.
                The samplers pass ``activate=activation_function.in_place`` on their scratch
                buffers and, batch-last, their product kernel as ``multiply`` (it also applies
                layer ``j``'s scale); GD's gradient collects ``pre`` and ``post`` (``a_d`` is
                unnormalized).
        """
        return self.propagate(weights[0], weights, **hooks)

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

    # ------------------------------------------------------------ for the task
    family = "factorization"
    capabilities = Capabilities(matrix_product=True)
    #: A draw is scored as the whole array ``W`` (flattened) by the task's linear measurements.
    scores_array = True

    @property
    def shape(self) -> tuple[int, int]:
        """``(rows, cols)``: the shape of ``W`` (what the task measures)."""
        return (self.rows, self.cols)

    @classmethod
    def shape_settings(cls, shape: tuple[int, ...]) -> dict:
        """``rows`` and ``cols`` from the measured matrix's shape."""
        return {"rows": int(shape[0]), "cols": int(shape[1])}

    def outputs(self, weights: Sequence[torch.Tensor], tensors=None) -> torch.Tensor:
        """What the task scores: the flattened end-to-end matrix, ``(..., rows * cols)``.

        ``tensors`` (the task's, :class:`volumelab.problems.ProblemTensors`) is not needed:
        linear measurements contract ``vec(W)`` themselves.
        """
        return self.end_to_end(weights).flatten(-2)

    def problem_mismatch(self, problem) -> str | None:
        """Why ``problem`` cannot be scored on this model's outputs, or ``None``."""
        if problem.task == "supervised":
            return "a factorization model needs a matrix problem (sensing, completion); use --model mlp"
        if (self.rows, self.cols) != problem.shape:
            return f"model is {self.rows}x{self.cols} but the problem is {'x'.join(map(str, problem.shape))}"
        return None

    def describe(self) -> dict:
        """A JSON-friendly description (used in results and reports)."""
        return {
            "rows": self.rows,
            "cols": self.cols,
            **factor_prior_description(self),
            # Only where set: descriptions of the zero-mean prior stay as they were.
            **({"weight_mean": self.weight_mean} if self.weight_mean else {}),
        }


def factor_prior_description(model) -> dict:
    """What a matrix and a CP factorization describe alike: width, depth, activation and the prior's options."""
    return {
        "width": model.width,
        "depth": model.depth,
        "activation": model.activation_name,
        "prior": model.prior,
        "scaling": model.scaling,
        "normalize": model.normalize,
        "negative_slope": model.negative_slope,
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
