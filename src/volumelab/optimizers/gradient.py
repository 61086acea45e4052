"""Gradient descent from small initialization, with composable step rules.

An update is a chain, Optax style: the gradient, then a preconditioner (identity, the
paper's global RMS scaling, or Adam's per-coordinate scaling), then heavy-ball momentum,
then the step size.

Steps are full-batch unless ``batch_size`` is set: then each step's gradient is that of
the mean loss on a minibatch of the training points (SGD, or Adam on minibatches). Each
run draws its own minibatches from the generator of ``(seed, "minibatch")``: an epoch is a
random permutation of the ``n`` points, cut into ``n // batch_size`` minibatches of
consecutive entries (the last ``n mod batch_size`` points of each epoch are not used), each
minibatch's indices sorted. So a run's minibatches depend on its seed alone, never on the
other runs of its batch, and ``batch_size = n`` takes every point at every step, in order:
full-batch GD.

The paper's adaptive rule (arXiv 2506.03931, App. "Gradient descent"), here
``group_rmsprop``, is one scalar for all parameters:

    v_t    = 0.99 v_{t-1} + 0.01 ||g_t||^2          (total squared gradient norm)
    u_t    = g_t / (sqrt(v_t / (1 - 0.99^t)) + 1e-6)
    b_t    = beta b_{t-1} + u_t                      (heavy-ball, when beta > 0)
    theta -= lr * b_t

Runs are batched over a leading axis: several seeds (or problems of equal shape)
advance together, each with its own statistics. For the factorization's hand-written
gradient, ``run_batch`` of ``S`` seeds equals ``S`` calls of ``run`` bit for bit; through
autograd (an MLP, a normalized factorization) a batched matrix product may round
differently from a single one, so the runs agree to float64 rounding, not bitwise
(measured: up to about 3e-7 relative after 30 NGD steps with CG on an MLP).

A run diverges at the first step where its training loss or any entry of its gradient
is not finite (the loss can stay finite while the gradient overflows, e.g. in the
product of a huge layer with the upstream gradient), or where the squared norm of its
gradient overflows float64 (entries beyond about 1e154: the adaptive step's average of
``||g||^2`` would be infinite and freeze the run). It stops there: its update is
zero from that step on (the non-finite gradient is replaced, not multiplied, by zero),
its status is ``"diverged"`` and its final losses are ``None``. Every operation of a
step acts on each run's row alone, so the other runs of the batch continue exactly
as without it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
import dataclasses
from dataclasses import dataclass
from typing import Any, ClassVar, NamedTuple

import torch
from tqdm.auto import tqdm

from .._rng import make_generator
from ..device import resolve_device
from ..settings import setting
from ..errors import OptimizerError
from ..models import FactorizationModel
from ..problems import Problem
from ._threads import map_in_threads
from .base import Metric, ResultSchema, RunResult, format_value
from .observers import Observer, RunOutcome, TrainingContext, check_observers
from .transforms import (
    GradientTransformation,
    StepContext,
    Update,
    chain,
    identity,
    scale_by_adam,
    scale_by_group_rms,
    scale_by_learning_rate,
    scale_by_parameter,
    trace_momentum,
)

__all__ = ["GDInfo", "GDState", "GradientDescent", "INITS", "STEP_RULES", "TRAINER_SCHEMA", "register_trainer",
           "trainers"]

logger = logging.getLogger(__name__)

STEP_RULES = ("gd", "group_rmsprop", "adam")

#: GD's ``initialization``: each depth's own draw (``random``), the depth-1 draw as balanced factors (``balanced``),
#: or an MLP's zero function from two opposite half-width copies (``antisymmetric``).
INITS = ("random", "balanced", "antisymmetric")

#: Steps between checks whether every run in a batch has stopped (a host sync).
_CHECK_EVERY = 16

#: Parameter count of a batch above which stopped runs' gradients are zeroed in place.
_MASK_IN_PLACE_ABOVE = 4096


def effective_rank(matrices: torch.Tensor) -> torch.Tensor:
    """The effective rank of each matrix of ``(S, rows, cols)`` (Roy and Vetterli 2007), ``(S,)``.

    ``exp(-sum_i p_i log p_i)`` with ``p_i = sigma_i / sum_j sigma_j`` the normalized
    singular values: ``k`` for ``k`` equal non-zero singular values, 1 for rank one, and
    NaN for the zero matrix (which has no spectrum to normalize).
    """
    # One matrix at a time: a batched SVD may round differently from a single one, and a
    # run's numbers must not depend on the batch it ran in.
    # A matrix with a non-finite entry (a diverged run) has no spectrum: NaN.
    finite = torch.isfinite(matrices).flatten(1).all(1)
    singular = torch.stack([torch.linalg.svdvals(matrix) if ok else torch.full(matrix.shape[-1:], torch.nan)
                            [: min(matrix.shape)].to(matrix) for matrix, ok in zip(matrices, finite.tolist())])
    total = singular.sum(-1, keepdim=True)
    shares = singular / total
    entropy = -torch.special.xlogy(shares, shares).sum(-1)
    return torch.where(total.squeeze(-1) > 0, entropy.exp(), torch.nan)  # NaN stays NaN


class _ClosedFormObjective:
    """``L_train`` and its gradient for a named activation, by hand (no autograd).

    Forward: the model's (:meth:`FactorizationModel.forward`), ``a_1 = W_1``,
    ``a_j = W_j sigma(a_{j-1})``, ``W = a_d``. The task gives the train residual
    ``r = A vec(W) - y`` and ``dL/dvec(W) = (2/m) A^T r``
    (:meth:`ProblemTensors.train_gradient`); then for ``j = d..2``:
    ``dL/dW_j = G_j sigma(a_{j-1})^T`` and ``G_{j-1} = (W_j^T G_j) * sigma'(a_{j-1})``, with
    ``G_d = dL/dW`` and ``dL/dW_1 = G_1``. The products with ``sigma'`` are the
    activation's backward (PyTorch's own backward kernels), so they match autograd
    exactly. Everything is batched over the leading run axis ``S``.
    """

    def __init__(self, model, tensors):
        self.model = model
        self.shapes = model.layer_shapes
        self.offsets = [0]
        for out, inp in self.shapes:
            self.offsets.append(self.offsets[-1] + out * inp)
        # One operator shared by every run, or one per run (ProblemTensors.stack).
        self.tensors = tensors

    def layers(self, params: torch.Tensor) -> list[torch.Tensor]:
        size = params.shape[0]
        return [
            params[:, self.offsets[j] : self.offsets[j + 1]].view(size, out, inp)
            for j, (out, inp) in enumerate(self.shapes)
        ]

    def train_loss_and_gradient(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train (S,), dL_train/dparams (S, P))``.

        The gradient is written into a buffer reused across calls (one per ``params``).
        """
        if getattr(self, "_bound", None) is not params:
            # Views of the parameters and of a gradient buffer, made once: the
            # parameters are updated in place, so the views stay valid.
            self._bound = params
            self._layers = self.layers(params)
            self._grad = torch.empty_like(params)
            self._grad_layers = self.layers(self._grad)
            # Bound once (a few attribute lookups fewer per step on small models).
            model = self.model
            self._propagate, self._backward = model.propagate, model.activation_function.backward
            self._output_shape = (params.shape[0], model.rows, model.cols)
        layers, grads = self._layers, self._grad_layers
        pre, post = [], []
        # The factorization's forward pass, a_1 = W_1 (FactorizationModel.forward).
        product = self._propagate(layers[0], layers, pre=pre, post=post)
        size = params.shape[0]
        train, residual = self.tensors.train_loss_and_residual(product.view(size, -1))  # (S,), (S, m)
        upstream = self.tensors.train_gradient(residual).view(self._output_shape)
        backward = self._backward
        for j in range(len(layers) - 1, 0, -1):
            torch.bmm(upstream, post[j - 1].transpose(1, 2), out=grads[j])
            upstream = torch.bmm(layers[j].transpose(1, 2), upstream)
            upstream = backward(upstream, pre[j - 1], post[j - 1], grads[0] if j == 1 else None)
        if len(layers) == 1:  # depth 1: the parameter is W itself
            grads[0].copy_(upstream)
        return train, self._grad

    def outputs(self, params: torch.Tensor) -> torch.Tensor:
        """The model's outputs that the task scores, ``(S, ...)`` (:meth:`FactorizationModel.outputs`)."""
        return self.model.outputs(self.layers(params), self.tensors)

    def losses(self, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train, L_gen)``, each ``(S,)``."""
        return self.tensors.losses(self.outputs(params))

    def extra_metrics(self, params: torch.Tensor) -> dict[str, torch.Tensor]:
        """The task's metrics besides the losses (e.g. ``test_error``), each ``(S,)``.

        For a model that is a linear predictor ``w`` (a diagonal or deep linear network) on
        a task that scores one (:meth:`SupervisedTensors.linear_predictor_metrics`), also
        ``w``'s margins and sparsity.
        """
        layers = self.layers(params)
        outputs = self.model.outputs(layers, self.tensors)
        metrics = self.tensors.extra_metrics(outputs)
        if self.model.capabilities.linear_readout and "train_error" in metrics:
            # Chiang et al.'s normalized loss: G&C's binning sets GD beside G&C's states at the same value.
            metrics["normalized_train_loss"] = self.tensors.normalized_train_loss(outputs, layers)
        if self.model.capabilities.matrix_product:
            metrics["effective_rank"] = effective_rank(self.model.end_to_end(layers))
        w = self.model.linear_predictor(layers)
        if w is not None:
            metrics.update(self.tensors.linear_predictor_metrics(w))
        return metrics


class _AutogradObjective(_ClosedFormObjective):
    """The same objective through autograd: any model family's ``outputs`` and any task's losses.

    The general path: the factorization with a callable activation or the normalized
    output, and every other family (an MLP on supervised data).
    """

    def train_loss_and_gradient(self, params: torch.Tensor,
                                indices: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(L_train, dL_train/dparams)`` from the forward pass on the training points only
        (the task's training view: an MLP's test points are not run every step), or with ``indices``
        ``(S, b)`` on each run's minibatch of them (the mean loss on those ``b`` points)."""
        if indices is not None:
            training = self.tensors.minibatch(indices)
        else:
            training = getattr(self, "_training", None)
            if training is None:
                training = self._training = self.tensors.training_view()
        with torch.enable_grad():
            leaf = params.detach().requires_grad_(True)
            train = training.losses(self.model.outputs(self.layers(leaf), training))[0]
            (grad,) = torch.autograd.grad(train.sum(), leaf)
        return train.detach(), grad


def _as_list(problem) -> list[Problem]:
    return [problem] if isinstance(problem, Problem) else list(problem)


def _objective_for(model, problems, device, dtype) -> _ClosedFormObjective:
    if all(p is problems[0] for p in problems):
        tensors = problems[0].tensors(device, dtype)
    else:
        each = [p.tensors(device, dtype) for p in problems]
        tensors = type(each[0]).stack(each)  # one operator / data set per run
    # The hand-written gradient is the factorization's (linear measurements of W).
    closed_form = (model.capabilities.matrix_product and model.activation_function.has_backward
                   and not model.normalize)
    return (_ClosedFormObjective if closed_form else _AutogradObjective)(model, tensors)


@dataclass
class GDState:
    """What carries over between GD steps of a batch of ``S`` runs (updated in place).

    Attributes:
        params: ``(S, P)`` all layers of every run, flattened.
        transform: The step rule (:meth:`GradientDescent.transform`).
        transform_state: Its state (RMS averages, momentum buffers).
        objective: Training loss and gradient of every run.
        active: ``(S,)`` runs still training.
        converged: ``(S,)`` runs stopped by the loss threshold.
        steps_done: ``(S,)`` active steps of each run.
        zero_row: ``(P,)`` zeros (its first entry is the 0-d ``zero``).
        step: Steps taken by the batch.
        active_column: ``(S, 1)`` a view of ``active`` (made once: ``active`` changes in place).
        zero: 0-d zero of the parameters' dtype.
        mask_in_place: Zero stopped runs' gradients in place (large batches) or with ``where``.
    """

    params: torch.Tensor
    transform: GradientTransformation
    transform_state: Any
    objective: Any
    active: torch.Tensor
    converged: torch.Tensor
    steps_done: torch.Tensor
    zero_row: torch.Tensor
    step: int = 0
    active_column: torch.Tensor = None
    zero: torch.Tensor = None
    mask_in_place: bool = False
    #: Runs stopped by a failed preconditioner solve: run index -> the reason.
    failures: dict = dataclasses.field(default_factory=dict)
    #: With minibatches: each run's generator (from ``(seed, "minibatch")``) and its epoch's permutation.
    minibatches: "_Minibatches | None" = None

    def __post_init__(self) -> None:
        # Made once here: indexing or unsqueezing a tensor costs a microsecond a step.
        self.active_column = self.active.unsqueeze(1)
        self.zero = self.zero_row[0].clone()
        # Measured on the 2-core CPU: `where` 2.6 us vs 4.1 us at 8 x 100 parameters,
        # 10.4 us vs 6.5 us at 8 x 1600.
        self.mask_in_place = self.params.numel() > _MASK_IN_PLACE_ABOVE


class _Minibatches:
    """Each run's minibatches (the module docstring): one generator per run, epochs of random permutations.

    Attributes:
        size: Points per minibatch ``b``.
        count: Training points ``n``.
        generators: One per run, from ``(seed, "minibatch")``.
    """

    def __init__(self, size: int, count: int, seeds: Sequence[int], device: torch.device) -> None:
        self.size, self.count, self.device = size, count, device
        self.generators = [make_generator(seed, "minibatch") for seed in seeds]
        self.per_epoch = count // size
        self.position = self.per_epoch  # the first call starts an epoch
        self.orders: list[torch.Tensor] = []

    def next(self) -> torch.Tensor:
        """The step's minibatch of every run: indices into the training points, ``(S, b)``, each row sorted."""
        if self.position == self.per_epoch:
            self.orders = [torch.randperm(self.count, generator=generator) for generator in self.generators]
            self.position = 0
        start = self.position * self.size
        self.position += 1
        rows = [order[start:start + self.size].sort().values for order in self.orders]
        return torch.stack(rows).to(self.device)


class GDInfo(NamedTuple):
    """What one step logs: ``train_loss (S,)``, before the step's update."""

    train_loss: torch.Tensor


@dataclass(frozen=True)
class GradientDescent:
    """Full-batch GD on ``L_train`` from ``init_scale`` times the default linear init.

    Attributes:
        lr: Step size.
        init_scale: Multiplier of PyTorch's default uniform linear-layer initialization.
        step_rule: ``"gd"`` (plain), ``"group_rmsprop"`` (the paper's global adaptive step) or ``"adam"``
            (Adam, :func:`~volumelab.optimizers.transforms.scale_by_adam`; under muP with the model's Adam
            learning rates, :attr:`~volumelab.models.MLPModel.adam_learning_rate_multipliers`).
        momentum: Heavy-ball coefficient ``beta`` in ``[0, 1)``; 0 disables it (Adam has its own: 0 there).
        ema_decay: Decay of the squared-gradient-norm average (``group_rmsprop``).
        stability_eps: Added to the RMS in the denominator (``group_rmsprop``).
        batch_size: ``None`` (full-batch steps) or the points of each step's minibatch (module docstring);
            supervised data only, at most its training points.
        adam_beta1, adam_beta2, adam_eps: Adam's ``beta1``, ``beta2`` and ``eps`` (``adam`` only).
        train_loss_threshold: Stop a run once ``L_train`` falls below this.
        log_every: Steps between history entries; ``None`` gives about 200 entries.
        device: ``"auto" | "cpu" | "cuda"``.
        progress: Show a progress bar.
        initialization: ``"random"`` (default): the model's own initialization
            (:meth:`LayeredModel.initialize`), every depth its own draw; ``"balanced"``: the depth-1 model's draw
            (the same seed and ``init_scale``) written as balanced factors of this depth
            (:meth:`LayeredModel.initialize_balanced`), so every depth starts from the same end-to-end function.
            Defined for deep linear models only (a linear matrix factorization of width at least
            ``min(rows, cols)``, a deep linear or diagonal network): :meth:`model_mismatch` says why not. (Not
            ``init``: that is the method that makes the state; the command line spells it ``--init`` too.)
            ``"antisymmetric"``: an MLP's zero function, two opposite copies of a width-``k/2`` network, the same
            effective weights under every parametrization (:meth:`LayeredModel.initialize_antisymmetric`; depth
            at least 2, even width).

    What a run records besides its numbers (final layers and outputs, trajectories, the NTK
    and laziness) is an observer passed to :meth:`run`, :meth:`run_batch` or
    :meth:`run_sweep` (:mod:`volumelab.optimizers.observers`), not a setting of the optimizer.
    """

    lr: float
    init_scale: float = 1e-3
    step_rule: str = "gd"
    momentum: float = 0.0
    ema_decay: float = 0.99
    stability_eps: float = 1e-6
    batch_size: int | None = setting(
        None, minimum=1, count=True,
        doc="Points per minibatch (SGD; with --optimizer adam, Adam on minibatches), drawn per run from its "
            "seed; at most the training points [default: every point, full-batch steps].")
    adam_beta1: float = setting(0.9, minimum=0, maximum=1, exclusive=(False, True),
                                doc="Adam's decay of the gradient's average (beta1), in [0, 1).")
    adam_beta2: float = setting(0.999, minimum=0, maximum=1, exclusive=(False, True),
                                doc="Adam's decay of the squared gradient's average (beta2), in [0, 1).")
    adam_eps: float = setting(1e-8, minimum=0, exclusive=True,
                              doc="Adam's epsilon, added to the root of the second moment.")
    train_loss_threshold: float | None = None
    log_every: int | None = None
    device: str = "cpu"
    progress: bool = False
    initialization: str = setting(
        "random", choices=INITS, aliases=("init",),
        doc="random: each depth's own draw (init scale times the default init); balanced: the depth-1 draw as "
            "balanced factors, so every depth starts from the same function (deep linear models only); "
            "antisymmetric: an MLP's zero function from two opposite half-width copies, the same effective "
            "weights under every parametrization (depth >= 2, even width).")

    def __post_init__(self) -> None:
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise OptimizerError(f"lr must be a positive finite number, got {self.lr!r}")
        if not (math.isfinite(self.init_scale) and self.init_scale > 0):
            raise OptimizerError(f"init_scale must be a positive finite number, got {self.init_scale!r}")
        if self.step_rule not in STEP_RULES:
            raise OptimizerError(f"unknown step rule {self.step_rule!r}; expected one of {', '.join(STEP_RULES)}")
        if not 0 <= self.momentum < 1:
            raise OptimizerError(f"momentum must be in [0, 1), got {self.momentum!r}")
        if not 0 < self.ema_decay < 1:
            raise OptimizerError(f"ema_decay must be in (0, 1), got {self.ema_decay!r}")
        if self.train_loss_threshold is not None and not self.train_loss_threshold > 0:
            raise OptimizerError(f"train_loss_threshold must be positive, got {self.train_loss_threshold!r}")
        if self.log_every is not None and self.log_every < 1:
            raise OptimizerError(f"log_every must be a positive integer, got {self.log_every!r}")
        if self.initialization not in INITS:
            raise OptimizerError(f"unknown initialization {self.initialization!r}; expected one of {', '.join(INITS)}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool) or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise OptimizerError(f"batch_size must be a positive integer or None (full batch), got {self.batch_size!r}")
        for name in ("adam_beta1", "adam_beta2"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
                raise OptimizerError(f"{name} must be in [0, 1), got {value!r}")
        if isinstance(self.adam_eps, bool) or not isinstance(self.adam_eps, (int, float)) or not (
                math.isfinite(self.adam_eps) and self.adam_eps > 0):
            raise OptimizerError(f"adam_eps must be a positive finite number, got {self.adam_eps!r}")
        if self.step_rule == "adam" and self.momentum:
            raise OptimizerError(f"momentum {self.momentum!r} does not apply to step_rule adam (Adam averages the "
                                 "gradient itself: adam_beta1); use momentum 0")

    #: Whether a step multiplies each layer by the model's per-layer learning rate (muP's
    #: :attr:`~volumelab.models.MLPModel.learning_rate_multipliers`): part of GD under a parametrization; a
    #: preconditioner that is its own per-layer scaling (NGD's) sets it False. A class constant, never a setting.
    layer_learning_rates: ClassVar[bool] = True
    #: The ``RunResult.method`` of its runs, and its command (``volumelab gd``).
    method = "gd"
    #: What ``volumelab <method> --help`` says it is.
    summary = "Full-batch gradient descent from small initialization."
    #: What its runs return (:data:`TRAINER_SCHEMA`).
    schema = None  # set below, after the schema's text function

    @property
    def name(self) -> str:
        return self.step_rule + ("+momentum" if self.momentum else "")

    def run(self, problem: Problem, model: FactorizationModel, budget: int, seed: int = 0, *,
            observers: Sequence[Observer] = ()) -> RunResult:
        """Run ``budget`` full-batch steps; the initialization comes from ``(seed, "init")``.

        Returns:
            A :class:`RunResult` with metrics ``train_loss``, ``gen_loss`` (``None`` if
            the run diverged: its loss or a gradient entry became non-finite), ``steps``
            and ``diverged_at_step`` (the first step with a non-finite loss or gradient),
            and a history (``None`` entries after the step a run diverged at); what the
            ``observers`` record joins its metrics and arrays.
        """
        return self.run_batch([problem], model, budget, [seed], observers=observers)[0]

    def run_sweep(
        self,
        points: Sequence[tuple[Problem | Sequence[Problem], FactorizationModel]],
        budget: int,
        seeds: Sequence[int],
        *,
        workers: int | None = None,
        observers: Sequence[Observer] = (),
    ) -> list[list[RunResult]]:
        """Run every ``(problem, model)`` point for all ``seeds``.

        Each point is one batch of its seeds (:meth:`run_batch`), so its results depend
        only on its own problem, model, budget and seeds: never on the other points of
        the sweep, nor on ``workers``. On the CPU the points run on ``workers`` threads
        (default 1: small GD batches spend their time in Python dispatch, which holds
        the GIL; measured on 2 cores, 6 widths took 10.1 s on one thread and 13.8 s on
        two; use processes, as the sweep driver does, to use cores).

        Args:
            points: ``(problem or one problem per seed, model)`` pairs.
            budget: Number of steps of every run.
            seeds: Seeds of every point.
            workers: Threads on the CPU; ``None`` means 1.
            observers: What to record besides the numbers (:mod:`volumelab.optimizers.observers`).

        Returns:
            One list of :class:`RunResult` per point, in seed order.
        """
        if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise OptimizerError(f"workers must be a positive integer or None, got {workers!r}")
        points, observers = list(points), check_observers(observers)
        if resolve_device(self.device).type != "cpu":
            return [self.run_batch(_as_list(problem), model, budget, seeds, observers=observers)
                    for problem, model in points]

        def work(index: int) -> list[RunResult]:
            problem, model = points[index]
            return self._run_batch(_as_list(problem), model, budget, seeds, observers)

        count = min(workers or 1, len(points))
        return list(map_in_threads(work, len(points), count))

    def run_batch(
        self, problems: Sequence[Problem], model: FactorizationModel, budget: int, seeds: Sequence[int], *,
        observers: Sequence[Observer] = (),
    ) -> list[RunResult]:
        """Run one GD per ``(problem, seed)`` pair, all advancing together as one batch.

        Args:
            problems: One problem per run (all of the model's shape), or a single problem
                shared by every seed.
            model: The factorization.
            budget: Number of steps.
            seeds: One seed per run; run ``i`` starts from ``(seeds[i], "init")``.
            observers: What to record besides the numbers (:mod:`volumelab.optimizers.observers`).
        """
        observers = check_observers(observers)
        if resolve_device(self.device).type == "cpu":
            # On the CPU a batch always runs on one thread with one intra-op thread: small
            # tensors gain nothing from more, and the result then cannot depend on
            # torch.set_num_threads (nor differ from the same point in run_sweep).
            return list(map_in_threads(lambda _index: self._run_batch(problems, model, budget, seeds, observers),
                                       1, 1))[0]
        return self._run_batch(problems, model, budget, seeds, observers)

    def model_mismatch(self, model) -> str | None:
        """Why this optimizer, as set, cannot train ``model`` (the balanced start is not defined for it), or
        ``None``. :meth:`init` raises it; a sweep checks it when it is planned."""
        if self.initialization == "balanced":
            return model.balanced_mismatch()
        if self.initialization == "antisymmetric":
            return model.antisymmetric_mismatch()
        return None

    def run_diagnostics(self, problems: Sequence[Problem], num_parameters: int) -> dict:
        """Settings a subclass adds to every run's diagnostics (none here)."""
        return {}

    # ------------------------------------------------------------ the step rule
    def preconditioner(self) -> GradientTransformation:
        """The preconditioner slot of the chain: identity (``gd``), the global RMS scalar (``group_rmsprop``) or
        Adam's per-coordinate scaling (``adam``).

        Subclasses (e.g. a natural-gradient optimizer) return their own transform here.
        """
        if self.step_rule == "group_rmsprop":
            return scale_by_group_rms(decay=self.ema_decay, eps=self.stability_eps)
        if self.step_rule == "adam":
            return scale_by_adam(beta1=self.adam_beta1, beta2=self.adam_beta2, eps=self.adam_eps)
        return identity()

    def transform(self) -> GradientTransformation:
        """The whole step rule: gradient -> preconditioner -> momentum -> step size."""
        parts = [self.preconditioner()]
        if self.momentum:
            parts.append(trace_momentum(self.momentum))
        parts.append(scale_by_learning_rate(self.lr))
        return chain(*parts)

    # --------------------------------------------------------- init and step
    def init(self, problems: Sequence[Problem], model: FactorizationModel, seeds: Sequence[int]) -> GDState:
        """The state before the first step: one run per ``(problem, seed)``, initialized from ``(seed, "init")``
        (the model's own draw, or with ``initialization="balanced"`` the depth-1 model's draw as balanced factors).

        Args:
            problems: One problem per run (all of the model's shape), or a single problem
                shared by every seed.
            model: The factorization.
            seeds: One seed per run.
        """
        seeds = list(seeds)
        problems = list(problems)
        if len(problems) == 1 and len(seeds) > 1:
            problems = problems * len(seeds)
        if not seeds or len(problems) != len(seeds):
            raise OptimizerError(f"need one problem per seed, got {len(problems)} problems and {len(seeds)} seeds")
        for problem in problems:
            mismatch = model.problem_mismatch(problem)
            if mismatch:
                raise OptimizerError(mismatch)
        mismatch = self.model_mismatch(model)
        if mismatch:
            raise OptimizerError(mismatch)
        if len({p.num_train for p in problems}) != 1 or len({p.num_test for p in problems}) != 1:
            raise OptimizerError("problems in one batch must have the same number of measurements")
        if self.batch_size is not None:
            if problems[0].task != "supervised":
                raise OptimizerError(f"batch_size {self.batch_size} needs supervised data (points to draw "
                                     f"minibatches from); this problem is a {problems[0].task} task")
            if self.batch_size > problems[0].num_train:
                raise OptimizerError(f"batch_size {self.batch_size} is more than the {problems[0].num_train} "
                                     "training points")
        device = resolve_device(self.device)
        dtype = torch.float64
        size = len(seeds)
        objective = _objective_for(model, problems, device, dtype)
        start = {"balanced": model.initialize_balanced,
                 "antisymmetric": model.initialize_antisymmetric}.get(self.initialization, model.initialize)
        inits = [start(self.init_scale, make_generator(s, "init"), dtype=dtype) for s in seeds]
        # All layers of all runs live in one (S, P) buffer, so the step rule is a handful
        # of whole-buffer operations instead of a few per layer.
        params = torch.stack([torch.cat([layer.reshape(-1) for layer in init]) for init in inits]).to(device)
        transform = self.transform()
        row = self._learning_rate_row(model, dtype)
        if row is not None:
            transform = chain(transform, scale_by_parameter(row))
        return GDState(
            params=params, transform=transform, transform_state=transform.init(params), objective=objective,
            active=torch.ones(size, dtype=torch.bool, device=device),
            converged=torch.zeros(size, dtype=torch.bool, device=device),
            steps_done=torch.zeros(size, dtype=torch.long, device=device),
            zero_row=torch.zeros(params.shape[1], dtype=dtype, device=device),
            minibatches=None if self.batch_size is None else _Minibatches(
                self.batch_size, problems[0].num_train, seeds, device),
        )

    def _learning_rate_row(self, model, dtype: torch.dtype) -> torch.Tensor | None:
        """Each parameter's learning-rate factor ``(P,)`` under the model's parametrization (muP's per-layer rates:
        :attr:`~volumelab.models.MLPModel.learning_rate_multipliers`, with Adam
        :attr:`~volumelab.models.MLPModel.adam_learning_rate_multipliers`), or ``None`` where every factor is 1."""
        if not self.layer_learning_rates:
            return None
        if self.step_rule == "adam":
            pairs = model.adam_learning_rate_multipliers
        else:
            pairs = [(rate, rate) for rate in model.learning_rate_multipliers]
        if all(weights == 1.0 and bias == 1.0 for weights, bias in pairs):
            return None
        blocks = []
        for (out, inp), (weights, bias_rate) in zip(model.layer_shapes, pairs):
            block = torch.full((out, inp), weights, dtype=dtype)
            if bias_rate != weights:
                block[:, -1] = bias_rate  # only a model with biases has a bias rate of its own: its last column
            blocks.append(block.reshape(-1))
        return torch.cat(blocks)

    def step(self, state: GDState, key: torch.Generator | None = None) -> tuple[GDState, GDInfo]:
        """One step of every active run (in place). Full-batch GD uses no randomness; minibatches come from each
        run's own generator in the state (``key`` is unused).

        A run is active for steps 0 .. s-1 and stops at step s: its loss is below
        ``train_loss_threshold`` (converged), or its loss or some gradient entry is not
        finite (diverged). A stopped run is frozen: its update is exactly zero. With
        minibatches, "its loss" is the step's minibatch loss.

        Returns:
            The state and :class:`GDInfo` (the training losses before the step: the minibatch's with minibatches).
        """
        if state.minibatches is None:
            train, grad = state.objective.train_loss_and_gradient(state.params)
        else:
            train, grad = state.objective.train_loss_and_gradient(state.params, state.minibatches.next())
        active = state.active
        threshold = self.train_loss_threshold
        if threshold is not None:
            # A non-finite loss is never below the threshold.
            reached = active & (train < threshold)
            state.converged.logical_or_(reached)
            active.logical_and_(~reached)
        # Every other run whose loss or some gradient entry is not finite diverges here.
        zero = state.zero
        # ||g||^2 is +inf or NaN exactly when an entry is not finite (or the norm overflows
        # float64, which would overflow the step's statistics too); adding the loss makes
        # one finiteness test for both. The transforms reuse ||g||^2 (StepContext.squared_norm).
        squared_norm = torch.linalg.vecdot(grad, grad)
        # 0 * x is 0 for finite x and NaN for infinite or NaN x: the probe is 0 exactly
        # when both are finite (cheaper than isfinite on small batches).
        probe = torch.mul(squared_norm, zero).addcmul_(train, zero)
        active.logical_and_(probe == probe)
        # A stopped run's gradient is replaced (not multiplied: it may be non-finite) by
        # zero, and so is its momentum, so its update is exactly zero and none of its
        # statistics can turn non-finite: it stays frozen. An active run's gradient is
        # finite (the probe), so it passes unchanged. Both forms give the same numbers;
        # `where` is cheaper on small batches, the two in-place passes on large ones.
        if state.mask_in_place:
            grad = torch.nan_to_num_(grad, nan=0.0, posinf=0.0, neginf=0.0).mul_(state.active_column)
        else:
            grad = torch.where(state.active_column, grad, zero)
        context = StepContext(state.step, active, state.params, state.objective, grad, squared_norm, zero)
        update, state.transform_state = state.transform.update(Update(grad), state.transform_state, context)
        if context.failures:  # a preconditioner stopped these runs (their update rows are zero)
            state.failures.update(context.failures)
        if update.factor is None:
            state.params.sub_(update.direction)
        else:
            state.params.addcmul_(update.direction, update.factor, value=-1.0)
        state.steps_done.add_(active)
        state.step += 1
        return state, GDInfo(train)

    def _run_batch(
        self, problems: Sequence[Problem], model: FactorizationModel, budget: int, seeds: Sequence[int],
        observers: tuple[Observer, ...] = (),
    ) -> list[RunResult]:
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise OptimizerError(f"the number of steps must be a non-negative integer, got {budget!r}")
        seeds = list(seeds)
        state = self.init(problems, model, seeds)
        objective, size, device = state.objective, len(seeds), state.params.device
        log_every = self.log_every or max(1, budget // 200)
        logged: list[tuple[int, torch.Tensor, torch.Tensor]] = []
        start = time.perf_counter()

        context = TrainingContext(self, objective, budget, state.params.clone()) if observers else None
        recordings = [observer.start(context) for observer in observers]
        per_step = [recording for observer, recording in zip(observers, recordings) if observer.per_step]
        with tqdm(total=budget, unit="step", disable=not self.progress, desc=f"GD ({self.name})") as bar:
            for step in range(budget):
                for recording in per_step:
                    recording.before_step(step, state.params)
                losses = objective.losses(state.params) if step % log_every == 0 else None
                state, info = self.step(state)
                if losses is not None:
                    # Both before the step's update; with minibatches the training loss on every point.
                    logged.append((step, info.train_loss if state.minibatches is None else losses[0], losses[1]))
                # A host sync only every few steps: a run that stopped is frozen, so the
                # extra steps change nothing but the log, which is cut back to the step
                # where the last run stopped.
                if (step % _CHECK_EVERY == 0 or step == budget - 1) and not bool(state.active.any()):
                    break
                bar.update(1)
        active, params, steps_done, converged = state.active, state.params, state.steps_done, state.converged
        if not bool(active.any()) and logged:
            last_step = int(steps_done.max())
            logged = [entry for entry in logged if entry[0] <= last_step]
        train, gen = objective.losses(params)
        extra = {name: values.cpu().tolist() for name, values in objective.extra_metrics(params).items()}
        for recording in recordings:
            recording.finish(params)
        logged.append((int(steps_done.max()), train, gen))
        history = {
            "step": [entry[0] for entry in logged],
            "train_loss": torch.stack([entry[1] for entry in logged]).cpu().tolist(),
            "gen_loss": torch.stack([entry[2] for entry in logged]).cpu().tolist(),
        }
        stopped = (~active).cpu().tolist()
        converged = converged.cpu().tolist()
        steps_done = steps_done.cpu()
        diverged_at = [int(steps_done[i]) if stopped[i] and not converged[i] else None for i in range(size)]
        converged_at = [int(steps_done[i]) if converged[i] else None for i in range(size)]
        seconds = time.perf_counter() - start
        run_diagnostics = self.run_diagnostics(problems, state.params.shape[1])
        results = []
        failures = state.failures
        for i, seed in enumerate(seeds):
            final_train = float(train[i])
            final_gen = float(gen[i])
            if i in failures:
                # The preconditioner's solve failed (a singular system, CG out of budget):
                # the run stopped there and has no result, like a diverged one.
                status = "solve_failed"
                final_train = final_gen = None
                extra_values = {name: None for name in extra}
            elif diverged_at[i] is not None or not (math.isfinite(final_train) and math.isfinite(final_gen)):
                status = "diverged"
                if diverged_at[i] is None:
                    diverged_at[i] = int(steps_done[i])
                final_train = final_gen = None
                extra_values = {name: None for name in extra}
            elif converged_at[i] is not None:
                status = "converged"
            else:
                status = "completed"
            no_result = status in ("diverged", "solve_failed")
            metrics = {
                "train_loss": final_train,
                "gen_loss": final_gen,
                "steps": int(steps_done[i]),
                "diverged_at_step": diverged_at[i] if status == "diverged" else None,
                # A metric that does not exist for this run (the sparsity of w = 0) is None.
                **(extra_values if no_result else {name: values[i] if math.isfinite(values[i]) else None
                                                   for name, values in extra.items()}),
            }
            run_history = {
                "step": list(history["step"]),
                "train_loss": [row[i] for row in history["train_loss"]],
                "gen_loss": [row[i] for row in history["gen_loss"]],
            }
            if no_result:
                # After the step it stopped at, the run is frozen: it has no losses there.
                for key in ("train_loss", "gen_loss"):
                    run_history[key] = [None if logged_step > int(steps_done[i]) else value
                                        for logged_step, value in zip(history["step"], run_history[key])]
            diagnostics = {
                "optimizer": self.name,
                "lr": self.lr,
                "init_scale": self.init_scale,
                "momentum": self.momentum,
                # Only where set: the diagnostics of runs from the random start stay as they were.
                **({"initialization": self.initialization} if self.initialization != "random" else {}),
                **({"batch_size": self.batch_size} if self.batch_size is not None else {}),
                "device": str(device),
                "seed": seed,
                "batch": size,
                "seconds": seconds,
                **run_diagnostics,
            }
            # The status says it (and a sweep's report counts such runs): a line on the terminal per run would
            # only be noise in a sweep that maps where training diverges; shown with -v.
            if status == "diverged":
                logger.info("%s (seed %d) diverged at step %s", self.method.upper(), seed, diverged_at[i])
            if status == "solve_failed":
                metrics["failed_at_step"] = int(steps_done[i])
                diagnostics["failure"] = failures[i]
                logger.info("%s (seed %d) stopped at step %d: %s", self.method.upper(), seed,
                               int(steps_done[i]), failures[i])
            outcome = RunOutcome(i, not no_result, run_history["train_loss"][0], final_train, int(steps_done[i]))
            arrays = {}
            for recording in recordings:
                metrics.update(recording.metrics(outcome))
                if not no_result:
                    arrays.update(recording.arrays(i))
            results.append(RunResult(self.method, status, metrics, {}, run_history, diagnostics, arrays))
        return results


def _trainer_text(result: RunResult, scored: str) -> list[str]:
    metrics = result.metrics
    lines = [f"{result.method.upper()} ({result.diagnostics['optimizer']}) {result.status} after "
             f"{metrics['steps']:,} steps"]
    if result.status == "solve_failed":
        lines.append(f"stopped: {result.diagnostics['failure']}")
    lines.append(f"train loss:           {format_value(metrics['train_loss'])}")
    lines.append(f"{scored}:".ljust(22) + format_value(metrics['gen_loss']))
    if "test_error" in metrics:
        lines.append("test error:".ljust(22) + format_value(metrics["test_error"]))
    return lines


#: What a GD or NGD run returns. Exact values of one run (no standard errors): a sweep's seeds give the spread.
TRAINER_SCHEMA = ResultSchema(
    metrics=(
        Metric("train_loss", "final training loss; None when the run diverged or its solve failed", kind="value"),
        Metric("gen_loss", "final generalization (test) loss; None as train_loss", kind="value"),
        Metric("steps", "steps taken", kind="count"),
        Metric("diverged_at_step", "the first step with a non-finite loss or gradient; None unless diverged",
               kind="value"),
        Metric("failed_at_step", "the step whose preconditioner solve failed (NGD)", kind="value",
               when="solve_failed runs"),
        Metric("flow_time", "the time natural gradient flow was integrated to (lr x steps)", kind="value",
               when="NGD with flow"),
        Metric("flow_steps", "the flow integrator's accepted steps", kind="count", when="NGD with flow"),
        Metric("flow_evaluations", "natural-gradient solves the flow integrator made", kind="count",
               when="NGD with flow"),
        Metric("train_error", "final training error", kind="value", when="classification tasks"),
        Metric("test_error", "final test error", kind="value", when="classification tasks"),
        Metric("normalized_train_loss", "final training loss of the outputs divided by the product of the layers' "
               "Frobenius norms (Chiang et al. 2023)", kind="value", when="MLP classifiers"),
        Metric("effective_rank", "effective rank of the end-to-end matrix W", kind="value",
               when="matrix-product families"),
        Metric("sparsity", "||w||_1^2 / ||w||_2^2 of the linear predictor w (1: one non-zero entry; d: all equal)",
               kind="value",
               when="linear predictors on supervised data"),
        Metric("margin_l2", "min_i y_i <w, x_i> / ||w||_2", kind="value", when="linear predictors, logistic loss"),
        Metric("margin_l1", "min_i y_i <w, x_i> / ||w||_1", kind="value", when="linear predictors, logistic loss"),
        Metric("cos_l2_margin", "cosine of w with the l2 max-margin direction of the training set (hard-margin "
               "SVM without intercept: GD's limit on separable data)", kind="value",
               when="the LimitDirections observer (linear predictors, logistic loss)"),
        Metric("cos_l1_margin", "cosine of w with the l1 max-margin direction of the training set", kind="value",
               when="the LimitDirections observer (linear predictors, logistic loss)"),
        Metric("cos_min_norm", "cosine of w with the minimum-norm interpolant of the labels (X w = y)",
               kind="value", when="the LimitDirections observer, where the labels are in X's range (n <= d)"),
        Metric("ntk_lambda_min", "smallest eigenvalue of the NTK at the start", kind="value",
               when="the NTKLaziness observer"),
        Metric("ntk_lambda_max", "largest eigenvalue of the NTK at the start", kind="value",
               when="the NTKLaziness observer"),
        Metric("ntk_change", "||K_T - K_0||_F / ||K_0||_F", kind="value", when="the NTKLaziness observer"),
        Metric("param_change", "||theta_T - theta_0|| / ||theta_0||", kind="value",
               when="the NTKLaziness observer"),
        Metric("loss_rate", "measured rate ln(L_0 / L_T) / T of the training loss", kind="value",
               when="the NTKLaziness observer"),
        Metric("predicted_rate", "-2 ln rho, the rate the linearized dynamics with the NTK at the start predict",
               kind="value",
               when="the NTKLaziness observer"),
        Metric("kernel_gen_loss", "test loss of the kernel predictor f_0 + K(x, X) K(X, X)^-1 (y - f_0(X)) of the "
               "NTK at the start", kind="value", when="the KernelRegression observer"),
        Metric("kernel_distance", "||f_T - f_K|| / ||f_K - f_0|| on the test inputs (f_K: the kernel predictor)",
               kind="value", when="the KernelRegression observer"),
        Metric("param_distance", "||theta_T - theta_0||", kind="value", when="the KernelRegression observer"),
        Metric("min_norm_distance", "sqrt((y - f_0)^T K^-1 (y - f_0)), the least ||theta - theta_0|| with which "
               "the linearized model fits the training set", kind="value", when="the KernelRegression observer"),
        Metric("distance_ratio", "param_distance / min_norm_distance", kind="value",
               when="the KernelRegression observer"),
    ),
    statuses={"completed": "ran every step", "converged": "stopped at train_loss_threshold",
              "diverged": "a loss or gradient became non-finite: no losses", "solve_failed":
              "NGD's preconditioner solve failed: no losses",
              "integration_failed": "NGD's flow integrator gave up (its step fell below its minimum): no losses"},
    text=_trainer_text,
)
GradientDescent.schema = TRAINER_SCHEMA

_TRAINERS: dict[str, type] = {}


def register_trainer(trainer: type) -> type:
    """Offer ``trainer`` (a :class:`GradientDescent` subclass) as the command ``volumelab <trainer.method>``, with
    GD's options and one option per field of its own made by :func:`volumelab.settings.setting`."""
    if not (isinstance(trainer, type) and issubclass(trainer, GradientDescent)):
        raise TypeError(f"{trainer!r} is not a GradientDescent subclass")
    _TRAINERS[trainer.method] = trainer
    return trainer


def trainers() -> dict[str, type]:
    """The registered trainers by command name, in registration order."""
    return dict(_TRAINERS)


register_trainer(GradientDescent)
