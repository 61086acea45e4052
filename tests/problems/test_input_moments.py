"""The closed forms of the teacher's input distributions: which moments exist and the coordinate moments, exact
against known values, and against Monte Carlo draws of the data sets themselves (tolerances in standard errors).

The Monte Carlo tests (issue 32 item 2's Done-when) draw n = 20,000 points in d = 4 with fixed seeds, from a teacher
problem's training inputs and from its unlabeled pool, and accept each estimate within 4 standard errors of the
closed form. An SE comes from the closed form too: the tests use only moments whose variance is finite.
"""

import math

import pytest
import torch

from volumelab._rng import make_generator
from volumelab.errors import ProblemError
from volumelab.problems import coordinate_absolute_moment, make_supervised, moment_order_exists

NUM_POINTS, NUM_FEATURES, TOLERANCE_SE = 20_000, 4, 4.0


def _training_inputs(inputs: str, nu: float | None, seed: int = 11) -> torch.Tensor:
    problem = make_supervised("teacher", NUM_POINTS, seed=seed, num_features=NUM_FEATURES, num_test=10,
                              inputs=inputs, nu=nu)
    return problem.X_train


def _pool_inputs(inputs: str, nu: float | None, seed: int = 12) -> torch.Tensor:
    problem = make_supervised("teacher", NUM_POINTS, seed=seed, num_features=NUM_FEATURES, num_test=10,
                              inputs=inputs, nu=nu)
    return problem.unlabeled_inputs(NUM_POINTS, make_generator(seed, "unlabeled"))


def _double_factorial(n: int) -> int:
    return math.prod(range(n, 0, -2)) if n > 0 else 1


@pytest.mark.parametrize("order", [2, 4, 6, 8])
def test_the_gaussian_even_moments_are_double_factorials(order):
    assert coordinate_absolute_moment("gaussian", order, num_features=3) == pytest.approx(_double_factorial(order - 1))


@pytest.mark.parametrize("inputs,nu", [("gaussian", None), ("sphere", None), ("student_t", 2.5), ("student_t", 7.0)])
@pytest.mark.parametrize("num_features", [1, 4, 30])
def test_every_distribution_has_unit_variance_and_a_zeroth_moment_of_one(inputs, nu, num_features):
    for order, value in ((0, 1.0), (2, 1.0)):
        assert coordinate_absolute_moment(inputs, order, num_features=num_features, nu=nu) == pytest.approx(value)


@pytest.mark.parametrize("num_features", [1, 2, 4, 30])
def test_the_spheres_fourth_moment_is_3d_over_d_plus_2(num_features):
    """d^2 E[u_1^4] with u_1^2 ~ Beta(1/2, (d-1)/2): E[u_1^4] = 3 / (d (d + 2)); d = 1 is the two points +-1."""
    expected = 3 * num_features / (num_features + 2)
    assert coordinate_absolute_moment("sphere", 4, num_features=num_features) == pytest.approx(expected)


@pytest.mark.parametrize("nu", [4.5, 5.0, 9.0])
def test_the_student_t_fourth_moment_is_3_nu_minus_2_over_nu_minus_4(nu):
    expected = 3 * (nu - 2) / (nu - 4)
    assert coordinate_absolute_moment("student_t", 4, num_features=4, nu=nu) == pytest.approx(expected)


@pytest.mark.parametrize("nu", [2.5, 3.0, 5.0, 6.5, 11.0])
def test_a_student_t_moment_exists_iff_its_order_is_below_nu_and_the_formula_diverges_there(nu):
    for order in [0, 1, 2, 2.5, 3, 4, 5, 6, 6.5, 7, 10, 11, 12]:
        exists = moment_order_exists("student_t", order, nu)
        assert exists == (order < nu)
        value = coordinate_absolute_moment("student_t", order, num_features=4, nu=nu)
        assert math.isfinite(value) == exists
    # Gamma((nu - k) / 2) has its pole at k = nu: the moment grows like 2 / (nu - k) as k rises to nu.
    below = [coordinate_absolute_moment("student_t", nu - gap, num_features=4, nu=nu) for gap in (1e-2, 1e-4, 1e-6)]
    assert below[0] < below[1] < below[2]
    assert below[2] / below[0] == pytest.approx(1e4, rel=0.05)


@pytest.mark.parametrize("inputs", ["gaussian", "sphere"])
def test_the_light_tailed_inputs_have_every_moment(inputs):
    assert all(moment_order_exists(inputs, order) for order in (0, 1, 4, 10, 100, 1e6))
    assert math.isfinite(coordinate_absolute_moment(inputs, 40, num_features=5))


@pytest.mark.parametrize("call,match", [
    (lambda: moment_order_exists("student_t", 2), "need nu"),
    (lambda: moment_order_exists("student_t", 2, 2.0), "above 2"),
    (lambda: moment_order_exists("sphere", 2, 5.0), "applies to inputs 'student_t' only"),
    (lambda: moment_order_exists("laplace", 2), "unknown inputs 'laplace'"),
    (lambda: moment_order_exists("gaussian", -1), "order must be a finite number >= 0"),
    (lambda: coordinate_absolute_moment("sphere", 2, num_features=0), "num_features must be a positive integer"),
])
def test_bad_arguments_are_one_line_errors(call, match):
    with pytest.raises(ProblemError, match=match) as info:
        call()
    assert "\n" not in str(info.value)


# ------------------------------------------------------------------ Monte Carlo against the closed forms
SOURCES = {"training inputs": _training_inputs, "unlabeled pool": _pool_inputs}
#: (source, inputs, nu): the Gaussian's training inputs are standardized on their own sample (the diagonal of
#: their second moments is 1 by construction), so the Gaussian is checked on its pool.
DRAWS = [(source, inputs, nu) for inputs, nu in (("gaussian", None), ("sphere", None), ("student_t", 5.0),
                                                 ("student_t", 9.0))
         for source in SOURCES if not (inputs == "gaussian" and source == "training inputs")]
ORDERS = {"gaussian": (1, 3, 4, 6), "sphere": (1, 3, 4, 6),
          # Only orders k with 2k < nu: the estimate's own variance (a moment of order 2k) must be finite.
          5.0: (0.5, 1, 1.5, 2), 9.0: (1, 2, 3, 4)}


def _covariance_z(x: torch.Tensor, inputs: str, nu: float | None) -> torch.Tensor:
    """(1/n) sum_i x_i x_i^T - I_d in standard errors, ``(d, d)``."""
    n = x.shape[0]
    fourth = coordinate_absolute_moment(inputs, 4, num_features=NUM_FEATURES, nu=nu)
    variance = torch.full((NUM_FEATURES, NUM_FEATURES), fourth / 3, dtype=torch.float64)
    variance.diagonal().fill_(fourth - 1)
    return (x.T @ x / n - torch.eye(NUM_FEATURES, dtype=torch.float64)) / (variance / n).sqrt()


@pytest.mark.parametrize("source,inputs,nu", DRAWS)
def test_the_inputs_have_covariance_identity_within_4_se_per_entry(source, inputs, nu):
    """The sample second moments (1/n) sum_i x_i x_i^T (the mean is 0 by construction) against I_d, entry by entry.

    Per point, x_a x_b has variance E x_1^4 - 1 on the diagonal and E x_1^4 / 3 off it (a spherically symmetric
    law), E x_1^4 from the closed form: 3, 3d/(d+2) = 2, and 3(nu-2)/(nu-4) = 9 (nu = 5) or 4.2 (nu = 9); finite
    for nu = 5 (order 4 < 5). The Gaussian's training inputs are standardized (their diagonal is 1 exactly), so
    it is checked on its pool only, whose N(-mu/sigma, diag(1/sigma^2)) is I_d up to O(n^-1/2) from that
    standardization (on n = 20,000 training points: about one more SE). The check has power: the same draws
    scaled by 1.05 (covariance 1.1025 I_d) are rejected.
    """
    x = SOURCES[source](inputs, nu)
    z = _covariance_z(x, inputs, nu)
    assert z.abs().max() < TOLERANCE_SE, z
    assert _covariance_z(1.05 * x, inputs, nu).abs().max() > TOLERANCE_SE


@pytest.mark.parametrize("source,inputs,nu", DRAWS)
def test_the_coordinate_moments_match_the_closed_form_within_4_se(source, inputs, nu):
    """The per-point mean of |x_j|^k over the d coordinates, averaged over n points, against E|x_1|^k; its SE
    is the spread of the per-point means / sqrt(n) (the coordinates of one point are dependent)."""
    x = SOURCES[source](inputs, nu)
    for order in ORDERS[nu or inputs]:
        assert moment_order_exists(inputs, 2 * order, nu)
        per_point = x.abs().pow(order).mean(-1)
        se = per_point.std() / math.sqrt(len(per_point))
        exact = coordinate_absolute_moment(inputs, order, num_features=NUM_FEATURES, nu=nu)
        assert abs(float(per_point.mean()) - exact) < TOLERANCE_SE * float(se), (order, float(per_point.mean()), exact)


@pytest.mark.parametrize("inputs,nu", [("sphere", None), ("student_t", 3.0), ("student_t", 5.0)])
def test_the_unlabeled_pool_draws_the_training_inputs_distribution(inputs, nu):
    """Two samples of the radius: the pool's mean log ||x|| equals the training inputs' within 4 SE (log ||x|| has
    every moment for each law; the sphere's is log sqrt(d) exactly)."""
    train, pool = _training_inputs(inputs, nu).norm(dim=-1).log(), _pool_inputs(inputs, nu).norm(dim=-1).log()
    if inputs == "sphere":
        expected = torch.full_like(train, 0.5 * math.log(NUM_FEATURES))
        torch.testing.assert_close(train, expected)
        torch.testing.assert_close(pool, expected)
        return
    se = math.sqrt(float(train.var()) / len(train) + float(pool.var()) / len(pool))
    assert abs(float(train.mean() - pool.mean())) < TOLERANCE_SE * se
