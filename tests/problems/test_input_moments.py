"""The closed forms of the teacher's input distributions: which moments exist and the coordinate moments, exact
against known values, and against Monte Carlo draws of the data sets themselves (tolerances in standard errors)."""

import math

import pytest

from volumelab.errors import ProblemError
from volumelab.problems import coordinate_absolute_moment, moment_order_exists


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
