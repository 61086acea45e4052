"""Naive batched reference implementations, kept only to measure speed-ups against.

* :func:`straightforward_gnc` — the "straightforward batched sampler" the performance
  issue measures against (about 30,000 draws/s at width 160 and 150,000/s at depth 10
  on a 2-core CPU): float64 layers drawn with ``randn`` for a whole batch, batched
  ``matmul`` through the net, losses by ``einsum`` against the ``(m, rows, cols)``
  measurement stack.
* :func:`naive_gnc` — a stronger batched reference: the same algorithm with float32
  layers and float64 losses as one GEMM against the flattened operator.
* :func:`naive_gd_batch` — the original batched GD: autograd through the model, a
  host-side check of every run every step.

Neither is used by the library. Both compute the same quantities as the library (the
G&C one the same distribution of losses; the GD one the same trajectories up to
rounding).
"""

from __future__ import annotations

import math

import torch

import volumelab as vl
from volumelab._rng import make_generator

__all__ = ["naive_gnc", "naive_gd_batch", "straightforward_gnc"]


def straightforward_gnc(problem: vl.Problem, model: vl.FactorizationModel, budget: int, eps: float, *, seed: int = 0,
                        batch: int = 1 << 13) -> dict:
    """G&C as one would first write it: float64 everywhere, ``einsum`` losses."""
    generator = torch.Generator().manual_seed(seed)
    a_train, b_train = problem.A_train.to(torch.float64), problem.b_train.to(torch.float64)
    a_test, b_test = problem.A_test.to(torch.float64), problem.b_test.to(torch.float64)
    total = accepted = 0
    sum_gen = sum_prior_gen = 0.0
    while total < budget:
        size = min(batch, budget - total)
        layers = [
            torch.randn(size, out, inp, generator=generator, dtype=torch.float64).mul_(scale)
            for (out, inp), scale in zip(model.layer_shapes, model.layer_scales)
        ]
        hidden = layers[0]
        for layer in layers[1:]:
            hidden = layer @ model.sigma(hidden)
        weights = model.normalize_output(hidden)
        train = (torch.einsum("nij,mij->nm", weights, a_train) - b_train).square().mean(1)
        gen = (torch.einsum("nij,mij->nm", weights, a_test) - b_test).square().mean(1)
        accept = train < eps
        accepted += int(accept.sum())
        sum_gen += float(gen[accept].sum())
        sum_prior_gen += float(gen.sum())
        total += size
    return {
        "samples": total,
        "accepted": accepted,
        "gen_loss": sum_gen / accepted if accepted else None,
        "prior_gen_loss": sum_prior_gen / total,
    }


def naive_gnc(problem: vl.Problem, model: vl.FactorizationModel, budget: int, eps: float, *, seed: int = 0,
              batch: int = 1 << 14) -> dict:
    """G&C by drawing every layer of ``batch`` nets at once and multiplying through."""
    generator = torch.Generator().manual_seed(seed)
    tensors = problem.tensors("cpu", torch.float64)
    m = tensors.num_train
    total = accepted = 0
    sum_gen = sum_prior_gen = 0.0
    while total < budget:
        size = min(batch, budget - total)
        layers = [
            torch.randn(size, out, inp, generator=generator).mul_(scale)
            for (out, inp), scale in zip(model.layer_shapes, model.layer_scales)
        ]
        hidden = layers[0]
        for layer in layers[1:]:
            hidden = layer @ model.sigma(hidden)
        weights = model.normalize_output(hidden)
        squared = (weights.reshape(size, -1).double() @ tensors.operator - tensors.targets).square()
        train, gen = squared[:, :m].mean(1), squared[:, m:].mean(1)
        accept = train < eps
        accepted += int(accept.sum())
        sum_gen += float(gen[accept].sum())
        sum_prior_gen += float(gen.sum())
        total += size
    return {
        "samples": total,
        "accepted": accepted,
        "gen_loss": sum_gen / accepted if accepted else None,
        "prior_gen_loss": sum_prior_gen / total,
    }


def naive_gd_batch(gd: vl.GradientDescent, problem: vl.Problem, model: vl.FactorizationModel, budget: int,
                   seeds: list[int]) -> list[float]:
    """Batched GD as first written: autograd, per-step host checks. Returns final train losses."""
    tensors = problem.tensors("cpu", torch.float64)
    operator, targets, m = tensors.operator, tensors.targets, tensors.num_train
    size = len(seeds)
    inits = [model.initialize(gd.init_scale, make_generator(s, "init")) for s in seeds]
    params = [torch.stack([init[j] for init in inits]).requires_grad_(True) for j in range(model.depth)]
    ema = torch.zeros(size, dtype=torch.float64)
    active = torch.ones(size, dtype=torch.bool)
    for step in range(budget):
        squared = (model.end_to_end(params).reshape(size, -1) @ operator - targets).square()
        train = squared[:, :m].mean(-1)
        active &= torch.isfinite(train)
        if not bool(active.any()):
            break
        grads = torch.autograd.grad(train.sum(), params)
        with torch.no_grad():
            grads = [torch.nan_to_num(g) for g in grads]
            squared_norm = sum(g.square().flatten(1).sum(1) for g in grads)
            ema.mul_(gd.ema_decay).add_((1 - gd.ema_decay) * squared_norm)
            scale = 1.0 / ((ema / (1 - gd.ema_decay ** (step + 1))).sqrt() + gd.stability_eps)
            mask = active.double().view(-1, 1, 1)
            for p, g in zip(params, grads):
                p.sub_(gd.lr * mask * g * scale.view(-1, 1, 1))
    with torch.no_grad():
        squared = (model.end_to_end(params).reshape(size, -1) @ operator - targets).square()
    return [float(v) if math.isfinite(v) else None for v in squared[:, :m].mean(-1).tolist()]
