"""Adam and minibatch SGD in GD's trainer, each against a plain computation in float64.

* Adam's transform against ``torch.optim.Adam`` on the same layers, the same start and the same losses;
* muP's Adam learning rates (Tensor Programs V, Table 3) against the table's formula, per stored layer and
  as the effective weights' first step (at step 1 Adam's update is ``sign(g)`` to within ``eps``);
* minibatches against an independent draw of the same epochs, and a plain SGD loop on them;
* ``batch_size = n`` against full-batch GD; a batch of seeds against one run per seed.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volumelab._rng import make_generator
from volumelab.models import MLPModel
from volumelab.optimizers import GradientDescent
from volumelab.optimizers.observers import FinalOutputs
from volumelab.problems.supervised import make_supervised

STEPS = 25


@pytest.fixture(scope="module")
def problem():
    return make_supervised("teacher", 24, seed=3, loss="squared", num_test=8, num_features=5)


def _final_layers(result) -> list[np.ndarray]:
    return [result.arrays[f"layer_{j + 1}"] for j in range(len([k for k in result.arrays if k.startswith("layer_")]))]


def _start(model, seed: int, init_scale: float) -> list[torch.Tensor]:
    return model.initialize(init_scale, make_generator(seed, "init"), dtype=torch.float64)


def _train_loss(model, layers, problem, indices=None) -> torch.Tensor:
    tensors = problem.tensors("cpu", torch.float64).training_view()
    inputs, targets = tensors.inputs, tensors.targets
    if indices is not None:
        inputs, targets = inputs[indices], targets[indices]
    return (model.forward(layers, inputs) - targets).square().mean()


def _plain_adam(model, problem, *, lr, seed, init_scale, steps, factors, betas=(0.9, 0.999), eps=1e-8):
    """torch.optim.Adam on the stored layers, one parameter group per layer with its learning-rate factor."""
    layers = [layer.clone().requires_grad_(True) for layer in _start(model, seed, init_scale)]
    adam = torch.optim.Adam([{"params": [layer], "lr": lr * factor} for layer, factor in zip(layers, factors)],
                            betas=betas, eps=eps)
    for _ in range(steps):
        adam.zero_grad()
        _train_loss(model, layers, problem).backward()
        adam.step()
    return [layer.detach().numpy() for layer in layers]


@pytest.mark.parametrize("parametrization", ["standard", "ntk"])
def test_adam_equals_torch_adam_on_the_same_layers(problem, parametrization):
    model = MLPModel(5, 16, 3, "tanh", parametrization=parametrization)
    optimizer = GradientDescent(lr=3e-3, init_scale=1.0, step_rule="adam", adam_beta1=0.8, adam_beta2=0.99,
                                adam_eps=1e-7)
    result = optimizer.run(problem, model, STEPS, seed=2, observers=[FinalOutputs()])
    expected = _plain_adam(model, problem, lr=3e-3, seed=2, init_scale=1.0, steps=STEPS, factors=[1.0] * 3,
                           betas=(0.8, 0.99), eps=1e-7)
    for got, want in zip(_final_layers(result), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def test_mup_adam_learning_rates_are_table_3s_for_the_stored_layers():
    """Table 3's Adam LR of the effective weights (input 1, hidden 1/fan_in, output 1/fan_in; biases 1) divided
    by each layer's multiplier (the readout's 1/sqrt(fan_in); the others 1)."""
    width = 16
    model = MLPModel(5, width, 4, "relu", parametrization="mup", bias=True)
    readout = 1 / math.sqrt(width)
    expected = [(1.0, 1.0), (1 / width, 1.0), (1 / width, 1.0), ((1 / width) / readout, 1 / readout)]
    np.testing.assert_allclose(model.adam_learning_rate_multipliers, expected, rtol=1e-15)
    no_bias = MLPModel(5, width, 4, "relu", parametrization="mup")
    np.testing.assert_allclose(no_bias.adam_learning_rate_multipliers, [(w, w) for w, _ in expected], rtol=1e-15)
    for parametrization in ("standard", "ntk"):
        assert MLPModel(5, width, 4, "relu", parametrization=parametrization).adam_learning_rate_multipliers == (
            ((1.0, 1.0),) * 4)


@pytest.mark.parametrize("width", [16, 64])
def test_mup_adam_first_step_moves_effective_weights_by_table_3s_rates(problem, width):
    """At step 1 Adam's update is g / (|g| + eps): sign(g) to within eps / |g|. So every effective weight
    m_j W_j moves by lr times Table 3's rate (1, 1/fan_in, 1/fan_in), whatever its gradient's scale."""
    lr = 1e-3
    model = MLPModel(5, width, 3, "relu", parametrization="mup")
    result = GradientDescent(lr=lr, init_scale=1.0, step_rule="adam", adam_eps=1e-30).run(
        problem, model, 1, seed=0, observers=[FinalOutputs()])
    start = _start(model, 0, 1.0)
    table = [1.0, 1 / width, 1 / width]  # input, hidden (fan_in = width), output (fan_in = width)
    for j, (final, initial) in enumerate(zip(_final_layers(result), start)):
        moved = np.abs(final - initial.numpy()) * model.layer_multipliers[j]
        moved = moved[moved > 0]  # a ReLU unit dead on every input has no gradient and does not move
        assert moved.size > 0
        np.testing.assert_allclose(moved, lr * table[j], rtol=1e-9)


def test_mup_adam_equals_torch_adam_with_the_tables_per_layer_rates(problem):
    width = 16
    model = MLPModel(5, width, 3, "tanh", parametrization="mup")
    result = GradientDescent(lr=0.05, init_scale=1.0, step_rule="adam").run(problem, model, STEPS, seed=1,
                                                                            observers=[FinalOutputs()])
    factors = [1.0, 1 / width, 1 / math.sqrt(width)]  # the formula of the first test, written out
    expected = _plain_adam(model, problem, lr=0.05, seed=1, init_scale=1.0, steps=STEPS, factors=factors)
    for got, want in zip(_final_layers(result), expected):
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-13)


def _epochs(seed: int, count: int, size: int, steps: int) -> list[torch.Tensor]:
    """The minibatches as the module docstring states them, drawn here independently."""
    generator, batches = make_generator(seed, "minibatch"), []
    while len(batches) < steps:
        order = torch.randperm(count, generator=generator)
        for start in range(0, count - size + 1, size):
            batches.append(torch.sort(order[start:start + size]).values)
    return batches[:steps]


@pytest.mark.parametrize("size", [5, 8])
def test_sgd_equals_a_plain_loop_on_the_same_minibatches(problem, size):
    model = MLPModel(5, 12, 3, "tanh")
    lr, steps = 0.1, 14  # 24 // 5 = 4 minibatches per epoch (the last 4 points unused), 3 with 8: several epochs
    result = GradientDescent(lr=lr, init_scale=1.0, batch_size=size).run(problem, model, steps, seed=4,
                                                                         observers=[FinalOutputs()])
    layers = [layer.clone().requires_grad_(True) for layer in _start(model, 4, 1.0)]
    for indices in _epochs(4, 24, size, steps):
        loss = _train_loss(model, layers, problem, indices)
        grads = torch.autograd.grad(loss, layers)
        with torch.no_grad():
            for layer, grad in zip(layers, grads):
                layer -= lr * grad
    for got, want in zip(_final_layers(result), layers):
        np.testing.assert_allclose(got, want.detach().numpy(), rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("step_rule", ["gd", "adam"])
def test_batch_size_n_equals_full_batch_steps(problem, step_rule):
    model = MLPModel(5, 12, 3, "relu", parametrization="mup")
    full = GradientDescent(lr=0.02, init_scale=1.0, step_rule=step_rule)
    minibatch = GradientDescent(lr=0.02, init_scale=1.0, step_rule=step_rule, batch_size=24)
    for a, b in zip(full.run_batch([problem], model, STEPS, [0, 1]), minibatch.run_batch([problem], model, STEPS, [0, 1])):
        assert a.status == b.status == "completed"
        assert b.metrics["train_loss"] == pytest.approx(a.metrics["train_loss"], rel=1e-12)
        assert b.metrics["gen_loss"] == pytest.approx(a.metrics["gen_loss"], rel=1e-12)


@pytest.mark.parametrize("step_rule", ["gd", "adam"])
def test_a_batch_of_seeds_equals_one_run_per_seed(problem, step_rule):
    model = MLPModel(5, 12, 3, "relu", parametrization="ntk")
    optimizer = GradientDescent(lr=0.05, init_scale=1.0, step_rule=step_rule, batch_size=7)
    together = optimizer.run_batch([problem], model, STEPS, [5, 6, 7])
    for seed, batched in zip([5, 6, 7], together):
        alone = optimizer.run(problem, model, STEPS, seed=seed)
        assert batched.metrics["train_loss"] == pytest.approx(alone.metrics["train_loss"], rel=1e-10)
        assert batched.metrics["gen_loss"] == pytest.approx(alone.metrics["gen_loss"], rel=1e-10)
    # Different seeds draw different minibatches and starts: the runs differ.
    assert len({round(r.metrics["train_loss"], 12) for r in together}) == 3


def test_a_stopped_adam_run_stays_frozen_while_the_others_train(problem):
    """A run that diverges (a huge learning rate on one seed is not possible; a problem per run is) stops with
    a zero update; the finite runs of the same batch equal their runs alone."""
    model = MLPModel(5, 12, 2, "relu")
    optimizer = GradientDescent(lr=1e3, init_scale=1.0, step_rule="adam", batch_size=6)
    results = optimizer.run_batch([problem], model, 200, [0, 1])
    for seed, result in zip([0, 1], results):
        alone = optimizer.run(problem, model, 200, seed=seed)
        assert result.status == alone.status
        if result.status == "completed":
            assert result.metrics["train_loss"] == pytest.approx(alone.metrics["train_loss"], rel=1e-10)
