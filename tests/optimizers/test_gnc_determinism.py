"""G&C results are a function of (seed, model, problem, budget, sampler) only."""

from __future__ import annotations

import pytest
import torch

import volumelab as vl

MODELS = {
    "bartlett": vl.FactorizationModel(5, 5, 40, 2),
    "bartlett-deep": vl.FactorizationModel(5, 5, 5, 6, normalize=True),
    "gram": vl.FactorizationModel(5, 5, 20, 2, activation="tanh"),
    "layerwise": vl.FactorizationModel(5, 5, 5, 3, activation="leaky_relu", normalize=True),
    "direct": vl.FactorizationModel(5, 5, 40, 3, activation="tanh", normalize=True),
}


def _outcome(problem, model, **config):
    result = vl.GuessCheck(eps=0.08, **config).run(problem, model, 70_001, seed=4)
    return result.metrics, result.standard_errors, result.diagnostics["sampler"]


@pytest.mark.parametrize("name", list(MODELS))
def test_same_result_for_any_threads_workers_and_batch_size(sensing_problem, name):
    model = MODELS[name]
    reference = _outcome(sensing_problem, model)
    assert reference[2] == name.split("-")[0]
    assert reference[0]["accepted"] > 0, "some draws must be accepted for the comparison to mean anything"
    for threads, config in [(1, {}), (2, {"workers": 1}), (2, {"workers": 3}), (1, {"batch_size": 64}),
                            (2, {"batch_size": 10**6})]:
        torch.set_num_threads(threads)
        assert _outcome(sensing_problem, model, **config) == reference
        assert torch.get_num_threads() == threads


def test_explicit_sampler_changes_draws_not_the_law(sensing_problem):
    """Same seed, different sampler: different draws; prior means agree within 5 SE."""
    model = MODELS["bartlett"]
    fast = vl.GuessCheck(eps=0.08).run(sensing_problem, model, 200_000, seed=1)
    direct = vl.GuessCheck(eps=0.08, sampler="direct").run(sensing_problem, model, 200_000, seed=1)
    assert fast.metrics["prior_gen_loss"] != direct.metrics["prior_gen_loss"]
    difference = fast.metrics["prior_gen_loss"] - direct.metrics["prior_gen_loss"]
    se = (fast.standard_errors["prior_gen_loss"] ** 2 + direct.standard_errors["prior_gen_loss"] ** 2) ** 0.5
    assert abs(difference) < 5 * se


def test_bad_workers():
    with pytest.raises(vl.OptimizerError, match="workers"):
        vl.GuessCheck(eps=0.1, workers=0)
