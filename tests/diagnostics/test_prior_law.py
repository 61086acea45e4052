"""Theorem 1's mechanism (:mod:`volumelab.diagnostics.prior_law`): the prior's W against its
Gaussian limit, and the dependence of L_train and L_gen under the prior.

Tolerances are in the statistics' own standard errors (batch means over the draws), with fixed seeds.
"""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from volumelab import FactorizationModel, make_problem
from volumelab._rng import make_generator
from volumelab.diagnostics.prior_law import PriorLaw, entry_statistics, ksg_mutual_information, mardia_kurtosis
from volumelab.errors import ModelError, OptimizerError
from volumelab.optimizers.subset import LatentPrior
from volumelab.samplers import select_sampler

PROBLEM = make_problem("sensing", 5, 5, rank=1, num_measurements=15, seed=0)


def _run(width, depth, activation="linear", draws=20_000, seed=1, **model):
    return PriorLaw().run(PROBLEM, FactorizationModel(5, 5, width, depth, activation=activation, **model), draws,
                          seed=seed)


def _z(result, key, expected=0.0):
    return (result.metrics[key] - expected) / result.standard_errors[key]


@pytest.mark.parametrize("width", [1, 5])
def test_linear_depth_two_kurtosis_matches_its_closed_form(width):
    """Given W_1, an entry of W_2 W_1 is N(0, S/rows) with S ~ chi^2_k/k, so its excess kurtosis is 6/k,
    and its variance 1/rows under the paper's scaling; both within 4 SE."""
    result = _run(width, 2)
    assert abs(_z(result, "excess_kurtosis", 6 / width)) < 4
    assert abs(_z(result, "entry_variance", 1 / 5)) < 4


def test_the_linear_prior_reaches_its_gaussian_limit_at_width_ten_thousand():
    """Where the limit is exact (i.i.d. N(0, 1/rows) entries): every statistic within 4 SE of its
    Gaussian value at width 10^4, while at width 5 the kurtosis, the squares' correlations and
    Mardia's statistic are all far from it."""
    wide, narrow = _run(10_000, 2), _run(5, 2)
    for key in ("excess_kurtosis", "row_correlation", "col_correlation", "row_square_correlation",
                "col_square_correlation", "mardia_excess"):
        assert abs(_z(wide, key)) < 4, (key, wide.metrics[key])
    assert abs(_z(wide, "entry_variance", 1 / 5)) < 4
    assert abs(wide.metrics["mardia_z"]) < 4  # N(0, 1) under a Gaussian law
    for key in ("excess_kurtosis", "row_square_correlation", "col_square_correlation", "mardia_excess"):
        assert _z(narrow, key) > 20, (key, narrow.metrics[key])


def test_a_narrow_relu_prior_is_detected_as_non_gaussian():
    """ReLU at width 5: heavy tails (excess kurtosis) and Mardia's statistic far above a Gaussian's;
    and entries of one row correlated (the activations' positive mean), which no width removes."""
    result = _run(5, 2, "relu")
    assert _z(result, "excess_kurtosis") > 20
    assert result.metrics["mardia_z"] > 20
    assert _z(result, "row_correlation") > 20


def test_independence_statistic_is_zero_at_depth_one_and_not_in_a_dependent_case():
    """Depth 1: W is an isotropic Gaussian, and L_train and L_gen depend on its projections on two
    orthogonal subspaces, so they are independent exactly: correlation and mutual information within
    4 SE of 0. Width 1, depth 2: W = a b^T, both losses grow with the same random scale."""
    independent = _run(5, 1)
    for key in ("loss_correlation", "loss_rank_correlation", "loss_mutual_information"):
        assert abs(_z(independent, key)) < 4, (key, independent.metrics[key])
    dependent = _run(1, 2)
    for key in ("loss_correlation", "loss_rank_correlation", "loss_mutual_information"):
        assert _z(dependent, key) > 20, (key, dependent.metrics[key])


@pytest.mark.parametrize("rho", [0.0, 0.5, 0.8])
def test_ksg_matches_the_gaussian_closed_form_under_monotone_maps(rho):
    """I(X; Y) = -1/2 log(1 - rho^2) for a bivariate Gaussian; the estimator sees exp(X) and Y^3
    (mutual information is invariant to monotone maps). Mean of 20 independent estimates within 4 SE."""
    rng = np.random.default_rng(7)
    estimates = []
    for _ in range(20):
        x, noise = rng.standard_normal((2, 2000))
        y = rho * x + math.sqrt(1 - rho ** 2) * noise
        estimates.append(ksg_mutual_information(np.exp(x), y ** 3))
    mean, se = np.mean(estimates), np.std(estimates, ddof=1) / math.sqrt(len(estimates))
    assert abs(mean - (-0.5 * math.log(1 - rho ** 2))) < 4 * se
    if rho == 0:
        assert min(estimates) < 0  # not clipped at 0: the mean over repetitions stays unbiased


def test_ksg_counts_equal_a_plain_loop():
    """The estimator's sorted-array neighbour counts against the definition, point by point."""
    rng = np.random.default_rng(3)
    x, y = rng.standard_normal((2, 60))
    k, n = 3, 60
    rx = stats.norm.ppf(stats.rankdata(x) / (n + 1))
    ry = stats.norm.ppf(stats.rankdata(y) / (n + 1))
    total = 0.0
    for i in range(n):
        distance = np.maximum(np.abs(rx - rx[i]), np.abs(ry - ry[i]))
        eps = np.sort(np.delete(distance, i))[k - 1]
        nx = sum(1 for j in range(n) if j != i and abs(rx[j] - rx[i]) < eps)
        ny = sum(1 for j in range(n) if j != i and abs(ry[j] - ry[i]) < eps)
        total += stats_digamma(nx + 1) + stats_digamma(ny + 1)
    expected = stats_digamma(k) + stats_digamma(n) - total / n
    assert ksg_mutual_information(x, y, k) == pytest.approx(expected, abs=1e-12)


def stats_digamma(value):
    from scipy.special import digamma

    return float(digamma(value))


def test_entry_statistics_equal_plain_loops():
    """Kurtosis by scipy per entry, correlations pair by pair, Mardia's b2 draw by draw."""
    rng = np.random.default_rng(0)
    draws = rng.standard_t(6, size=(300, 3, 4))
    out = entry_statistics(draws)
    flat = draws.reshape(300, 12)
    assert out["excess_kurtosis"] == pytest.approx(np.mean(stats.kurtosis(flat, axis=0, fisher=True, bias=True)))
    row_pairs = [(i * 4 + a, i * 4 + b) for i in range(3) for a in range(4) for b in range(a + 1, 4)]
    col_pairs = [(a * 4 + j, b * 4 + j) for j in range(4) for a in range(3) for b in range(a + 1, 3)]
    for key, pairs, values in (("row_correlation", row_pairs, flat), ("col_correlation", col_pairs, flat),
                               ("row_square_correlation", row_pairs, (flat - flat.mean(0)) ** 2),
                               ("col_square_correlation", col_pairs, (flat - flat.mean(0)) ** 2)):
        expected = np.mean([np.corrcoef(values[:, a], values[:, b])[0, 1] for a, b in pairs])
        assert out[key] == pytest.approx(expected, abs=1e-12), key
    centred = flat - flat.mean(0)
    inverse = np.linalg.inv(np.cov(flat, rowvar=False, bias=True))
    b2 = np.mean([(row @ inverse @ row) ** 2 for row in centred])
    p, n = 12, 300
    assert out["mardia_excess"] == pytest.approx(b2 / (p * (p + 2) * (n - 1) / (n + 1)) - 1, rel=1e-9)
    null_variance = 8 * p * (p + 2) * (n - 3) * (n - p - 1) * (n - p + 1) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    assert out["mardia_z"] == pytest.approx((b2 - p * (p + 2) * (n - 1) / (n + 1)) / math.sqrt(null_variance),
                                            rel=1e-9)


def test_mardia_null_mean_and_variance_are_exact_at_small_n():
    """Mardia's exact Gaussian-null mean and variance of b2 (1970; 1974, eq. 3.6) against 4,000 Monte Carlo
    repetitions at n = 40, p = 8, where the exact variance is 0.68 of the asymptotic 8 p (p + 2) / n:
    both within 4 SE, and the asymptotic variance more than 10 SE away."""
    rng = np.random.default_rng(11)
    n, p, repetitions = 40, 8, 4000
    values = np.array([mardia_kurtosis(rng.standard_normal((n, p))).b2 for _ in range(repetitions)])
    reference = mardia_kurtosis(rng.standard_normal((n, p)))
    mean_se = values.std(ddof=1) / math.sqrt(repetitions)
    assert abs(values.mean() - reference.null_mean) < 4 * mean_se
    squares = (values - values.mean()) ** 2
    variance = squares.mean() * repetitions / (repetitions - 1)
    variance_se = squares.std(ddof=1) / math.sqrt(repetitions)
    assert abs(variance - reference.null_variance) < 4 * variance_se
    assert abs(variance - 8 * p * (p + 2) / n) > 10 * variance_se


def test_mardia_standard_error_matches_the_delete_one_jackknife():
    """The influence-function SE of b2 against the delete-one jackknife on the same skewed, correlated draws
    (exponential entries, the second mixed with the first: every term of the influence function is
    non-zero, n = 2000, p = 3): the two estimate the same asymptotic variance and agree to O(1/n); here
    within 10%. (On heavy tails at small n both fall short of the true spread, the plug-in more: at
    n = 400, p = 5 by 35% and 9% for these draws over 300 repetitions.)"""
    rng = np.random.default_rng(5)
    draws = rng.exponential(1.0, size=(2000, 3))
    draws[:, 1] += 0.5 * draws[:, 0]
    full = mardia_kurtosis(draws)
    leave_one_out = np.array([mardia_kurtosis(np.delete(draws, i, axis=0)).b2 for i in range(len(draws))])
    jackknife = math.sqrt((len(draws) - 1) * np.mean((leave_one_out - leave_one_out.mean()) ** 2))
    assert full.b2_stderr == pytest.approx(jackknife, rel=0.1)
    assert full.excess_stderr == pytest.approx(full.b2_stderr / full.null_mean)
    assert full.z_stderr == pytest.approx(full.b2_stderr / math.sqrt(full.null_variance))


def test_a_shifted_prior_is_drawn_alike_by_every_path():
    """weight_mean shifts P before the layer's scale: the layers' exact mean; the layerwise sampler and
    subset simulation's latent map agree with sample_prior; the fast Gaussian-only samplers step aside."""
    model = FactorizationModel(5, 5, 20, 2, activation="tanh", weight_mean=0.5)
    layers = model.sample_prior(4000, make_generator(0, "t"), dtype=torch.float64)
    for layer, scale in zip(layers, model.layer_scales):
        assert abs(layer.mean().item() - 0.5 * scale) < 4 * scale / math.sqrt(layer.numel())
    latent = torch.randn((3, LatentPrior(model).size), dtype=torch.float64)
    for mapped, block, scale in zip(LatentPrior(model).layers(latent), latent.split([100, 100], dim=1),
                                    model.layer_scales):
        torch.testing.assert_close(mapped.reshape(3, -1), (block + 0.5) * scale)
    assert select_sampler(model).name not in ("bartlett", "gram")
    linear = FactorizationModel(5, 5, 20, 2, weight_mean=0.5)
    assert select_sampler(linear).name != "bartlett"
    fast = select_sampler(model).sample(model, 20_000, make_generator(1, "t"), dtype=torch.float64)
    direct = select_sampler(model, "direct").sample(model, 20_000, make_generator(2, "t"), dtype=torch.float64)
    se = torch.sqrt(fast.var(0) / 20_000 + direct.var(0) / 20_000)
    assert bool(((fast.mean(0) - direct.mean(0)).abs() < 4.5 * se).all())
    shifted = PriorLaw().run(PROBLEM, linear, 20_000, seed=3)
    assert _z(shifted, "row_correlation") > 20 and _z(shifted, "col_correlation") > 20


def test_bad_input_is_refused_with_one_line():
    with pytest.raises(ModelError, match="weight_mean.*gaussian"):
        FactorizationModel(5, 5, 5, 2, prior="uniform", weight_mean=1.0)
    with pytest.raises(OptimizerError, match="number of draws"):
        _run(5, 2, draws=10)
    with pytest.raises(ValueError, match="same length"):
        ksg_mutual_information([1.0, 2.0, 3.0], [1.0, 2.0])
    assert _run(5, 2, draws=400, seed=4).metrics == _run(5, 2, draws=400, seed=4).metrics


def test_the_cli_prints_every_statistic_and_refuses_too_few_draws(capsys):
    import json

    from volumelab.cli import main

    assert main(["theory", "prior-law", "--width", "3", "--draws", "400", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("entry_variance", "excess_kurtosis", "row_correlation", "col_correlation", "row_square_correlation",
                "col_square_correlation", "mardia_excess", "mardia_z", "loss_correlation", "loss_rank_correlation",
                "loss_mutual_information", "prior_train_loss", "prior_gen_loss"):
        assert isinstance(payload[key], float) and isinstance(payload["stderr"][key], float), key
    # The same numbers as the library's on the same problem (seed 0) and model.
    direct = PriorLaw().run(make_problem("sensing", 5, 5, 1, 15, seed=0), FactorizationModel(5, 5, 3, 2), 400, seed=0)
    assert payload["excess_kurtosis"] == direct.metrics["excess_kurtosis"]
    assert main(["theory", "prior-law", "--width", "3", "--draws", "100"]) == 2
    assert "--draws" in capsys.readouterr().err


@pytest.mark.parametrize("activation, width", [("relu", 5), ("relu", 400), ("leaky_relu", 40), ("tanh", 20)])
def test_the_row_correlation_matches_its_closed_form_at_any_width(activation, width):
    """E[s(g)]^2 / E[s(g)^2]: 1/pi for ReLU, (1 - a)^2 / (pi (1 + a^2)) for leaky ReLU, 0 for tanh; within 4 SE.
    The activations' non-zero mean is why no width makes a ReLU net's entries independent."""
    result = _run(width, 2, activation)
    closed = result.metrics["row_correlation_closed_form"]
    expected = {"relu": 1 / math.pi, "leaky_relu": 0.64 / (math.pi * 1.04), "tanh": 0.0}[activation]
    assert closed == pytest.approx(expected)
    assert abs(_z(result, "row_correlation", closed)) < 4
