"""What every layered model family shares: the prior, GD's initialization and the forward recursion.

A family (a frozen dataclass) states its ``layer_shapes`` (``(out, in)`` of
``W_1, ..., W_d``), its ``layer_scales`` (the prior's multiplier of each layer), its
``prior`` (``"gaussian"`` or ``"uniform"``) and its activation; :class:`LayeredModel`
gives it the rest, once for all families:

* :meth:`LayeredModel.sample_prior`: draws of every layer, batched over a sample axis;
* :meth:`LayeredModel.initialize`: GD's initialization, PyTorch's default linear-layer
  init ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` times ``init_scale``;
* :meth:`LayeredModel.initialize_balanced`: GD's balanced start (a deep linear family's
  depth-1 start written as balanced factors; the others have none, :meth:`~LayeredModel.balanced_mismatch`);
* :meth:`LayeredModel.initialize_antisymmetric`: GD's antisymmetric start (the zero function from two
  opposite copies of one half-width network; an MLP's, :meth:`~LayeredModel.antisymmetric_mismatch`);
* :meth:`LayeredModel.propagate`: the forward recursion ``a_j = W_j sigma(a_{j-1})`` from a
  first pre-activation ``a_1`` (``W_1`` itself for a factorization, ``W_1 X^T`` for an
  MLP), with hooks for the samplers' kernels and the hand-written gradient.

A family adds :meth:`outputs` (its outputs in the layout its task scores: the flattened
end-to-end matrix, or the network's outputs on the task's inputs), ``problem_mismatch``
and ``describe``, and declares what it supports in its :class:`Capabilities` (read by the
samplers, GD and the diagnostics instead of comparing family names). The optional parts
have their "not supported" defaults here (:attr:`LayeredModel.gnc_block_size`,
:attr:`~LayeredModel.weight_mean`, :meth:`~LayeredModel.linear_predictor`, ...), so no
caller probes a model for an attribute.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from ..settings import setting, setting_fields
from ..errors import ModelError
from .activations import Activation, activation_for

__all__ = ["Capabilities", "LayeredModel", "PRIORS", "model_families", "register_family", "setting", "setting_fields"]

#: The priors of every family: ``P`` standard normal or ``U[-1, 1]`` (times each layer's scale).
PRIORS = ("gaussian", "uniform")


_FAMILIES: dict[str, type] = {}


def register_family(family: type) -> type:
    """Class decorator: offer ``family`` by its ``family`` name wherever a family is chosen by name (the command
    line's ``--model``). The sweep's model kinds are registered apart (:func:`volumelab.experiments.kinds.family_kind`)."""
    _FAMILIES[family.family] = family
    return family


def model_families() -> dict[str, type]:
    """The registered families by name, in registration order."""
    return dict(_FAMILIES)


@dataclass(frozen=True)
class Capabilities:
    """What a model family supports, declared once by the family (``capabilities = Capabilities(...)``).

    Generic code (the samplers, GD, the diagnostics, the studies) reads these flags; it never
    compares a family's name or probes a model for an attribute.

    Attributes:
        matrix_product: A draw is one matrix ``W = W_d s(... s(W_1))``, scored whole by a task's
            linear measurements (a deep matrix factorization). The exact product samplers
            (:mod:`volumelab.samplers.fast`), GD's hand-written gradient (when the activation has
            one and the output is not normalized) and the effective rank of ``W`` apply.
        closed_form_chance: The family gives the prior's expected generalization loss in closed
            form, :meth:`LayeredModel.chance_gen_loss` (for its linear, unnormalized prior).
        outer_product_gradients: Every layer acts on one input at a time as ``W a`` (a fully
            connected network on supervised data), so the gradient of the output at one input in
            a layer is an outer product ``g a^T``: :meth:`LayeredModel.gradient_factors` gives
            ``g`` and ``a`` of every input, from which NGD forms ``J J^T`` and ``J^T v`` without
            the per-example Jacobian.
        linear_readout: Given the other layers, the output is linear in the last stored layer ``W_d``:
            ``f = W_d @ F`` with ``F`` from :meth:`LayeredModel.last_layer_features` (subset simulation's exact
            readout move).
    """

    matrix_product: bool = False
    closed_form_chance: bool = False
    outer_product_gradients: bool = False
    linear_readout: bool = False


class LayeredModel:
    """Mixin of the layered model families (:class:`FactorizationModel`, :class:`MLPModel`, ...)."""

    #: What the family supports; a family declares its own (the default supports nothing optional).
    capabilities: ClassVar[Capabilities] = Capabilities()
    #: Draws per G&C randomness block when the family fixes it (a family whose draws' memory depends on
    #: the data); ``None``: G&C sizes its blocks from the device's memory.
    gnc_block_size: ClassVar[int | None] = None
    #: Mean of every entry of the Gaussian prior's ``P`` (a family with a shifted prior makes it a field).
    weight_mean = 0.0
    #: Divide the output by its Frobenius norm (a family that offers it makes it a field).
    normalize = False
    #: The activation is the identity (a family whose linearity depends on its fields makes it a property).
    is_linear = False
    #: ``(a, b)`` of the ``abs`` activation ``a x + b |x|`` (a family that offers ``abs`` makes it a field).
    abs_coefficients = (0.0, 1.0)
    #: A shape of the measured array (or ``(1, features)`` of a supervised problem) that every setting fits:
    #: what a sweep's settings are checked against before the problem is known.
    example_shape: ClassVar[tuple[int, ...]] = (1, 1)
    #: The orders (``len(shape)``) of the problems the family is built for; ``None``: any (a CP model).
    problem_orders: ClassVar[tuple[int, ...] | None] = (2,)

    @classmethod
    def shape_settings(cls, shape: tuple[int, ...]) -> dict[str, Any]:
        """The fields the problem's ``shape`` fills (``(rows, cols)`` of a matrix, ``dims`` of a tensor,
        ``(1, features)`` of supervised data): a supervised family's ``in_features`` by default."""
        return {"in_features": int(shape[-1])}

    #: Set by the family's ``__post_init__`` (:func:`volumelab.models.activations.activation_for`).
    _activation_function: Activation
    #: A draw is scored as the whole measured array (a factorization's ``W``, a CP model's ``T``), which the
    #: task's linear measurements contract; otherwise the task scores the family's outputs on its data.
    scores_array = False

    def _validate(self, counts: tuple[str, ...], scalings: tuple[str, ...]) -> None:
        """The checks every family's ``__post_init__`` runs, and the activation, made once.

        Args:
            counts: Fields that must be positive integers (sizes).
            scalings: The prior scalings this family knows.
        """
        for name in counts:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ModelError(f"{name} must be a positive integer, got {value!r}")
        # Validates the activation. Not a field: derived from ``activation`` and
        # ``negative_slope``, made once.
        object.__setattr__(self, "_activation_function", activation_for(
            self.activation, self.negative_slope, self.abs_coefficients))
        if self.prior not in PRIORS:
            raise ModelError(f"unknown prior {self.prior!r}; expected one of {', '.join(PRIORS)}")
        if self.scaling not in scalings:
            raise ModelError(f"unknown scaling {self.scaling!r} for a {self.family} model; "
                             f"expected one of {', '.join(scalings)}")
        if not math.isfinite(self.negative_slope):
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
    def num_parameters(self) -> int:
        return sum(out * inp for out, inp in self.layer_shapes)

    @property
    def learning_rate_multipliers(self) -> tuple[float, ...]:
        """GD's per-layer learning-rate multiplier: 1 for every layer unless the family's parametrization says
        otherwise (muP)."""
        return (1.0,) * len(self.layer_shapes)

    @property
    def adam_learning_rate_multipliers(self) -> tuple[tuple[float, float], ...]:
        """Adam's per-layer learning-rate multiplier of each stored layer, ``(weights, bias)``: 1 unless the
        family's parametrization says otherwise (muP's Adam scaling). A layer's bias is its last column; a
        model without biases gives both entries the weights' rate."""
        return ((1.0, 1.0),) * len(self.layer_shapes)

    def linear_predictor(self, weights: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """``w`` ``(..., d)`` when the model is a linear predictor ``x -> <w, x>`` on its inputs, else ``None``."""
        return None

    def gradient_factors(self, weights: Sequence[torch.Tensor],
                         inputs: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """The outputs at ``inputs`` and every layer's per-input gradient as an outer product, for a family with
        ``capabilities.outer_product_gradients`` (:meth:`MLPModel.gradient_factors`)."""
        raise ModelError(f"a {self.family} model's per-input gradients are not outer products of layer factors")

    def last_layer_features(self, weights, inputs) -> torch.Tensor:
        """What the last stored layer multiplies, for a family with ``capabilities.linear_readout``."""
        raise ModelError(f"a {self.family} model's output is not a readout of features")

    def chance_gen_loss(self, problem) -> float:
        """The prior's expected ``L_gen`` in closed form, for a family with ``capabilities.closed_form_chance``."""
        raise ModelError(f"a {self.family} model has no closed form of the prior's generalization loss")

    def sigma(self, x: torch.Tensor) -> torch.Tensor:
        """The elementwise activation, out of place."""
        return self._activation_function(x)

    # ------------------------------------------------------------------- forward
    def propagate(
        self,
        first: torch.Tensor,
        weights: Sequence[torch.Tensor],
        *,
        activate: Callable[[torch.Tensor], torch.Tensor] | None = None,
        multiply: Callable[[int, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
        pre: list[torch.Tensor] | None = None,
        post: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """``a_j = W_j sigma(a_{j-1})`` for ``j = 2 .. d`` from ``a_1 = first``; returns ``a_d``.

        Args:
            first: The first pre-activation ``a_1``.
            weights: ``W_1, ..., W_d`` (``W_1`` is only counted: ``first`` stands for it).
            activate: The activation to apply; default :meth:`sigma` (out of place).
            multiply: ``multiply(j, W_j, sigma(a_{j-1}))`` (0-based ``j``); default ``W_j @ sigma(a_{j-1})``.
            pre: When given, receives ``a_1, ..., a_d``.
            post: When given, receives ``sigma(a_1), ..., sigma(a_{d-1})``.
        """
        if len(weights) != len(self.layer_shapes):
            raise ModelError(f"expected {len(self.layer_shapes)} weight matrices, got {len(weights)}")
        return self._recursion(first, weights, activate=activate, multiply=multiply, pre=pre, post=post)

    def _recursion(self, first, weights, *, activate=None, multiply=None, pre=None, post=None) -> torch.Tensor:
        """:meth:`propagate` over any run of layers (a CP model's factor matrix is one of several)."""
        if activate is None:
            activate = self._activation_function
        hidden = first
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
        from ``generator`` alone: ``P`` standard normal (``gaussian``, shifted by the model's
        ``weight_mean`` where it has one) or ``U[-1, 1]`` (``uniform``), times the layer's scale.

        Returns:
            ``[W_1, ..., W_d]`` with ``W_j`` of shape ``(num_samples, out_j, in_j)``.
        """
        layers = []
        for (out, inp), scale in zip(self.layer_shapes, self.layer_scales):
            shape = (num_samples, out, inp)
            if self.prior == "gaussian":
                layer = torch.randn(shape, generator=generator, dtype=dtype, device=device)
                if self.weight_mean:
                    layer.add_(self.weight_mean)
            else:
                layer = torch.rand(shape, generator=generator, dtype=dtype, device=device).mul_(2).sub_(1)
            layers.append(layer.mul_(scale))
        return layers

    def prior_from_normal(self, normal: torch.Tensor, layer: int) -> torch.Tensor:
        """Layer ``layer`` (0-based) of a prior draw as a function of standard normal entries of its shape.

        The same law :meth:`sample_prior` draws, written as a map of a Gaussian (what subset
        simulation's kernels move): ``scale * (z + weight_mean)`` for the Gaussian prior,
        ``scale * erf(z / sqrt 2)`` (``= scale (2 Phi(z) - 1)``, uniform on ``[-scale, scale]``)
        for the uniform prior.
        """
        if self.prior == "uniform":
            normal = torch.special.erf(normal * (1.0 / math.sqrt(2.0)))
        elif self.weight_mean:
            normal = normal + self.weight_mean
        return normal * self.layer_scales[layer]

    def initialize(
        self,
        init_scale: float,
        generator: torch.Generator,
        *,
        batch_shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """GD's initialization: PyTorch's default linear-layer init times ``init_scale``.

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

    def balanced_mismatch(self) -> str | None:
        """Why GD's balanced start (:meth:`initialize_balanced`) is not defined for this model, or ``None``.

        A family whose function is a product of its layers (a deep linear model) overrides this and
        :meth:`initialize_balanced`; by default there is no balanced start.
        """
        return (f"the balanced initialization is defined for deep linear models (a linear matrix factorization, a deep "
                f"linear or diagonal network), not for a {self.family} model; use the random one")

    def initialize_balanced(
        self,
        init_scale: float,
        generator: torch.Generator,
        *,
        batch_shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """GD's balanced start (``initialization="balanced"``): the family's depth-1 start, drawn from ``generator`` as
        :meth:`initialize` of the depth-1 model would draw it, written as this depth's balanced factors
        (:mod:`volumelab.models.balanced`), so every depth starts from the same function.

        Raises:
            ModelError: the family has no balanced start, or not at these settings (:meth:`balanced_mismatch`).
        """
        raise ModelError(self.balanced_mismatch() or f"a {self.family} model has no balanced start")

    def antisymmetric_mismatch(self) -> str | None:
        """Why GD's antisymmetric start (:meth:`initialize_antisymmetric`) is not defined for this model, or ``None``.

        A family that has one (an MLP) overrides this and :meth:`initialize_antisymmetric`; by default there is none.
        """
        return (f"the antisymmetric initialization is defined for MLPs (two opposite copies of a half-width "
                f"network), not for a {self.family} model; use the random one")

    def initialize_antisymmetric(
        self,
        init_scale: float,
        generator: torch.Generator,
        *,
        batch_shape: tuple[int, ...] = (),
        dtype: torch.dtype = torch.float64,
        device: torch.device | str = "cpu",
    ) -> list[torch.Tensor]:
        """GD's antisymmetric start (``initialization="antisymmetric"``): the zero function with a non-degenerate
        Jacobian, the same effective weights under every parametrization.

        Raises:
            ModelError: the family has no antisymmetric start, or not at these settings
                (:meth:`antisymmetric_mismatch`).
        """
        raise ModelError(self.antisymmetric_mismatch() or f"a {self.family} model has no antisymmetric start")
