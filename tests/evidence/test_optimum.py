"""The parabola optimum against known quadratics: exact on a noiseless one, unbiased with a calibrated standard
error on noisy ones (tolerances in standard errors, fixed seeds), and errors where there is no interior optimum."""

from __future__ import annotations

import numpy as np
import pytest

from volumelab.errors import VolumelabError
from volumelab.evidence.optimum import parabola_optimum

GRID = np.arange(-9.0, 7.0)  # log2 lr from 2^-9 to 2^6, the lr-transfer grid


@pytest.mark.parametrize("vertex", [-3.7, -0.5, 0.0, 2.25])
@pytest.mark.parametrize("window", [3, 5, 7])
def test_a_noiseless_quadratic_gives_its_vertex_exactly(vertex, window):
    """y = 3 (x - v)^2 + 2: the vertex v, curvature 6 and minimum 2 to rounding, and a zero standard error (no
    residuals) wherever more than 3 points are fitted."""
    optimum = parabola_optimum(GRID, 3.0 * (GRID - vertex) ** 2 + 2.0, window=window)
    assert optimum.x == pytest.approx(vertex, abs=1e-10)
    assert optimum.curvature == pytest.approx(6.0, rel=1e-10) and optimum.value == pytest.approx(2.0, abs=1e-10)
    assert optimum.points == window
    assert np.isnan(optimum.stderr) if window == 3 else optimum.stderr == pytest.approx(0.0, abs=1e-8)


def test_on_noisy_quadratics_the_vertex_is_unbiased_and_its_standard_error_calibrated():
    """y = 0.5 (x - 1.3)^2 + noise (SD 0.05), 400 fixed seeds, window 7: the mean vertex is within 4 standard errors
    of the mean of 1.3 (the quadratic is exact, so the least-squares fit is unbiased up to the vertex's
    nonlinearity, small at this noise), and the delta method's median standard error is within 25% of the
    vertices' spread over seeds."""
    rng = np.random.default_rng(20261206)
    truth = 0.5 * (GRID - 1.3) ** 2
    vertices, errors = [], []
    for _ in range(400):
        optimum = parabola_optimum(GRID, truth + rng.normal(0.0, 0.05, GRID.shape), window=7)
        vertices.append(optimum.x)
        errors.append(optimum.stderr)
    vertices = np.asarray(vertices)
    spread = vertices.std(ddof=1)
    assert abs(vertices.mean() - 1.3) <= 4 * spread / np.sqrt(len(vertices))
    assert 0.75 <= np.median(errors) / spread <= 1.25


def test_the_window_shrinks_near_an_edge_but_never_below_three_points():
    ys = (GRID + 7.6) ** 2  # smallest at x = -8, one point from the grid's first
    optimum = parabola_optimum(GRID, ys, window=7)
    assert optimum.points == 3 and optimum.x == pytest.approx(-7.6, abs=1e-10)


def _w_shape() -> np.ndarray:
    """Smallest at x = 0, but the five points around it (-5, 0, -5.1, 0, -5) are fitted by a downward parabola."""
    ys = np.full(GRID.shape, 10.0)
    centre = int(np.flatnonzero(GRID == 0.0)[0])
    ys[centre - 2:centre + 3] = [-5.0, 0.0, -5.1, 0.0, -5.0]
    return ys


@pytest.mark.parametrize("ys, words", [
    ((GRID + 9.5) ** 2, "first point"),                       # the optimum is left of the grid
    (-(GRID ** 2), "grid's first point"),                      # a maximum: the smallest value at an edge
    (_w_shape(), "does not open upwards"),
])
def test_no_interior_optimum_is_an_error_naming_why(ys, words):
    with pytest.raises(VolumelabError, match=words):
        parabola_optimum(GRID, ys)


def test_bad_input_is_an_error():
    with pytest.raises(VolumelabError, match="at least 3 grid points"):
        parabola_optimum([0.0, 1.0], [1.0, 0.0])
    with pytest.raises(VolumelabError, match="strictly increasing"):
        parabola_optimum([0.0, 2.0, 1.0, 3.0], [1.0, 0.0, 0.5, 2.0])
    with pytest.raises(VolumelabError, match="finite"):
        parabola_optimum([0.0, 1.0, 2.0], [1.0, float("nan"), 2.0])
    with pytest.raises(VolumelabError, match="odd integer"):
        parabola_optimum(GRID, GRID ** 2, window=4)
