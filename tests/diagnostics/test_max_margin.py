"""Max-margin and min-norm reference directions: closed forms, independent solvers, KKT certificates, errors.

Every check is against a computation that shares no code with the solver under test: closed forms on
one, two or orthogonal points; SLSQP on the primal and libsvm (on data mirrored so that its intercept
is zero) for the quadratic programs; vertex enumeration and the dual linear program for l1; the
KKT conditions re-derived here by NNLS on the active constraints. All in float64; each tolerance is
stated where it is used.
"""

import itertools

import numpy as np
import pytest
import torch
from scipy.optimize import linprog, minimize, nnls
from sklearn.svm import SVC

from volumelab.diagnostics.max_margin import (
    KKT_TOLERANCE,
    MaxMarginSolution,
    cosine,
    direction_report,
    l1_max_margin,
    l2_max_margin,
    mahalanobis_max_margin,
    min_norm_interpolant,
)
from volumelab.errors import VolumelabError


def separable_data(seed, count, dimension, gap=0.1):
    """Gaussian inputs labelled by a random teacher, keeping points at least ``gap`` from its hyperplane."""
    rng = np.random.default_rng(seed)
    teacher = rng.standard_normal(dimension)
    teacher /= np.linalg.norm(teacher)
    inputs = rng.standard_normal((6 * count, dimension))
    inputs = inputs[np.abs(inputs @ teacher) > gap][:count]
    return inputs, np.sign(inputs @ teacher)


def random_covariance(seed, dimension):
    rng = np.random.default_rng(seed)
    factor = rng.standard_normal((dimension, dimension))
    return factor @ factor.T / dimension + 0.2 * np.eye(dimension)


def independent_kkt_residual(rows, weights, metric=None):
    """Optimality of ``weights`` for ``min w^T P w s.t. rows @ w >= 1``, derived here without the solver's duals.

    The active set is the points with margin within 1e-7 of 1; ``P w`` must be a non-negative combination of
    their rows (NNLS): returns ``(1 - min margin, ||P w - Z_A^T alpha|| / ||P w||)``. Convexity makes these
    KKT conditions sufficient, so both near zero certify the optimum.
    """
    gradient = weights if metric is None else metric @ weights
    margins = rows @ weights
    active = margins <= 1 + 1e-7
    _, residual = nnls(rows[active].T, gradient)
    return 1 - margins.min(), residual / np.linalg.norm(gradient)


def slsqp_primal(rows, metric, start):
    """``argmin w^T P w s.t. rows @ w >= 1`` by SLSQP on the primal (its own tolerance 1e-15 on the objective)."""
    result = minimize(lambda w: w @ metric @ w, start, jac=lambda w: 2 * metric @ w, method="SLSQP",
                      constraints=[{"type": "ineq", "fun": lambda w: rows @ w - 1, "jac": lambda w: rows}],
                      options={"ftol": 1e-15, "maxiter": 500})
    assert np.all(rows @ result.x >= 1 - 1e-9), result.message
    return result.x


# --- closed forms ---------------------------------------------------------------------------------------------

POINTS = [(np.array([3.0, -4.0, 1.0]), 1.0), (np.array([0.5, 2.0, -0.25, 1.5]), -1.0), (np.array([-7.0]), 1.0)]


@pytest.mark.parametrize("point, label", POINTS)
def test_one_point_l2_is_the_point_over_its_squared_norm(point, label):
    """w = y x / ||x||^2, margin ||x||, the only dual coefficient 1 / ||x||^2 (relative 1e-12)."""
    solution = l2_max_margin(point[None], [label])
    squared = point @ point
    np.testing.assert_allclose(solution.weights, label * point / squared, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(solution.direction, label * point / np.sqrt(squared), rtol=1e-12, atol=1e-15)
    assert solution.margin == pytest.approx(np.sqrt(squared), rel=1e-12)
    np.testing.assert_allclose(solution.dual_coefficients, [1 / squared], rtol=1e-12)
    assert solution.norm == "l2" and solution.kkt_residual <= 1e-12


@pytest.mark.parametrize("point, label", POINTS)
def test_one_point_l1_puts_all_weight_on_the_largest_coordinate(point, label):
    """w_j = y sign(x_j) / |x_j| at j = argmax |x_j|, zero elsewhere; margin ||x||_inf (relative 1e-12)."""
    solution = l1_max_margin(point[None], [label])
    largest = np.argmax(np.abs(point))
    expected = np.zeros_like(point)
    expected[largest] = label * np.sign(point[largest]) / abs(point[largest])
    np.testing.assert_allclose(solution.weights, expected, rtol=1e-12, atol=1e-15)
    assert solution.margin == pytest.approx(np.abs(point).max(), rel=1e-12)
    assert solution.norm == "l1"


@pytest.mark.parametrize("point, label", POINTS)
def test_one_point_mahalanobis_with_a_diagonal_metric(point, label):
    """w = S^-1 y x / (x^T S^-1 x), margin sqrt(x^T S^-1 x) (relative 1e-12)."""
    diagonal = np.linspace(0.5, 3.0, point.size)
    inverse_times_point = point / diagonal
    solution = mahalanobis_max_margin(point[None], [label], np.diag(diagonal))
    np.testing.assert_allclose(solution.weights, label * inverse_times_point / (point @ inverse_times_point),
                               rtol=1e-12, atol=1e-15)
    assert solution.margin == pytest.approx(np.sqrt(point @ inverse_times_point), rel=1e-12)


def test_orthogonal_points_each_get_their_own_term():
    """For orthogonal x_i every constraint is active and w = sum_i y_i x_i / ||x_i||^2 (relative 1e-12)."""
    rng = np.random.default_rng(0)
    basis, _ = np.linalg.qr(rng.standard_normal((6, 3)))
    lengths = np.array([0.5, 2.0, 7.0])
    inputs, labels = (basis * lengths).T, np.array([1.0, -1.0, -1.0])
    solution = l2_max_margin(inputs, labels)
    np.testing.assert_allclose(solution.weights, (labels / lengths ** 2) @ inputs, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(solution.dual_coefficients, 1 / lengths ** 2, rtol=1e-12)
    np.testing.assert_array_equal(solution.support, [0, 1, 2])


def test_a_symmetric_pair_is_one_point():
    """(x, -x) labelled (+1, -1) impose one constraint twice: the one-point solution, in every norm."""
    point = np.array([1.0, -2.0, 0.5])
    pair, labels = np.stack([point, -point]), np.array([1.0, -1.0])
    covariance = random_covariance(1, 3)
    for solve, arguments in [(l2_max_margin, ()), (l1_max_margin, ()), (mahalanobis_max_margin, (covariance,))]:
        np.testing.assert_allclose(solve(pair, labels, *arguments).weights,
                                   solve(point[None], [1.0], *arguments).weights, rtol=1e-12, atol=1e-15)


def test_mahalanobis_with_the_identity_is_l2():
    inputs, labels = separable_data(2, 40, 6)
    np.testing.assert_allclose(mahalanobis_max_margin(inputs, labels, np.eye(6)).weights,
                               l2_max_margin(inputs, labels).weights, rtol=1e-10, atol=1e-12)


def test_a_thin_margin_is_resolved_by_polishing_on_the_support():
    """Points (1, eps), (-1, eps), (0.3, 1), all +1: w = (0, 1/eps) exactly, relative margin ~eps. Without
    the support polish LDP divides by r_{d+1} ~ eps^2 and loses ~all digits at eps = 1e-6 (measured 5e-4)."""
    for eps in (1e-2, 1e-4, 1e-6):
        solution = l2_max_margin([[1.0, eps], [-1.0, eps], [0.3, 1.0]], [1, 1, 1])
        np.testing.assert_allclose(solution.weights * eps, [0.0, 1.0], atol=1e-9)
        assert solution.margin == pytest.approx(eps, rel=1e-9)
    with pytest.raises(VolumelabError, match="to float64's precision"):  # below the documented 6e-8
        l2_max_margin([[1.0, 1e-8], [-1.0, 1e-8], [0.3, 1.0]], [1, 1, 1])


def test_min_norm_interpolant_is_the_pseudo_inverse_formula():
    """X^T (X X^T)^-1 t for full row rank (relative 1e-10); a repeated row with a consistent target changes
    nothing; the interpolant is orthogonal to X's null space."""
    rng = np.random.default_rng(3)
    inputs, targets = rng.standard_normal((5, 12)), rng.standard_normal(5)
    weights = min_norm_interpolant(inputs, targets)
    np.testing.assert_allclose(weights, inputs.T @ np.linalg.solve(inputs @ inputs.T, targets), rtol=1e-10)
    repeated = min_norm_interpolant(np.vstack([inputs, inputs[:1]]), np.append(targets, targets[0]))
    np.testing.assert_allclose(repeated, weights, rtol=1e-10)
    null_space = np.linalg.svd(inputs)[2][5:]
    assert np.abs(null_space @ weights).max() < 1e-12


# --- random separable data against independent solvers ---------------------------------------------------------

SHAPES = [(0, 30, 5), (1, 60, 8), (2, 20, 40)]  # (seed, n, d); the last has n < d


@pytest.mark.parametrize("seed, count, dimension", SHAPES)
def test_l2_satisfies_kkt_and_agrees_with_slsqp_and_libsvm(seed, count, dimension):
    """KKT residuals re-derived here below 1e-10; the solver's own duals satisfy w = Z^T alpha, alpha >= 0, with
    alpha_i > 0 only at margin 1 (1e-10); SLSQP on the primal agrees to 1e-7 and libsvm to 1e-5, relative to ||w||
    (their stopping tolerances; measured at most 2.8e-14 and 9.7e-7).

    libsvm always fits an intercept; on the data mirrored, (x_i, y_i) and (-x_i, -y_i), the constraints are those
    of the problem without intercept and the optimal intercept is 0 by the symmetry, so its w is ours.
    """
    inputs, labels = separable_data(seed, count, dimension)
    rows = labels[:, None] * inputs
    solution = l2_max_margin(inputs, labels)
    assert solution.kkt_residual <= 1e-11
    infeasibility, stationarity = independent_kkt_residual(rows, solution.weights)
    assert infeasibility <= 1e-10 and stationarity <= 1e-10
    alpha, margins = solution.dual_coefficients, rows @ solution.weights
    assert alpha.min() >= 0
    np.testing.assert_allclose(rows.T @ alpha, solution.weights, rtol=0, atol=1e-10 * np.linalg.norm(solution.weights))
    assert np.abs(margins[solution.support] - 1).max() <= 1e-10
    assert solution.margin == pytest.approx(1 / np.linalg.norm(solution.weights), rel=1e-12)

    reference = slsqp_primal(rows, np.eye(dimension), solution.weights * 1.5)
    np.testing.assert_allclose(reference, solution.weights, rtol=0, atol=1e-7 * np.linalg.norm(solution.weights))

    mirrored_inputs, mirrored_labels = np.vstack([inputs, -inputs]), np.concatenate([labels, -labels])
    machine = SVC(kernel="linear", C=1e8, tol=1e-10).fit(mirrored_inputs, mirrored_labels)
    assert abs(machine.intercept_[0]) < 1e-6
    np.testing.assert_allclose(machine.coef_[0], solution.weights, rtol=0, atol=1e-5 * np.linalg.norm(solution.weights))


@pytest.mark.parametrize("seed, count, dimension", SHAPES)
def test_mahalanobis_satisfies_kkt_and_agrees_with_slsqp(seed, count, dimension):
    """S w = Z^T alpha on the active set (re-derived, 1e-10), SLSQP with the objective w^T S w agrees to 1e-7,
    and the margin is 1 / ||w||_S."""
    inputs, labels = separable_data(seed, count, dimension)
    rows, covariance = labels[:, None] * inputs, random_covariance(seed, dimension)
    solution = mahalanobis_max_margin(inputs, labels, covariance)
    assert solution.kkt_residual <= 1e-11
    infeasibility, stationarity = independent_kkt_residual(rows, solution.weights, covariance)
    assert infeasibility <= 1e-10 and stationarity <= 1e-10
    reference = slsqp_primal(rows, covariance, solution.weights * 1.5)
    np.testing.assert_allclose(reference, solution.weights, rtol=0, atol=1e-7 * np.linalg.norm(solution.weights))
    assert solution.margin == pytest.approx(1 / np.sqrt(solution.weights @ covariance @ solution.weights), rel=1e-12)
    # The metric changes the direction: this is not the Euclidean answer.
    assert cosine(solution.weights, l2_max_margin(inputs, labels).weights) < 1 - 1e-4


def l1_by_vertex_enumeration(rows):
    """min ||w||_1 s.t. rows @ w >= 1, by brute force: in each orthant the problem is an LP over a pointed
    polyhedron, so an optimum is a vertex, the solution of d tight constraints among the margins and the
    coordinate planes w_j = 0. Returns the smallest l1 norm over the feasible vertices."""
    count, dimension = rows.shape
    planes = np.vstack([rows, np.eye(dimension)])
    values = np.concatenate([np.ones(count), np.zeros(dimension)])
    best = np.inf
    for chosen in itertools.combinations(range(count + dimension), dimension):
        matrix = planes[list(chosen)]
        if abs(np.linalg.det(matrix)) < 1e-12:
            continue
        vertex = np.linalg.solve(matrix, values[list(chosen)])
        if np.all(rows @ vertex >= 1 - 1e-12):
            best = min(best, np.abs(vertex).sum())
    return best


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_l1_matches_vertex_enumeration_and_the_dual_program(seed):
    """d = 3, n = 8: the optimal ||w||_1 equals the brute-force minimum over vertices (relative 1e-10) and the
    optimum of the dual LP max 1^T alpha s.t. ||Z^T alpha||_inf <= 1, alpha >= 0 solved separately (1e-9)."""
    inputs, labels = separable_data(10 + seed, 8, 3)
    rows = labels[:, None] * inputs
    solution = l1_max_margin(inputs, labels)
    norm = np.abs(solution.weights).sum()
    assert np.all(rows @ solution.weights >= 1 - 1e-10)
    assert norm == pytest.approx(l1_by_vertex_enumeration(rows), rel=1e-10)
    dual = linprog(-np.ones(8), A_ub=np.vstack([rows.T, -rows.T]), b_ub=np.ones(6), bounds=(0, None), method="highs")
    assert norm == pytest.approx(-dual.fun, rel=1e-9)
    assert solution.margin == pytest.approx(1 / norm, rel=1e-12)
    assert solution.kkt_residual <= 1e-10


@pytest.mark.parametrize("seed, count, dimension", SHAPES)
def test_l1_on_larger_problems_agrees_with_its_dual_and_is_sparse(seed, count, dimension):
    """The l1 norm equals the separately solved dual optimum (1e-9), and the solution has at most n non-zeros
    (a vertex of an LP with n constraints)."""
    inputs, labels = separable_data(seed, count, dimension)
    rows = labels[:, None] * inputs
    solution = l1_max_margin(inputs, labels)
    dual = linprog(-np.ones(count), A_ub=np.vstack([rows.T, -rows.T]), b_ub=np.ones(2 * dimension),
                   bounds=(0, None), method="highs")
    assert np.abs(solution.weights).sum() == pytest.approx(-dual.fun, rel=1e-9)
    assert np.count_nonzero(np.abs(solution.weights) > 1e-12) <= count
    assert solution.kkt_residual <= 1e-10


# --- reports and errors -----------------------------------------------------------------------------------------

def test_direction_report_gives_each_references_cosine():
    inputs, labels = separable_data(4, 30, 5)
    solution = l2_max_margin(inputs, labels)
    iterate = torch.tensor(3.0 * solution.weights)  # an optimizer's iterate: any scale, a tensor
    orthogonal = np.linalg.svd(solution.weights[None])[2][1]
    report = direction_report(iterate, {"l2": solution, "orthogonal": orthogonal, "opposite": -solution.direction})
    assert report["l2"] == pytest.approx(1, abs=1e-15)
    assert report["orthogonal"] == pytest.approx(0, abs=1e-15)
    assert report["opposite"] == pytest.approx(-1, abs=1e-15)
    assert isinstance(solution, MaxMarginSolution) and solution.to_dict()["norm"] == "l2"


@pytest.mark.parametrize("solve", [l2_max_margin, l1_max_margin,
                                   lambda X, y: mahalanobis_max_margin(X, y, np.eye(np.shape(X)[1]))])
def test_non_separable_data_raise_one_line_error(solve):
    rng = np.random.default_rng(0)
    cases = [(np.array([[1.0, 2.0], [-1.0, -2.0]]), [1, 1]),  # x and -x with one label
             (rng.standard_normal((40, 3)), rng.choice([-1, 1], 40)),  # random labels, n >> d
             (np.array([[0.0, 0.0]]), [1])]  # a zero input
    for inputs, labels in cases:
        with pytest.raises(VolumelabError, match="not linearly separable") as raised:
            solve(inputs, labels)
        assert "\n" not in str(raised.value)


def test_invalid_inputs_raise_clear_errors():
    inputs = np.ones((3, 2))
    with pytest.raises(VolumelabError, match=r"labels must be -1 or \+1.*\[0\.0\]"):
        l2_max_margin(inputs, [0, 1, 1])
    with pytest.raises(VolumelabError, match="vector of X's 3 labels"):
        l1_max_margin(inputs, [1, -1])
    with pytest.raises(VolumelabError, match=r"\(n, d\) matrix"):
        l2_max_margin(np.ones(3), [1, 1, 1])
    with pytest.raises(VolumelabError, match="finite"):
        l2_max_margin([[np.nan, 1.0]], [1])
    with pytest.raises(VolumelabError, match=r"covariance must be \(2, 2\)"):
        mahalanobis_max_margin(inputs, [1, 1, 1], np.eye(3))
    with pytest.raises(VolumelabError, match="positive definite"):
        mahalanobis_max_margin(inputs, [1, 1, 1], np.diag([1.0, -1.0]))
    with pytest.raises(VolumelabError, match="symmetric"):
        mahalanobis_max_margin(inputs, [1, 1, 1], [[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(VolumelabError, match="no w interpolates"):
        min_norm_interpolant(np.random.default_rng(0).standard_normal((5, 2)), np.arange(5.0))
    with pytest.raises(VolumelabError, match="zero vector"):
        cosine(np.zeros(3), np.ones(3))
    with pytest.raises(VolumelabError, match="same size"):
        cosine(np.ones(2), np.ones(3))
    assert issubclass(VolumelabError, ValueError) and KKT_TOLERANCE == 1e-8
