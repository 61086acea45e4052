"""G&C's acceptance criterion (``accept``): an MLP's G&C against a plain loop over the same prior draws.

The loop reproduces the ``direct`` sampler's draws (blocks of ``model.gnc_block_size``,
block ``b`` drawn by ``model.sample_prior`` from the generator ``(seed, "gnc", b)``) and
scores each draw alone, in NumPy float64, from the layers: one forward pass per draw,
then the logistic losses and error rates written out. A second check needs no knowledge
of the sampler: the draws G&C keeps (``keep_samples``) are rescored the same way.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.experiments.methods import get_method
from volumelab.models import MLPModel
from volumelab.optimizers.rejection import _Tally
from volumelab.problems import make_supervised

SEED = 3
BUDGET = 3001  # 23 full blocks of 128 and a partial one


@pytest.fixture(scope="module")
def digits():
    problem = make_supervised(data="digits", num_train=8, seed=0)
    return problem, MLPModel(problem.num_features, 16, 2)


def _scores_of_one_draw(layers: list[np.ndarray], problem) -> dict[str, float]:
    """``train_loss``, ``gen_loss`` (test loss), ``train_error``, ``test_error`` of one draw, NumPy float64."""
    x = np.concatenate([problem.X_train.numpy(), problem.X_test.numpy()])
    y = np.concatenate([problem.y_train.numpy(), problem.y_test.numpy()])
    hidden = layers[0] @ x.T
    for layer in layers[1:]:
        hidden = layer @ np.maximum(hidden, 0.0)  # relu
    margins = y * hidden[0]
    losses = np.logaddexp(0.0, -margins)  # log(1 + exp(-y f))
    wrong = (margins <= 0).astype(np.float64)
    n = problem.num_train
    return {"train_loss": losses[:n].mean(), "gen_loss": losses[n:].mean(),
            "train_error": wrong[:n].mean(), "test_error": wrong[n:].mean()}


def _loop_over_prior_draws(problem, model, budget, seed, dtype):
    """Every prior draw's scores, drawn the way the ``direct`` sampler draws G&C's blocks."""
    block = model.gnc_block_size
    rows = []
    for index in range(math.ceil(budget / block)):
        size = min(block, budget - index * block)
        layers = model.sample_prior(size, make_generator(seed, "gnc", index), dtype=dtype)
        for draw in range(size):
            rows.append(_scores_of_one_draw([layer[draw].double().numpy() for layer in layers], problem))
    return rows


@pytest.fixture(scope="module")
def loop_float32(digits):
    problem, model = digits
    return _loop_over_prior_draws(problem, model, BUDGET, SEED, torch.float32)


def _means(rows, names):
    return {name: float(np.mean([row[name] for row in rows])) for name in names}


NAMES = ("train_loss", "gen_loss", "train_error", "test_error")


def test_train_error_acceptance_equals_a_loop_over_the_prior_draws(digits, loop_float32):
    problem, model = digits
    eps = 1.0 / problem.num_train  # zero training errors
    result = vl.GuessCheck(eps=eps, accept="train_error").run(problem, model, BUDGET, seed=SEED)
    metrics = result.metrics
    accepted = [row for row in loop_float32 if row["train_error"] < eps]
    assert len(accepted) >= 10, "too few acceptances for the comparison to mean anything"
    assert metrics["accepted"] == len(accepted) and metrics["samples"] == BUDGET
    assert metrics["accept"] == "train_error" and metrics["train_error"] == 0.0
    for name, value in _means(accepted, NAMES).items():
        assert metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # Every draw is scored from a float64 forward pass: the prior's means agree to rounding too.
    for name, value in _means(loop_float32, NAMES).items():
        assert metrics[f"prior_{name}"] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # The test error is a mean of 0/1 values: its standard error is the accepted draws' spread.
    test_errors = [row["test_error"] for row in accepted]
    assert result.standard_errors["test_error"] == pytest.approx(
        np.std(test_errors, ddof=1) / math.sqrt(len(test_errors)), rel=1e-9)


def test_train_error_acceptance_in_float64_draws_equals_a_loop(digits):
    problem, model = digits
    eps = 0.5 / problem.num_train
    budget = 1000
    result = vl.GuessCheck(eps=eps, accept="train_error", dtype="float64").run(problem, model, budget, seed=SEED)
    rows = _loop_over_prior_draws(problem, model, budget, SEED, torch.float64)
    accepted = [row for row in rows if row["train_error"] < eps]
    assert accepted and result.metrics["accepted"] == len(accepted)
    for name, value in _means(accepted, NAMES).items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_kept_draws_rescored_by_hand_have_no_training_error(digits):
    """Independent of how the sampler draws: every kept draw, rescored alone, fits every training point,
    and the kept draws (all accepted ones) give the reported means."""
    problem, model = digits
    result = vl.GuessCheck(eps=1e-9, accept="train_error", keep_samples=BUDGET).run(problem, model, BUDGET,
                                                                                      seed=SEED)
    arrays = result.arrays
    count = result.metrics["accepted"]
    assert count >= 10 and result.diagnostics["kept_samples"] == count and len(arrays["gen_loss"]) == count
    rows = [_scores_of_one_draw([arrays[f"layer_{j + 1}"][i].astype(np.float64) for j in range(model.depth)],
                                problem) for i in range(count)]
    assert all(row["train_error"] == 0.0 for row in rows)
    for name in NAMES:
        np.testing.assert_allclose(arrays[name], [row[name] for row in rows], rtol=1e-12, atol=1e-15)
    for name, value in _means(rows, NAMES).items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name


def test_train_loss_acceptance_on_an_mlp_equals_a_loop_over_the_prior_draws(digits, loop_float32):
    """The default criterion: float32 draws, acceptance decided and accepted draws scored in float64."""
    problem, model = digits
    eps = 0.6
    result = vl.GuessCheck(eps=eps).run(problem, model, BUDGET, seed=SEED)
    accepted = [row for row in loop_float32 if row["train_loss"] < eps]
    assert 10 <= len(accepted) < BUDGET
    assert result.metrics["accepted"] == len(accepted) and result.metrics["accept"] == "train_loss"
    for name, value in _means(accepted, NAMES).items():
        assert result.metrics[name] == pytest.approx(value, rel=1e-12, abs=1e-15), name
    # The prior's means come from float32 forward passes: float32 accuracy.
    for name in ("train_loss", "gen_loss"):
        assert result.metrics[f"prior_{name}"] == pytest.approx(_means(loop_float32, [name])[name], rel=1e-5)


def test_train_loss_is_the_default_and_unchanged(digits, sensing_problem):
    problem, model = digits
    for run_problem, run_model, eps in ((problem, model, 0.6), (sensing_problem, vl.FactorizationModel(5, 5, 40, 2),
                                                                 0.08)):
        default = vl.GuessCheck(eps=eps, keep_samples=5).run(run_problem, run_model, 3000, seed=1)
        explicit = vl.GuessCheck(eps=eps, keep_samples=5, accept="train_loss").run(run_problem, run_model, 3000,
                                                                                   seed=1)
        assert default.metrics == explicit.metrics and default.standard_errors == explicit.standard_errors
        assert {k: v.tobytes() for k, v in default.arrays.items()} == {
            k: v.tobytes() for k, v in explicit.arrays.items()}
    # Row 0 (L_train) is the default criterion of a block's tally.
    scores = torch.rand(4, 50, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    by_default, by_row = _Tally.of_block(scores, 0.3), _Tally.of_block(scores, 0.3, 0)
    assert by_default == by_row


def test_train_error_results_do_not_depend_on_batch_size_or_workers(digits):
    problem, model = digits

    def outcome(**config):
        result = vl.GuessCheck(eps=0.1, accept="train_error", **config).run(problem, model, 2000, seed=5)
        return result.metrics, result.standard_errors

    reference = outcome()
    assert reference[0]["accepted"] > 0
    for threads, config in [(1, {}), (2, {"workers": 1}), (2, {"workers": 3}), (1, {"batch_size": 64}),
                            (2, {"batch_size": 10**6})]:
        torch.set_num_threads(threads)
        assert outcome(**config) == reference


def test_bad_accept_values_and_tasks_without_a_training_error(digits, sensing_problem):
    problem, model = digits
    for bad in ("error", "train_accuracy", None, 0):
        with pytest.raises(vl.OptimizerError, match="accept must be one of train_loss, train_error"):
            vl.GuessCheck(eps=0.1, accept=bad)
    message = "accept='train_error' needs a task that reports train_error"
    with pytest.raises(vl.OptimizerError, match=message):
        vl.GuessCheck(eps=0.1, accept="train_error").run(sensing_problem, vl.FactorizationModel(5, 5, 4, 2), 10)
    squared = make_supervised(data="digits", num_train=8, seed=0, loss="squared")
    with pytest.raises(vl.OptimizerError, match=message):
        vl.GuessCheck(eps=0.1, accept="train_error").run(squared, model, 10)
    # The loss criterion still runs anywhere.
    assert vl.GuessCheck(eps=0.1).run(squared, model, 10).metrics["accept"] == "train_loss"


def test_sweep_setting_and_run_key():
    """``accept`` is a sweep setting of G&C (from the optimizer's fields), validated by the optimizer, and in
    the run key only when it is not the criterion older rows were computed with."""
    settings = get_method("gnc").settings
    default = settings(eps=0.1, samples=1000)
    assert default.accept == "train_loss" and default.optimizer().accept == "train_loss"
    assert "accept" not in default.key_settings()
    explicit = settings(eps=0.1, samples=1000, accept="train_loss")
    assert explicit.key_settings() == default.key_settings()
    error = settings(eps=0.1, samples=1000, accept="train_error")
    assert error.optimizer().accept == "train_error" and error.key_settings()["accept"] == "train_error"
    with pytest.raises(ValueError, match="accept must be one of") as info:
        settings(eps=0.1, samples=1000, accept="bad")
    assert info.value.errors()[0]["loc"] == ("accept",)
