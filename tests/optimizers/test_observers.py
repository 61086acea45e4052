"""Observers of the training loop: they never change a run's numbers, and what they record is checked
against independent computations (a plain loop over the training points for the NTK, float64)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab.diagnostics.ntk import NTKLaziness
from volumelab.errors import OptimizerError
from volumelab.optimizers.observers import FinalOutputs, Trajectory

OBSERVER_METRICS = {"ntk_lambda_min", "ntk_lambda_max", "ntk_change", "param_change", "loss_rate", "predicted_rate"}


@pytest.mark.parametrize("optimizer", [vl.GradientDescent(lr=0.2, init_scale=1.0),
                                       vl.NaturalGradientDescent(lr=0.2, init_scale=1.0, damping=1e-3)])
def test_observers_do_not_change_the_runs(optimizer):
    problem = vl.make_supervised("teacher", 12, seed=1, num_test=20, num_features=3)
    model = vl.MLPModel(3, 6, 2, activation="tanh")
    plain = optimizer.run_batch([problem], model, 25, [0, 1, 2])
    observed = optimizer.run_batch([problem], model, 25, [0, 1, 2],
                                   observers=[FinalOutputs(), Trajectory(4), NTKLaziness()])
    for alone, watched in zip(plain, observed):
        assert watched.status == alone.status
        assert {k: v for k, v in watched.metrics.items() if k not in OBSERVER_METRICS} == alone.metrics
        assert watched.history == alone.history
        assert not alone.arrays and set(watched.arrays) == {"layer_1", "layer_2", "outputs", "trajectory",
                                                            "trajectory_train", "trajectory_steps"}


def _jacobian_loop(model: vl.MLPModel, layers: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``d f(x_i) / d theta`` one training point at a time, by autograd on the plain forward pass."""
    rows = []
    for x in inputs:
        leaves = [layer.detach().clone().requires_grad_(True) for layer in layers]
        output = model.forward(leaves, x.unsqueeze(0)).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(output, leaves)]))
    return torch.stack(rows)


def test_ntk_laziness_matches_a_plain_loop_and_the_linearized_rate():
    """lambda_min/max of J J^T at the start, ||K_T - K_0|| / ||K_0||, ||theta_T - theta_0|| / ||theta_0||,
    ln(L_0 / L_T) / T and -2 ln max_i |1 - lr (2/n) lambda_i| (plain GD on the squared loss, whose output
    Hessian is the constant 2/n: L_T <= rho^(2T) L_0 for the linearized dynamics)."""
    problem = vl.make_supervised("teacher", 10, seed=3, num_test=20, num_features=3)
    model = vl.MLPModel(3, 5, 2, activation="tanh")
    lr, steps = 0.3, 20
    optimizer = vl.GradientDescent(lr=lr, init_scale=1.0)
    start = optimizer.run(problem, model, 0, seed=5, observers=[FinalOutputs()])
    result = optimizer.run(problem, model, steps, seed=5, observers=[FinalOutputs(), NTKLaziness()])
    assert result.status == "completed"
    inputs = problem.inputs()[: problem.num_train].double()
    before = [torch.as_tensor(start.arrays[f"layer_{j}"]) for j in (1, 2)]
    after = [torch.as_tensor(result.arrays[f"layer_{j}"]) for j in (1, 2)]
    k0 = _jacobian_loop(model, before, inputs)
    k0 = k0 @ k0.T
    kt = _jacobian_loop(model, after, inputs)
    kt = kt @ kt.T
    eigenvalues = torch.linalg.eigvalsh(k0)
    metrics = result.metrics
    assert metrics["ntk_lambda_min"] == pytest.approx(float(eigenvalues[0]), rel=1e-9)
    assert metrics["ntk_lambda_max"] == pytest.approx(float(eigenvalues[-1]), rel=1e-9)
    assert metrics["ntk_change"] == pytest.approx(float(torch.linalg.norm(kt - k0) / torch.linalg.norm(k0)), rel=1e-9)
    theta0, theta = (torch.cat([layer.reshape(-1) for layer in ls]) for ls in (before, after))
    assert metrics["param_change"] == pytest.approx(float(torch.linalg.norm(theta - theta0) / torch.linalg.norm(theta0)),
                                                    rel=1e-12)
    assert metrics["loss_rate"] == pytest.approx(math.log(result.history["train_loss"][0] / metrics["train_loss"])
                                                 / steps, rel=1e-12)
    h = 2.0 / problem.num_train
    rho = max(abs(1 - lr * h * float(eigenvalues[0])), abs(1 - lr * h * float(eigenvalues[-1])))
    assert 0 < rho < 1
    assert metrics["predicted_rate"] == pytest.approx(-2 * math.log(rho), rel=1e-9)


def test_ntk_laziness_has_no_predicted_rate_for_momentum_and_only_start_values_for_a_diverged_run():
    problem = vl.make_supervised("teacher", 10, seed=3, num_test=20, num_features=3)
    model = vl.MLPModel(3, 5, 2, activation="tanh")
    momentum = vl.GradientDescent(lr=0.1, init_scale=1.0, momentum=0.5).run(problem, model, 5, seed=0,
                                                                             observers=[NTKLaziness()])
    assert momentum.metrics["predicted_rate"] is None and momentum.metrics["ntk_lambda_min"] > 0
    diverged = vl.GradientDescent(lr=1e4, init_scale=1.0).run(problem, model, 50, seed=0, observers=[NTKLaziness()])
    assert diverged.status == "diverged"
    assert diverged.metrics["ntk_lambda_max"] > 0
    assert all(diverged.metrics[key] is None for key in ("ntk_change", "param_change", "loss_rate", "predicted_rate"))


def test_a_bad_observer_is_a_one_line_error():
    problem = vl.make_sensing(4, 4, 1, 8, seed=0)
    model = vl.FactorizationModel(4, 4, 3, 2)
    with pytest.raises(OptimizerError, match="an observer must be .*Observer, got str"):
        vl.GradientDescent(lr=0.1).run(problem, model, 3, observers=["trajectory"])
    with pytest.raises(OptimizerError, match="every positive number of steps, got 0"):
        Trajectory(0)

