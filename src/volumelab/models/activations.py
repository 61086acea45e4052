"""The activations of every layered model (factorization, MLP), each defined once.

An :class:`Activation` carries everything any path needs of ``sigma``:

* ``act(x)``: the value, out of place (the model's forward, autograd, GD);
* ``act.in_place(x)``: the same function overwriting ``x``, in the fastest exact form
  for the device (the G&C samplers' scratch buffers);
* ``act.backward(upstream, pre, post)``: ``upstream * sigma'(pre)`` through PyTorch's
  own backward kernels (``aten.tanh_backward``, ``aten.leaky_relu_backward``), so a
  hand-written gradient equals autograd's to the bit, including the negative branch
  of leaky ReLU and ReLU at 0.

:func:`activation_for` maps a model's ``activation`` (a name or a callable) to its
object; ``FactorizationModel.activation_function`` holds it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ModelError

__all__ = ["ACTIVATIONS", "Absolute", "Activation", "CallableActivation", "LeakyReLU", "Linear", "ReLU", "Tanh",
           "activation_for"]

#: The named activations.
ACTIVATIONS = ("linear", "tanh", "leaky_relu", "relu", "abs")

_ATEN = torch.ops.aten


class Activation:
    """An elementwise activation: value, in-place fast form and backward."""

    name: str = "activation"
    #: Whether :meth:`backward` exists (hand-written gradients); otherwise use autograd.
    has_backward: bool = True

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """``sigma(x)``, out of place."""
        raise NotImplementedError

    def in_place(self, x: torch.Tensor) -> torch.Tensor:
        """``sigma(x)`` written into ``x`` (returned)."""
        raise NotImplementedError

    def backward(
        self, upstream: torch.Tensor, pre: torch.Tensor, post: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """``upstream * sigma'(pre)``, with ``post = sigma(pre)``; written into ``out`` when given."""
        raise NotImplementedError


class Linear(Activation):
    """The identity."""

    name = "linear"

    def __call__(self, x):
        return x

    def in_place(self, x):
        return x

    def backward(self, upstream, pre, post, out=None):
        return upstream if out is None else out.copy_(upstream)


class Tanh(Activation):
    name = "tanh"

    def __call__(self, x):
        return torch.tanh(x)

    def in_place(self, x):
        if x.device.type == "cpu":
            # tanh(x) = 2 sigmoid(2x) - 1: on CPU torch's sigmoid kernel is ~2.5x faster than its
            # tanh (measured 1.2 vs 2.9 ns per float32 element, all four passes included), and
            # tanh is the largest cost of a tanh draw after the normals. Max abs. difference
            # from float64 tanh: 1.8e-7 (float32 tanh_: 3e-8); a test bounds it.
            return x.mul_(2.0).sigmoid_().mul_(2.0).sub_(1.0)
        return x.tanh_()

    def backward(self, upstream, pre, post, out=None):
        # d tanh = 1 - tanh^2, from the output.
        if out is None:
            return _ATEN.tanh_backward(upstream, post)
        return _ATEN.tanh_backward.grad_input(upstream, post, grad_input=out)


@dataclass(frozen=True)
class LeakyReLU(Activation):
    """``x`` for ``x > 0``, ``negative_slope * x`` otherwise."""

    negative_slope: float = 0.2
    name = "leaky_relu"

    def __call__(self, x):
        return F.leaky_relu(x, self.negative_slope)

    def in_place(self, x):
        return F.leaky_relu_(x, self.negative_slope)

    def backward(self, upstream, pre, post, out=None):
        return _leaky_relu_backward(upstream, pre, self.negative_slope, out)


class ReLU(Activation):
    name = "relu"

    def __call__(self, x):
        return torch.relu(x)

    def in_place(self, x):
        return x.relu_()

    def backward(self, upstream, pre, post, out=None):
        # autograd's relu derivative is leaky ReLU's with slope 0 (0 at x = 0).
        return _leaky_relu_backward(upstream, pre, 0.0, out)


def _leaky_relu_backward(upstream, pre, slope, out):
    if out is None:
        return _ATEN.leaky_relu_backward(upstream, pre, slope, False)
    return _ATEN.leaky_relu_backward.grad_input(upstream, pre, slope, False, grad_input=out)


@dataclass(frozen=True)
class Absolute(Activation):
    """``a x + b |x|``: the absolute value (``a = 0, b = 1``) and its family.

    For ``x ~ N(0, q)``, ``E[(a x + b|x|)^2] = (a^2 + b^2) q`` and ``E[sigma'(x)^2] = a^2 + b^2``,
    so with weights of variance ``1 / fan_in`` and ``a^2 + b^2 = 1`` the pre-activations'
    variance is preserved layer to layer and so is the size of gradients: the edge of
    chaos of this family. ``a = b = 1/2`` is ReLU, ``a = 1, b = 0`` the identity.
    The derivative is ``a + b sign(x)``, with ``sign(0) = 0`` (autograd's convention for ``|x|``).
    """

    a: float = 0.0
    b: float = 1.0
    name = "abs"

    def __call__(self, x):
        if self.a == 0.0:
            return torch.abs(x) if self.b == 1.0 else torch.abs(x).mul_(self.b)
        return torch.abs(x).mul_(self.b).add_(x, alpha=self.a)

    def in_place(self, x):
        if self.a == 0.0:
            return x.abs_() if self.b == 1.0 else x.abs_().mul_(self.b)
        return x.copy_(self(x))

    def backward(self, upstream, pre, post, out=None):
        slope = torch.sign(pre).mul_(self.b).add_(self.a)
        return torch.mul(upstream, slope) if out is None else torch.mul(upstream, slope, out=out)


@dataclass(frozen=True)
class CallableActivation(Activation):
    """A user's elementwise callable: value only (gradients go through autograd)."""

    function: Callable[[torch.Tensor], torch.Tensor]
    has_backward = False

    @property
    def name(self) -> str:  # type: ignore[override]
        return getattr(self.function, "__name__", type(self.function).__name__)

    def __call__(self, x):
        return self.function(x)

    def in_place(self, x):
        # No in-place form is known for an arbitrary callable: its value, out of place.
        return self.function(x)

    def backward(self, upstream, pre, post, out=None):
        raise ModelError(f"activation {self.name!r} has no hand-written derivative; use autograd")


def activation_for(activation: str | Callable[[torch.Tensor], torch.Tensor], negative_slope: float = 0.2,
                   abs_coefficients: tuple[float, float] = (0.0, 1.0)) -> Activation:
    """The :class:`Activation` of a name in :data:`ACTIVATIONS` or of an elementwise callable.

    ``abs_coefficients``: ``(a, b)`` of ``abs`` (``a x + b |x|``).
    """
    if not isinstance(activation, str):
        if not callable(activation):
            raise ModelError(f"activation must be a name or a callable, got {activation!r}")
        return CallableActivation(activation)
    if activation == "linear":
        return Linear()
    if activation == "tanh":
        return Tanh()
    if activation == "leaky_relu":
        return LeakyReLU(negative_slope)
    if activation == "relu":
        return ReLU()
    if activation == "abs":
        a, b = (float(c) for c in abs_coefficients)
        if not (math.isfinite(a) and math.isfinite(b)) or b == 0.0:
            raise ModelError(f"abs needs finite coefficients (a, b) with b != 0, got {abs_coefficients!r}")
        return Absolute(a, b)
    raise ModelError(
        f"unknown activation {activation!r}; expected one of {', '.join(ACTIVATIONS)} or a callable"
    )
