"""Natural gradient descent: GD preconditioned by the generalized Gauss-Newton matrix.

    theta <- theta - lr (G + lambda I)^{-1} grad L,        G = J^T diag(h) J

``J`` is the Jacobian of the outputs the training loss sees (``z_i = <A_i, W>`` for a
matrix task, ``z_i = f(x_i)`` for supervised data) in the parameters, and ``h`` the
loss's second derivative in each ``z_i`` (the task's :meth:`loss_derivatives`): ``2/m``
for the squared loss, ``sigmoid(z) sigmoid(-z) / n`` for the logistic one. For these
losses ``G`` is the Fisher information. NGD (arXiv 2111.11542) follows nearly the same
path in output space whatever the parametrization, so depth cannot shape its solution.

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

``auto`` picks ``dual`` when there are fewer training outputs than parameters and
``dense`` otherwise. A solve that fails (a singular system without damping, CG out of
its iteration budget, non-finite numbers) stops that run with status
``"solve_failed"`` and the reason in its diagnostics; it never returns a made-up step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..settings import setting
from ..errors import OptimizerError
from .gradient import GradientDescent, register_trainer
from .transforms import GradientTransformation, StepContext, Update, chain

__all__ = ["FISHERS", "NaturalGradientDescent", "SOLVES", "damping_at", "natural_gradient_direction", "scale_by_natural_gradient"]

SOLVES = ("auto", "dense", "dual", "cg")

#: Without damping, a system whose smallest singular value is at most this share of its
#: largest is treated as singular (dense and dual alike).
_SINGULAR_RTOL = 1e-12


class SolveFailed(Exception):
    """The natural-gradient system of one run could not be solved (the message says why)."""


FISHERS = ("train", "output")


def _outputs_function(objective, run: int, fisher: str):
    """``theta (P,) -> z``: what the Fisher is taken over, as a function of run ``run``'s parameters.

    ``"train"``: the ``m`` outputs the training loss sees; ``"output"``: every output of
    the model (all entries of a factorization's ``W``).
    """
    tensors = objective.tensors.run(run)
    model = objective.model
    if fisher == "output":
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
    train, pullback = torch.func.vjp(tensors.train_outputs, outputs)
    first, _second = tensors.loss_derivatives(train)
    return pullback(first)[0], torch.ones_like(outputs)


def _pick(solve: str, num_outputs: int, num_parameters: int) -> str:
    if solve != "auto":
        return solve
    return "dual" if num_outputs < num_parameters else "dense"


def natural_gradient_direction(objective, params: torch.Tensor, gradient: torch.Tensor, run: int, *,
                               damping: float, solve: str = "auto", cg_tol: float = 1e-10,
                               cg_max_iter: int | None = None, fisher: str = "train") -> tuple[torch.Tensor, str]:
    """``(G + damping I)^{-1} gradient`` for run ``run``, and the solve used.

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
        fisher: ``"train"`` (the Gauss-Newton matrix of the outputs the loss sees: the
            definition) or ``"output"`` (``J^T J`` over every output of the model, a
            factorization's whole ``W``: natural gradient in the full function space, an
            ablation that shows what the training outputs leave undetermined).

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


def damping_at(step: int, damping: float, decay: float = 1.0, floor: float = 0.0) -> float:
    """The damping of step ``step`` (0-based): ``max(damping * decay^step, floor)``."""
    return max(damping * decay ** step, floor) if decay != 1.0 else damping


def scale_by_natural_gradient(*, damping: float, solve: str = "auto", cg_tol: float = 1e-10,
                              cg_max_iter: int | None = None, fisher: str = "train", damping_decay: float = 1.0,
                              damping_min: float = 0.0) -> GradientTransformation:
    """The preconditioner ``(G + lambda_t I)^{-1}``, one solve per active run.

    ``lambda_t = max(damping * damping_decay^t, damping_min)`` at step ``t``
    (:func:`damping_at`): constant by default, or large first (robust steps far from the
    solution) and small later (closer to the pseudo-inverse).

    Needs the step's objective in the :class:`StepContext` (GD passes it). A run whose
    solve fails is stopped through :meth:`StepContext.fail` (its row of the update is zero).
    """

    def init(params: torch.Tensor) -> None:
        return None

    def update(update: Update, state: None, context: StepContext) -> tuple[Update, None]:
        gradient = update.materialize()
        out = torch.zeros_like(gradient)
        active = context.active.tolist()
        current = damping_at(context.step, damping, damping_decay, damping_min)
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
        fisher: ``"train"`` (default: the Gauss-Newton matrix of the training outputs, as
            defined above) or ``"output"`` (the Fisher over every output of a
            factorization, all entries of ``W``: see :func:`natural_gradient_direction`).
        damping_decay: ``lambda`` is multiplied by this every step (``1``: constant).
        damping_min: The floor of the decaying damping.

    ``step_rule="group_rmsprop"`` rescales the natural-gradient step by the paper's
    global RMS; ``momentum`` adds heavy-ball momentum after it.
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
                          doc="train: the Gauss-Newton matrix of the outputs the loss sees (NGD as defined); output: "
                              "J^T J over every entry of a factorization's W (natural gradient in the whole function "
                              "space, an ablation).")
    damping_decay: float = setting(1.0, minimum=0, maximum=1, exclusive=(True, False),
                                   doc="Multiply the damping by this every step (1: constant).")
    damping_min: float = setting(0.0, minimum=0, doc="The floor of the decaying damping (at most --damping).")

    method = "ngd"
    summary = "Natural gradient descent: GD preconditioned by the Gauss-Newton (Fisher) matrix."

    def __post_init__(self) -> None:
        super().__post_init__()
        if not (isinstance(self.damping, (int, float)) and math.isfinite(self.damping) and self.damping >= 0):
            raise OptimizerError(f"damping must be a non-negative finite number, got {self.damping!r}")
        if not (isinstance(self.damping_decay, (int, float)) and 0 < self.damping_decay <= 1):
            raise OptimizerError(f"damping_decay must be in (0, 1], got {self.damping_decay!r}")
        if not (isinstance(self.damping_min, (int, float)) and 0 <= self.damping_min <= self.damping):
            raise OptimizerError(f"damping_min must be between 0 and damping = {self.damping!r}, "
                                 f"got {self.damping_min!r}")
        if self.fisher not in FISHERS:
            raise OptimizerError(f"unknown fisher {self.fisher!r}; expected one of {', '.join(FISHERS)}")
        if self.solve not in SOLVES:
            raise OptimizerError(f"unknown solve {self.solve!r}; expected one of {', '.join(SOLVES)}")
        if not 0 < self.cg_tol < 1:
            raise OptimizerError(f"cg_tol must be in (0, 1), got {self.cg_tol!r}")
        if self.cg_max_iter is not None and (isinstance(self.cg_max_iter, bool) or not isinstance(
                self.cg_max_iter, int) or self.cg_max_iter < 1):
            raise OptimizerError(f"cg_max_iter must be a positive integer or None, got {self.cg_max_iter!r}")

    @property
    def name(self) -> str:
        return "ngd" + ("+" + self.step_rule if self.step_rule != "gd" else "") + ("+momentum" if self.momentum else "")

    def run_diagnostics(self, problems, num_parameters: int) -> dict:
        """What each run's diagnostics add: the damping, the Fisher and the solve ``auto`` resolved to."""
        outputs = problems[0].num_train if self.fisher == "train" else math.prod(problems[0].shape)
        return {"damping": self.damping, "damping_decay": self.damping_decay, "damping_min": self.damping_min,
                "fisher": self.fisher, "solve": _pick(self.solve, outputs, num_parameters)}

    def init(self, problems, model, seeds):
        if self.fisher == "output" and not model.scores_array:
            raise OptimizerError(f"fisher='output' needs a model whose outputs are the whole function (a "
                                 f"factorization's W, a CP model's T); {model.family} has outputs only on data points")
        return super().init(problems, model, seeds)

    def preconditioner(self) -> GradientTransformation:
        natural = scale_by_natural_gradient(damping=self.damping, solve=self.solve, cg_tol=self.cg_tol,
                                            cg_max_iter=self.cg_max_iter, fisher=self.fisher,
                                            damping_decay=self.damping_decay, damping_min=self.damping_min)
        if self.step_rule == "group_rmsprop":
            return chain(natural, super().preconditioner())
        return natural
