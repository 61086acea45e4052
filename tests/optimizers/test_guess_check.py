"""Guess & Check against closed forms, determinism, and explicit no-acceptance results.

Closed forms (docs/design.md, "Prior"):
  * linear net, Gaussian prior, paper scaling, no normalization: the entries of W are
    uncorrelated with mean 0 and variance 1/rows (each hidden layer contributes
    k * (1/k) = 1, the output layer 1/rows), so for an orthonormal basis
    E L_gen = E mean_B <B, W>^2 + mean_B <B, W*>^2 = 1/rows + mean_B <B, W*>^2.
  * normalized W: W/||W|| is invariant under W -> U W V for orthogonal U, V, so
    E vec(W) vec(W)^T = I / (rows * cols) and E L_gen = 1/(rows*cols) + mean_B <B, W*>^2.
Each estimate must lie within 4 of its own standard errors of the formula.
"""

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from scipy.stats import binom

import volumelab as vl
from volumelab.errors import OptimizerError
from volumelab.optimizers import acceptance_rate_interval

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
    low, high = _clopper_pearson_by_bisection(metrics["accepted"], metrics["samples"])
    assert metrics["acceptance_rate_low"] == pytest.approx(low, rel=1e-9)
    assert metrics["acceptance_rate_high"] == pytest.approx(high, rel=1e-9)
    assert metrics["acceptance_rate_low"] < metrics["acceptance_rate"] < metrics["acceptance_rate_high"]
    assert result.diagnostics["acceptance_rate_interval"] == "two-sided 95% Clopper-Pearson"
    # The log prior volume and its delta-method standard error, from the counts.
    rate = metrics["accepted"] / metrics["samples"]
    assert metrics["log_volume"] == pytest.approx(math.log(rate), rel=1e-14)
    assert se["log_volume"] == pytest.approx(math.sqrt((1 - rate) / metrics["accepted"]), rel=1e-14)


def test_log_volume_standard_error_matches_the_spread_over_seeds(sensing_problem):
    """16 seeds at an acceptance rate near 5%: the sample standard deviation of log_volume against the
    mean reported SE. The sample SD of 16 draws has a relative SE of about 1/sqrt(30) = 0.18, so the
    ratio must lie within 3 of those of 1: [0.45, 1.55]."""
    model = vl.FactorizationModel(5, 5, 5, 2)
    runs = [vl.GuessCheck(eps=0.08).run(sensing_problem, model, 20_000, seed=seed) for seed in range(16)]
    logs = [r.metrics["log_volume"] for r in runs]
    errors = [r.standard_errors["log_volume"] for r in runs]
    mean = sum(logs) / len(logs)
    spread = math.sqrt(sum((v - mean) ** 2 for v in logs) / (len(logs) - 1))
    assert 0.01 < math.exp(mean) < 0.2  # the regime the test is about
    assert 0.45 < spread / (sum(errors) / len(errors)) < 1.55


def test_everything_accepted_gives_the_prior(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    result = vl.GuessCheck(eps=1e9).run(sensing_problem, model, 20_000, seed=0)
    assert result.metrics["accepted"] == 20_000
    assert result.metrics["gen_loss"] == pytest.approx(result.metrics["prior_gen_loss"], rel=1e-12)
    # All accepted: the Wald standard error would be 0; the interval is [(0.025)^(1/N), 1].
    assert result.standard_errors["acceptance_rate"] is None
    assert result.metrics["log_volume"] == 0.0 and result.standard_errors["log_volume"] is None
    assert result.metrics["acceptance_rate_high"] == 1.0
    assert result.metrics["acceptance_rate_low"] == pytest.approx(0.025 ** (1 / 20_000), rel=1e-12)


def test_no_acceptance_is_explicit(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    result = vl.GuessCheck(eps=1e-6).run(sensing_problem, model, 5_000, seed=0)
    assert result.status == "no_acceptance"
    assert result.metrics["accepted"] == 0 and result.metrics["acceptance_rate"] == 0
    assert result.metrics["gen_loss"] is None and result.standard_errors["gen_loss"] is None
    assert result.metrics["min_train_loss"] > 1e-6
    assert result.metrics["prior_gen_loss"] is not None
    # No acceptance is not certainty of a zero rate: no standard error of 0, but the
    # one-sided 95% upper bound, where 0 acceptances in N draws have probability 5%.
    assert result.standard_errors["acceptance_rate"] is None
    assert result.metrics["acceptance_rate_low"] == 0.0
    high = result.metrics["acceptance_rate_high"]
    assert high == pytest.approx(1 - 0.05 ** (1 / 5_000), rel=1e-9)
    assert binom.cdf(0, 5_000, high) == pytest.approx(0.05, rel=1e-9)
    assert result.diagnostics["acceptance_rate_interval"] == "one-sided 95% upper bound (no acceptance)"
    payload = result.to_dict()
    assert payload["acceptance_rate"] == 0 and payload["acceptance_rate_stderr"] is None
    assert payload["log_volume"] is None and payload["log_volume_stderr"] is None  # no made-up log(0)
    assert (payload["acceptance_rate_low"], payload["acceptance_rate_high"]) == (0.0, high)


def _bisect(function, target: float, increasing: bool) -> float:
    """The ``p`` in ``[0, 1]`` with ``function(p) = target``, by bisection in float64."""
    low, high = 0.0, 1.0
    for _ in range(200):
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if (function(middle) < target) == increasing:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def _clopper_pearson_by_bisection(accepted: int, samples: int, alpha: float = 0.05) -> tuple[float, float]:
    """The interval by its definition: ``P(X >= k; p_low) = alpha/2`` and ``P(X <= k; p_high) = alpha/2``."""
    low = 0.0 if accepted == 0 else _bisect(lambda p: binom.sf(accepted - 1, samples, p), alpha / 2, increasing=True)
    high = 1.0 if accepted == samples else _bisect(
        lambda p: binom.cdf(accepted, samples, p), alpha / 2, increasing=False)
    return low, high


@pytest.mark.parametrize(("accepted", "samples"), [
    (1, 1), (1, 2), (1, 10), (3, 17), (9, 10), (10, 10), (37, 1_000), (5, 70_001), (123, 10**6), (2, 10**9)])
def test_acceptance_rate_interval_is_clopper_pearson(accepted, samples):
    low, high = acceptance_rate_interval(accepted, samples)
    want_low, want_high = _clopper_pearson_by_bisection(accepted, samples)
    assert low == pytest.approx(want_low, rel=1e-9)
    assert high == pytest.approx(want_high, rel=1e-9)


@pytest.mark.parametrize("samples", [1, 2, 10, 5_000, 10**6, 10**12])
def test_acceptance_rate_upper_bound_without_acceptance(samples):
    low, high = acceptance_rate_interval(0, samples)
    assert low == 0.0
    # The closed form as written (its subtraction loses ~1e-16 absolute for large N).
    assert high == pytest.approx(1 - 0.05 ** (1 / samples), rel=1e-12, abs=1e-15)
    # The defining property: at the bound, no acceptance in N draws has probability 5%.
    assert math.exp(samples * math.log1p(-high)) == pytest.approx(0.05, rel=1e-12)
    if samples >= 5_000:
        assert samples * high == pytest.approx(-math.log(0.05), rel=1e-3)  # the "rule of three"


@given(samples=st.integers(1, 10**9), fraction=st.floats(0, 1))
def test_acceptance_rate_interval_contains_the_rate(samples, fraction):
    accepted = min(samples, int(fraction * samples))
    low, high = acceptance_rate_interval(accepted, samples)
    rate = accepted / samples
    assert 0 <= low <= rate <= high <= 1
    assert (low == 0) == (accepted == 0) and (high == 1) == (accepted == samples)
    assert low < high


def test_acceptance_rate_interval_rejects_bad_counts():
    for accepted, samples in [(-1, 10), (11, 10), (0, 0)]:
        with pytest.raises(OptimizerError, match="accepted"):
            acceptance_rate_interval(accepted, samples)
    with pytest.raises(OptimizerError, match="confidence"):
        acceptance_rate_interval(1, 10, confidence=1.0)


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
    from volumelab.optimizers.conditioning import LossContraction
    from volumelab.samplers import select_sampler

    model = vl.FactorizationModel(5, 5, 40, 2)
    draws = select_sampler(model).sample(model, 100_000, torch.Generator().manual_seed(0))
    contraction = LossContraction(sensing_problem, torch.device("cpu"), eps)
    fast = contraction(draws).clone()
    exact = contraction(draws.double())  # float64 draws take the float64 path
    assert torch.equal(fast[0] < eps, exact[0] < eps)
    candidates = exact[0] < 2 * eps
    if eps >= LossContraction.FLOAT64_BELOW_EPS:
        assert candidates.sum() > 1000  # the comparison below covers many accepted draws
    torch.testing.assert_close(fast[:, candidates], exact[:, candidates], rtol=1e-12, atol=0)
    rtol = 1e-5 if eps >= LossContraction.FLOAT64_BELOW_EPS else 1e-12
    torch.testing.assert_close(fast, exact, rtol=rtol, atol=0)
