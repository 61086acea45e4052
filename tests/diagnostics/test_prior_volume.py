"""The closed-form prior volumes against independent computations: Ruben's series for a generalized chi-square, and
a linear classifier's Gaussian orthant probability (Genz's algorithm)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate
from scipy.stats import chi2, ncx2, norm

import volumelab as vl
from volumelab.diagnostics.prior_volume import (depth1_quadratic_form, linear_classifier_log_volume,
                                                orthant_log_probability, quadratic_form_log_cdf)
from volumelab.errors import VolumelabError


@pytest.mark.parametrize("target", [-1.0, -5.0, -20.0, -40.0])
def test_equal_weights_without_shifts_are_a_scaled_chi_square(target):
    """Down to log P = -40: the series against scipy's chi-square log-CDF (exact for this case)."""
    n, w = 6, 0.3
    x = w * float(chi2.ppf(math.exp(target), n)) if target > -30 else None
    if x is None:  # chi2.ppf underflows: solve log F(x) = target by bisection on log x
        low, high = -60.0, 2.0
        for _ in range(200):
            mid = 0.5 * (low + high)
            low, high = (mid, high) if chi2.logcdf(math.exp(mid), n) < target else (low, mid)
        x = w * math.exp(0.5 * (low + high))
    got = quadratic_form_log_cdf([w] * n, [0.0] * n, x)
    assert got == pytest.approx(float(chi2.logcdf(x / w, n)), abs=1e-9)
    assert got == pytest.approx(target, abs=1e-6)


@pytest.mark.parametrize("x", [0.5, 2.0, 8.0])
def test_equal_weights_with_shifts_are_a_scaled_noncentral_chi_square(x):
    n, w, shifts = 4, 0.5, np.array([0.3, -1.2, 0.0, 0.8])
    got = quadratic_form_log_cdf([w] * n, shifts, x)
    assert got == pytest.approx(math.log(ncx2.cdf(x / w, n, float(shifts @ shifts))), abs=1e-9)


@pytest.mark.parametrize("x", [0.05, 0.004, 2e-5, 1e-10, 1e-16])
def test_two_unequal_weights_against_one_dimensional_quadrature(x):
    """n = 2: P = int phi(z1) P(w2 (Z2 + d2)^2 <= x - w1 (z1 + d1)^2) dz1 over the interval where it is
    positive, by scipy.integrate.quad with a relative tolerance only (x = 1e-16: log P near -38)."""
    (w1, w2), (d1, d2) = (0.7, 2.5), (0.4, -1.1)
    half = math.sqrt(x / w1)

    def inner(z1):
        r = x - w1 * (z1 + d1) ** 2
        if r <= 0:
            return 0.0
        s = math.sqrt(r / w2)
        if s < 1e-3:  # Simpson's rule on [-s - d2, s - d2] (error O(s^5)): no cancellation of two CDFs
            inside = s / 3 * (norm.pdf(-s - d2) + 4 * norm.pdf(-d2) + norm.pdf(s - d2))
        else:
            inside = norm.cdf(s - d2) - norm.cdf(-s - d2)
        return norm.pdf(z1) * inside

    value, _ = integrate.quad(inner, -d1 - half, -d1 + half, epsabs=0, epsrel=1e-9, limit=200)
    assert quadratic_form_log_cdf([w1, w2], [d1, d2], x) == pytest.approx(math.log(value), abs=1e-7)


def test_many_unequal_weights_against_monte_carlo():
    """10^6 draws at P near 3%: within 3 binomial standard errors."""
    generator = np.random.default_rng(0)
    weights = generator.uniform(0.1, 2.0, 7)
    shifts = generator.normal(0, 0.7, 7)
    z = generator.standard_normal((1_000_000, 7))
    q = ((z + shifts) ** 2) @ weights
    x = float(np.quantile(q, 0.03))
    p = float(np.mean(q <= x))
    se = math.sqrt(p * (1 - p) / q.size)
    assert abs(math.exp(quadratic_form_log_cdf(weights, shifts, x)) - p) < 3 * se


def test_depth1_volume_matches_guess_and_check_rejection():
    """A depth-1 Gaussian prior on a 5x5 sensing problem: the closed form against G&C's log_volume
    (10^6 draws, an acceptance rate near 1%), within 3 of G&C's standard errors."""
    problem = vl.make_sensing(5, 5, 1, 6, seed=3)
    model = vl.FactorizationModel(5, 5, 1, 1)
    weights, shifts = depth1_quadratic_form(problem, model)
    generator = np.random.default_rng(1)
    q = ((generator.standard_normal((200_000, weights.size)) + shifts) ** 2) @ weights
    eps = float(np.quantile(q, 0.01))  # a threshold with about 1% acceptance, from the form itself
    result = vl.GuessCheck(eps=eps).run(problem, model, 1_000_000, seed=0)
    closed = quadratic_form_log_cdf(weights, shifts, eps)
    assert result.metrics["accepted"] > 1000
    assert abs(result.metrics["log_volume"] - closed) < 3 * result.standard_errors["log_volume"]


def test_bad_inputs_are_refused():
    with pytest.raises(VolumelabError, match="positive"):
        quadratic_form_log_cdf([1.0, 0.0], [0.0, 0.0], 1.0)
    with pytest.raises(VolumelabError, match="one length"):
        quadratic_form_log_cdf([1.0], [0.0, 1.0], 1.0)
    assert quadratic_form_log_cdf([1.0], [0.0], 0.0) == -math.inf
    with pytest.raises(VolumelabError, match="depth-1"):
        depth1_quadratic_form(vl.make_sensing(5, 5, 1, 6, seed=0), vl.FactorizationModel(5, 5, 3, 2))


# ----------------------------------------------------------------------------- the orthant probability
def test_orthant_probability_matches_sheppards_closed_forms():
    """Two and three dimensions: ``P(Z > 0) = 1/4 + asin(rho) / (2 pi)`` and
    ``1/8 + (asin rho_12 + asin rho_13 + asin rho_23) / (4 pi)`` (Sheppard; Plackett 1954), to 1e-3 relative:
    Genz's error target, and far below the few-percent SE of any subset-simulation run."""
    rho = -0.6
    two = orthant_log_probability([[1.0, rho], [rho, 1.0]])
    assert two.log_volume == pytest.approx(math.log(0.25 + math.asin(rho) / (2 * math.pi)), abs=1e-9)
    corr = np.array([[1.0, 0.3, -0.5], [0.3, 1.0, 0.2], [-0.5, 0.2, 1.0]])
    exact = 0.125 + (math.asin(0.3) + math.asin(-0.5) + math.asin(0.2)) / (4 * math.pi)
    three = orthant_log_probability(4.0 * corr)  # the scale drops out
    assert three.log_volume == pytest.approx(math.log(exact), abs=1e-3)
    assert three.log_volume_stderr < 1e-3


@pytest.mark.parametrize("data", ["digits", "linear_teacher"])
def test_linear_classifier_volume_matches_monte_carlo(data):
    """8 training points: the orthant probability against the fraction of 10^6 prior draws of ``w`` that classify
    every training point correctly (within 3 SE of that fraction). Digits are standardized by the training
    mean, so the margins' covariance has rank 7 (the singular case); the Gaussian design's has rank 8."""
    options = {"classes": (3, 8)} if data == "digits" else {"num_features": 64}
    problem = vl.make_supervised(data, 8, seed=0, num_test=20, **options)
    model = vl.MLPModel(problem.num_features, 1, 1)
    rows = (problem.y_train[:, None] * problem.X_train).numpy()
    rank = np.linalg.matrix_rank(rows @ rows.T)
    assert rank == (7 if data == "digits" else 8)
    volume = linear_classifier_log_volume(problem, model)
    generator = np.random.default_rng(11)
    hits = 0
    draws = 1_000_000
    for _ in range(10):
        hits += int(((generator.standard_normal((draws // 10, rows.shape[1])) @ rows.T) > 0).all(1).sum())
    fraction = hits / draws
    se = math.sqrt(fraction * (1 - fraction) / draws) / fraction  # of log(fraction)
    assert abs(volume.log_volume - math.log(fraction)) < 3 * math.hypot(se, volume.log_volume_stderr)
    assert volume.log_volume_stderr < 1e-3


def test_orthant_volume_refuses_what_it_cannot_compute():
    problem = vl.make_supervised("digits", 8, seed=0, classes=(3, 8), num_test=20)
    with pytest.raises(VolumelabError, match="depth-1 MLP"):
        linear_classifier_log_volume(problem, vl.MLPModel(problem.num_features, 4, 2))
    with pytest.raises(VolumelabError, match="depth-1 MLP"):
        linear_classifier_log_volume(problem, vl.MLPModel(problem.num_features, 1, 1, prior="uniform"))
    with pytest.raises(VolumelabError, match="square matrix"):
        orthant_log_probability(np.ones((3, 2)))
    with pytest.raises(VolumelabError, match="symmetric"):
        orthant_log_probability([[1.0, 0.5], [0.2, 1.0]])
    with pytest.raises(VolumelabError, match="repeats"):
        orthant_log_probability(np.eye(3), repeats=1)


def test_the_series_matches_the_small_ball_limit_down_to_minus_100():
    """The depth-1 sensing problem of the subset tests (5 x 5, 10 measurements) at eps with log P near -70 and
    -100, where no chi-square reference applies (unequal weights, shifts). For small x the set
    ``sum_j w_j (z_j + d_j)^2 <= x`` is an ellipsoid of radius at most ``r = sqrt(x / min w)`` around ``-d``, of
    volume ``pi^(n/2) x^(n/2) / (Gamma(n/2 + 1) prod sqrt(w_j))``, on which ``log phi(z)`` is within
    ``r |d| + r^2 / 2`` of ``log phi(-d)``: the series must lie within that bound of the log of volume times
    density."""
    problem = vl.make_sensing(5, 5, 1, 10, seed=0)
    weights, shifts = depth1_quadratic_form(problem, vl.FactorizationModel(5, 5, 5, 1))
    n = weights.size
    for x, target in ((8.9e-8, -70.0), (2.2e-10, -100.0)):
        got = quadratic_form_log_cdf(weights, shifts, x)
        leading = (0.5 * n * math.log(math.pi * x) - math.lgamma(0.5 * n + 1) - 0.5 * float(np.log(weights).sum())
                   - 0.5 * n * math.log(2 * math.pi) - 0.5 * float(shifts @ shifts))
        radius = math.sqrt(x / weights.min())
        bound = radius * float(np.linalg.norm(shifts)) + radius ** 2 / 2
        assert abs(got - leading) <= bound + 1e-9, (x, got, leading, bound)
        assert bound < 1e-2 and abs(got - target) < 0.05
