"""The empirical neural tangent kernel (NTK) of any model family, and the ReLU MLP's infinite-width NTK.

For a model's training outputs as a function of its parameters, ``F: theta -> z``
(``z`` the ``m`` values the training loss sees: an MLP's ``f(x_i)`` on the training
inputs, a matrix-sensing model's ``<A_i, W>``), the empirical NTK is the ``m x m`` Gram
matrix

    K = J J^T,    J = dF/dtheta  (m x P, every weight of every layer),

(Jacot, Gabriel & Hongler 2018, Sec. 4). :func:`training_outputs_function` builds ``F``
through the model's own :meth:`outputs` and the task's ``train_outputs``, so every family,
parametrization and output multiplier the model applies is in ``K`` without this module
knowing about it. Two independent ways to compute ``K``, both with ``torch.func``:

* ``method="jacobian"``: rows of ``J`` a chunk at a time, by a ``vmap`` over ``vjp``
  cotangents (``jacrev``) of ``F``, or, on a supervised task where output ``i`` depends on
  training point ``i`` alone, by a ``vmap`` over points of one point's gradient (the same
  rows at a fraction of the arithmetic); ``K = sum_s J_s J_s^T`` accumulated parameter
  slice by parameter slice, so that no more than about ``memory_bytes`` are held;
* ``method="vp"``: the NTK-vector product ``K v = J (J^T v)`` (one ``vjp``, then one
  ``jvp``), ``vmap``-ed over chunks of the identity's columns.

:func:`arccos_ntk` is the closed-form infinite-width NTK of a bias-free ReLU MLP in the
NTK parametrization (arc-cosine kernels, Cho & Saul 2009), which the empirical NTK of a
wide network must approach.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch

from .._rng import make_generator
from ..errors import ModelError, ProblemError, VolumelabError
from ..models import LayeredModel
from ..optimizers.observers import FinalRecording, Observer, Recording, RunOutcome, TrainingContext
from ..problems import Problem, ProblemTensors, SupervisedProblem, SupervisedTensors

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "NTK_METHODS",
    "NTKLaziness",
    "NTKSummary",
    "TrainingOutputs",
    "arccos_ntk",
    "empirical_ntk",
    "ntk_eigenvalues",
    "ntk_summary",
    "outer_product_gram",
    "sample_layers",
    "training_outputs_function",
]

logger = logging.getLogger(__name__)

#: The two Gram implementations of :func:`empirical_ntk`.
NTK_METHODS = ("jacobian", "vp", "factors")
#: Default working-memory budget of :func:`empirical_ntk`: 1 GiB.
DEFAULT_MEMORY_BYTES = 1 << 30


@runtime_checkable
class ModelFunction(Protocol):
    """What the NTK needs of a model: its layers' shapes and its outputs on a task's tensors.

    Every :class:`~volumelab.models.LayeredModel` family is one; so is any object of a
    user's with these two members (e.g. a model whose outputs couple the points).
    """

    layer_shapes: tuple[tuple[int, int], ...]

    def outputs(self, weights, tensors) -> torch.Tensor: ...


# ----------------------------------------------------------------- the function F
def _task_tensors(model, problem, dtype: torch.dtype, device: torch.device | str):
    """The task tensors of ``problem`` (a problem, or task tensors already built), checked against ``model``."""
    if isinstance(problem, (ProblemTensors, SupervisedTensors)):
        tensors = problem
        if tensors.stacked:
            raise ProblemError("the task tensors are stacked (one set per run); pass one run's: tensors.run(index)")
        fields = [getattr(tensors, f.name) for f in dataclasses.fields(tensors)] if dataclasses.is_dataclass(
            tensors) else []
        arrays = [value for value in fields if isinstance(value, torch.Tensor)]
        for array in arrays:
            if array.device != torch.device(device):
                raise ProblemError(f"the task tensors are on {array.device} but the layers are on {device}; "
                                   "build them with problem.tensors(device, dtype)")
        if any(array.dtype != dtype for array in arrays if array.is_floating_point()):
            tensors = tensors.to(dtype)
        return tensors
    if not isinstance(problem, (Problem, SupervisedProblem)):
        raise ProblemError(f"expected a problem (Problem, SupervisedProblem) or its task tensors, "
                           f"got {type(problem).__name__}")
    reason = model.problem_mismatch(problem) if isinstance(model, LayeredModel) else None
    if reason is not None:
        raise ProblemError(reason)
    return problem.tensors(device, dtype)


def _check_model(model) -> None:
    if not isinstance(model, ModelFunction):
        raise ModelError(f"expected a model family (with layer_shapes and outputs), got {type(model).__name__}")


class TrainingOutputs:
    """``F(layers) -> z``: a model's training outputs as a function of one draw of its layers.

    Built by :func:`training_outputs_function`. Calling it adds a sample axis of length one
    to every layer, calls ``model.outputs`` on the task's training view and keeps what the
    training loss sees (``train_outputs``).

    Attributes:
        model: The model family.
        training: The task tensors cut to the training points (``training_view()``).
        pointwise: Whether output ``i`` is the model's output on training point ``i`` alone
            (a supervised task); then :meth:`point` evaluates one point, and a Jacobian row is
            one point's gradient instead of a backward pass through every training point.
    """

    def __init__(self, model, training) -> None:
        self.model = model
        self.training = training
        self.pointwise = isinstance(training, SupervisedTensors)

    def __call__(self, layers: Sequence[torch.Tensor]) -> torch.Tensor:
        """``(m,)`` training outputs of ``layers`` (each ``(out, in)``)."""
        batched = [layer.unsqueeze(0) for layer in layers]
        return self.training.train_outputs(self.model.outputs(batched, self.training))[0]

    def point(self, layers: Sequence[torch.Tensor], inputs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The scalar output on one training point (``inputs (d,)``, ``target ()``): ``vmap`` it over points."""
        view = dataclasses.replace(self.training, inputs=inputs.unsqueeze(0), targets=target.unsqueeze(0), num_train=1)
        batched = [layer.unsqueeze(0) for layer in layers]
        return view.train_outputs(self.model.outputs(batched, view))[0, 0]


def training_outputs_function(
    model,
    problem,
    *,
    dtype: torch.dtype = torch.float64,
    device: torch.device | str = "cpu",
) -> TrainingOutputs:
    """``F(layers) -> z``: the training outputs as a function of one draw of the layers.

    ``F`` goes through ``model.outputs`` and the task's ``train_outputs``, so it includes
    whatever the model does (its parametrization, multipliers, normalization).

    Args:
        model: A model family (:class:`~volumelab.models.MLPModel`,
            :class:`~volumelab.models.FactorizationModel`, :class:`~volumelab.models.DiagonalNetwork`).
        problem: A problem (its tensors are built in ``dtype`` on ``device``, after the
            model's ``problem_mismatch`` check), or task tensors already built for one run.
        dtype: Floating dtype of the task tensors.
        device: Device of the task tensors.

    Returns:
        ``F`` (a :class:`TrainingOutputs`): takes ``W_1, ..., W_d`` (a sequence; ``W_j`` of
        shape ``(out_j, in_j)``, no sample axis) and returns the ``(m,)`` training outputs.
        It is a pure function of the layers, so ``torch.func`` transforms apply to it.

    Raises:
        ModelError: ``model`` is not a model family.
        ProblemError: the problem does not fit the model, or the tensors are stacked or on
            another device.
    """
    _check_model(model)
    return TrainingOutputs(model, _task_tensors(model, problem, dtype, device).training_view())


def sample_layers(
    model, seed: int, *, draw: int = 0, dtype: torch.dtype = torch.float64, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, ...]:
    """One draw of the model's prior, from the ``(seed, "ntk", draw)`` stream, without a sample axis.

    Args:
        model: A model family.
        seed: The user's seed.
        draw: Index of the draw (independent draws of one seed).
        dtype: Floating dtype of the layers.
        device: Device of the layers.

    Returns:
        ``(W_1, ..., W_d)``, ``W_j`` of shape ``(out_j, in_j)``.
    """
    _check_model(model)
    for name, value in (("seed", seed), ("draw", draw)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise VolumelabError(f"{name} must be a non-negative integer, got {value!r}")
    draws = model.sample_prior(1, make_generator(seed, "ntk", draw), dtype=dtype, device=device)
    return tuple(layer[0] for layer in draws)


def _check_layers(model, layers) -> tuple[torch.Tensor, ...]:
    if isinstance(layers, torch.Tensor) or not isinstance(layers, Sequence):
        raise ModelError("layers must be a sequence of tensors W_1, ..., W_d (e.g. from sample_layers)")
    shapes = tuple(tuple(shape) for shape in model.layer_shapes)
    if len(layers) != len(shapes):
        raise ModelError(f"the model has {len(shapes)} layers but {len(layers)} were given")
    for j, (layer, shape) in enumerate(zip(layers, shapes), start=1):
        if not isinstance(layer, torch.Tensor):
            raise ModelError(f"layer {j} is a {type(layer).__name__}, expected a tensor")
        if tuple(layer.shape) != shape:
            raise ModelError(f"layer {j} has shape {tuple(layer.shape)}, expected {shape} "
                             "(one draw without a sample axis; see sample_layers)")
        if not layer.is_floating_point():
            raise ModelError(f"layer {j} has dtype {layer.dtype}; the NTK needs floating-point layers")
        if layer.dtype != layers[0].dtype or layer.device != layers[0].device:
            raise ModelError(f"layer {j} is {layer.dtype} on {layer.device} but layer 1 is "
                             f"{layers[0].dtype} on {layers[0].device}; use one dtype and device")
        if not bool(torch.isfinite(layer).all()):
            raise ModelError(f"layer {j} contains NaN or infinite values")
    return tuple(layer.detach() for layer in layers)


# ------------------------------------------------------------------ memory plans
def _activation_bytes(function: Callable[[tuple[torch.Tensor, ...]], torch.Tensor],
                      layers: tuple[torch.Tensor, ...]) -> int:
    """Bytes autograd saves for the backward of one call ``function(layers)``, the layers themselves excluded.

    Counted by storage (a view counts its whole storage): the activations a reverse pass
    keeps, which is also the order of the intermediates that one vmapped vjp or jvp row
    makes (their cotangents or tangents).
    """
    parameters = tuple(layer.clone().requires_grad_() for layer in layers)
    own = {parameter.untyped_storage().data_ptr() for parameter in parameters}
    storages: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in own:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.enable_grad(), torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        outputs = function(parameters)
    return sum(storages.values()) + outputs.numel() * outputs.element_size()


@dataclass(frozen=True)
class _JacobianPlan:
    """Parameter slices ``[start, stop)`` of the flattened ``theta`` and Jacobian rows per vmap call."""

    slices: tuple[tuple[int, int], ...]
    rows_per_chunk: int
    estimated_bytes: int


@dataclass(frozen=True)
class _ProductPlan:
    """Identity columns per vmap call of the NTK-vector product."""

    columns_per_chunk: int
    estimated_bytes: int


def _too_small(memory_bytes: int, num_train: int, num_parameters: int, needed: int) -> VolumelabError:
    return VolumelabError(
        f"memory_bytes={memory_bytes:,} is too small for the {num_train}x{num_train} NTK Gram of "
        f"{num_parameters:,} parameters: it needs about {needed:,} bytes at least; raise memory_bytes")


def _plan_jacobian(layer_sizes: Sequence[int], num_train: int, kept: int, row_activations: int, itemsize: int,
                   memory_bytes: int) -> _JacobianPlan:
    """Split ``theta`` so that ``K``, one slice ``J_s`` (m x P_s) and one chunk of rows fit in ``memory_bytes``.

    ``K`` (``m^2``) and ``kept`` (a forward pass kept for the whole slice) are fixed; half
    of the rest holds ``J_s``, the other half one vmapped chunk of rows, each of which holds
    ``row_activations``, twice the gradient of every layer the slice touches (the gradient
    and a temporary), its row of ``J_s`` and its cotangent.
    """
    m, total = num_train, sum(layer_sizes)
    fixed = m * m * itemsize + kept
    rest = memory_bytes - fixed
    slice_size = min(total, (rest // 2) // (m * itemsize)) if rest > 0 else 0
    rows = 0
    if slice_size >= 1:
        num_slices = -(-total // slice_size)
        slice_size = -(-total // num_slices)  # equal slices
        slices = tuple((start, min(start + slice_size, total)) for start in range(0, total, slice_size))
        offsets = _offsets(layer_sizes)
        touched = max(sum(size for size, lo, hi in zip(layer_sizes, offsets, offsets[1:]) if lo < stop and start < hi)
                      for start, stop in slices)
        per_row = row_activations + (2 * touched + slice_size + m) * itemsize
        rows = min(m, (rest - m * slice_size * itemsize) // per_row)
    if rows < 1:
        least_row = row_activations + (2 * max(layer_sizes) + 1 + m) * itemsize
        raise _too_small(memory_bytes, m, total, fixed + 2 * max(m * itemsize, least_row))
    return _JacobianPlan(slices, int(rows), fixed + m * slice_size * itemsize + rows * per_row)


def _plan_product(num_parameters: int, num_train: int, activations: int, itemsize: int,
                  memory_bytes: int) -> _ProductPlan:
    """Columns per chunk so that ``K`` and one vmapped vjp-then-jvp chunk fit in ``memory_bytes``.

    Fixed: ``K`` and the forward pass the pullback keeps (``activations``). Per column: the
    vjp's cotangents and temporaries (about twice ``activations``), the jvp's tangents (about
    once more), ``J^T v`` and its tangent copy (``2 P``), ``v`` and ``K v`` (``2 m``).
    """
    m = num_train
    fixed = m * m * itemsize + activations
    per_column = 3 * activations + (2 * num_parameters + 2 * m) * itemsize
    columns = (memory_bytes - fixed) // per_column
    if columns < 1:
        raise _too_small(memory_bytes, m, num_parameters, fixed + per_column)
    columns = min(m, int(columns))
    return _ProductPlan(columns, fixed + columns * per_column)


# ---------------------------------------------------------------- the two Grams
def _offsets(sizes: Sequence[int]) -> list[int]:
    offsets = [0]
    for size in sizes:
        offsets.append(offsets[-1] + size)
    return offsets


def _identity_rows(start: int, stop: int, size: int, like: torch.Tensor) -> torch.Tensor:
    """Rows ``start .. stop - 1`` of the ``size x size`` identity: ``(stop - start, size)``."""
    rows = torch.zeros(stop - start, size, dtype=like.dtype, device=like.device)
    rows[torch.arange(stop - start, device=like.device), torch.arange(start, stop, device=like.device)] = 1
    return rows


def _with(layers: tuple[torch.Tensor, ...], touched: Sequence[int], free: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """``layers`` with layer ``touched[i]`` replaced by ``free[i]``."""
    full = list(layers)
    for j, layer in zip(touched, free):
        full[j] = layer
    return full


def _jacobian_rows(function: TrainingOutputs, layers: tuple[torch.Tensor, ...], touched: Sequence[int],
                   num_train: int) -> Callable[[int, int], tuple[torch.Tensor, ...]]:
    """``rows(start, stop)``: rows ``start .. stop - 1`` of ``J`` in the touched layers, each ``(c, out, in)``.

    Pointwise tasks: output ``i``'s gradient from training point ``i`` alone, vmapped over
    the points. Otherwise: one forward pass of ``F``, and its pullback vmapped over the
    identity's rows (``jacrev``).
    """
    free = tuple(layers[j] for j in touched)
    if function.pointwise:
        inputs, targets = function.training.inputs, function.training.targets
        count = len(free)

        def point(*arguments: torch.Tensor) -> torch.Tensor:
            return function.point(_with(layers, touched, arguments[:count]), arguments[count], arguments[count + 1])

        gradients = torch.func.vmap(torch.func.grad(point, argnums=tuple(range(count))),
                                    in_dims=(None,) * count + (0, 0))
        return lambda start, stop: gradients(*free, inputs[start:stop], targets[start:stop])

    _outputs, pullback = torch.func.vjp(lambda *arguments: function(_with(layers, touched, arguments)), *free)
    cotangent_rows = torch.func.vmap(pullback)
    return lambda start, stop: cotangent_rows(_identity_rows(start, stop, num_train, layers[0]))


def _gram_by_jacobian(function: TrainingOutputs, layers: tuple[torch.Tensor, ...], num_train: int,
                      plan: _JacobianPlan) -> torch.Tensor:
    """``K = sum_s J_s J_s^T`` over the plan's parameter slices ``s``, ``J_s`` filled a chunk of rows at a time."""
    m = num_train
    offsets = _offsets([layer.numel() for layer in layers])
    reference = layers[0]
    gram = torch.zeros(m, m, dtype=reference.dtype, device=reference.device)
    for start, stop in plan.slices:
        touched = [j for j in range(len(layers)) if offsets[j] < stop and start < offsets[j + 1]]
        rows = _jacobian_rows(function, layers, touched, m)
        jacobian = torch.empty(m, stop - start, dtype=reference.dtype, device=reference.device)
        for row in range(0, m, plan.rows_per_chunk):
            row_stop = min(m, row + plan.rows_per_chunk)
            for j, gradient in zip(touched, rows(row, row_stop)):
                # Columns [lo, hi) of theta are entries [lo - offsets[j], hi - offsets[j]) of layer j.
                lo, hi = max(start, offsets[j]), min(stop, offsets[j + 1])
                flat = gradient.reshape(row_stop - row, -1)
                jacobian[row:row_stop, lo - start:hi - start] = flat[:, lo - offsets[j]:hi - offsets[j]]
        gram.addmm_(jacobian, jacobian.T)
        del jacobian, rows
    return gram


def _gram_by_products(function: TrainingOutputs, layers: tuple[torch.Tensor, ...], num_train: int,
                      plan: _ProductPlan) -> torch.Tensor:
    """``K = [K e_1, ..., K e_m]`` with ``K v = J (J^T v)``: a vjp then a jvp, vmapped over identity columns.

    Always through the whole ``F`` (the pointwise shortcut is the Jacobian method's), so
    the two methods share no code beyond ``F``.
    """
    m = num_train
    reference = layers[0]

    def outputs(*arguments: torch.Tensor) -> torch.Tensor:
        return function(arguments)

    _outputs, pullback = torch.func.vjp(outputs, *layers)

    def ntk_vector_product(vector: torch.Tensor) -> torch.Tensor:
        return torch.func.jvp(outputs, layers, pullback(vector))[1]

    products = torch.func.vmap(ntk_vector_product)
    gram = torch.empty(m, m, dtype=reference.dtype, device=reference.device)
    for column in range(0, m, plan.columns_per_chunk):
        stop = min(m, column + plan.columns_per_chunk)
        # Row i of the result is (K e_{column + i})^T, i.e. row column + i of the symmetric K.
        gram[column:stop] = products(_identity_rows(column, stop, m, reference))
    return gram


def _pointwise_holds(function: TrainingOutputs, layers: tuple[torch.Tensor, ...], whole: torch.Tensor) -> bool:
    """Whether the outputs on the training points one at a time equal ``F``'s (a model that couples points fails)."""
    training = function.training
    single = torch.func.vmap(function.point, in_dims=(None, 0, 0))(layers, training.inputs, training.targets)
    tolerance = math.sqrt(torch.finfo(whole.dtype).eps) * (1.0 + float(whole.abs().max()))
    return single.shape == whole.shape and float((single - whole).abs().max()) <= tolerance


def outer_product_gram(model, layers: Sequence[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``J J^T`` on ``inputs`` for a model whose per-input gradients are outer products, not symmetrized.

    Layer ``j``'s Jacobian rows are ``vec(g_ji a_ji^T)`` (:meth:`~volumelab.models.MLPModel.gradient_factors`),
    so ``J_j J_j^T = (G_j G_j^T) * (A_j A_j^T)`` elementwise, and ``J J^T`` is their sum over layers: ``N^2 k``
    work per layer of width ``k``, never the ``N x P`` Jacobian.
    """
    _outputs, factors = model.gradient_factors(list(layers), inputs)
    gram = None
    for gradient, layer_input in factors:
        part = (gradient @ gradient.T) * (layer_input @ layer_input.T)
        gram = part if gram is None else gram.add_(part)
    return gram


def empirical_ntk(
    model,
    layers: Sequence[torch.Tensor],
    problem,
    *,
    method: str = "jacobian",
    memory_bytes: int = DEFAULT_MEMORY_BYTES,
) -> torch.Tensor:
    """The empirical NTK ``K = J J^T`` of the training outputs at ``layers``: ``(m, m)``.

    ``J`` is the ``m x P`` Jacobian of :func:`training_outputs_function`'s ``F`` in every
    entry of every layer (Jacot et al. 2018, Sec. 4). The result is symmetrized,
    ``(K + K^T) / 2``: both methods give ``K`` symmetric only up to rounding (the two
    triangles come from different dot products or from different vmapped columns).

    Cost. ``"jacobian"`` on a supervised task takes row ``i`` of ``J`` as the gradient of
    the output on training point ``i`` alone (``vmap`` over points of ``grad``; checked
    once against ``F``'s values, and done through ``F``'s pullback when a model couples
    points), so ``J`` costs about ``m`` single-point passes and ``K`` one ``m x m x P``
    product per parameter slice. ``"vp"`` and ``"jacobian"`` on matrix tasks pass every
    row (column) through all ``m`` training outputs: ``m`` full-batch passes (the vp
    method two, a vjp and a jvp), which for an MLP costs ``m`` times more arithmetic.

    Args:
        model: A model family.
        layers: ``(W_1, ..., W_d)`` without a sample axis (:func:`sample_layers`, or GD's
            parameters of one run); their dtype and device are the computation's.
        problem: A problem, or one run's task tensors.
        method: ``"jacobian"`` (rows of ``J`` by vmapped vjps, ``K`` accumulated over
            parameter slices), ``"vp"`` (``K e_i = J (J^T e_i)`` by a vjp and a jvp,
            vmapped over chunks of identity columns) or ``"factors"`` (an MLP on a supervised
            task only: :func:`outer_product_gram`, one forward and one backward pass and
            ``m x m`` products per layer, no Jacobian; ``memory_bytes`` does not apply).
        memory_bytes: Working-memory budget in bytes for ``K``, one slice of ``J`` and one
            vmapped chunk. Chunk sizes are planned from the bytes autograd saves in one
            forward pass, so the budget is a guide to within a small factor, not a hard
            limit. At the default, 1 GiB, the 1000 x 1000 Gram of a width-4096 depth-2 MLP
            on 64 features takes four parameter slices.

    Returns:
        ``K``, ``(m, m)`` in the layers' dtype.

    Raises:
        ModelError: bad layers (count, shape, dtype, non-finite) or model, or outputs that
            are not ``(m,)``.
        ProblemError: a problem that does not fit the model.
        VolumelabError: unknown ``method``, or ``memory_bytes`` not a positive integer or too
            small for ``K`` and one row (column) at a time.
    """
    if method not in NTK_METHODS:
        raise VolumelabError(f"unknown NTK method {method!r}; expected one of {', '.join(NTK_METHODS)}")
    if isinstance(memory_bytes, bool) or not isinstance(memory_bytes, int) or memory_bytes < 1:
        raise VolumelabError(f"memory_bytes must be a positive integer, got {memory_bytes!r}")
    _check_model(model)
    layers = _check_layers(model, layers)
    function = training_outputs_function(model, problem, dtype=layers[0].dtype, device=layers[0].device)
    if method == "factors":
        if not (function.pointwise and isinstance(model, LayeredModel) and model.capabilities.outer_product_gradients):
            raise VolumelabError(f"the NTK method 'factors' needs a model whose per-input gradients are outer "
                                 f"products (an MLP) on a supervised task, got {type(model).__name__}")
        gram = outer_product_gram(model, layers, function.training.inputs)
        return gram.add_(gram.T.clone()).mul_(0.5)
    whole = function(layers)
    if whole.ndim != 1 or whole.shape[0] < 1:
        raise ModelError(f"the training outputs have shape {tuple(whole.shape)}, expected (m,) with m >= 1")
    num_train, itemsize = int(whole.shape[0]), layers[0].element_size()
    sizes = [layer.numel() for layer in layers]
    activations = _activation_bytes(function, layers)
    if method == "vp":
        plan = _plan_product(sum(sizes), num_train, activations, itemsize, memory_bytes)
        logger.debug("NTK Gram by products: %d column(s) per chunk, ~%d bytes",
                     plan.columns_per_chunk, plan.estimated_bytes)
        gram = _gram_by_products(function, layers, num_train, plan)
    else:
        if function.pointwise and not _pointwise_holds(function, layers, whole):
            logger.info("the model's outputs couple training points; NTK rows go through the full forward pass")
            function.pointwise = False
        if function.pointwise:
            training = function.training
            row_activations = 2 * _activation_bytes(
                lambda free: function.point(free, training.inputs[0], training.targets[0]), layers)
            plan = _plan_jacobian(sizes, num_train, 0, row_activations, itemsize, memory_bytes)
        else:
            plan = _plan_jacobian(sizes, num_train, activations, 2 * activations, itemsize, memory_bytes)
        logger.debug("NTK Gram by Jacobian (%s rows): %d parameter slice(s), %d row(s) per chunk, ~%d bytes",
                     "pointwise" if function.pointwise else "full-batch", len(plan.slices), plan.rows_per_chunk,
                     plan.estimated_bytes)
        gram = _gram_by_jacobian(function, layers, num_train, plan)
    return gram.add_(gram.T.clone()).mul_(0.5)


# ------------------------------------------------------------------- spectrum
def ntk_eigenvalues(gram: torch.Tensor) -> torch.Tensor:
    """Eigenvalues of a Gram, ascending, by ``torch.linalg.eigvalsh`` in float64: ``(m,)``.

    ``eigvalsh`` reads the lower triangle only (``K`` from :func:`empirical_ntk` is symmetric).
    """
    if not isinstance(gram, torch.Tensor) or gram.ndim != 2 or gram.shape[0] != gram.shape[1] or gram.numel() == 0:
        shape = tuple(gram.shape) if isinstance(gram, torch.Tensor) else type(gram).__name__
        raise VolumelabError(f"expected a non-empty square (m, m) Gram matrix, got {shape}")
    if not bool(torch.isfinite(gram).all()):
        raise VolumelabError("the Gram matrix contains NaN or infinite values")
    return torch.linalg.eigvalsh(gram.to(torch.float64))


@dataclass(frozen=True)
class NTKSummary:
    """The NTK's extreme eigenvalues (float64).

    Attributes:
        lambda_min: Smallest eigenvalue (``<= 0`` up to rounding when ``J`` has rank below ``m``).
        lambda_max: Largest eigenvalue.
        num_train: ``m``, the training outputs.
    """

    lambda_min: float
    lambda_max: float
    num_train: int

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def ntk_summary(gram: torch.Tensor) -> NTKSummary:
    """``lambda_min``, ``lambda_max`` and ``num_train`` of a Gram (:func:`ntk_eigenvalues`)."""
    eigenvalues = ntk_eigenvalues(gram)
    return NTKSummary(float(eigenvalues[0]), float(eigenvalues[-1]), int(gram.shape[0]))


# ------------------------------------------------------- infinite width, ReLU
#: ``|cos theta|`` may exceed 1 by rounding only; more than this means the inputs are not a kernel.
_COSINE_ROUNDING = 1e-9


def arccos_ntk(inputs: torch.Tensor, depth: int, *, per_layer: bool = False) -> torch.Tensor:
    """The infinite-width NTK of a bias-free ReLU MLP with ``depth`` weight matrices, NTK parametrization.

    The network is ``f(x) = W_L relu(... relu(W_1 x / sqrt(d)) / sqrt(k) ...) / sqrt(k)``
    with ``W_l`` entries ``N(0, 1)`` (every layer's output times ``1/sqrt(fan_in)``), one
    output. With ``theta = arccos(Sigma^l(x,x') / sqrt(Sigma^l(x,x) Sigma^l(x',x')))``
    (Jacot et al. 2018, Thm. 1 and its ReLU case; the expectations are the arc-cosine
    kernels of degree 1 and 0 of Cho & Saul 2009, Eq. 6, divided by 2):

        Sigma^1(x,x')     = x.x' / d
        Sigma^{l+1}(x,x') = sqrt(Sigma^l(x,x) Sigma^l(x',x')) (sin theta + (pi - theta) cos theta) / (2 pi)
                          = E[relu(u) relu(v)],   (u, v) ~ N(0, Sigma^l on {x, x'})
        dSigma^{l+1}      = (pi - theta) / (2 pi) = E[relu'(u) relu'(v)]
        Theta^1 = Sigma^1,   Theta^{l+1} = Sigma^{l+1} + Theta^l dSigma^{l+1},

    and the NTK is ``Theta^L``. Unrolled, ``Theta^L = sum_l Sigma^l prod_{j > l} dSigma^j``,
    and term ``l`` is the part of ``J J^T`` from the entries of ``W_l`` (``Sigma^l`` the
    kernel of that layer's inputs, the product the backward pass's).

    ``cos theta`` is clipped into ``[-1, 1]`` to undo rounding only (by Cauchy-Schwarz it
    is in range exactly; an excess above 1e-9 raises), and is set to exactly 1 on the
    diagonal, where ``arccos`` of a rounded 1 would cost ~1e-8 of accuracy.

    Args:
        inputs: ``(n, d)`` inputs, none of them zero (the angle is undefined there).
        depth: ``L >= 1``, the number of weight matrices (``1`` is the linear model).
        per_layer: Return the contributions of ``W_1, ..., W_L`` separately.

    Returns:
        ``Theta^L``, ``(n, n)`` float64; or ``(L, n, n)`` whose sum over the first axis is
        ``Theta^L`` when ``per_layer``.

    Raises:
        VolumelabError: inputs not a finite 2-D tensor, a zero input, or a bad ``depth``.
    """
    if not isinstance(inputs, torch.Tensor) or inputs.ndim != 2 or inputs.shape[0] < 1 or inputs.shape[1] < 1:
        shape = tuple(inputs.shape) if isinstance(inputs, torch.Tensor) else type(inputs).__name__
        raise VolumelabError(f"inputs must be a non-empty (n, d) tensor, got {shape}")
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise VolumelabError(f"depth must be a positive integer, got {depth!r}")
    x = inputs.to(torch.float64)
    if not bool(torch.isfinite(x).all()):
        raise VolumelabError("inputs contain NaN or infinite values")
    zero = (x == 0).all(dim=1)
    if bool(zero.any()):
        raise VolumelabError(f"input {int(zero.nonzero()[0])} is zero; the ReLU NTK's angle is undefined there")
    sigma = x @ x.T / x.shape[1]
    contributions = [sigma]  # W_l's term, before the later layers' dSigma factors
    for _ in range(1, depth):
        norms = torch.sqrt(torch.outer(sigma.diagonal(), sigma.diagonal()))
        cosine = sigma / norms
        excess = float((cosine.abs() - 1).max())
        if excess > _COSINE_ROUNDING:
            raise VolumelabError(f"|cos theta| exceeds 1 by {excess:.3g}: the layer kernel is not positive semi-definite")
        cosine = cosine.clamp(-1.0, 1.0)
        cosine.diagonal().fill_(1.0)
        angle = torch.arccos(cosine)
        sigma = norms * (torch.sin(angle) + (math.pi - angle) * cosine) / (2 * math.pi)
        derivative = (math.pi - angle) / (2 * math.pi)
        contributions = [term * derivative for term in contributions] + [sigma]
    stacked = torch.stack(contributions)
    return stacked if per_layer else stacked.sum(0)


# ----------------------------------------------------------------- the NTK along a GD run
@dataclass(frozen=True)
class NTKLaziness(Observer):
    """A GD/NGD observer (:mod:`volumelab.optimizers.observers`): each run's NTK at its start and how lazily
    it trained.

    Metrics: ``ntk_lambda_min`` and ``ntk_lambda_max`` of the empirical NTK of the training outputs at the
    initialization; ``ntk_change`` ``||K_T - K_0||_F / ||K_0||_F``; ``param_change``
    ``||theta_T - theta_0|| / ||theta_0||``; the measured ``loss_rate`` ``ln(L_0 / L_T) / T``; and the
    ``predicted_rate`` of the linearized dynamics: for plain steps (no momentum, no adaptive step, every
    layer at the base learning rate) of a loss with a constant output Hessian ``h`` (the squared loss:
    ``h = 2/m``), ``L_T <= rho^(2T) L_0`` with ``rho = max_i |1 - lr h lambda_i|`` over the NTK's
    eigenvalues, so ``predicted_rate = -2 ln rho`` (``None`` where that bound does not apply). A run
    without final parameters (diverged) has only the values at its start.
    """

    def start(self, context: TrainingContext) -> Recording:
        return _NTKRecording(context)


class _NTKRecording(FinalRecording):
    def metrics(self, outcome: RunOutcome) -> dict:
        optimizer, objective = self.context.optimizer, self.context.objective
        initial = self.context.initial[outcome.index]
        model, tensors = objective.model, objective.tensors.run(outcome.index)

        def gram(flat: torch.Tensor) -> torch.Tensor:
            return empirical_ntk(model, [layer[0] for layer in objective.layers(flat.unsqueeze(0))], tensors)

        start = gram(initial)
        eigenvalues = ntk_eigenvalues(start)
        out = {"ntk_lambda_min": float(eigenvalues[0]), "ntk_lambda_max": float(eigenvalues[-1]),
               "ntk_change": None, "param_change": None, "loss_rate": None, "predicted_rate": None}
        if not outcome.has_result:
            return out
        final = self.final[outcome.index]
        out["ntk_change"] = float(torch.linalg.matrix_norm(gram(final) - start) / torch.linalg.matrix_norm(start))
        out["param_change"] = float(torch.linalg.vector_norm(final - initial) / torch.linalg.vector_norm(initial))
        initial_loss, final_loss, steps = outcome.initial_train_loss, outcome.final_train_loss, outcome.steps
        if steps > 0 and initial_loss and final_loss and final_loss > 0:
            out["loss_rate"] = math.log(initial_loss / final_loss) / steps
        plain = (optimizer.step_rule == "gd" and not optimizer.momentum
                 and getattr(optimizer, "batch_size", None) is None
                 and all(rate == 1.0 for rate in model.learning_rate_multipliers))
        training = tensors.training_view()
        outputs = training.train_outputs(model.outputs(objective.layers(initial.unsqueeze(0)), training))
        second = training.loss_derivatives(outputs)[1]
        if plain and bool((second == second.flatten()[0]).all()):
            h = float(second.flatten()[0])
            rho = max(abs(1 - optimizer.lr * h * float(eigenvalues[0])),
                      abs(1 - optimizer.lr * h * float(eigenvalues[-1])))
            out["predicted_rate"] = -2 * math.log(rho) if 0 < rho < 1 else None
        return out
