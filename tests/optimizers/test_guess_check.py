"""Guess & Check against closed forms, determinism, and explicit no-acceptance results.

Closed forms (DESIGN.md, "Prior"):
  * linear net, Gaussian prior, paper scaling, no normalization: the entries of W are
    uncorrelated with mean 0 and variance 1/rows (each hidden layer contributes
    k * (1/k) = 1, the output layer 1/rows), so for an orthonormal basis
    E L_gen = E mean_B <B, W>^2 + mean_B <B, W*>^2 = 1/rows + mean_B <B, W*>^2.
  * normalized W: W/||W|| is invariant under W -> U W V for orthogonal U, V, so
    E vec(W) vec(W)^T = I / (rows * cols) and E L_gen = 1/(rows*cols) + mean_B <B, W*>^2.
Each estimate must lie within 4 of its own standard errors of the formula.
"""

import pytest
import torch

import volumelab as vl
from volumelab.errors import OptimizerError

TOLERANCE_SE = 4.0


def _within(result, expected):
    value = result.metrics["prior_gen_loss"]
    stderr = result.standard_errors["prior_gen_loss"]
    assert stderr > 0
    assert abs(value - expected) < TOLERANCE_SE * stderr, (value, expected, stderr)


@pytest.mark.parametrize("width", [5, pytest.param(1000, marks=pytest.mark.slow)])
def test_prior_gen_loss_linear_gaussian_closed_form(sensing_problem, width):
    model = vl.FactorizationModel(5, 5, width, 2)
    result = vl.GuessCheck(eps=0.02).run(sensing_problem, model, 1_000_000, seed=11)
    _within(result, 1 / 5 + sensing_problem.mean_squared_target())


@pytest.mark.parametrize("depth", [2, 4])
def test_prior_gen_loss_rectangular_depends_on_rows(rectangular_problem, depth):
    model = vl.FactorizationModel(4, 6, 8, depth)
    result = vl.GuessCheck(eps=0.02).run(rectangular_problem, model, 400_000, seed=3)
    _within(result, 1 / 4 + rectangular_problem.mean_squared_target())
    # The formula with cols in place of rows is rejected by the same data.
    wrong = 1 / 6 + rectangular_problem.mean_squared_target()
    assert abs(result.metrics["prior_gen_loss"] - wrong) > 10 * result.standard_errors["prior_gen_loss"]


@pytest.mark.parametrize(("problem_name", "rows", "cols", "depth"), [
    ("sensing_problem", 5, 5, 2), ("sensing_problem", 5, 5, 6), ("rectangular_problem", 4, 6, 3)])
def test_prior_gen_loss_normalized_closed_form(request, problem_name, rows, cols, depth):
    problem = request.getfixturevalue(problem_name)
    model = vl.FactorizationModel(rows, cols, 5, depth, normalize=True)
    result = vl.GuessCheck(eps=0.02).run(problem, model, 1_000_000, seed=5)
    _within(result, 1 / (rows * cols) + problem.mean_squared_target())


def test_accepted_draws_fit_the_data(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    result = vl.GuessCheck(eps=0.1).run(sensing_problem, model, 200_000, seed=0)
    metrics = result.metrics
    assert result.status == "ok" and metrics["accepted"] > 30
    assert metrics["train_loss"] < 0.1 <= metrics["prior_train_loss"]
    assert metrics["min_train_loss"] < 0.1
    assert metrics["acceptance_rate"] == metrics["accepted"] / metrics["samples"]
    se = result.standard_errors
    assert se["gen_loss"] > 0 and se["acceptance_rate"] > 0


def test_everything_accepted_gives_the_prior(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    result = vl.GuessCheck(eps=1e9).run(sensing_problem, model, 20_000, seed=0)
    assert result.metrics["accepted"] == 20_000
    assert result.metrics["gen_loss"] == pytest.approx(result.metrics["prior_gen_loss"], rel=1e-12)


def test_no_acceptance_is_explicit(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    result = vl.GuessCheck(eps=1e-6).run(sensing_problem, model, 5_000, seed=0)
    assert result.status == "no_acceptance"
    assert result.metrics["accepted"] == 0 and result.metrics["acceptance_rate"] == 0
    assert result.metrics["gen_loss"] is None and result.standard_errors["gen_loss"] is None
    assert result.metrics["min_train_loss"] > 1e-6
    assert result.metrics["prior_gen_loss"] is not None


@pytest.mark.parametrize("activation", ["linear", "tanh"])
def test_same_seed_same_result_for_any_batch_size(sensing_problem, activation):
    model = vl.FactorizationModel(5, 5, 20, 2, activation)
    budget = 150_001  # not a multiple of any block size
    runs = [vl.GuessCheck(eps=0.1, batch_size=b).run(sensing_problem, model, budget, seed=9)
            for b in (1, 140_000, None)]
    batch_sizes = {run.diagnostics["batch_size"] for run in runs}
    assert len(batch_sizes) == 3  # really three different batchings
    for run in runs[1:]:
        assert run.metrics == runs[0].metrics
        assert run.standard_errors == runs[0].standard_errors


def test_same_seed_same_result_for_any_thread_count(sensing_problem):
    model = vl.FactorizationModel(5, 5, 40, 3, "leaky_relu")
    results = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        results.append(vl.GuessCheck(eps=0.1).run(sensing_problem, model, 50_000, seed=2))
    assert results[0].metrics == results[1].metrics


def test_different_seeds_differ(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    first, second = (vl.GuessCheck(eps=0.1).run(sensing_problem, model, 10_000, seed=s) for s in (0, 1))
    assert first.metrics["prior_gen_loss"] != second.metrics["prior_gen_loss"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"eps": 0.0}, "eps must be a positive finite"),
        ({"eps": float("inf")}, "eps must be a positive finite"),
        ({"eps": 0.1, "batch_size": 0}, "batch_size must be a positive integer"),
        ({"eps": 0.1, "dtype": "float16"}, "dtype must be one of"),
        ({"eps": 0.1, "memory_fraction": 2.0}, "memory_fraction must be in"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(OptimizerError, match=message):
        vl.GuessCheck(**kwargs)


def test_bad_budget_and_shape(sensing_problem, rectangular_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    with pytest.raises(OptimizerError, match="number of samples must be a positive integer"):
        vl.GuessCheck(eps=0.1).run(sensing_problem, model, 0)
    with pytest.raises(OptimizerError, match="model is 5x5 but the problem is 4x6"):
        vl.GuessCheck(eps=0.1).run(rectangular_problem, model, 10)
    with pytest.raises(vl.ModelError, match="unknown sampler 'magic'"):
        vl.GuessCheck(eps=0.1, sampler="magic").run(sensing_problem, model, 10)


@pytest.mark.parametrize("eps", [0.1, 1e-7])
def test_float32_contraction_decides_and_reports_accepted_draws_in_float64(sensing_problem, eps):
    """Float32 draws are contracted in float32, but every draw within 2 eps is redone in float64.

    Acceptance and the accepted draws' losses must then equal the all-float64 contraction
    of the same draws (up to the GEMM's summation order on a column subset, 1e-12), and the
    other draws' float32 losses lie within float32 accuracy (1e-5 relative) of it. Below
    eps = 1e-6 every draw is contracted in float64.
    """
    from volumelab.optimizers.guess_check import _LossContraction
    from volumelab.samplers import select_sampler

    model = vl.FactorizationModel(5, 5, 40, 2)
    draws = select_sampler(model).sample(model, 100_000, torch.Generator().manual_seed(0))
    contraction = _LossContraction(sensing_problem, torch.device("cpu"), eps)
    fast = contraction(draws).clone()
    exact = contraction(draws.double())  # float64 draws take the float64 path
    assert torch.equal(fast[0] < eps, exact[0] < eps)
    candidates = exact[0] < 2 * eps
    if eps >= _LossContraction.FLOAT64_BELOW_EPS:
        assert candidates.sum() > 1000  # the comparison below covers many accepted draws
    torch.testing.assert_close(fast[:, candidates], exact[:, candidates], rtol=1e-12, atol=0)
    rtol = 1e-5 if eps >= _LossContraction.FLOAT64_BELOW_EPS else 1e-12
    torch.testing.assert_close(fast, exact, rtol=rtol, atol=0)
