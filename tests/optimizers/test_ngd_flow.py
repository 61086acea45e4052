"""The natural gradient flow against natural gradient descent with small steps (Euler's method is first order:
theta after k steps of size lr is theta_flow(k lr) + O(lr), so halving lr halves the gap)."""

from __future__ import annotations

import numpy as np
import pytest

from volumelab.errors import OptimizerError
from volumelab.models import FactorizationModel
from volumelab.optimizers.natural_gradient import NaturalGradientDescent
from volumelab.optimizers.ngd_flow import natural_gradient_flow
from volumelab.problems.core import make_completion, make_sensing


def _steps(optimizer, problem, model, seed, count):
    state = optimizer.init([problem], model, [seed])
    for _ in range(count):
        state, _ = optimizer.step(state)
    return state.params[0].numpy()


@pytest.mark.parametrize("fisher", ["train", "output"])
@pytest.mark.parametrize("make", [make_sensing, make_completion])
def test_small_steps_converge_to_the_flow_at_first_order(fisher, make):
    problem = make(4, 4, 1, 10, seed=0)
    model = FactorizationModel(4, 4, 4, 2)
    settings = dict(init_scale=0.3, damping=1e-3, fisher=fisher)
    total = 2.0
    path = natural_gradient_flow(NaturalGradientDescent(lr=0.01, **settings), problem, model, 0, time=total,
                                 rtol=1e-10, atol=1e-12)
    assert path.status == "completed" and path.times.tolist() == [0.0, total]
    start = NaturalGradientDescent(lr=0.01, **settings).init([problem], model, [0]).params[0].numpy()
    np.testing.assert_array_equal(path.params[0], start)  # the same initialization as the steps
    gaps = [np.linalg.norm(_steps(NaturalGradientDescent(lr=lr, **settings), problem, model, 0,
                                  round(total / lr)) - path.params[-1]) for lr in (0.02, 0.01)]
    # First order: the gap halves with the step (Euler's local error is O(lr^2) per step, O(lr) in all); the
    # integrator's own error (rtol 1e-10) is far below these gaps (1e-2 .. 1e-3 here).
    assert 1.8 < gaps[0] / gaps[1] < 2.2, gaps
    assert gaps[1] < 0.02
    assert path.train_loss[-1] < path.train_loss[0]


def test_the_path_is_recorded_where_asked():
    problem = make_sensing(4, 4, 1, 10, seed=1)
    model = FactorizationModel(4, 4, 4, 2)
    optimizer = NaturalGradientDescent(lr=0.01, init_scale=0.3)
    whole = natural_gradient_flow(optimizer, problem, model, 1, time=1.0, times=[0.0, 0.25, 0.5, 1.0])
    assert whole.times.tolist() == [0.0, 0.25, 0.5, 1.0] and whole.params.shape[0] == 4
    direct = natural_gradient_flow(optimizer, problem, model, 1, time=0.5)
    np.testing.assert_allclose(whole.params[2], direct.params[-1], rtol=0, atol=1e-6)


def test_a_singular_system_stops_the_flow_with_its_status_and_the_path_so_far():
    # Without damping, the dense Gauss-Newton matrix of 10 outputs in 32 parameters is singular.
    problem = make_sensing(4, 4, 1, 10, seed=0)
    model = FactorizationModel(4, 4, 4, 2)
    optimizer = NaturalGradientDescent(lr=0.01, init_scale=0.3, damping=0.0, solve="dense")
    path = natural_gradient_flow(optimizer, problem, model, 0, time=1.0)
    assert path.status == "solve_failed" and "singular" in path.message
    assert path.times.tolist() == [0.0]  # only the start was reached; nothing made up


@pytest.mark.parametrize("settings,message", [
    ({"momentum": 0.9}, "momentum"),
    ({"step_rule": "group_rmsprop"}, "group_rmsprop"),
    ({"damping_decay": 0.99}, "damping_decay"),
])
def test_step_rules_without_a_flow_are_refused(settings, message):
    problem = make_sensing(4, 4, 1, 10, seed=0)
    with pytest.raises(OptimizerError, match=message):
        natural_gradient_flow(NaturalGradientDescent(lr=0.01, **settings), problem, FactorizationModel(4, 4, 4, 2),
                              0, time=1.0)


def test_ngd_with_flow_runs_the_flow_and_reports_like_a_step_run():
    problem = make_completion(5, 5, 1, 15, seed=2)
    model = FactorizationModel(5, 5, 5, 3)
    settings = dict(lr=0.01, init_scale=0.3, fisher="population", initialization="balanced")
    flowing = NaturalGradientDescent(flow=True, **settings)
    result = flowing.run(problem, model, 100, seed=2)
    path = natural_gradient_flow(flowing, problem, model, 2, time=1.0, rtol=1e-8, atol=1e-10)
    assert result.status == "completed" and result.metrics["steps"] == 100
    assert result.metrics["gen_loss"] == pytest.approx(float(path.gen_loss[-1]), rel=1e-12)
    assert result.metrics["flow_time"] == pytest.approx(1.0) and result.metrics["flow_evaluations"] > 0
    stepped = NaturalGradientDescent(**settings).run(problem, model, 100, seed=2)
    # 100 steps of 0.01 are the flow to first order: the same losses to a few percent here.
    assert stepped.metrics["gen_loss"] == pytest.approx(result.metrics["gen_loss"], rel=0.05)
    assert set(result.metrics) <= {m.name for m in NaturalGradientDescent.schema.metrics}
    assert result.status in NaturalGradientDescent.schema.statuses


def test_the_flow_refuses_observers():
    from volumelab.optimizers.observers import Trajectory

    problem = make_sensing(4, 4, 1, 10, seed=0)
    with pytest.raises(OptimizerError, match="records no trajectories"):
        NaturalGradientDescent(lr=0.01, flow=True).run(problem, FactorizationModel(4, 4, 4, 2), 10, seed=0,
                                                       observers=[Trajectory(every=5)])
