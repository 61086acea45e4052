"""Natural gradient *flow*: the ``lr -> 0`` limit of natural gradient descent, integrated as an ODE.

The claims of arXiv 2111.11542 are about the flow

    d theta / dt = -(G(theta) + lambda I)^{-1} grad L(theta),

not about steps of one size. :func:`natural_gradient_flow` integrates it with an adaptive
Runge-Kutta method (``scipy.integrate.solve_ivp``, Dormand-Prince 5(4) by default) whose
error control makes the step as small as the vector field needs: near the saddle a small
initialization starts at, steps are long; where the path turns, short. The vector field is
the natural-gradient direction of
:meth:`~volumelab.optimizers.natural_gradient.NaturalGradientDescent.directions` (a batch of one run) with the optimizer's damping, Fisher (its unlabeled pool too) and solve, so a flow and the steps of the same
:class:`~volumelab.optimizers.natural_gradient.NaturalGradientDescent` differ only by the
discretization: ``theta_k`` after ``k`` steps of size ``lr`` is ``theta(k lr) + O(lr)``
(Euler's method is first order), which the tests check at two step sizes.

The flow of each run is integrated alone (its own step sizes), so a run's path does not depend
on the other runs of a batch. Time is the steps' ``lr x steps``. Only the plain step rule has a
flow: momentum, the global RMS step and a damping that decays per step are properties of the
discrete steps, and asking for their flow is an error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from ..errors import OptimizerError
from .base import RunResult

__all__ = ["FLOW_ATOL", "FLOW_RTOL", "FlowPath", "flow_results", "natural_gradient_flow"]

#: The integrator's relative and absolute error tolerances per step for ``NaturalGradientDescent(flow=True)``.
FLOW_RTOL, FLOW_ATOL = 1e-8, 1e-10


@dataclass
class FlowPath:
    """One run's natural gradient flow.

    Attributes:
        status: ``"completed"`` (integrated to the end), ``"solve_failed"`` (the natural-gradient system
            could not be solved on the way: singular without damping), ``"diverged"`` (non-finite numbers),
            or ``"integration_failed"`` (the ODE solver gave up, e.g. its step fell below its minimum).
        times: ``(K,)`` the times the path was recorded at (those asked for, up to where it stopped).
        params: ``(K, P)`` the parameters at those times (float64).
        train_loss: ``(K,)`` the training loss there.
        gen_loss: ``(K,)`` the generalization loss there.
        evaluations: Vector-field evaluations (one natural-gradient solve each).
        steps: The integrator's accepted steps.
        message: Why it stopped, when it did not complete.
    """

    status: str
    times: np.ndarray
    params: np.ndarray
    train_loss: np.ndarray
    gen_loss: np.ndarray
    evaluations: int
    steps: int
    message: str = ""
    diagnostics: dict = field(default_factory=dict)


def _check_flowable(optimizer) -> None:
    if optimizer.step_rule != "gd" or optimizer.momentum:
        raise OptimizerError("the natural gradient flow is that of the plain step: momentum and the global RMS "
                             "step (step_rule group_rmsprop) have none; use step_rule gd and momentum 0")
    if optimizer.damping_decay != 1.0:
        raise OptimizerError("the natural gradient flow takes a constant damping; damping_decay (per step) has no "
                             "flow")


def natural_gradient_flow(optimizer, problem, model, seed: int, *, time: float,
                          times: Sequence[float] | None = None, rtol: float = 1e-8, atol: float = 1e-10,
                          method: str = "RK45") -> FlowPath:
    """Integrate the natural gradient flow of ``optimizer`` from its initialization of ``seed`` up to ``time``.

    Args:
        optimizer: The NGD whose damping, Fisher, solve and initialization (``init_scale``, ``seed``) define
            the flow; its ``lr`` is not used (time is continuous).
        problem: The training problem.
        model: The model (factorization, MLP, ...).
        seed: The run's seed: the same initialization as ``optimizer.run(problem, model, steps, seed)``.
        time: How long to integrate (NGD's ``lr x steps``).
        times: Where to record the path (default: 0 and ``time``); sorted, within ``[0, time]``.
        rtol, atol: The integrator's relative and absolute error tolerances per step.
        method: A ``scipy.integrate.solve_ivp`` method (``RK45``, ``DOP853``, ``Radau``, ...).

    Returns:
        A :class:`FlowPath`; a flow that cannot continue ends with its status and the path up to there,
        never a made-up point.
    """
    from scipy.integrate import solve_ivp

    _check_flowable(optimizer)
    if not (np.isfinite(time) and time > 0):
        raise OptimizerError(f"time must be a positive finite number, got {time!r}")
    times = np.array([0.0, float(time)] if times is None else sorted(float(t) for t in times))
    if times.size == 0 or times[0] < 0 or times[-1] > time:
        raise OptimizerError(f"times must lie within [0, {time}]")
    state = optimizer.init([problem], model, [seed])
    objective = state.objective
    active = torch.ones(1, dtype=torch.bool, device=state.params.device)
    start = state.params[0].detach().cpu().numpy().astype(np.float64)
    counter = {"evaluations": 0}

    class _Stop(Exception):
        pass

    failure: dict[str, str] = {}

    def field_at(_t: float, theta: np.ndarray) -> np.ndarray:
        counter["evaluations"] += 1
        params = torch.from_numpy(np.ascontiguousarray(theta)).to(state.params)
        train, gradient = objective.train_loss_and_gradient(params.unsqueeze(0))
        if not (bool(torch.isfinite(train).all()) and bool(torch.isfinite(gradient).all())):
            failure.update(status="diverged", message="the loss or its gradient is not finite")
            raise _Stop
        directions, failures = optimizer.directions(objective, params.unsqueeze(0), gradient, active)
        if failures:
            failure.update(status="solve_failed", message=failures[0])
            raise _Stop
        return -directions[0].detach().cpu().numpy()

    # solve_ivp cannot be told to stop from inside the vector field: integrate piece by piece between the
    # recording times, so a failure keeps the path up to the last time reached.
    recorded_t, recorded_theta = ([0.0], [start]) if times[0] == 0 else ([], [])
    theta, now, steps, status, message = start, 0.0, 0, "completed", ""
    for target in times[times > 0]:
        try:
            solution = solve_ivp(field_at, (now, float(target)), theta, method=method, rtol=rtol, atol=atol)
        except _Stop:
            status, message = failure["status"], failure["message"]
            break
        steps += int(solution.t.size - 1)
        if not solution.success:
            status, message = "integration_failed", str(solution.message)
            break
        theta, now = solution.y[:, -1], float(target)
        recorded_t.append(now)
        recorded_theta.append(theta)
    params = torch.from_numpy(np.array(recorded_theta)).to(state.params) if recorded_theta else None
    if params is not None:
        train, gen = _losses_each(objective, params)
        train_loss, gen_loss = train.cpu().numpy(), gen.cpu().numpy()
    else:
        train_loss = gen_loss = np.zeros(0)
    return FlowPath(status, np.array(recorded_t), np.array(recorded_theta).reshape(len(recorded_t), -1),
                    train_loss, gen_loss, counter["evaluations"], steps, message,
                    {"method": method, "rtol": rtol, "atol": atol, "time": float(time), "seed": seed,
                     **optimizer.run_diagnostics([problem], start.size)})


def _losses_each(objective, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(train, gen)`` at each row of ``params`` (``(K, P)``) for an objective built for one run."""
    pairs = [objective.losses(row.unsqueeze(0)) for row in params]
    return torch.cat([train for train, _ in pairs]), torch.cat([gen for _, gen in pairs])


def flow_results(optimizer, problems, model, budget: int, seeds, observers=()) -> list:
    """``NaturalGradientDescent(flow=True).run_batch``: one :class:`~volumelab.optimizers.RunResult` per seed, the
    flow integrated to time ``lr x budget`` (tolerances :data:`FLOW_RTOL`, :data:`FLOW_ATOL`).

    Its metrics are a step run's (``train_loss``, ``gen_loss``, the task's extras at the end) with ``steps`` the
    steps the time stands for (``budget``; the steps taken before a failure when it stopped early), and the
    integrator's work: ``flow_time``, ``flow_steps`` (accepted steps), ``flow_evaluations`` (solves).
    """
    if observers:
        raise OptimizerError("the natural gradient flow records no trajectories, outputs or NTK yet; drop the "
                             "observer options (trajectory_every, keep_outputs, ntk_metrics, limit_directions) or the flow")
    if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
        raise OptimizerError(f"the flow needs at least one step of time (lr x steps), got steps={budget!r}")
    seeds = list(seeds)
    problems = list(problems) * (len(seeds) if len(problems) == 1 else 1)
    total = optimizer.lr * budget
    results = []
    for problem, seed in zip(problems, seeds):
        path = natural_gradient_flow(optimizer, problem, model, seed, time=total, rtol=FLOW_RTOL, atol=FLOW_ATOL)
        done = path.status == "completed"
        reached = float(path.times[-1]) if path.times.size else 0.0
        metrics = {"train_loss": float(path.train_loss[-1]) if done else None,
                   "gen_loss": float(path.gen_loss[-1]) if done else None,
                   "steps": budget if done else int(reached / optimizer.lr),
                   "diverged_at_step": None if path.status != "diverged" else int(reached / optimizer.lr),
                   "flow_time": total, "flow_steps": path.steps, "flow_evaluations": path.evaluations}
        if done:
            state = optimizer.init([problem], model, [seed])
            final = torch.from_numpy(path.params[-1:]).to(state.params)
            extra = state.objective.extra_metrics(final)
            metrics.update({name: (float(values[0]) if np.isfinite(float(values[0])) else None)
                            for name, values in extra.items()})
        status = {"completed": "completed", "diverged": "diverged", "solve_failed": "solve_failed"}.get(
            path.status, "integration_failed")
        diagnostics = {"optimizer": optimizer.name + "+flow", "lr": optimizer.lr, "init_scale": optimizer.init_scale,
                       "seed": seed, "device": "cpu", **path.diagnostics}
        if path.message:
            diagnostics["failure"] = path.message
            metrics["failed_at_step"] = int(reached / optimizer.lr) if status == "solve_failed" else None
        history = {"step": [round(float(t) / optimizer.lr) for t in path.times],
                   "train_loss": [float(v) for v in path.train_loss], "gen_loss": [float(v) for v in path.gen_loss]}
        results.append(RunResult(optimizer.method, status, metrics, {}, history, diagnostics))
    return results
