"""Full-batch gradient descent from small initialization, with composable step rules.

An update is a chain, Optax style: the gradient, then a preconditioner (identity or
the paper's global RMS scaling), then heavy-ball momentum, then the step size.

The paper's adaptive rule (arXiv 2506.03931, App. "Gradient descent"), here
``group_rmsprop``, is one scalar for all parameters:

    v_t    = 0.99 v_{t-1} + 0.01 ||g_t||^2          (total squared gradient norm)
    u_t    = g_t / (sqrt(v_t / (1 - 0.99^t)) + 1e-6)
    b_t    = beta b_{t-1} + u_t                      (heavy-ball, when beta > 0)
    theta -= lr * b_t

Runs are batched over a leading axis: several seeds (or problems of equal shape)
advance together, each with its own statistics, so ``run_batch`` of ``S`` seeds equals
``S`` calls of ``run``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from .._rng import make_generator
from ..device import resolve_device
from ..errors import OptimizerError
from ..models import FactorizationModel
from ..problems import Problem
from .base import RunResult

__all__ = ["GradientDescent", "STEP_RULES"]

logger = logging.getLogger(__name__)

STEP_RULES = ("gd", "group_rmsprop")


@dataclass(frozen=True)
class GradientDescent:
    """Full-batch GD on ``L_train`` from ``init_scale`` times the default linear init.

    Attributes:
        lr: Step size.
        init_scale: Multiplier of PyTorch's default uniform linear-layer initialization.
        step_rule: ``"gd"`` (plain) or ``"group_rmsprop"`` (the paper's global adaptive step).
        momentum: Heavy-ball coefficient ``beta`` in ``[0, 1)``; 0 disables it.
        ema_decay: Decay of the squared-gradient-norm average (``group_rmsprop``).
        stability_eps: Added to the RMS in the denominator (``group_rmsprop``).
        train_loss_threshold: Stop a run once ``L_train`` falls below this.
        log_every: Steps between history entries; ``None`` gives about 200 entries.
        device: ``"auto" | "cpu" | "cuda"``.
        progress: Show a progress bar.
    """

    lr: float
    init_scale: float = 1e-3
    step_rule: str = "gd"
    momentum: float = 0.0
    ema_decay: float = 0.99
    stability_eps: float = 1e-6
    train_loss_threshold: float | None = None
    log_every: int | None = None
    device: str = "cpu"
    progress: bool = False

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

    @property
    def name(self) -> str:
        return self.step_rule + ("+momentum" if self.momentum else "")

    def run(self, problem: Problem, model: FactorizationModel, budget: int, seed: int = 0) -> RunResult:
        """Run ``budget`` full-batch steps; the initialization comes from ``(seed, "init")``.

        Returns:
            A :class:`RunResult` with metrics ``train_loss``, ``gen_loss`` (``None`` if
            the run diverged), ``steps`` and ``diverged_at_step``, and a history.
        """
        return self.run_batch([problem], model, budget, [seed])[0]

    def run_batch(
        self, problems: Sequence[Problem], model: FactorizationModel, budget: int, seeds: Sequence[int]
    ) -> list[RunResult]:
        """Run one GD per ``(problem, seed)`` pair, all advancing together as one batch.

        Args:
            problems: One problem per run (all of the model's shape), or a single problem
                shared by every seed.
            model: The factorization.
            budget: Number of steps.
            seeds: One seed per run; run ``i`` starts from ``(seeds[i], "init")``.
        """
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 0:
            raise OptimizerError(f"the number of steps must be a non-negative integer, got {budget!r}")
        seeds = list(seeds)
        problems = list(problems)
        if len(problems) == 1 and len(seeds) > 1:
            problems = problems * len(seeds)
        if not seeds or len(problems) != len(seeds):
            raise OptimizerError(f"need one problem per seed, got {len(problems)} problems and {len(seeds)} seeds")
        for problem in problems:
            if (problem.rows, problem.cols) != (model.rows, model.cols):
                raise OptimizerError(
                    f"model is {model.rows}x{model.cols} but a problem is {problem.rows}x{problem.cols}"
                )
        num_train = {p.num_measurements for p in problems}
        if len(num_train) != 1 or len({p.num_test for p in problems}) != 1:
            raise OptimizerError("problems in one batch must have the same number of measurements")

        device = resolve_device(self.device)
        dtype = torch.float64
        tensors = [p.tensors(device, dtype) for p in problems]
        operator = torch.stack([t.operator for t in tensors])  # (S, n, m + t)
        targets = torch.stack([t.targets for t in tensors]).unsqueeze(1)  # (S, 1, m + t)
        m = tensors[0].num_train
        size = len(seeds)

        def losses(weights):
            flat = model.end_to_end(weights).reshape(size, 1, -1)
            squared = (flat @ operator - targets).square().squeeze(1)
            return squared[:, :m].mean(-1), squared[:, m:].mean(-1)

        inits = [model.initialize(self.init_scale, make_generator(s, "init"), dtype=dtype) for s in seeds]
        params = [torch.stack([init[j] for init in inits]).to(device).requires_grad_(True) for j in range(model.depth)]
        momentum_buffers = [torch.zeros_like(p) for p in params] if self.momentum else None
        ema = torch.zeros(size, dtype=dtype, device=device)
        active = torch.ones(size, dtype=torch.bool, device=device)
        diverged_at = [None] * size
        converged_at = [None] * size
        steps_done = torch.zeros(size, dtype=torch.long)
        log_every = self.log_every or max(1, budget // 200)
        history = {"step": [], "train_loss": [], "gen_loss": []}
        start = time.perf_counter()

        def record(step, train, gen):
            history["step"].append(step)
            history["train_loss"].append(train.detach().cpu().tolist())
            history["gen_loss"].append(gen.detach().cpu().tolist())

        with tqdm(total=budget, unit="step", disable=not self.progress, desc=f"GD ({self.name})") as bar:
            for step in range(budget):
                train, gen = losses(params)
                if step % log_every == 0:
                    record(step, train, gen)
                finite = torch.isfinite(train)
                newly_bad = active & ~finite
                if self.train_loss_threshold is not None:
                    reached = active & finite & (train < self.train_loss_threshold)
                    for i in reached.nonzero().flatten().tolist():
                        converged_at[i] = step
                    active &= ~reached
                for i in newly_bad.nonzero().flatten().tolist():
                    diverged_at[i] = step
                active &= finite
                if not bool(active.any()):
                    break
                grads = torch.autograd.grad(train.sum(), params)
                with torch.no_grad():
                    grads = [torch.nan_to_num(g, nan=0.0, posinf=0.0, neginf=0.0) for g in grads]
                    if self.step_rule == "group_rmsprop":
                        squared_norm = sum(g.square().flatten(1).sum(1) for g in grads)
                        ema.mul_(self.ema_decay).add_((1 - self.ema_decay) * squared_norm)
                        corrected = ema / (1 - self.ema_decay ** (step + 1))
                        scale = 1.0 / (corrected.sqrt() + self.stability_eps)
                        grads = [g * scale.view(-1, 1, 1) for g in grads]
                    if momentum_buffers is not None:
                        for buffer, g in zip(momentum_buffers, grads):
                            buffer.mul_(self.momentum).add_(g)
                        grads = momentum_buffers
                    mask = active.to(dtype).view(-1, 1, 1)
                    for p, g in zip(params, grads):
                        p.sub_(self.lr * mask * g)
                    steps_done += active.cpu().long()
                bar.update(1)
        with torch.no_grad():
            train, gen = losses(params)
        record(int(steps_done.max()), train, gen)
        seconds = time.perf_counter() - start
        results = []
        for i, seed in enumerate(seeds):
            final_train = float(train[i])
            final_gen = float(gen[i])
            if diverged_at[i] is not None or not (math.isfinite(final_train) and math.isfinite(final_gen)):
                status = "diverged"
                if diverged_at[i] is None:
                    diverged_at[i] = int(steps_done[i])
                final_train = final_gen = None
            elif converged_at[i] is not None:
                status = "converged"
            else:
                status = "completed"
            metrics = {
                "train_loss": final_train,
                "gen_loss": final_gen,
                "steps": int(steps_done[i]),
                "diverged_at_step": diverged_at[i],
            }
            run_history = {
                "step": list(history["step"]),
                "train_loss": [row[i] for row in history["train_loss"]],
                "gen_loss": [row[i] for row in history["gen_loss"]],
            }
            diagnostics = {
                "optimizer": self.name,
                "lr": self.lr,
                "init_scale": self.init_scale,
                "momentum": self.momentum,
                "device": str(device),
                "seed": seed,
                "batch": size,
                "seconds": seconds,
            }
            if status == "diverged":
                logger.warning("GD (seed %d) diverged at step %s", seed, diverged_at[i])
            results.append(RunResult("gd", status, metrics, {}, run_history, diagnostics))
        return results
