"""Deep fully connected networks (MLPs) on supervised data: the second model family.

    f(x) = m_d W_d sigma(m_{d-1} W_{d-1} sigma(... sigma(m_1 W_1 x)))

with ``W_1`` of shape ``k x in_features``, hidden layers ``k x k`` and ``W_d`` of shape
``1 x k`` (one output: a regression value or a classification margin); ``d = 1`` is the
linear model ``f(x) = m_1 W_1 x``. With ``bias=True`` every layer also has a bias: it is
a weight on a constant input 1 (the layer's last column, ``W_j`` is ``out x (in + 1)``),
drawn, initialized, multiplied and trained like the layer's other weights.

The forward pass is the factorization's recursion (:meth:`LayeredModel.propagate`)
started from ``a_1 = m_1 W_1 X^T``: on ``N`` inputs stacked as ``X (N, in_features)``,
every ``a_j`` is ``(..., out_j, N)`` and the outputs are ``a_d`` without its unit axis,
``(..., N)``, for any leading sample axes (G&C's draws, GD's runs).

Parametrizations (docs/design.md, "MLP"; ``n_j`` is layer ``j``'s fan-in, ``k`` the width).
Each fixes the prior's scale of the stored weights ``W_j``, the forward multiplier
``m_j`` and GD's per-layer learning-rate multiplier:

=============  =========================  ====================  =============================
               stored ``W_j`` scale        multiplier ``m_j``     learning rate (times ``lr``)
=============  =========================  ====================  =============================
``standard``   ``1/sqrt(n_j)``             1                     1
``ntk``        1                           ``1/sqrt(n_j)``       1
``mup``        ``1/sqrt(n_j)``             1; readout            input layer ``k`` (fan-out),
                                           ``1/sqrt(n_d)``       hidden 1, readout 1
=============  =========================  ====================  =============================

``standard`` and ``ntk`` give the same law of the function at initialization and differ
in how GD moves it: under ``ntk`` a step changes every layer's output by ``O(1/sqrt(k))``
and the NTK has a finite limit as ``k`` grows (Jacot et al. 2018); this is the scaling of
the overparameterized-learning framework (arXiv 2205.13507), whose learning rate
transfers across widths. ``mup`` is the maximal-update parametrization for SGD (Yang &
Hu 2021, Tensor Programs IV/V, Table 3): readout variance ``1/n_d^2`` (here the stored
``1/n_d`` times the multiplier ``1/sqrt(n_d)``, so its effective learning rate is
``lr / n_d``), input-layer learning rate ``lr * k``. For ``d = 1`` all three coincide
with ``standard``. With Adam, muP's per-layer rates are Table 3's "Adam LR" column instead
(:attr:`MLPModel.adam_learning_rate_multipliers`: input layer 1, hidden and output layers
``1/fan_in`` for the effective weights).

The prior is Gaussian or uniform on ``[-1, 1]`` times the stored scale; GD's
initialization (:meth:`MLPModel.initialize`) is uniform on ``[-s, s]`` with ``s`` the stored
scale times ``init_scale`` (PyTorch's default linear-layer initialization under
``standard``).

The antisymmetric start (GD's and NGD's ``initialization="antisymmetric"``,
:meth:`MLPModel.initialize_antisymmetric`) starts every depth and parametrization from the
zero function. With ``h = k / 2`` and ``A_1 (h x in), A_j (h x h), a (1 x h)`` a width-``h``
network drawn as :meth:`initialize` draws it under ``standard`` (``init_scale`` times
PyTorch's default), the *effective* layers ``m_j W_j`` are

    [A_1; A_1],      [[A_j, 0], [0, A_j]],      [a, -a]

(hidden biases copied into both halves, the readout's bias 0): two copies of one network
whose outputs are subtracted, so ``f = 0`` on every input, while the Jacobian is that of the
half network on one copy and its negative on the other, plus, above depth 2, the zero
off-diagonal blocks' own part: not degenerate (at depth 2 the NTK is twice the half
network's). The stored layers are the effective ones divided by the parametrization's
multiplier ``m_j``, so every parametrization starts from the same effective weights and only
how GD moves them differs (under ``mup`` this replaces its readout's ``1/n_d`` draw).
This is the "anti-symmetric initialization" of Zhang, Xu, Luo & Ma (2020), there used to
remove the random initial function from the NTK's predictions.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property

import torch

from ..errors import ModelError
from .activations import ACTIVATIONS
from .balanced import balanced_product_start
from .layers import PRIORS, Capabilities, LayeredModel, register_family, setting

__all__ = ["MLPModel", "MLP_PARAMETRIZATIONS", "MLP_SCALINGS"]

MLP_SCALINGS = ("fan_in",)
MLP_PARAMETRIZATIONS = ("standard", "ntk", "mup")


@register_family
@dataclass(frozen=True)
class MLPModel(LayeredModel):
    """A depth-``d``, width-``k`` MLP with one output and its prior.

    Attributes:
        in_features: Input dimension.
        width: Hidden width ``k >= 1`` (ignored when ``depth == 1``).
        depth: Number of weight matrices ``d >= 1``.
        activation: ``"linear" | "tanh" | "leaky_relu" | "relu" | "abs"`` or an elementwise callable.
        prior: ``"gaussian"`` or ``"uniform"`` (see the module docstring).
        scaling: ``"fan_in"`` (the prior's scale comes from each layer's fan-in).
        negative_slope: Slope of ``leaky_relu`` for negative inputs.
        parametrization: ``"standard" | "ntk" | "mup"`` (the module docstring's table).
        bias: Give every layer a bias (a weight on a constant input 1).
        abs_a, abs_b: ``a`` and ``b`` of the ``abs`` activation ``a x + b |x|`` (:attr:`abs_coefficients`).
    """

    in_features: int
    width: int = setting(32, minimum=1)
    depth: int = setting(2, minimum=1)
    activation: str | Callable[[torch.Tensor], torch.Tensor] = setting("relu", choices=ACTIVATIONS)
    prior: str = setting("gaussian", choices=PRIORS)
    scaling: str = setting("fan_in", choices=MLP_SCALINGS)
    negative_slope: float = setting(0.2)
    parametrization: str = setting("standard", choices=MLP_PARAMETRIZATIONS, doc="standard (PyTorch's), ntk "
                                   "(every layer's output / sqrt(fan-in)) or mup.")
    bias: bool = setting(False, doc="Give every layer a bias.")
    abs_a: float = setting(0.0, doc="a in the abs activation a*x + b*|x|.")
    abs_b: float = setting(1.0, doc="b in the abs activation a*x + b*|x|.")

    def __post_init__(self) -> None:
        if self.parametrization not in MLP_PARAMETRIZATIONS:
            raise ModelError(f"unknown parametrization {self.parametrization!r}; "
                             f"expected one of {', '.join(MLP_PARAMETRIZATIONS)}")
        if not isinstance(self.bias, bool):
            raise ModelError(f"bias must be true or false, got {self.bias!r}")
        for name in ("abs_a", "abs_b"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ModelError(f"{name} must be a number, got {value!r}")
            object.__setattr__(self, name, float(value))
        self._validate(("in_features", "width", "depth"), MLP_SCALINGS)

    @property
    def abs_coefficients(self) -> tuple[float, float]:
        """``(a, b)`` of the ``abs`` activation ``a x + b |x|``."""
        return (self.abs_a, self.abs_b)

    family = "mlp"
    capabilities = Capabilities(outer_product_gradients=True, linear_readout=True)
    #: Draws per G&C randomness block. Fixed, because a draw's memory is its activations
    #: on every input (width x points), which the model does not know: 128 draws of width
    #: 160 on 1,500 points take about 120 MiB in float32.
    gnc_block_size = 128

    @cached_property  # made once: the forward pass checks the layer count on every call
    def fan_ins(self) -> tuple[int, ...]:
        """The fan-in ``n_j`` of every layer (its inputs, not counting the bias)."""
        if self.depth == 1:
            return (self.in_features,)
        return (self.in_features,) + (self.width,) * (self.depth - 1)

    @cached_property
    def layer_shapes(self) -> tuple[tuple[int, int], ...]:
        """``(out, in)`` of ``W_1, ..., W_d`` (``in`` counts the bias column)."""
        outs = (self.width,) * (self.depth - 1) + (1,)
        return tuple((out, fan_in + int(self.bias)) for out, fan_in in zip(outs, self.fan_ins))

    @cached_property
    def _stored_divisors(self) -> tuple[float, ...]:
        """``s`` with the stored weights' scale ``1/s``: ``sqrt(n_j)``, or 1 under ``ntk``."""
        if self.parametrization == "ntk" and self.depth > 1:
            return (1.0,) * self.depth
        return tuple(math.sqrt(n) for n in self.fan_ins)

    @property
    def layer_scales(self) -> tuple[float, ...]:
        """The prior's scale of every stored layer (the module docstring's table)."""
        return tuple(1.0 / s for s in self._stored_divisors)

    @cached_property
    def layer_multipliers(self) -> tuple[float, ...]:
        """The forward multiplier ``m_j`` of every layer."""
        if self.depth == 1 or self.parametrization == "standard":
            return (1.0,) * self.depth
        if self.parametrization == "ntk":
            return tuple(1.0 / math.sqrt(n) for n in self.fan_ins)
        return (1.0,) * (self.depth - 1) + (1.0 / math.sqrt(self.fan_ins[-1]),)  # mup: the readout

    @cached_property
    def learning_rate_multipliers(self) -> tuple[float, ...]:
        """GD's per-layer learning-rate multiplier (``mup``: the input layer's is the width)."""
        if self.depth > 1 and self.parametrization == "mup":
            return (float(self.width),) + (1.0,) * (self.depth - 1)
        return (1.0,) * self.depth

    @cached_property
    def adam_learning_rate_multipliers(self) -> tuple[tuple[float, float], ...]:
        """Adam's per-layer learning-rate multiplier of each stored layer, ``(weights, bias)``.

        ``standard`` and ``ntk``: 1 (Adam on the stored weights, as the parametrization is defined). ``mup``:
        Tensor Programs V (Yang et al. 2022, arXiv 2203.03466), Table 3, "Adam LR": input weights and all
        biases 1, hidden weights ``1/fan_in``, output weights ``1/fan_in``, for the *effective* weights
        ``m_j W_j`` of a network without multipliers. Adam's step on a stored weight is (up to ``eps``)
        independent of its gradient's scale, so the effective weight moves by ``m_j`` times the stored one's
        step: the stored multiplier is the table's divided by ``m_j``. Here only the readout has a multiplier
        (``1/sqrt(n_d)``), so its stored weights get ``(1/n_d) / (1/sqrt(n_d)) = 1/sqrt(n_d)`` and its bias
        ``sqrt(n_d)``; the hidden layers' weights ``1/n_j``; the input layer's 1. Without biases the second entry
        repeats the first.
        """
        if self.depth == 1 or self.parametrization != "mup":
            return ((1.0, 1.0),) * self.depth
        rates = []
        for j, (fan_in, multiplier) in enumerate(zip(self.fan_ins, self.layer_multipliers)):
            table = 1.0 if j == 0 else 1.0 / fan_in  # Table 3's effective Adam LR of the weights
            # Without biases the pair's second entry is the weights' own (no column of its own to scale).
            rates.append((table / multiplier, 1.0 / multiplier if self.bias else table / multiplier))
        return tuple(rates)

    def initialize(self, init_scale: float, generator: torch.Generator, *, batch_shape: tuple[int, ...] = (),
                   dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """GD's initialization: ``U(-s, s)`` per stored layer, ``s = init_scale / divisor`` (module docstring).

        Under ``standard`` this is PyTorch's default linear-layer initialization times
        ``init_scale`` (the bound ``1/sqrt(fan_in)``), drawn exactly as before biases and
        parametrizations existed.
        """
        if not (math.isfinite(init_scale) and init_scale > 0):
            raise ModelError(f"init_scale must be a positive finite number, got {init_scale!r}")
        layers = []
        for (out, inp), divisor in zip(self.layer_shapes, self._stored_divisors):
            bound = init_scale / divisor
            uniform = torch.rand((*batch_shape, out, inp), generator=generator, dtype=dtype, device=device)
            layers.append(uniform.mul_(2 * bound).sub_(bound))
        return layers

    def balanced_mismatch(self) -> str | None:
        """Why there is no balanced start at these settings, or ``None``: above depth 1 it needs a deep linear
        network whose predictor is the product of its stored layers (activation linear, no bias, the
        ``standard`` parametrization: :meth:`linear_predictor`'s conditions)."""
        if self.depth == 1:
            return None
        if self.activation != "linear":
            return (f"the balanced initialization needs a deep linear network (activation linear): it factors the "
                    f"depth-1 predictor w(0) into a product of matrices; this MLP has activation "
                    f"{self.activation_name} (use the random initialization)")
        if self.bias:
            return ("the balanced initialization needs an MLP without biases (its predictor is then the product of "
                    "its layers)")
        if self.parametrization != "standard":
            return (f"the balanced initialization needs the standard parametrization (its predictor is then the "
                    f"product of its stored layers), not {self.parametrization}")
        return None

    def initialize_balanced(self, init_scale: float, generator: torch.Generator, *, batch_shape: tuple[int, ...] = (),
                            dtype: torch.dtype = torch.float64,
                            device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The depth-1 predictor ``w(0)`` (:meth:`initialize` of the depth-1 model: the same draw from
        ``generator``) as ``depth`` balanced factors (:func:`volumelab.models.balanced.balanced_factors`; ``w(0)``
        is ``1 x in_features``, of rank 1, so one hidden unit carries it and any width works): the same
        predictor at every depth, and at depth 1 exactly :meth:`initialize`'s layer."""
        return balanced_product_start(self, init_scale, generator, batch_shape=batch_shape, dtype=dtype,
                                      device=device)

    def antisymmetric_mismatch(self) -> str | None:
        """Why there is no antisymmetric start at these settings, or ``None``: it needs a hidden layer (depth at
        least 2) of even width (two halves)."""
        if self.depth < 2:
            return ("the antisymmetric initialization needs a hidden layer (depth >= 2): it subtracts two copies of "
                    "a half-width network")
        if self.width % 2:
            return (f"the antisymmetric initialization needs an even width (two halves of width k/2), got width "
                    f"{self.width}")
        return None

    def initialize_antisymmetric(self, init_scale: float, generator: torch.Generator, *,
                                 batch_shape: tuple[int, ...] = (), dtype: torch.dtype = torch.float64,
                                 device: torch.device | str = "cpu") -> list[torch.Tensor]:
        """The antisymmetric start (module docstring): two opposite copies of a width-``k/2`` network drawn from
        ``generator`` as :meth:`initialize` of the ``standard`` width-``k/2`` model draws it, stored as effective
        weights over this parametrization's multipliers. ``f = 0`` on every input (to rounding).

        Raises:
            ModelError: ``antisymmetric_mismatch()`` names a reason (depth 1, odd width).
        """
        reason = self.antisymmetric_mismatch()
        if reason:
            raise ModelError(reason)
        half = self.width // 2
        halves = dataclasses.replace(self, width=half, parametrization="standard").initialize(
            init_scale, generator, batch_shape=batch_shape, dtype=dtype, device=device)
        bias = int(self.bias)
        effective = [torch.cat([halves[0], halves[0]], dim=-2)]  # [A_1; A_1] (and its bias column)
        for block in halves[1:-1]:
            layer = block.new_zeros((*batch_shape, self.width, self.width + bias))
            layer[..., :half, :half] = block[..., :half]
            layer[..., half:, half:self.width] = block[..., :half]
            if bias:
                layer[..., :half, -1:] = block[..., -1:]
                layer[..., half:, -1:] = block[..., -1:]
            effective.append(layer)
        readout = halves[-1].new_zeros((*batch_shape, 1, self.width + bias))  # the readout's bias stays 0
        readout[..., :half] = halves[-1][..., :half]
        readout[..., half:self.width] = -halves[-1][..., :half]
        effective.append(readout)
        return [layer if multiplier == 1.0 else layer / multiplier
                for layer, multiplier in zip(effective, self.layer_multipliers)]

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
        if not self.bias and self.parametrization == "standard":  # the plain recursion, no multipliers
            first = torch.matmul(weights[0], inputs.transpose(-1, -2))
            return self.propagate(first, weights, pre=pre, post=post).squeeze(-2)
        multipliers = self.layer_multipliers
        first = self._affine(weights[0], inputs.transpose(-1, -2), multipliers[0])
        return self.propagate(first, weights, multiply=lambda j, layer, act: self._affine(layer, act, multipliers[j]),
                              pre=pre, post=post).squeeze(-2)

    def last_layer_features(self, weights: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
        """What the stored readout ``W_d`` multiplies: ``f = W_d @ features`` on every input, ``(..., in_d, N)``.

        ``features = m_d [sigma(a_{d-1}); 1]`` (the ``1`` row with ``bias=True``; ``X^T`` in place of
        ``sigma(a_{d-1})`` at depth 1): given the other layers, ``f`` is linear in ``W_d``, so the readouts that
        classify every training point correctly form a polyhedral cone (subset simulation's exact readout move).

        Args:
            weights: ``W_1, ..., W_d`` as for :meth:`forward` (``W_d`` is not used).
            inputs: ``(N, in_features)``.
        """
        if self.depth == 1:
            activated = inputs.transpose(-1, -2).expand(*weights[0].shape[:-2], -1, -1)
        else:
            post: list[torch.Tensor] = []
            self.forward(weights, inputs, post=post)
            activated = post[-1]
        if self.bias:
            activated = torch.cat([activated, torch.ones_like(activated[..., :1, :])], -2)
        multiplier = self.layer_multipliers[-1]
        return activated if multiplier == 1.0 else activated * multiplier

    def _affine(self, layer: torch.Tensor, activated: torch.Tensor, multiplier: float) -> torch.Tensor:
        """``m (W a + b)``: the layer (its last column the bias, with ``bias=True``) on inputs ``a (..., in, N)``."""
        if self.bias:
            result = torch.matmul(layer[..., :-1], activated) + layer[..., -1:]
        else:
            result = torch.matmul(layer, activated)
        return result if multiplier == 1.0 else result * multiplier

    def gradient_factors(self, weights: Sequence[torch.Tensor],
                         inputs: torch.Tensor) -> tuple[torch.Tensor, list[tuple[torch.Tensor, torch.Tensor]]]:
        """``f`` at every input and its gradient in every layer, each an outer product: ``(outputs, factors)``.

        Layer ``j`` computes ``z_j = m_j W_j a_j`` on each input separately (``a_j`` the layer's
        input, with a trailing 1 for the bias), so the gradient of ``f(x_i)`` in ``W_j`` is the
        outer product ``g_ji (m_j a_ji)^T`` with ``g_ji = df(x_i)/dz_ji``, the output's gradient
        in the layer's output at that input. For ``N`` inputs the Jacobian block of layer ``j``
        is then ``J_j[i] = vec(g_ji a_ji^T)``, and (the product of two outer products' inner
        products)

            J_j J_j^T = (G_j G_j^T) * (A_j A_j^T)   (elementwise),    J_j^T v = vec(G_j^T diag(v) A_j),

        with ``G_j`` the rows ``g_ji`` and ``A_j`` the rows ``m_j a_ji``: a network's Gram matrix
        ``J J^T`` (the empirical NTK) without the ``N x P`` Jacobian. The ``g`` come from one
        backward pass through :meth:`forward` (autograd, from the outputs summed over the
        inputs: input ``i``'s output depends on its own ``z_ji`` only), so every
        parametrization, bias and activation is differentiated by the one forward definition.

        Args:
            weights: ``W_1, ..., W_d``, each ``(..., out, in)``.
            inputs: ``(N, in_features)``, or ``(..., N, in_features)`` (as for :meth:`forward`).

        Returns:
            ``outputs (..., N)`` (detached) and, per layer, ``(G_j (..., N, out_j), A_j (..., N, in_j))``;
            ``A_1`` has only the inputs' leading axes (``(N, in)`` when they are shared).
        """
        pre: list[torch.Tensor] = []
        post: list[torch.Tensor] = []
        with torch.enable_grad():
            leaves = [weight.detach().requires_grad_(True) for weight in weights]
            outputs = self.forward(leaves, inputs, pre=pre, post=post)
            gradients = torch.autograd.grad(outputs.sum(), pre)  # each (..., out_j, N): the g_ji as columns
        layer_inputs = [inputs] + [activated.detach().transpose(-1, -2) for activated in post]
        factors = []
        for gradient, layer_input, multiplier in zip(gradients, layer_inputs, self.layer_multipliers):
            if self.bias:
                layer_input = torch.cat([layer_input, torch.ones_like(layer_input[..., :1])], -1)
            if multiplier != 1.0:
                layer_input = layer_input * multiplier
            factors.append((gradient.transpose(-1, -2), layer_input))
        return outputs.detach(), factors

    def linear_predictor(self, weights: Sequence[torch.Tensor]) -> torch.Tensor | None:
        """``w = W_d ... W_1`` ``(..., d)`` of a deep *linear* network (``activation="linear"``, no bias,
        ``standard`` parametrization); else ``None``."""
        if self.activation != "linear" or self.bias or self.parametrization != "standard":
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
        if problem.task != "supervised":
            return "an MLP needs a supervised problem (--data ...); use --model factorization for matrix problems"
        if problem.num_features != self.in_features:
            return f"model takes {self.in_features} input features but the problem has {problem.num_features}"
        return None

    def describe(self) -> dict:
        """A JSON-friendly description (used in results and reports)."""
        return {"family": self.family, "in_features": self.in_features, "width": self.width, "depth": self.depth,
                "activation": self.activation_name, "prior": self.prior, "scaling": self.scaling,
                "negative_slope": self.negative_slope, "parametrization": self.parametrization, "bias": self.bias,
                "abs_coefficients": list(self.abs_coefficients)}
