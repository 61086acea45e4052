"""GD's step rule as a chain of transforms, against plain loops of the formulas (float64)."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import volumelab as vl
from volumelab.optimizers.transforms import (
    GradientTransformation,
    StepContext,
    Update,
    chain,
    identity,
    scale_by_group_rms,
    scale_by_learning_rate,
    trace_momentum,
)


def _apply(transform, gradients, active=None):
    """Run ``transform`` on a sequence of gradients; returns the parameter after each step."""
    params = torch.zeros_like(gradients[0])
    state = transform.init(params)
    active = torch.ones(params.shape[0], dtype=torch.bool) if active is None else active
    trajectory = []
    for step, gradient in enumerate(gradients):
        update, state = transform.update(Update(gradient.clone()), state, StepContext(step, active, params))
        params = params - (update.direction if update.factor is None else update.factor * update.direction)
        trajectory.append(params.clone())
    return trajectory


def _reference(gradients, *, lr, rms, momentum, decay=0.99, eps=1e-6):
    """The paper's update written as a loop over runs and steps with Python floats."""
    runs, size = gradients[0].shape
    out = []
    params = [[0.0] * size for _ in range(runs)]
    ema = [0.0] * runs
    buffer = [[0.0] * size for _ in range(runs)]
    for step, gradient in enumerate(gradients):
        for r in range(runs):
            g = [float(v) for v in gradient[r]]
            if rms:
                ema[r] = decay * ema[r] + (1 - decay) * sum(v * v for v in g)
                scale = 1.0 / (math.sqrt(ema[r] / (1 - decay ** (step + 1))) + eps)
                g = [v * scale for v in g]
            if momentum:
                buffer[r] = [momentum * b + v for b, v in zip(buffer[r], g)]
                g = buffer[r]
            params[r] = [p - lr * v for p, v in zip(params[r], g)]
        out.append(torch.tensor(params, dtype=torch.float64))
    return out


@pytest.mark.parametrize("rms", [False, True])
@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_chain_equals_the_formulas(rms, momentum):
    generator = torch.Generator().manual_seed(0)
    gradients = [torch.randn(3, 7, generator=generator, dtype=torch.float64) * (1 + step) for step in range(25)]
    parts = [scale_by_group_rms() if rms else identity()]
    if momentum:
        parts.append(trace_momentum(momentum))
    parts.append(scale_by_learning_rate(0.05))
    got = _apply(chain(*parts), gradients)
    want = _reference(gradients, lr=0.05, rms=rms, momentum=momentum)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-14)


def test_stopped_runs_stay_frozen_under_momentum():
    gradients = [torch.ones(2, 4, dtype=torch.float64) for _ in range(5)]
    active = torch.tensor([True, False])
    # The optimizer zeroes a stopped run's gradient; momentum must not carry it anywhere.
    gradients = [g * active.unsqueeze(1) for g in gradients]
    trajectory = _apply(chain(trace_momentum(0.9), scale_by_learning_rate(0.1)), gradients, active)
    assert torch.equal(trajectory[-1][1], torch.zeros(4, dtype=torch.float64))
    assert (trajectory[-1][0] < 0).all()


def test_manual_init_and_step_equal_run_batch():
    problems = [vl.make_sensing(4, 4, 1, 8, seed=s) for s in range(3)]
    model = vl.FactorizationModel(4, 4, 6, 3, "tanh")
    gd = vl.GradientDescent(lr=1e-2, init_scale=0.1, step_rule="group_rmsprop", momentum=0.5)
    results = gd.run_batch(problems, model, 50, seeds=[0, 1, 2])
    state = gd.init(problems, model, [0, 1, 2])
    for _ in range(50):
        state, info = gd.step(state)
        assert info.train_loss.shape == (3,)
    train, gen = state.objective.losses(state.params)
    assert [r.metrics["gen_loss"] for r in results] == gen.tolist()
    assert [r.metrics["train_loss"] for r in results] == train.tolist()


@dataclasses.dataclass(frozen=True)
class _DiagonalGD(vl.GradientDescent):
    """A preconditioner plugged into the slot: divide each coordinate by a fixed weight."""

    weights: tuple = ()

    def preconditioner(self) -> GradientTransformation:
        weights = torch.tensor(self.weights, dtype=torch.float64)

        def update(update, state, context):
            return Update(update.materialize() / weights), state

        return GradientTransformation(lambda params: None, update)


def test_a_custom_preconditioner_plugs_into_the_chain():
    """Depth 1 (W itself): the preconditioned step, checked against a hand loop in float64."""
    problem = vl.make_sensing(3, 3, 1, 4, seed=2)
    model = vl.FactorizationModel(3, 3, 1, 1)
    weights = tuple(float(1 + i) for i in range(9))
    gd = _DiagonalGD(lr=0.1, init_scale=0.5, momentum=0.5, weights=weights)
    state = gd.init([problem], model, [4])
    params = state.params.clone()[0]
    operator = problem.A_train.reshape(4, 9)
    buffer = torch.zeros(9, dtype=torch.float64)
    for _ in range(20):
        residual = operator @ params - problem.b_train
        gradient = (2.0 / 4) * operator.T @ residual
        buffer = 0.5 * buffer + gradient / torch.tensor(weights, dtype=torch.float64)
        params = params - 0.1 * buffer
        state, _ = gd.step(state)
    torch.testing.assert_close(state.params[0], params, rtol=1e-12, atol=1e-14)


def test_scaling_never_modifies_a_transforms_state():
    """A transform that scales by its own per-run state tensor, then the step size: the state stays."""
    weights = torch.tensor([[2.0], [3.0]], dtype=torch.float64)

    def init(params):
        return weights.clone()

    def update(update, state, context):
        return update.scaled(state), state

    transform = chain(GradientTransformation(init, update), scale_by_learning_rate(0.5))
    params = torch.zeros(2, 4, dtype=torch.float64)
    state = transform.init(params)
    active = torch.ones(2, dtype=torch.bool)
    for step in range(3):
        out, state = transform.update(Update(torch.ones(2, 4, dtype=torch.float64)), state, StepContext(step, active, params))
        torch.testing.assert_close(out.factor, weights * 0.5)
    torch.testing.assert_close(state[0], weights)
    assert float(state[1]) == 0.5
