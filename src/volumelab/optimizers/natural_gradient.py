"""Natural gradient descent: GD preconditioned by the generalized Gauss-Newton matrix.

    theta <- theta - lr (G + lambda I)^{-1} grad L,        G = J^T diag(h) J

``J`` is the Jacobian of the outputs the Fisher averages over in the parameters, and
``h`` the loss's second derivative in each of them: ``2/m`` for the mean squared loss,
``sigmoid(z) sigmoid(-z) / n`` for the logistic one (the task's :meth:`loss_derivatives`).
For these losses ``G`` is the Fisher information. The gradient is always the training
loss's. Which outputs (``fisher``, :func:`_fisher_rows`):

* ``train``: the outputs the training loss sees (``z_i = <A_i, W>`` for a matrix task,
  ``z_i = f(x_i)`` on the training inputs): NGD is invariant only in those ``m``
  outputs, and the parametrization decides the rest;
* ``population``: the model's Fisher over the input distribution, as in arXiv
  2111.11542, where NGD follows nearly the same path in function space whatever the
  parametrization, so depth cannot shape its solution: every entry of a factorization's
  ``W`` (``output`` is its other name), or for supervised data an unlabeled pool of
  inputs drawn like the training inputs;
* ``train`` with ``M`` unlabeled inputs: the average over the training inputs and them.

It is the preconditioner of GD's chain (:mod:`volumelab.optimizers.transforms`), so
momentum and the adaptive step compose with it. Three solves of the same system:

* ``dense``: form ``G + lambda I`` (``P x P``) and solve it (small models);
* ``dual``: with ``grad L = J^T e`` (``e = dL/dz``), ``d = J^T v`` where
  ``(diag(h) J J^T + lambda I) v = e``: an ``m x m`` system, for more parameters than
  outputs (the push-through identity; with ``lambda = 0`` it is the minimum-norm
  solution of ``G d = grad L``, the pseudo-inverse);
* ``cg``: conjugate gradients on ``(G + lambda I) d = grad L`` with ``G v`` from one
  Jacobian-vector and one vector-Jacobian product (``torch.func``), for models too large
  for either.

``auto`` picks ``dual`` when the Fisher has fewer outputs than there are parameters and
``dense`` otherwise. A solve that fails (a system singular relative to its scale, CG out
of its iteration budget, non-finite numbers) stops that run with status
``"solve_failed"`` and the reason in its diagnostics; it never returns a made-up step.

The runs of a batch are solved together (:func:`natural_gradient_directions`), as GD
batches its seeds: one Jacobian call per step for all runs (a vector-Jacobian product
``vmap``-ed over the output directions through the batched forward pass; on supervised
data the per-example gradients, ``vmap``-ed over the inputs, or for an MLP its layers'
outer-product factors from one forward and backward pass, from which ``J J^T`` and
``J^T v`` are formed without the per-example Jacobian: :class:`_OuterProductJacobian`),
one batched Cholesky factorization of the dense ``J^T H J + lambda I`` or of the symmetrized dual
``H^1/2 J J^T H^1/2 + lambda I`` (:func:`_symmetric_dual`: the same ``d`` as the
non-symmetric ``diag(h) J J^T`` in exact arithmetic, without its rows shrinking with
``h``), and CG iterated for every run at once. A run whose system is not finite or is
singular relative to its scale, or whose CG stalls, fails alone; the other runs' numbers
are those they would have alone (to rounding: tested to 1e-10 in float64 against the
per-run path, :func:`natural_gradient_direction`, kept as the plain reference and
selectable with :attr:`NaturalGradientDescent.per_run_solves`). Measured in
``benchmarks/ngd_solves.py``.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._rng import make_generator
from ..settings import setting
from ..errors import OptimizerError
from .gradient import GradientDescent, register_trainer
from .transforms import GradientTransformation, StepContext, Update, chain

__all__ = ["DAMPING_SCALES", "DEFAULT_UNLABELED", "FISHERS", "NaturalGradientDescent", "SOLVES", "UNLABELED_ATTRIBUTE",
           "UNOBSERVED_ATTRIBUTE", "damping_at", "gauss_newton_matrix", "natural_gradient_direction",
           "natural_gradient_directions", "scale_by_natural_gradient"]

SOLVES = ("auto", "dense", "dual", "cg")

#: How the damping is scaled (:func:`natural_gradient_directions`): ``fixed`` (``lambda`` as given) or
#: ``curvature`` (``lambda`` times the Fisher's mean curvature relative to its value at zero outputs).
DAMPING_SCALES = ("fixed", "curvature")

#: A system whose smallest singular value is at most this share of its largest is treated as
#: singular: without damping on the per-run path; on the batched path, the damped system's
#: (so also where the damping is negligible next to the system's scale).
_SINGULAR_RTOL = 1e-12


class SolveFailed(Exception):
    """The natural-gradient system of one run could not be solved (the message says why)."""


FISHERS = ("population", "train", "output")

#: Unlabeled inputs of a supervised problem's population Fisher when ``unlabeled`` is not
#: given (see :class:`NaturalGradientDescent`; measured in its docstring). Runs store
#: ``unlabeled: None`` in their key, so changing this number needs a key migration
#: (:mod:`volumelab.experiments.keys`) for stored population runs.
DEFAULT_UNLABELED = 4096


def _outputs_function(objective, run: int, fisher: str):
    """``theta (P,) -> z``: what the Fisher is taken over, as a function of run ``run``'s parameters.

    ``"train"``: the ``m`` outputs the training loss sees; ``"output"``: every output of
    the model (all entries of a factorization's ``W``).
    """
    tensors = objective.tensors.run(run)
    model = objective.model
    if fisher in ("output", "population"):  # population: a factorization's is its output Fisher
        if not model.scores_array:
            raise OptimizerError(f"the per-run path's {fisher} Fisher is a factorization's; a supervised model's "
                                 f"population Fisher needs unlabeled inputs (natural_gradient_directions)")
        def all_outputs(theta: torch.Tensor) -> torch.Tensor:
            layers = objective.layers(theta.unsqueeze(0))
            return model.outputs(layers, tensors)[0].reshape(-1)

        return all_outputs, tensors
    # The training points only: an MLP's outputs on the test points are not differentiated.
    training = tensors.training_view()

    def train_outputs(theta: torch.Tensor) -> torch.Tensor:
        layers = objective.layers(theta.unsqueeze(0))
        return training.train_outputs(model.outputs(layers, training))[0]

    return train_outputs, tensors


def _derivatives(tensors, outputs: torch.Tensor, fisher: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(dL/dz, h)`` in the outputs ``z`` the Fisher is over.

    ``"train"``: the task's first and second loss derivatives. ``"output"``: the
    gradient of the training loss in every output (``A^T dL/dz_train`` for a matrix task)
    and ``h = 1``, the Fisher of a unit-variance Gaussian over all outputs.
    """
    if fisher == "train":
        return tensors.loss_derivatives(outputs)
    train, pullback = torch.func.vjp(tensors.train_outputs, outputs)  # output, population (factorizations)
    first, _second = tensors.loss_derivatives(train)
    return pullback(first)[0], torch.ones_like(outputs)


def _pick(solve: str, num_outputs: int, num_parameters: int) -> str:
    if solve != "auto":
        return solve
    return "dual" if num_outputs < num_parameters else "dense"


def natural_gradient_direction(objective, params: torch.Tensor, gradient: torch.Tensor, run: int, *,
                               damping: float, solve: str = "auto", cg_tol: float = 1e-10,
                               cg_max_iter: int | None = None, fisher: str = "train") -> tuple[torch.Tensor, str]:
    """``(G + damping I)^{-1} gradient`` for run ``run``, and the solve used: the plain per-run path.

    One ``jacrev`` per call, the dual by LU of the non-symmetric ``diag(h) J J^T + lambda I``
    and the singularity check at ``damping == 0`` only: the code NGD ran before its runs
    were batched, kept as the reference :func:`natural_gradient_directions` is tested and
    benchmarked against.

    Args:
        objective: GD's objective (its model, task tensors and parameter layout).
        params: ``(P,)`` the run's parameters.
        gradient: ``(P,)`` the vector to precondition (the run's gradient).
        run: The run's index in the batch (which task tensors it uses).
        damping: ``lambda >= 0``.
        solve: ``"auto" | "dense" | "dual" | "cg"``.
        cg_tol: CG stops when the residual is below ``cg_tol`` times ``||gradient||``.
        cg_max_iter: CG's iteration budget (default ``3 P``: exact arithmetic needs at most
            ``P``, rounding on ill-conditioned systems more).
        fisher: ``"train"`` (the Gauss-Newton matrix of the outputs the loss sees) or
            ``"output"`` / ``"population"`` of a factorization (``J^T J`` over every output of
            the model, its whole ``W``: the Fisher over the input distribution). Unlabeled
            inputs (a supervised population Fisher) need the batched path.

    Raises:
        SolveFailed: the system is singular without damping, CG did not converge, or the
            result is not finite.
    """
    function, tensors = _outputs_function(objective, run, fisher)
    num_parameters = params.numel()
    with torch.enable_grad():
        outputs = function(params)
    first, second = _derivatives(tensors, outputs.detach(), fisher)
    method = _pick(solve, outputs.numel(), num_parameters)
    if method == "cg":
        direction = _cg(function, params, gradient, second, damping, cg_tol, cg_max_iter or 3 * num_parameters)
    else:
        jacobian = torch.func.jacrev(function)(params)  # (m, P)
        if method == "dense":
            direction = _dense(jacobian, second, gradient, damping)
        else:
            direction = _dual(jacobian, second, first, damping)
    if not bool(torch.isfinite(direction).all()):
        raise SolveFailed(f"the {method} solve gave non-finite numbers")
    return direction, method


def _solve_damped(system: torch.Tensor, rhs: torch.Tensor, damping: float, name: str, why: str) -> torch.Tensor:
    """``(system + damping I)^{-1} rhs``; without damping, a singular ``system`` is a :class:`SolveFailed`."""
    size = system.shape[0]
    if damping == 0:
        singular_values = torch.linalg.svdvals(system)
        if float(singular_values[-1]) <= _SINGULAR_RTOL * float(singular_values[0]):
            raise SolveFailed(f"the {name} ({size} x {size}) is singular ({why}); set damping > 0")
    system = system + damping * torch.eye(size, dtype=system.dtype, device=system.device)
    solution, info = torch.linalg.solve_ex(system, rhs)
    if int(info) != 0:
        raise SolveFailed(f"the damped {name} is singular; raise the damping")
    return solution


def _dense(jacobian, second, gradient, damping):
    system = jacobian.T @ (second.unsqueeze(1) * jacobian)  # G = J^T diag(h) J, (P, P)
    return _solve_damped(system, gradient, damping, "Gauss-Newton matrix",
                         "more parameters than training outputs, or a degenerate point")


def _dual(jacobian, second, first, damping):
    system = second.unsqueeze(1) * (jacobian @ jacobian.T)  # diag(h) J J^T, (m, m)
    coefficients = _solve_damped(system, first, damping, "output-space system",
                                 "more training outputs than parameters, or a rank-deficient Jacobian")
    return jacobian.T @ coefficients


def _cg(function, params, gradient, second, damping, tolerance, max_iter):
    _outputs, pullback = torch.func.vjp(function, params)

    def product(vector: torch.Tensor) -> torch.Tensor:
        _, pushed = torch.func.jvp(function, (params,), (vector,))
        return pullback(second * pushed)[0] + damping * vector

    solution = torch.zeros_like(gradient)
    residual = gradient.clone()
    direction = residual.clone()
    norm_sq = float(residual @ residual)
    target = (tolerance * math.sqrt(float(gradient @ gradient))) ** 2
    for _ in range(max_iter):
        if norm_sq <= target:
            return solution
        image = product(direction)
        curvature = float(direction @ image)
        if not curvature > 0:
            raise SolveFailed("CG met a direction of zero curvature: the Gauss-Newton matrix is singular "
                              "without damping; set damping > 0")
        step = norm_sq / curvature
        solution = solution + step * direction
        residual = residual - step * image
        new_norm_sq = float(residual @ residual)
        direction = residual + (new_norm_sq / norm_sq) * direction
        norm_sq = new_norm_sq
    if norm_sq <= target:
        return solution
    raise SolveFailed(f"CG did not converge in {max_iter} iterations (relative residual "
                      f"{math.sqrt(norm_sq / max(float(gradient @ gradient), 1e-300)):.2g}); raise the damping "
                      "or the iteration budget")


# ------------------------------------------------------------------ batched (the default path)
def _train_outputs_of(tensors, outputs: torch.Tensor) -> torch.Tensor:
    """``tensors.train_outputs`` of a batch of runs' outputs ``(S, N)``: ``(S, m)``, each run with its own
    operator or data when the tensors are stacked (a plain ``matmul`` would broadcast every run against every
    operator)."""
    if tensors.stacked:
        return tensors.train_outputs(outputs.unsqueeze(-2)).squeeze(-2)
    return tensors.train_outputs(outputs)


@dataclass
class _FisherRows:
    """What a Fisher averages over, for every run of a batch: ``G = J^T diag(h) J`` and ``grad L = J^T e``.

    Attributes:
        function: ``layers -> z (S, m)``, the outputs (rows) as a function of the layers
            ``(S, out, in)`` (:meth:`objective.layers` of the ``(S, P)`` parameters). Row ``s``
            depends on run ``s``'s layers only (the models' forward passes are batched over
            the run axis), so the Jacobian of row ``s`` in run ``s``'s parameters is run ``s``'s.
            Differentiating the layers rather than the flat parameters spares autograd a
            zero-filled ``(S, P)`` gradient per layer (the backward of slicing), per direction.
        derivatives: ``z -> (e, h)``, each ``(S, m)``.
        inputs: The rows' inputs ``(N, d)`` or ``(S, N, d)`` on supervised data (the Jacobian is
            then the per-example gradients, :func:`_pointwise_jacobian`), else ``None``.
    """

    function: Any
    derivatives: Any
    inputs: torch.Tensor | None = None
    #: For a linear, unnormalized factorization ``W = W_d ... W_1`` whose rows are linear in ``vec(W)``: the
    #: rows' operator ``O`` (``z = O^T vec(W)``; ``(N, r)`` or ``(S, N, r)``, ``None`` for every entry), so
    #: that their Jacobian has a closed form (:class:`_ProductJacobian`); ``False`` where it has none.
    operator: Any = False


def _fisher_rows(objective, fisher: str, unlabeled: torch.Tensor | None,
                 unobserved: torch.Tensor | None = None) -> _FisherRows:
    """The rows of run batch's Fisher (:class:`_FisherRows`).

    * ``train`` without unlabeled inputs: the ``n`` training outputs, ``(e, h)`` the loss's
      derivatives (``h = H(z_i) / n``: the average over the training inputs);
    * ``output``, and ``population`` of a model whose output is the whole array (a
      factorization's ``W``): every entry, ``e = dL/dW`` and ``h = 1`` (the Fisher of a
      unit-variance Gaussian on every entry; for Gaussian sensing ``E[vec A vec A^T]`` is a
      multiple of the identity, so the population Fisher is this up to a constant factor,
      which would only rescale ``lr`` and ``damping``);
    * supervised data with ``M`` unlabeled inputs ``(S, M, d)``: the ``n + M`` outputs on the
      training inputs then the unlabeled ones, ``e = (dL/dz_train, 0)``, and
      ``h_i = H(x_i) w_i`` with the per-point curvature ``H`` (:meth:`curvature`, the model's
      own predictive Fisher: no label enters) and weights ``w = (0, 1/M)`` for
      ``population`` (the average over the unlabeled pool only) or ``1 / (n + M)`` for
      ``train`` (the average over training and unlabeled inputs together: ``M = 0`` is the
      training Fisher, ``M -> infinity`` the population one). The training rows carry the
      gradient, so the dual's ``grad L = J^T e`` holds for these rows as well; with
      ``population`` their ``h`` is 0.
    * ``train`` on a completion task with ``unobserved`` entries ``(S, M)`` (indices into the
      unobserved entries, the task's test outputs): the ``m`` training entries then those ``M``,
      every row with the training rows' curvature (``2/m``: the training Fisher plus ``M`` more
      entries of the same weight, so ``M = 0`` is the training Fisher and ``M`` = every
      unobserved entry the population Fisher up to the constant factor ``2/m``), ``e = (dL/dz, 0)``.
    """
    model = objective.model
    product = _linear_product(model)
    if fisher in ("output", "population") and model.scores_array:
        tensors = objective.tensors

        def all_outputs(*layers: torch.Tensor) -> torch.Tensor:
            return model.outputs(list(layers), tensors).flatten(1)

        def pulled_back(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            train, pullback = torch.func.vjp(lambda values: _train_outputs_of(tensors, values), outputs)
            first, _second = tensors.loss_derivatives(train)
            return pullback(first)[0], torch.ones_like(outputs)

        return _FisherRows(all_outputs, pulled_back, operator=None if product else False)
    training = objective.tensors.training_view()
    supervised = hasattr(training, "on_inputs")
    if unobserved is not None and unobserved.shape[-1] > 0:
        return _rows_with_unobserved(model, objective.tensors, unobserved, product)
    if unlabeled is None or unlabeled.shape[-2] == 0:

        def train_outputs(*layers: torch.Tensor) -> torch.Tensor:
            return _train_outputs_of(training, model.outputs(list(layers), training))

        operator = training.operator[..., : training.num_train] if product and not supervised else False
        return _FisherRows(train_outputs, training.loss_derivatives, training.inputs if supervised else None,
                           operator)
    if not supervised:
        raise OptimizerError("unlabeled inputs need supervised data")
    size, count, n = unlabeled.shape[0], unlabeled.shape[-2], training.num_train
    known = training.inputs if training.stacked else training.inputs.expand(size, -1, -1)
    inputs = torch.cat([known, unlabeled], -2)  # (S, n + M, d)
    everywhere = training.on_inputs(inputs)
    dtype, device = unlabeled.dtype, unlabeled.device
    if fisher == "population":
        weights = torch.cat([torch.zeros(n, dtype=dtype, device=device),
                             torch.full((count,), 1.0 / count, dtype=dtype, device=device)])
    else:
        weights = torch.full((n + count,), 1.0 / (n + count), dtype=dtype, device=device)

    def outputs(*layers: torch.Tensor) -> torch.Tensor:
        return model.outputs(list(layers), everywhere)

    def derivatives(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, _second = training.loss_derivatives(values[..., :n])
        first = torch.cat([first.expand(size, n), torch.zeros(size, count, dtype=dtype, device=device)], -1)
        return first, training.curvature(values) * weights

    return _FisherRows(outputs, derivatives, inputs)


def _rows_with_unobserved(model, tensors, unobserved: torch.Tensor, product: bool) -> _FisherRows:
    """The training entries of a completion task and ``unobserved`` ``(S, M)`` more (:func:`_fisher_rows`)."""
    m = tensors.num_train
    operator = tensors.operator
    size = unobserved.shape[0]
    if operator.ndim == 2:
        operator = operator.expand(size, -1, -1)
    extra = torch.gather(operator[..., m:], 2, unobserved.unsqueeze(1).expand(-1, operator.shape[1], -1))
    rows = torch.cat([operator[..., :m], extra], -1)  # (S, N, m + M)

    def outputs(*layers: torch.Tensor) -> torch.Tensor:
        return (model.outputs(list(layers), tensors).unsqueeze(-2) @ rows).squeeze(-2)

    def derivatives(values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        first, second = tensors.loss_derivatives(values[..., :m])
        first, second = first.expand(size, m), second.expand(size, m)
        count = values.shape[-1] - m
        pad = torch.zeros(size, count, dtype=values.dtype, device=values.device)
        # Every added entry weighs what a training entry does (the squared loss's curvature is constant).
        return torch.cat([first, pad], -1), torch.cat([second, second[:, :1].expand(size, count)], -1)

    return _FisherRows(outputs, derivatives, None, rows if product else False)


def _linear_product(model) -> bool:
    """Whether ``model`` is a linear, unnormalized factorization ``W = W_d ... W_1`` of its stored layers (its
    Jacobian then has the closed form of :class:`_ProductJacobian`)."""
    return model.capabilities.matrix_product and model.is_linear and not model.normalize


@dataclass
class _ProductJacobian:
    """The Jacobian of rows ``z = O^T vec(W)`` of ``W = W_d ... W_1`` in the layers, in closed form.

    ``dW = sum_k L_k dW_k R_k`` with ``L_k = W_d ... W_{k+1}`` and ``R_k = W_{k-1} ... W_1``, so in
    ``vec(W)`` (row-major, as the model flattens ``W``) layer ``k``'s block is ``L_k (x) R_k^T`` and
    ``J_W J_W^T = sum_k (L_k L_k^T) (x) (R_k^T R_k)``. :meth:`blocks` are the rows' blocks
    ``O^T (L_k (x) R_k^T)`` (what autograd's Jacobian would give, without its ``r`` backward passes),
    :meth:`gram` their Gram ``O^T (J_W J_W^T) O`` from the Kronecker sum; where ``O`` selects
    entries (one-hot columns, a completion task) both are gathers. Tested against autograd's.
    """

    lefts: list[torch.Tensor]  # L_k, (S, rows, out_k)
    rights: list[torch.Tensor]  # R_k, (S, in_k, cols)
    operator: torch.Tensor | None  # O, (N, r) or (S, N, r); None: every entry
    index: torch.Tensor | None  # (S, r) the entries O selects, where its columns are one-hot

    @classmethod
    def of(cls, layers: list[torch.Tensor], operator: torch.Tensor | None) -> "_ProductJacobian":
        size = layers[0].shape[0]
        rows, cols = layers[-1].shape[-2], layers[0].shape[-1]
        eye = functools.partial(torch.eye, dtype=layers[0].dtype, device=layers[0].device)
        rights = [eye(cols).expand(size, cols, cols)]
        for layer in layers[:-1]:
            rights.append(layer @ rights[-1])
        lefts = [eye(rows).expand(size, rows, rows)]
        for layer in reversed(layers[1:]):
            lefts.append(lefts[-1] @ layer)
        index = None
        if operator is not None:
            if operator.ndim == 2:
                operator = operator.expand(size, -1, -1)
            if bool((((operator != 0).sum(-2) == 1) & ((operator == 0) | (operator == 1)).all(-2)).all()):
                index = operator.argmax(-2)
        return cls(lefts[::-1], rights, operator, index)

    def _rows_of(self, matrix: torch.Tensor) -> torch.Tensor:
        """``O^T matrix`` for a matrix ``(S, N, c)`` over ``vec(W)``."""
        if self.operator is None:
            return matrix
        if self.index is not None:
            return torch.gather(matrix, 1, self.index.unsqueeze(-1).expand(-1, -1, matrix.shape[-1]))
        return self.operator.mT @ matrix

    def blocks(self) -> list[torch.Tensor]:
        """Per layer, ``(S, r, out_k * in_k)``."""
        out = []
        for left, right in zip(self.lefts, self.rights):
            size, rows, width = left.shape
            inner, cols = right.shape[-2:]
            block = left[:, :, None, :, None] * right.mT[:, None, :, None, :]  # (S, rows, cols, out_k, in_k)
            out.append(self._rows_of(block.reshape(size, rows * cols, width * inner)))
        return out

    def transpose_times(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``J^T v`` ``(S, P)`` for ``v`` ``(S, r)``: ``M = unvec(O v)``, then layer ``k``'s ``L_k^T M R_k^T``."""
        size = coefficients.shape[0]
        rows, cols = self.lefts[0].shape[-2], self.rights[0].shape[-1]
        if self.operator is None:
            flat = coefficients
        elif self.index is not None:
            flat = torch.zeros(size, rows * cols, dtype=coefficients.dtype, device=coefficients.device)
            flat.scatter_add_(1, self.index, coefficients)
        else:
            flat = (self.operator @ coefficients.unsqueeze(-1)).squeeze(-1)
        matrix = flat.reshape(size, rows, cols)
        return torch.cat([(left.mT @ matrix @ right.mT).flatten(1) for left, right in zip(self.lefts, self.rights)],
                         -1)

    def gram(self) -> torch.Tensor:
        """``J J^T`` of the rows, ``(S, r, r)``."""
        gram = None
        cols = self.rights[0].shape[-1]
        if self.index is not None:  # only the selected entries (i_a, j_a): K_ab = sum_k A_k[i_a, i_b] B_k[j_a, j_b]
            i, j = self.index // cols, self.index % cols
        for left, right in zip(self.lefts, self.rights):
            outer, inner = left @ left.mT, right.mT @ right  # A_k (S, rows, rows), B_k (S, cols, cols)
            if self.index is not None:
                term = _pick_square(outer, i) * _pick_square(inner, j)
            else:
                size, rows = outer.shape[0], outer.shape[-1]
                term = (outer[:, :, None, :, None] * inner[:, None, :, None, :]).reshape(size, rows * cols,
                                                                                         rows * cols)
            gram = term if gram is None else gram.add_(term)
        if self.operator is None or self.index is not None:
            return gram
        return self.operator.mT @ gram @ self.operator


def _pick_square(matrix: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """``matrix[s][index[s]][:, index[s]]`` for every run ``s``: ``(S, n, n)`` and ``(S, r)`` to ``(S, r, r)``."""
    rows = torch.gather(matrix, 1, index.unsqueeze(-1).expand(-1, -1, matrix.shape[-1]))
    return torch.gather(rows, 2, index.unsqueeze(1).expand(-1, index.shape[-1], -1))


def _flat(per_layer, leading: int) -> torch.Tensor:
    """Per-layer gradients ``(..., S, out, in)`` joined into ``(..., S, P)`` (the parameters' layout)."""
    return torch.cat([part.flatten(leading) for part in per_layer], -1)


def _batched_jacobian(function, layers: list[torch.Tensor]) -> list[torch.Tensor]:
    """Every run's Jacobian, one block ``(S, m, out * in)`` per layer (joined along the last axis they are
    ``J (S, m, P)``), from one vector-Jacobian product ``vmap``-ed over the ``m`` output directions
    (``jacrev``'s construction, with the runs of the batch as one more axis).

    The cotangent of direction ``i`` is ``e_i`` in every run at once: since run ``s``'s outputs
    depend on its own parameters only, the pulled-back row ``s`` is row ``i`` of run ``s``'s
    Jacobian, and no cross-run block (``S^2 m P`` numbers) is ever formed.
    """
    outputs, pullback = torch.func.vjp(function, *layers)
    size, count = outputs.shape
    basis = torch.eye(count, dtype=outputs.dtype, device=outputs.device).unsqueeze(1).expand(count, size, count)
    per_layer = torch.func.vmap(pullback)(basis)  # each (m, S, out, in)
    return [part.flatten(2).transpose(0, 1) for part in per_layer]


@dataclass
class _OuterProductJacobian:
    """Every run's Jacobian ``J (S, N, P)`` at ``N`` inputs, held as its layers' outer-product factors.

    Layer ``j``'s block is ``J_j[s, i] = vec(g_sji a_sji^T)`` (:meth:`MLPModel.gradient_factors`),
    so ``J J^T = sum_j (G_j G_j^T) * (A_j A_j^T)`` and ``J^T v`` is ``vec(G_j^T diag(v) A_j)`` per
    layer: for a width-``k`` network ``O(N^2 k)`` per layer and run instead of the
    ``O(N^2 k^2)`` of the materialized blocks' product (and of the per-example Jacobian
    itself). Shared inputs give an ``A_1`` without the run axis, whose ``A_1 A_1^T`` is
    formed once for all runs.

    Attributes:
        factors: Per layer ``(G_j (S, N, out_j), A_j (S, N, in_j) or (N, in_j))``.
    """

    factors: list[tuple[torch.Tensor, torch.Tensor]]

    def blocks(self) -> list[torch.Tensor]:
        """The materialized blocks ``(S, N, out * in)`` (what the dense solve needs)."""
        return [(gradient.unsqueeze(-1) * inputs.unsqueeze(-2)).flatten(-2) for gradient, inputs in self.factors]

    def gram(self) -> torch.Tensor:
        """``J J^T`` ``(S, N, N)``."""
        kernel = None
        for gradient, inputs in self.factors:
            part = (gradient @ gradient.mT).mul_(inputs @ inputs.mT)
            kernel = part if kernel is None else kernel.add_(part)
        return kernel

    def transpose_times(self, coefficients: torch.Tensor) -> torch.Tensor:
        """``J^T v`` ``(S, P)`` for ``v`` ``(S, N)``, in the parameters' layout."""
        return torch.cat([((gradient * coefficients.unsqueeze(-1)).mT @ inputs).flatten(1)
                          for gradient, inputs in self.factors], -1)


@dataclass
class _LinearPredictorJacobian:
    """The Jacobian ``J = X E`` of a linear predictor ``f(x) = <w(theta), x>`` at inputs ``X``, with ``E = dw/dtheta``.

    A deep diagonal network or a deep linear MLP is a linear predictor of its inputs, so its Jacobian factors
    through ``w``: ``J J^T = X (E E^T) X^T``, ``J^T v = E^T (X^T v)`` and ``G = J^T H J = E^T (X^T H X) E``,
    where ``X^T H X`` is a ``d x d`` second moment: for a Fisher over ``N`` inputs ``O(N d^2 + d P^2)`` per run
    instead of the per-example Jacobian's ``O(N P)`` and the dense ``G``'s ``O(N P^2)``. Tested against the
    per-example Jacobian.

    Attributes:
        inputs: ``X``, ``(N, d)`` or ``(S, N, d)``.
        predictor: Per layer ``E_k`` ``(S, d, out_k * in_k)``.
    """

    inputs: torch.Tensor
    predictor: list[torch.Tensor]

    @classmethod
    def of(cls, model, layers: list[torch.Tensor], inputs: torch.Tensor) -> "_LinearPredictorJacobian | None":
        """The factored Jacobian, or ``None`` where ``model`` is not a linear predictor at ``layers``."""
        if model.linear_predictor(layers) is None:
            return None
        w, pullback = torch.func.vjp(lambda *values: model.linear_predictor(list(values)), *layers)
        size, dim = w.shape
        directions = torch.eye(dim, dtype=w.dtype, device=w.device).unsqueeze(1).expand(dim, size, dim)
        per_layer = torch.func.vmap(pullback)(directions)  # each (d, S, out, in)
        return cls(inputs, [part.flatten(2).transpose(0, 1) for part in per_layer])

    def blocks(self) -> list[torch.Tensor]:
        """Per layer ``X E_k`` ``(S, N, out_k * in_k)``."""
        return [self.inputs @ block for block in self.predictor]

    def gram(self) -> torch.Tensor:
        joined = torch.cat(self.predictor, -1)
        return self.inputs @ (joined @ joined.mT) @ self.inputs.mT

    def transpose_times(self, coefficients: torch.Tensor) -> torch.Tensor:
        projected = self.inputs.mT @ coefficients.unsqueeze(-1)  # X^T v, (S, d, 1)
        return torch.cat([(block.mT @ projected).squeeze(-1) for block in self.predictor], -1)

    def gauss_newton(self, second: torch.Tensor) -> torch.Tensor:
        """``G = E^T (X^T diag(h) X) E`` ``(S, P, P)`` for curvatures ``h`` ``(S, N)``."""
        joined = torch.cat(self.predictor, -1)
        moment = self.inputs.mT @ (second.unsqueeze(-1) * self.inputs)
        return joined.mT @ moment @ joined


def _pointwise_jacobian(model, tensors, layers: list[torch.Tensor], inputs: torch.Tensor):
    """Every run's Jacobian of its outputs at ``inputs`` (``(N, d)``, or ``(S, N, d)`` one set per run), for a
    model on supervised data (``tensors``: its task's): one block ``(S, N, out * in)`` per layer, or the
    layers' outer-product factors (:class:`_OuterProductJacobian`) for a model whose capabilities say its
    per-input gradients are outer products (an MLP's).

    Such a model's output at ``x_i`` depends on ``x_i`` alone, so its Jacobian is the
    per-example gradients. An MLP's come from one forward and one backward pass over all
    inputs (:meth:`MLPModel.gradient_factors`). Any other model's are one vector-Jacobian
    product per input, ``vmap``-ed over the inputs, each costing one forward and backward
    pass on one point (``N`` points: about one pass over the data), where a ``jacrev`` of
    the outputs on all ``N`` points at once costs ``N`` passes over all ``N`` points.
    """
    linear = _LinearPredictorJacobian.of(model, layers, inputs)
    if linear is not None:
        return linear
    if model.capabilities.outer_product_gradients:
        _outputs, factors = model.gradient_factors(layers, inputs)
        return _OuterProductJacobian(factors)

    def gradients_at(point: torch.Tensor):  # point (d,) or (S, d)
        at_point = tensors.on_inputs(point.unsqueeze(-2))

        def output(*values: torch.Tensor) -> torch.Tensor:
            return model.outputs(list(values), at_point).squeeze(-1)  # (S,)

        value, pullback = torch.func.vjp(output, *layers)
        return pullback(torch.ones_like(value))  # each (S, out, in)

    per_layer = torch.func.vmap(gradients_at, in_dims=0 if inputs.ndim == 2 else 1)(inputs)  # each (N, S, out, in)
    return [part.flatten(2).transpose(0, 1) for part in per_layer]


#: The Jacobians held in a factored form: each gives ``blocks()``, ``gram()`` and ``transpose_times(v)``.
_FACTORED = (_OuterProductJacobian, _ProductJacobian, _LinearPredictorJacobian)


def _blocks(jacobian) -> list[torch.Tensor]:
    """A Jacobian ``(S, m, P)``, its per-layer blocks, its outer-product factors or a linear factorization's closed
    form, as a list of blocks."""
    if isinstance(jacobian, _FACTORED):
        return jacobian.blocks()
    return [jacobian] if isinstance(jacobian, torch.Tensor) else list(jacobian)


def _gram(jacobian) -> torch.Tensor:
    """``J J^T`` ``(S, m, m)`` of a Jacobian in any of :func:`_blocks`' forms (blocks: the sum of their products)."""
    if isinstance(jacobian, _FACTORED):
        return jacobian.gram()
    blocks = _blocks(jacobian)
    kernel = blocks[0] @ blocks[0].mT
    for block in blocks[1:]:
        kernel.baddbmm_(block, block.mT)
    return kernel


def _transpose_times(jacobian, coefficients: torch.Tensor) -> torch.Tensor:
    """``J^T v`` ``(S, P)`` for ``v`` ``(S, m)``, a Jacobian in any of :func:`_blocks`' forms."""
    if isinstance(jacobian, _FACTORED):
        return jacobian.transpose_times(coefficients)
    column = coefficients.unsqueeze(-1)
    return torch.cat([(block.mT @ column).squeeze(-1) for block in _blocks(jacobian)], -1)


def _solve_positive_semidefinite(system: torch.Tensor, rhs: torch.Tensor, damping: float, considered: torch.Tensor,
                                 name: str, why: str) -> tuple[torch.Tensor, dict[int, str]]:
    """``(system + damping I)^{-1} rhs`` for a batch of Gram matrices (symmetric positive semi-definite), by
    Cholesky.

    Args:
        system: ``(S, k, k)`` Gram matrices ``B B^T`` (only the lower triangle is read; it is
            damped in place).
        rhs: ``(S, k)``.
        damping: ``lambda >= 0``.
        considered: ``(S,)`` bool, the runs to solve.
        name, why: Words for the failure messages.

    Returns:
        ``(solution (S, k), failures)``: ``failures`` maps a run to the reason its system could
        not be solved; its row of ``solution``, like those of runs not considered, is meaningless.

    A run's system fails when it is not finite (a Gram matrix is finite exactly when its
    trace is: ``|B_i . B_j| <= sqrt(B_i . B_i  B_j . B_j)``), or when it is singular *relative to
    its scale*: its damped condition number ``(mu_max + lambda) / (mu_min + lambda)`` is
    ``1 / _SINGULAR_RTOL`` or more (``mu`` the eigenvalues of ``system``). The eigenvalues are
    computed only where that can happen, i.e. where ``lambda <= rtol (trace + lambda)``
    (``trace >= mu_max``): at ``lambda = 0`` and wherever ``lambda`` is negligible next to the
    system. Cholesky (``torch.linalg.cholesky_ex``) then factors the damped system. Should
    it report a non-positive pivot anyway (rounding, on a system near the threshold), that
    run falls back to LU with partial pivoting (``torch.linalg.solve_ex``) of the same
    system, and fails only if LU reports it singular too.
    """
    count = system.shape[-1]
    failures: dict[int, str] = {}
    diagonal = torch.diagonal(system, dim1=-2, dim2=-1)
    trace = diagonal.sum(-1)
    finite = torch.isfinite(trace) & torch.isfinite(rhs).all(1)
    for run in (considered & ~finite).nonzero().flatten().tolist():
        failures[run] = f"the {name} has non-finite entries"
    usable = considered & finite
    check = usable & (damping <= _SINGULAR_RTOL * (trace + damping))
    if bool(check.any()):
        indices = check.nonzero().flatten()
        eigenvalues = torch.linalg.eigvalsh(system[indices])  # ascending
        smallest, largest = eigenvalues[:, 0] + damping, eigenvalues[:, -1] + damping
        for run, low, high in zip(indices.tolist(), smallest.tolist(), largest.tolist()):
            if not low > _SINGULAR_RTOL * high:
                advice = "set damping > 0" if damping == 0 else "raise the damping"
                failures[run] = (f"the {name} ({count} x {count}) is singular relative to its scale "
                                 f"(smallest eigenvalue {low:.3g}, largest {high:.3g}; {why}); {advice}")
                usable[run] = False
    if not bool(usable.all()):
        # Runs not solved get the identity: nothing they hold can fail or slow the batch.
        skipped = ~usable
        system[skipped] = torch.eye(count, dtype=system.dtype, device=system.device)
        rhs = rhs.masked_fill(skipped.unsqueeze(1), 0.0)
    if damping:
        diagonal.add_(damping)
    factor, info = torch.linalg.cholesky_ex(system)
    solution = torch.cholesky_solve(rhs.unsqueeze(-1), factor).squeeze(-1)
    fallback = usable & (info != 0)
    if bool(fallback.any()):
        indices = fallback.nonzero().flatten()
        lu_solution, lu_info = torch.linalg.solve_ex(system[indices], rhs[indices])
        solution[indices] = lu_solution
        for run, bad in zip(indices.tolist(), (lu_info != 0).tolist()):
            if bad:
                failures[run] = f"the damped {name} is singular; raise the damping"
    return solution, failures


def _symmetric_dual(jacobian, second: torch.Tensor, first: torch.Tensor, damping: float,
                    considered: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
    """The dual solve with the symmetric system ``H^1/2 J J^T H^1/2``, for a batch: ``(d (S, P), failures)``.

    ``jacobian``: ``J (S, m, P)``, its per-layer blocks (``J J^T`` is the sum of the blocks'
    products, and ``J^T v`` the blocks' joined: ``J`` itself is never assembled) or its
    layers' outer-product factors (:class:`_OuterProductJacobian`: not even the blocks are), or a linear
    factorization's closed form (:class:`_ProductJacobian`).

    The dual's ``d = J^T v`` with ``(H J J^T + lambda I) v = e`` (:func:`_dual`, ``H = diag(h)``,
    ``h >= 0``). Split the outputs into ``P = {h_i > 0}`` and ``Z = {h_i = 0}`` and write
    ``S = H^1/2``, ``K = J J^T``. The rows of ``Z`` read ``lambda v_Z = e_Z``, so
    ``v_Z = e_Z / lambda``; the rows of ``P`` read
    ``(H_P K_PP + lambda) v_P = e_P - H_P K_PZ v_Z``, and since
    ``H_P K_PP + lambda = S_P (S_P K_PP S_P + lambda) S_P^{-1}``:

        (S K S + lambda I) u = S^+ e - S K v_Z,      v = S u + v_Z,      d = J^T v,

    with ``S^+`` the pseudo-inverse of ``S`` (``1 / sqrt(h_i)`` on ``P``, 0 on ``Z``). The system is
    symmetric positive semi-definite, so Cholesky factors it, and its scale does not
    shrink with ``h`` as ``H K``'s rows do. In exact arithmetic ``d`` is the non-symmetric
    dual's. Where some ``h_i = 0`` the undamped system is singular (a zero row), as the
    non-symmetric one is: that run fails unless ``lambda`` is significant.
    """
    root = second.sqrt()  # a negative curvature gives NaN: that run fails as non-finite
    positive = second > 0
    kernel = _gram(jacobian)  # K = J J^T, (S, m, m)
    system = root.unsqueeze(-1) * kernel * root.unsqueeze(-2)  # S K S
    rhs = torch.where(positive, first / torch.where(positive, root, 1.0), 0.0)  # S^+ e
    zero_part = None
    if damping > 0:
        on_zeros = torch.where(positive, 0.0, first)
        if bool((on_zeros != 0).any()):
            zero_part = on_zeros / damping  # v_Z
            rhs = rhs - root * (kernel @ zero_part.unsqueeze(-1)).squeeze(-1)
    solution, failures = _solve_positive_semidefinite(
        system, rhs, damping, considered, "output-space system",
        "more training outputs than parameters, a rank-deficient Jacobian, or outputs of zero curvature")
    coefficients = root * solution if zero_part is None else root * solution + zero_part
    return _transpose_times(jacobian, coefficients), failures


def _batched_dense(jacobian, second, gradient, damping, considered):
    scaled = second.sqrt().unsqueeze(-1) * torch.cat(_blocks(jacobian), -1)  # H^1/2 J
    system = scaled.mT @ scaled  # G = J^T H J, (S, P, P)
    return _solve_positive_semidefinite(system, gradient, damping, considered, "Gauss-Newton matrix",
                                        "more parameters than training outputs, or a degenerate point")


#: Entries of one chunk of per-example gradients (S x rows x P) while a dense Gauss-Newton matrix is summed up:
#: 4M float64 numbers (32 MiB), so an unlabeled pool of any size costs the P x P matrix and this.
_CHUNK_ENTRIES = 1 << 22


def _pointwise_gauss_newton(model, tensors, layers, inputs: torch.Tensor, second: torch.Tensor) -> torch.Tensor:
    """``G = J^T diag(h) J`` ``(S, P, P)`` from per-example gradients at ``inputs`` (``(N, d)`` or ``(S, N, d)``),
    summed over chunks of the inputs (:data:`_CHUNK_ENTRIES`) so the whole ``(S, N, P)`` Jacobian of a large
    unlabeled pool is never held. Rows with ``h = 0`` (a population Fisher's training rows) are skipped."""
    linear = _LinearPredictorJacobian.of(model, layers, inputs)
    if linear is not None:
        return linear.gauss_newton(second)
    size, count = second.shape
    num_parameters = sum(layer[0].numel() for layer in layers)
    useful = (second != 0).any(0).nonzero().flatten()
    chunk = max(1, _CHUNK_ENTRIES // max(1, size * num_parameters))
    system = None
    for start in range(0, len(useful), chunk):
        index = useful[start:start + chunk]
        points = inputs[..., index, :]
        scaled = second[:, index].sqrt().unsqueeze(-1) * torch.cat(
            _blocks(_pointwise_jacobian(model, tensors, layers, points)), -1)  # H^1/2 J on the chunk
        part = scaled.mT @ scaled
        system = part if system is None else system.add_(part)
    if system is None:
        system = torch.zeros(size, num_parameters, num_parameters, dtype=second.dtype, device=second.device)
    return system


def _batched_cg(function, layers, gradient, second, damping, tolerance, max_iter, considered):
    """Conjugate gradients for every run at once (:func:`_cg`'s iteration, one per run): ``(d (S, P), failures)``.

    One Jacobian-vector and one vector-Jacobian product per iteration serve the whole
    batch; each run keeps its own step sizes and stops on its own residual, exactly as
    alone (a run that has converged, or failed, takes steps of size 0 after).
    """
    _outputs, pullback = torch.func.vjp(function, *layers)
    shapes = [layer.shape for layer in layers]
    sizes = [layer[0].numel() for layer in layers]

    def product(vectors: torch.Tensor) -> torch.Tensor:
        tangents = tuple(part.reshape(shape) for part, shape in zip(vectors.split(sizes, -1), shapes))
        _, pushed = torch.func.jvp(function, tuple(layers), tangents)
        return _flat(pullback(second * pushed), 1) + damping * vectors

    failures: dict[int, str] = {}
    solution = torch.zeros_like(gradient)
    residual = gradient.clone()
    direction = residual.clone()
    norm_sq = torch.linalg.vecdot(residual, residual)
    gradient_sq = norm_sq.clone()
    target = (tolerance * gradient_sq.sqrt()).square()
    running = considered.clone()
    for _ in range(max_iter):
        running &= norm_sq > target
        if not bool(running.any()):
            break
        image = product(direction)
        curvature = torch.linalg.vecdot(direction, image)
        flat = running & ~(curvature > 0)
        for run in flat.nonzero().flatten().tolist():
            failures[run] = ("CG met a direction of zero curvature: the Gauss-Newton matrix is singular without "
                             "damping; set damping > 0")
        running &= ~flat
        step = torch.where(running, norm_sq / torch.where(running, curvature, 1.0), 0.0).unsqueeze(1)
        solution = solution + step * direction
        residual = residual - step * image
        new_norm_sq = torch.where(running, torch.linalg.vecdot(residual, residual), norm_sq)
        ratio = torch.where(running, new_norm_sq / torch.where(running, norm_sq, 1.0), 0.0).unsqueeze(1)
        direction = torch.where(running.unsqueeze(1), residual + ratio * direction, direction)
        norm_sq = new_norm_sq
    for run in (running & (norm_sq > target)).nonzero().flatten().tolist():
        relative = math.sqrt(float(norm_sq[run]) / max(float(gradient_sq[run]), 1e-300))
        failures[run] = (f"CG did not converge in {max_iter} iterations (relative residual {relative:.2g}); "
                         "raise the damping or the iteration budget")
    return solution, failures


def gauss_newton_matrix(objective, params: torch.Tensor, *, fisher: str = "train",
                        unlabeled: torch.Tensor | None = None, unobserved: torch.Tensor | None = None) -> torch.Tensor:
    """Every run's undamped ``G = J^T diag(h) J``, ``(S, P, P)``, through autograd's Jacobian (the reference the
    dense solve's matrix is tested against).

    Args:
        objective: GD's objective.
        params: ``(S, P)``.
        fisher, unlabeled, unobserved: As for :func:`natural_gradient_directions`.
    """
    rows = _fisher_rows(objective, fisher, unlabeled, unobserved)
    layers = objective.layers(params)
    with torch.enable_grad():
        outputs = rows.function(*layers)
    _first, second = rows.derivatives(outputs.detach())
    second = second.expand_as(outputs)
    with torch.enable_grad():
        if rows.inputs is not None:
            return _pointwise_gauss_newton(objective.model, objective.tensors, layers, rows.inputs, second)
        scaled = second.sqrt().unsqueeze(-1) * torch.cat(_batched_jacobian(rows.function, layers), -1)
    return scaled.mT @ scaled


def natural_gradient_directions(objective, params: torch.Tensor, gradient: torch.Tensor, active: torch.Tensor, *,
                                damping: float, solve: str = "auto", cg_tol: float = 1e-10,
                                cg_max_iter: int | None = None, fisher: str = "train",
                                unlabeled: torch.Tensor | None = None, damping_scale: str = "fixed",
                                unobserved: torch.Tensor | None = None) -> tuple[torch.Tensor, dict[int, str], str]:
    """``(G_s + damping I)^{-1} gradient_s`` for every active run ``s`` of a batch at once.

    The batched counterpart of :func:`natural_gradient_direction` (same arguments, with the
    run axis): one Jacobian for the whole batch (:func:`_batched_jacobian`,
    :func:`_pointwise_jacobian`), the dual in its symmetric form (:func:`_symmetric_dual`),
    dense and dual factored by Cholesky, CG iterated for all runs together. Each run's
    direction equals the per-run function's up to rounding (tested to 1e-10 in float64),
    and each run fails alone: a run whose system is non-finite or singular relative to
    its scale, or whose CG stalls, is reported in ``failures`` and the others are solved
    as if it were not there.

    Args:
        objective: GD's objective.
        params: ``(S, P)`` every run's parameters.
        gradient: ``(S, P)`` the vectors to precondition (the training loss's gradients).
        active: ``(S,)`` bool, the runs to solve (the others' rows of the result are zero).
        damping, solve, cg_tol, cg_max_iter: As for :func:`natural_gradient_direction`.
        fisher: ``"train"``, ``"population"`` or ``"output"`` (:func:`_fisher_rows`).
        unlabeled: ``(S, M, d)`` each run's unlabeled inputs, on supervised data: the pool of
            the ``population`` Fisher, or the inputs ``train`` adds to the training ones.
        damping_scale: ``"fixed"``: every run's damping is ``damping``. ``"curvature"``: run
            ``s``'s damping is ``damping * r_s`` with ``r_s = sum_i h_i / sum_i h_i^0`` the
            Fisher's curvature weights (:func:`_fisher_rows`) at the run's outputs over their
            values at zero outputs (for the logistic loss the mean of ``sigmoid(z) sigmoid(-z)``
            over the Fisher's rows divided by 1/4; always 1 for the squared loss and a
            factorization's ``W``). With the logistic loss on separable data the curvature decays
            like ``exp(-margin)``; a fixed damping then outgrows ``G`` and late steps become GD
            steps of size ``lr / lambda`` in the parametrization's own geometry, whereas a
            damping that shrinks with the curvature keeps them natural-gradient steps. Solved as
            ``(G / r_s + lambda I)^{-1} grad / r_s`` (``G`` is linear in ``h``), so every solve is
            unchanged; a run whose ``r_s`` is 0 or not finite fails.
        unobserved: ``(S, M)`` each run's unobserved entries of a completion task added to the
            ``train`` Fisher (:func:`_fisher_rows`).

    Returns:
        ``(directions (S, P), failures, method)``: ``failures`` maps a run's index to the
        reason its solve failed (its row is zero); ``method`` is the solve used.

    With unlabeled inputs, ``dense`` and ``cg`` solve ``(G + lambda I) d = grad L`` as
    always. ``dual`` solves in the space of the ``n + M`` rows (training then unlabeled):
    the gradient is ``J^T e`` there with ``e`` zero on the unlabeled rows. For ``train`` every
    row has curvature and the dual is as well conditioned as without them. For
    ``population`` the training rows have ``h = 0``: their part of the solution is
    ``e / lambda`` (:func:`_symmetric_dual`), exact for ``lambda > 0`` but singular at
    ``lambda = 0``, where the training gradient need not lie in the span of the pool's
    Jacobian: use ``dense`` or ``cg`` there (``auto`` picks ``dense`` once ``n + M`` reaches
    the parameters).
    """
    considered = active.clone()
    # A stopped run's parameters may be non-finite (it diverged): its rows are computed from
    # zeros instead, and thrown away.
    params = torch.where(considered.unsqueeze(1), params, 0.0)
    rows = _fisher_rows(objective, fisher, unlabeled, unobserved)
    num_parameters = params.shape[1]
    layers = objective.layers(params)
    with torch.enable_grad():
        outputs = rows.function(*layers)
    first, second = rows.derivatives(outputs.detach())
    # Shared targets give (m,) derivatives: one row per run.
    first, second = first.expand_as(outputs), second.expand_as(outputs)
    scale, scale_failures = _curvature_ratio(rows, outputs, second, considered) if damping_scale == "curvature" \
        else (None, {})
    if scale is not None:
        second = second / scale.unsqueeze(1)
    method = _pick(solve, outputs.shape[1], num_parameters)
    with torch.enable_grad():
        if method == "cg":
            direction, failures = _batched_cg(rows.function, layers, gradient, second, damping, cg_tol,
                                              cg_max_iter or 3 * num_parameters, considered)
        elif method == "dense" and rows.inputs is not None:
            system = _pointwise_gauss_newton(objective.model, objective.tensors, layers, rows.inputs, second)
            direction, failures = _solve_positive_semidefinite(
                system, gradient, damping, considered, "Gauss-Newton matrix",
                "more parameters than outputs in the Fisher, or a degenerate point")
        else:
            if rows.inputs is not None:  # supervised data: per-example gradients
                jacobian = _pointwise_jacobian(objective.model, objective.tensors, layers, rows.inputs)
            elif rows.operator is not False:  # a linear factorization: in closed form
                jacobian = _ProductJacobian.of([layer.detach() for layer in layers], rows.operator)
            else:
                jacobian = _batched_jacobian(rows.function, layers)  # blocks of (S, m, P)
            if method == "dense":
                direction, failures = _batched_dense(jacobian, second, gradient, damping, considered)
            else:
                direction, failures = _symmetric_dual(jacobian, second, first, damping, considered)
    if scale is not None:
        direction = direction / scale.unsqueeze(1)
        failures.update(scale_failures)
    finite = torch.isfinite(direction).all(1)
    for run in (considered & ~finite).nonzero().flatten().tolist():
        failures.setdefault(run, f"the {method} solve gave non-finite numbers")
    keep = considered.clone()
    for run in failures:
        keep[run] = False
    direction = torch.where(keep.unsqueeze(1), direction, 0.0)
    return direction, dict(sorted(failures.items())), method


def _curvature_ratio(rows: _FisherRows, outputs: torch.Tensor, second: torch.Tensor,
                     considered: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
    """``(r (S,), failures)``: each run's Fisher curvature ``sum_i h_i`` over its value at zero outputs
    (``damping_scale="curvature"`` of :func:`natural_gradient_directions`); a considered run whose ``r`` is not
    positive and finite is a failure, and its ``r`` is set to 1 so that the others' solves are unaffected."""
    at_zero = rows.derivatives(torch.zeros_like(outputs))[1].expand_as(outputs)
    ratio = second.sum(1) / at_zero.sum(1)
    bad = considered & ~(torch.isfinite(ratio) & (ratio > 0))
    failures = {run: f"the Fisher's curvature vanished (ratio {ratio[run].item():.3g} to its value at zero "
                     f"outputs): no damping can be scaled to it" for run in bad.nonzero().flatten().tolist()}
    return torch.where(bad, torch.ones_like(ratio), ratio), failures


def damping_at(step: int, damping: float, decay: float = 1.0, floor: float = 0.0) -> float:
    """The damping of step ``step`` (0-based): ``max(damping * decay^step, floor)``."""
    return max(damping * decay ** step, floor) if decay != 1.0 else damping


#: The attribute of GD's objective that holds each run's unobserved entries ``(S, M)`` in its ``train`` Fisher (indices
#: among a completion task's unobserved entries; NGD's ``init`` draws them from each run's seed).
UNOBSERVED_ATTRIBUTE = "unobserved_entries"

#: The attribute of GD's objective that holds each run's unlabeled inputs ``(S, M, d)`` (the objective is made by
#: GD's ``init``; NGD's ``init`` adds them, drawn from each run's seed).
UNLABELED_ATTRIBUTE = "unlabeled_inputs"


def scale_by_natural_gradient(*, damping: float, solve: str = "auto", cg_tol: float = 1e-10,
                              cg_max_iter: int | None = None, fisher: str = "train", damping_decay: float = 1.0,
                              damping_min: float = 0.0, per_run: bool = False,
                              damping_scale: str = "fixed") -> GradientTransformation:
    """The preconditioner ``(G + lambda_t I)^{-1}`` of every active run.

    By default the whole batch is solved at once (:func:`natural_gradient_directions`);
    ``per_run=True`` solves one run at a time with :func:`natural_gradient_direction` (the
    plain path the batched one is tested and benchmarked against).

    ``lambda_t = max(damping * damping_decay^t, damping_min)`` at step ``t``
    (:func:`damping_at`): constant by default, or large first (robust steps far from the
    solution) and small later (closer to the pseudo-inverse).

    Needs the step's objective in the :class:`StepContext` (GD passes it); each run's
    unlabeled inputs, where the Fisher has some, are the objective's attribute
    :data:`UNLABELED_ATTRIBUTE` (``(S, M, d)``, set by :meth:`NaturalGradientDescent.init`). A
    run whose solve fails is stopped through :meth:`StepContext.fail` (its row of the update
    is zero).
    """

    def init(params: torch.Tensor) -> None:
        return None

    def update(update: Update, state: None, context: StepContext) -> tuple[Update, None]:
        gradient = update.materialize()
        current = damping_at(context.step, damping, damping_decay, damping_min)
        if not per_run:
            out, failures, _method = natural_gradient_directions(
                context.objective, context.params, gradient, context.active, damping=current, solve=solve,
                cg_tol=cg_tol, cg_max_iter=cg_max_iter, fisher=fisher,
                unlabeled=getattr(context.objective, UNLABELED_ATTRIBUTE, None), damping_scale=damping_scale,
                unobserved=getattr(context.objective, UNOBSERVED_ATTRIBUTE, None))
            for run, reason in failures.items():
                context.fail(run, f"step {context.step}: {reason}")
            return Update(out), state
        out = torch.zeros_like(gradient)
        active = context.active.tolist()
        for run, running in enumerate(active):
            if not running:
                continue
            try:
                out[run], _method = natural_gradient_direction(
                    context.objective, context.params[run], gradient[run], run, damping=current, solve=solve,
                    cg_tol=cg_tol, cg_max_iter=cg_max_iter, fisher=fisher)
            except SolveFailed as failure:
                context.fail(run, f"step {context.step}: {failure}")
        return Update(out), state

    return GradientTransformation(init, update)


@register_trainer
@dataclass(frozen=True)
class NaturalGradientDescent(GradientDescent):
    """Full-batch natural gradient descent: :class:`GradientDescent` with the Gauss-Newton preconditioner.

    Attributes (besides GD's):
        damping: ``lambda >= 0`` added to ``G`` (at the first step, see ``damping_decay``);
            0 asks for the pseudo-inverse, which
            fails (status ``solve_failed``) where ``G`` is singular and the solve is dense.
        solve: ``"auto" | "dense" | "dual" | "cg"`` (see the module docstring).
        cg_tol: CG's relative residual tolerance.
        cg_max_iter: CG's iteration budget per step (default: three times the number of parameters).
        fisher: What the Fisher averages over (:func:`_fisher_rows`):

            * ``"population"``: the model's Fisher over the input distribution, as in arXiv
              2111.11542: for a factorization every entry of ``W`` (with Gaussian sensing
              ``E[vec A vec A^T]`` is a multiple of the identity; for completion every entry
              is an input); for supervised data the inputs of an unlabeled pool drawn like
              the training inputs (``unlabeled`` of them), with each point's curvature at the
              model's own prediction (``sigmoid(f) sigmoid(-f)`` for the logistic loss, 2 for
              the squared loss).
            * ``"train"`` (default): the Gauss-Newton matrix of the training outputs only: NGD
              is then invariant only in those ``n`` outputs, and the parametrization decides
              the rest. With ``unlabeled = M`` it averages over the training inputs and ``M``
              unlabeled ones (``M = 0``: the training Fisher exactly; ``M -> infinity``: the
              population one).
            * ``"output"``: for factorizations, another name of ``population`` (bit for bit
              the same runs); an error on supervised data.
        unlabeled: ``M``, the unlabeled inputs of a supervised problem's Fisher (drawn per
            run from ``(seed, "unlabeled")``: independent of the batch, the same at every
            step). ``None``: :data:`DEFAULT_UNLABELED` for ``population`` (at most the pool a
            bundled data set holds out), none for ``train``. Not for factorizations.
        unobserved: ``M``, unobserved entries of a completion task added to the ``train``
            Fisher, each with a training entry's weight (drawn per run from ``(seed,
            "unobserved")``): ``0``/``None`` is the training Fisher, every unobserved entry the
            population one up to a constant factor; the family between the two.
        damping_decay: ``lambda`` is multiplied by this every step (``1``: constant).
        damping_min: The floor of the decaying damping.
        damping_scale: ``"fixed"`` (default) or ``"curvature"``: each run's ``lambda`` times its
            Fisher's curvature relative to zero outputs, so that with the logistic loss late steps
            stay natural-gradient steps (:func:`natural_gradient_directions`); a no-op for the
            squared loss.

    ``step_rule="group_rmsprop"`` rescales the natural-gradient step by the paper's
    global RMS; ``momentum`` adds heavy-ball momentum after it.

    The default ``M`` (:data:`DEFAULT_UNLABELED`, 4096), measured by
    ``benchmarks/ngd_population_pool.py`` (``results/ngd/population_pool*.json``; 4 seeds,
    medians) on three small problems (a depth-2 diagonal network on a 3-sparse teacher
    in 20 dimensions, logistic; tanh MLPs of width 8 on a regression teacher in 5
    dimensions and on a linear teacher in 10, P = 40-88): the population Fisher from
    ``M`` inputs is a Monte Carlo estimate, and the first step's direction approaches
    that of a 32768-input pool like ``1 - cos = c / M`` (``c`` about 7-33). 4096 is the
    smallest power of 2 from which the cosine is at least 0.99 on all three (0.998,
    0.992, 0.996 at damping 1e-3; 0.995, 0.980, 0.992 at 2048). Whole runs settle more
    slowly, at a rate set by the damping: after 30 steps at damping 1e-3 two independent
    pools of 32768 still give generalization losses 2-7% apart (the Fisher's sampling
    error in its small directions is not small next to ``lambda``), while at damping 0.1
    they agree to 0.1-1.2% and 4096 inputs are within 0.1-1.5% of them. Raise ``M`` (or
    the damping) where a run must not depend on its pool.
    """

    damping: float = setting(1e-3, minimum=0,
                             doc="lambda added to the Gauss-Newton matrix; 0 asks for the pseudo-inverse.")
    solve: str = setting("auto", choices=SOLVES,
                         doc="dense (P x P system), dual (outputs x outputs, for more parameters than outputs), "
                             "cg (matrix-free conjugate gradients); auto: dual when outputs < parameters, else "
                             "dense.")
    cg_tol: float = 1e-10
    cg_max_iter: int | None = None
    fisher: str = setting("train", choices=FISHERS,
                          doc="population: the Fisher over the input distribution (arXiv 2111.11542): every entry of "
                              "a factorization's W, or an unlabeled pool of --unlabeled inputs for supervised data; "
                              "train: the Gauss-Newton matrix of the training outputs only (with --unlabeled M: of "
                              "the training inputs and M unlabeled ones); output: population's other name for "
                              "factorizations.")
    unlabeled: int | None = setting(None, minimum=0, count=True,
                                    doc=f"Unlabeled inputs in a supervised problem's Fisher, drawn like the "
                                        f"training inputs from each run's seed [default: {DEFAULT_UNLABELED} for "
                                        f"--fisher population, 0 for train]; not for factorizations.")
    unobserved: int | None = setting(None, minimum=0, count=True,
                                     doc="Unobserved entries of a completion task added to --fisher train's Fisher "
                                         "(drawn from each run's seed; each weighs what a training entry does): 0 is "
                                         "the training Fisher, every unobserved entry the population Fisher up to a "
                                         "constant factor.")
    damping_decay: float = setting(1.0, minimum=0, maximum=1, exclusive=(True, False),
                                   doc="Multiply the damping by this every step (1: constant).")
    damping_min: float = setting(0.0, minimum=0, doc="The floor of the decaying damping (at most --damping).")
    damping_scale: str = setting("fixed", choices=DAMPING_SCALES,
                                 doc="fixed: the damping as given; curvature: each run's damping times its Fisher's "
                                     "mean curvature relative to zero outputs (logistic loss: mean "
                                     "sigmoid(f) sigmoid(-f) / 0.25), so that late steps on separable data stay "
                                     "natural-gradient steps instead of becoming GD steps of size lr / damping.")
    flow: bool = setting(False, doc="Integrate natural gradient flow (the lr -> 0 limit) up to time lr x steps "
                                    "with an adaptive Runge-Kutta method instead of taking the steps "
                                    "(volumelab.optimizers.ngd_flow).")

    method = "ngd"
    summary = "Natural gradient descent: GD preconditioned by the Gauss-Newton (Fisher) matrix."
    #: No per-layer learning rates (muP's): the natural gradient is already invariant to a per-layer rescaling
    #: of the weights, and its flow (``flow``) never had them.
    layer_learning_rates: ClassVar[bool] = False
    #: Solve one run at a time (:func:`natural_gradient_direction`) instead of the whole batch at once: the
    #: plain path, kept for tests and benchmarks (a subclass sets it; not a setting, so never in a run's key).
    per_run_solves: ClassVar[bool] = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.step_rule == "adam":
            raise OptimizerError("step_rule adam does not apply to NGD (its preconditioner is the Fisher); use gd or "
                                 "group_rmsprop")
        if self.batch_size is not None:
            raise OptimizerError(f"batch_size {self.batch_size} does not apply to NGD: its steps and its Fisher are "
                                 "full-batch; leave batch_size unset")
        if not (isinstance(self.damping, (int, float)) and math.isfinite(self.damping) and self.damping >= 0):
            raise OptimizerError(f"damping must be a non-negative finite number, got {self.damping!r}")
        if not (isinstance(self.damping_decay, (int, float)) and 0 < self.damping_decay <= 1):
            raise OptimizerError(f"damping_decay must be in (0, 1], got {self.damping_decay!r}")
        if not (isinstance(self.damping_min, (int, float)) and 0 <= self.damping_min <= self.damping):
            raise OptimizerError(f"damping_min must be between 0 and damping = {self.damping!r}, "
                                 f"got {self.damping_min!r}")
        if self.fisher not in FISHERS:
            raise OptimizerError(f"unknown fisher {self.fisher!r}; expected one of {', '.join(FISHERS)}")
        if self.damping_scale not in DAMPING_SCALES:
            raise OptimizerError(f"unknown damping_scale {self.damping_scale!r}; expected one of "
                                 f"{', '.join(DAMPING_SCALES)}")
        if self.solve not in SOLVES:
            raise OptimizerError(f"unknown solve {self.solve!r}; expected one of {', '.join(SOLVES)}")
        if not 0 < self.cg_tol < 1:
            raise OptimizerError(f"cg_tol must be in (0, 1), got {self.cg_tol!r}")
        if self.cg_max_iter is not None and (isinstance(self.cg_max_iter, bool) or not isinstance(
                self.cg_max_iter, int) or self.cg_max_iter < 1):
            raise OptimizerError(f"cg_max_iter must be a positive integer or None, got {self.cg_max_iter!r}")
        if self.unobserved is not None:
            if isinstance(self.unobserved, bool) or not isinstance(self.unobserved, int) or self.unobserved < 0:
                raise OptimizerError(f"unobserved must be a non-negative integer or None, got {self.unobserved!r}")
            if self.fisher != "train":
                raise OptimizerError(f"unobserved adds entries to fisher='train'; fisher={self.fisher!r} averages "
                                     "over every entry already")
        if self.unlabeled is not None:
            if isinstance(self.unlabeled, bool) or not isinstance(self.unlabeled, int) or self.unlabeled < 0:
                raise OptimizerError(f"unlabeled must be a non-negative integer or None, got {self.unlabeled!r}")
            if self.fisher == "output":
                raise OptimizerError("unlabeled does not apply to fisher='output' (every entry of a factorization's "
                                     "W); use fisher='population' or 'train' on supervised data")
            if self.fisher == "population" and self.unlabeled == 0:
                raise OptimizerError("fisher='population' averages over unlabeled inputs: unlabeled must be at "
                                     "least 1")

    @property
    def name(self) -> str:
        return "ngd" + ("+" + self.step_rule if self.step_rule != "gd" else "") + ("+momentum" if self.momentum else "")

    def num_unlabeled(self, problem) -> int:
        """``M``: the unlabeled inputs the Fisher of a run on ``problem`` averages over (0: none)."""
        if problem.task != "supervised":
            return 0
        if self.unlabeled is not None:
            return self.unlabeled
        if self.fisher != "population":
            return 0
        available = problem.num_unlabeled
        # A problem without unlabeled inputs (available 0) keeps the default: drawing them is the error to report.
        return DEFAULT_UNLABELED if not available else min(DEFAULT_UNLABELED, available)

    def run_diagnostics(self, problems, num_parameters: int) -> dict:
        """What each run's diagnostics add: the damping, the Fisher, its unlabeled inputs ``M`` (``None`` where it
        has no inputs to draw: a factorization's) and the solve ``auto`` resolved to."""
        problem = problems[0]
        supervised = problem.task == "supervised"
        unlabeled = self.num_unlabeled(problem) if supervised else None
        if supervised or self.fisher == "train":
            outputs = problem.num_train + (unlabeled or 0) + (self.unobserved or 0)
        else:
            outputs = math.prod(problem.shape)
        return {"damping": self.damping, "damping_decay": self.damping_decay, "damping_min": self.damping_min,
                "damping_scale": self.damping_scale, "fisher": self.fisher, "unlabeled": unlabeled,
                "unobserved": self.unobserved, "solve": _pick(self.solve, outputs, num_parameters)}

    def init(self, problems, model, seeds):
        """GD's state, and each run's unlabeled inputs (drawn from ``(seed, "unlabeled")``) where its Fisher has
        some (:data:`UNLABELED_ATTRIBUTE` of the objective)."""
        if self.fisher == "output" and not model.scores_array:
            raise OptimizerError(f"fisher='output' needs a model whose outputs are the whole function (a "
                                 f"factorization's W, a CP model's T); {model.family} has outputs only on data "
                                 f"points: its Fisher over the input distribution is fisher='population'")
        if self.unlabeled is not None and model.scores_array:
            raise OptimizerError(f"unlabeled={self.unlabeled} needs supervised data: a {model.family} model's "
                                 f"Fisher over the input distribution is over every entry of its output already "
                                 f"(fisher='population'), with no inputs to draw")
        state = super().init(problems, model, seeds)
        seeds = list(seeds)
        problems = list(problems) * (len(seeds) if len(problems) == 1 else 1)
        if self.per_run_solves and self.damping_scale != "fixed":
            raise OptimizerError("the per-run solves have the fixed damping only; damping_scale='curvature' needs "
                                 "the batched solves")
        if self.unobserved:
            self._draw_unobserved(state.objective, problems, seeds)
        count = self.num_unlabeled(problems[0])
        if count:
            if self.per_run_solves:
                raise OptimizerError("the per-run solves have the training and output Fishers only; unlabeled "
                                     "inputs need the batched solves")
            pools = [problem.unlabeled_inputs(count, make_generator(seed, "unlabeled"))
                     for problem, seed in zip(problems, seeds)]
            setattr(state.objective, UNLABELED_ATTRIBUTE, torch.stack(pools).to(state.params))
        return state

    def _draw_unobserved(self, objective, problems, seeds) -> None:
        """Each run's ``unobserved`` entries (indices among its task's unobserved entries, from ``(seed,
        "unobserved")``), as the objective's :data:`UNOBSERVED_ATTRIBUTE`."""
        problem = problems[0]
        if problem.task != "completion":
            raise OptimizerError(f"unobserved={self.unobserved} needs a completion task (its unobserved entries are "
                                 f"inputs the Fisher can add); this task is {problem.task}")
        if self.per_run_solves:
            raise OptimizerError("the per-run solves have the training and output Fishers only; unobserved entries "
                                 "need the batched solves")
        available = math.prod(problem.shape) - problem.num_measurements
        if self.unobserved > available:
            raise OptimizerError(f"unobserved={self.unobserved} is more than the task's {available} unobserved "
                                 "entries")
        picks = [torch.randperm(available, generator=make_generator(seed, "unobserved"))[: self.unobserved]
                 for seed in seeds]
        setattr(objective, UNOBSERVED_ATTRIBUTE, torch.stack(picks).to(objective.tensors.operator.device))

    def directions(self, objective, params: torch.Tensor, gradient: torch.Tensor,
                   active: torch.Tensor) -> tuple[torch.Tensor, dict[int, str]]:
        """This NGD's directions at constant damping (its flow's vector field, negated), for runs ``(S, P)`` of
        ``objective``: ``(directions, failures by run)`` (:func:`natural_gradient_directions`)."""
        out, failures, _method = natural_gradient_directions(
            objective, params, gradient, active, damping=self.damping, solve=self.solve, cg_tol=self.cg_tol,
            cg_max_iter=self.cg_max_iter, fisher=self.fisher, unlabeled=getattr(objective, UNLABELED_ATTRIBUTE, None),
            damping_scale=self.damping_scale, unobserved=getattr(objective, UNOBSERVED_ATTRIBUTE, None))
        return out, failures

    def run_batch(self, problems, model, budget, seeds, *, observers=()):
        """NGD's steps (:meth:`GradientDescent.run_batch`) or, with ``flow``, each run's natural gradient flow up
        to time ``lr x budget`` (:func:`~volumelab.optimizers.ngd_flow.flow_results`)."""
        if not self.flow:
            return super().run_batch(problems, model, budget, seeds, observers=observers)
        from .ngd_flow import flow_results

        return flow_results(self, problems, model, budget, seeds, observers)

    def preconditioner(self) -> GradientTransformation:
        natural = scale_by_natural_gradient(damping=self.damping, solve=self.solve, cg_tol=self.cg_tol,
                                            cg_max_iter=self.cg_max_iter, fisher=self.fisher,
                                            damping_decay=self.damping_decay, damping_min=self.damping_min,
                                            per_run=self.per_run_solves, damping_scale=self.damping_scale)
        if self.step_rule == "group_rmsprop":
            return chain(natural, super().preconditioner())
        return natural
