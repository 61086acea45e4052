"""plotting.figures' standard error of a median, against its formula, and near float64's limit."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from volumelab.plotting.figures import IQR_PER_SIGMA, MEDIAN_EFFICIENCY, median_standard_error


def test_median_standard_error_is_its_formula():
    """sqrt(pi/2) * sqrt((IQR / 1.349)^2 + mean(s_i^2)) / sqrt(n), computed here by a plain loop in float64."""
    rng = np.random.default_rng(3)
    for _ in range(50):
        losses, errors = rng.lognormal(size=7), rng.random(7) * 0.2
        q25, q75 = np.quantile(losses, [0.25, 0.75])
        mean_square = sum(e * e for e in errors) / len(errors)
        expected = MEDIAN_EFFICIENCY * math.sqrt(((q75 - q25) / IQR_PER_SIGMA) ** 2 + mean_square) / math.sqrt(7)
        assert median_standard_error(list(losses), list(errors)) == pytest.approx(expected, rel=1e-13)
    assert math.isnan(median_standard_error([1.0], [0.1]))


def test_losses_near_the_float64_limit_give_a_finite_error_without_a_warning():
    """A learning rate past GD's stability edge leaves losses of 1e160: squaring their spread overflowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        value = median_standard_error([1.0, 1e160, 2e162, 3e163], [math.nan] * 4)
    assert math.isfinite(value) and value > 1e162
