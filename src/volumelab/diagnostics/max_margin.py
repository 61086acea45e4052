"""Reference directions for a linear predictor trained on separable data: max-margin and min-norm solutions.

On linearly separable data ``X (n, d)``, ``y in {-1, +1}^n`` (no intercept) the logistic loss has no
minimizer and an optimizer's iterate ``w_t`` grows without bound; what converges is its direction
``w_t / ||w_t||``. Which direction depends on the optimizer's geometry, and each candidate is a convex
program solved here independently of any training run, so a study can compare the two by their cosine:

* :func:`l2_max_margin`, the hard-margin SVM ``argmin ||w||_2 s.t. y_i x_i^T w >= 1``: the limit
  direction of gradient descent on the logistic loss (Soudry et al. 2018, JMLR 19: ``w_t = w_hat log t
  + rho_t`` with ``||rho_t|| = O(log log t)``, bounded for almost every data set);
* :func:`mahalanobis_max_margin`, ``argmin w^T S w`` under the same constraints (``S`` positive
  definite): the limit direction of GD preconditioned by a fixed ``S^{-1}``, ``w <- w - eta S^{-1} grad``,
  which is plain GD in ``v = L^T w`` (``S = L L^T``) on the inputs ``L^{-1} x_i``, so Soudry et al.'s
  result in ``v`` gives ``argmin ||v||_2 = argmin w^T S w`` (steepest descent in the norm ``||w||_S``,
  Gunasekar et al. 2018, ICML); the direction a natural-gradient flow with a fixed Fisher ``S`` is
  expected to approach;
* :func:`l1_max_margin`, ``argmin ||w||_1`` under the same constraints, a linear program: the l1
  margin that steepest descent in the l1 norm maximizes (Gunasekar et al. 2018);
* :func:`min_norm_interpolant`, ``argmin ||w||_2 s.t. X w = t``: where GD from ``w = 0`` on the
  squared loss converges when ``n <= d``.

Solvers and their accuracy:

* The two quadratic programs are solved as Lawson & Hanson's least-distance program (*Solving Least
  Squares Problems*, 1974, Chapter 23, Algorithm LDP): with ``z_i = y_i x_i`` scaled to
  ``max_i ||z_i|| = 1``, the non-negative least squares ``u = argmin_{u >= 0} ||E u - f||`` with
  ``E = [Z^T; 1^T]`` and ``f = (0, ..., 0, 1)`` (:func:`scipy.optimize.nnls`, an active-set method that
  ends in finitely many steps) has residual ``r = E u - f`` with ``r_{d+1} = -gamma^2 / (1 + gamma^2)``
  for the geometric margin ``gamma``, and ``w = -r_{1:d} / r_{d+1}``, ``alpha = -u / r_{d+1}``. The
  residual is zero exactly when the origin lies in the convex hull of the ``z_i``: the data are not
  separable. Dividing by ``r_{d+1} ~ gamma^2`` loses accuracy when the margin is thin, so the
  solution is then *polished* on the support ``S = {i : u_i > 0}`` that NNLS found: the optimum is
  the minimum-norm solution of ``Z_S w = 1`` (complementary slackness with stationarity
  ``w = Z_S^T alpha_S``), a least-squares problem whose accuracy depends only on ``Z_S``'s conditioning.
  Of the two candidates the one with the smaller KKT residual is kept. Measured on random separable
  data with relative margin about 0.1 (tests/diagnostics/test_max_margin.py, n <= 60, d <= 40) the KKT
  residual is at most 1e-14 (2e-14 at n = 2000, d = 50, in 0.1 s), and the weights agree with SLSQP on
  the primal to 3e-14 relative and with libsvm to 1e-6 (its stopping tolerance). On a margin of relative
  size eps the residual is 4e-13 at eps = 1e-6 and 1e-9 at 1e-7; below eps = 6e-8 (``r_{d+1}`` within
  16 rounding units of zero) the data count as not separable and the solver raises.
* The linear program goes to HiGHS (:func:`scipy.optimize.linprog`) with the split ``w = u - v``,
  ``u, v >= 0``; its duals give ``alpha``.

Every solution is *certified*: its KKT residual (:attr:`MaxMarginSolution.kkt_residual`, dimensionless,
defined there) is computed from the returned weights and duals, and a solution whose residual exceeds
``tolerance`` (default :data:`KKT_TOLERANCE`) raises instead of being returned. Everything is float64.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch
from scipy.linalg import cholesky, solve_triangular
from scipy.optimize import linprog, nnls

from ..errors import VolumelabError
from ..optimizers.observers import FinalRecording, Observer, Recording, RunOutcome, TrainingContext

__all__ = ["KKT_TOLERANCE", "LIMIT_REFERENCES", "LimitDirections", "MaxMarginSolution", "cosine", "direction_report", "l1_max_margin",
           "l2_max_margin", "limit_direction_cosines", "limit_references", "mahalanobis_max_margin",
           "min_norm_interpolant"]

#: The largest KKT residual a returned solution may have (each solver's ``tolerance`` default).
KKT_TOLERANCE = 1e-8


@dataclass(frozen=True)
class MaxMarginSolution:
    """A max-margin solution ``argmin ||w|| s.t. y_i x_i^T w >= 1`` in one norm, with its certificate.

    ``kkt_residual`` is the largest of four dimensionless violations of the KKT conditions of
    ``min ||w|| s.t. Z w >= 1`` (``Z`` the rows ``y_i x_i``, ``m = Z w`` the margins):

    * primal feasibility ``max_i max(0, 1 - m_i)``;
    * dual feasibility ``max(0, -min alpha) / max alpha``;
    * for the quadratic norms ``w^T P w`` (``P = I`` or the covariance), stationarity
      ``||P w - Z^T alpha|| / ||P w||`` and complementary slackness ``sum_i alpha_i |m_i - 1| / sum_i alpha_i``;
    * for l1, dual feasibility of the linear program ``max(0, ||Z^T alpha||_inf - 1)`` and its duality
      gap ``| ||w||_1 - sum_i alpha_i | / ||w||_1``.
    """

    #: ``(d,)`` the solution, scaled so that the smallest margin ``min_i y_i x_i^T w`` is 1.
    weights: np.ndarray
    #: The geometric margin in the solution's norm, ``min_i y_i x_i^T w / ||w||``, i.e. ``1 / ||w||``.
    margin: float
    #: ``(d,)`` the weights over their Euclidean norm (the unit vector an optimizer's iterate is compared with).
    direction: np.ndarray
    #: ``(n,)`` the Lagrange multipliers ``alpha >= 0`` of the margin constraints; non-zero only on support
    #: vectors (margin 1). For the quadratic norms ``P w = sum_i alpha_i y_i x_i``.
    dual_coefficients: np.ndarray
    #: The largest KKT violation (see the class docstring); at most the solver's ``tolerance``.
    kkt_residual: float
    #: ``"l2"``, ``"l1"`` or ``"mahalanobis"``.
    norm: str
    #: How it was solved.
    method: str

    @property
    def support(self) -> np.ndarray:
        """Indices of the support vectors: the points with a positive dual coefficient."""
        return np.flatnonzero(self.dual_coefficients > 0)

    def to_dict(self) -> dict:
        return {"weights": self.weights.tolist(), "margin": self.margin, "direction": self.direction.tolist(),
                "dual_coefficients": self.dual_coefficients.tolist(), "kkt_residual": self.kkt_residual,
                "norm": self.norm, "method": self.method}


def _as_matrix(inputs, name: str = "X") -> np.ndarray:
    matrix = np.asarray(inputs, dtype=np.float64)
    if matrix.ndim != 2 or matrix.shape[0] < 1 or matrix.shape[1] < 1:
        raise VolumelabError(f"{name} must be a non-empty (n, d) matrix, got shape {matrix.shape}")
    if not np.all(np.isfinite(matrix)):
        raise VolumelabError(f"{name} must be finite, got a NaN or infinite entry")
    return matrix


def _signed_rows(inputs, labels) -> np.ndarray:
    """The rows ``z_i = y_i x_i`` ``(n, d)``, after checking ``X`` and ``y``."""
    matrix = _as_matrix(inputs)
    signs = np.asarray(labels, dtype=np.float64)
    if signs.shape != (matrix.shape[0],):
        raise VolumelabError(f"y must be a vector of X's {matrix.shape[0]} labels, got shape {signs.shape}")
    if not np.all(np.abs(signs) == 1.0):
        found = np.unique(signs[np.abs(signs) != 1.0])[:3]
        raise VolumelabError(f"labels must be -1 or +1 (map {{0, 1}} labels by 2 y - 1), got {found.tolist()}")
    return signs[:, None] * matrix


def _not_separable(reason: str) -> VolumelabError:
    return VolumelabError(f"the data are not linearly separable through the origin ({reason}), so the max-margin "
                          f"problem has no solution; check the labels, or append a constant feature if the data are "
                          f"separable only with an intercept")


def _quadratic_kkt_residual(rows: np.ndarray, weights: np.ndarray, duals: np.ndarray, gradient: np.ndarray) -> float:
    """The KKT residual of ``min (1/2) w^T P w s.t. Z w >= 1`` at ``(w, alpha)``, ``gradient = P w``."""
    margins = rows @ weights
    total = duals.sum()
    if not total > 0:
        return float("inf")
    return float(max(max(0.0, 1.0 - margins.min()), max(0.0, -duals.min()) / duals.max(),
                     np.linalg.norm(gradient - rows.T @ duals) / np.linalg.norm(gradient),
                     np.abs(duals * (margins - 1.0)).sum() / total))


def _least_distance(rows: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray, float, str]:
    """``argmin ||w||_2 s.t. rows @ w >= 1`` and its duals by Lawson-Hanson LDP (module docstring), polished.

    Returns ``(w (d,), alpha (n,), kkt_residual, method)``.
    """
    count, dimension = rows.shape
    scale = np.linalg.norm(rows, axis=1).max()
    if scale == 0:
        raise _not_separable("every x_i is zero")
    scaled = rows / scale
    system = np.vstack([scaled.T, np.ones((1, count))])
    target = np.zeros(dimension + 1)
    target[-1] = 1.0
    # The default 3 n iterations can be too few for n >> d; every iteration adds or drops one index.
    solution, _ = nnls(system, target, maxiter=max(50 * count, 1000))
    residual = system @ solution - target
    # r_{d+1} = -gamma^2 / (1 + gamma^2) <= 0 for the relative margin gamma; zero, to rounding (~1e-16), when the
    # origin is in the hull of the z_i. Below 16 eps (gamma < 6e-8) nothing that follows would be accurate.
    if not -residual[-1] > 16 * np.finfo(float).eps:
        raise _not_separable("no w has y_i x_i^T w > 0 for every i, to float64's precision: the origin lies in, or "
                             "within 6e-8 of the largest |x_i| from, the convex hull of the y_i x_i")
    candidates = [(-residual[:dimension] / residual[-1], -solution / residual[-1], "Lawson-Hanson LDP (NNLS)")]
    support = solution > 0
    if support.any():
        # Polish: the optimum is the minimum-norm solution of Z_S w = 1, and alpha_S solves Z_S^T alpha_S = w.
        polished = np.linalg.lstsq(scaled[support], np.ones(support.sum()), rcond=None)[0]
        duals = np.zeros(count)
        duals[support] = np.linalg.lstsq(scaled[support].T, polished, rcond=None)[0]
        candidates.append((polished, duals, "Lawson-Hanson LDP (NNLS), polished on its support"))
    best = min(((_quadratic_kkt_residual(scaled, w, alpha, w), w, alpha, method) for w, alpha, method in candidates),
               key=lambda candidate: candidate[0])
    residual_value, weights, duals, method = best
    if not 1.0 - (scaled @ weights).min() <= tolerance:
        raise _not_separable(f"to float64's precision: the best w found violates a margin by "
                             f"{1.0 - (scaled @ weights).min():.1e}; a margin, if any, is too thin to resolve")
    if not residual_value <= tolerance:
        raise VolumelabError(f"the max-margin solver's KKT residual {residual_value:.1e} exceeds the tolerance "
                             f"{tolerance:.1e}: the problem is too ill-conditioned; pass a larger tolerance")
    # Undo the scaling: rows @ w = scaled @ (scale w), so w = w_scaled / scale and alpha = alpha_scaled / scale^2.
    return weights / scale, duals / scale ** 2, residual_value, method


def _solution(rows: np.ndarray, weights: np.ndarray, duals: np.ndarray, norm_value: float, kkt_residual: float,
              norm: str, method: str) -> MaxMarginSolution:
    return MaxMarginSolution(weights=weights, margin=float((rows @ weights).min() / norm_value),
                             direction=weights / np.linalg.norm(weights), dual_coefficients=duals,
                             kkt_residual=kkt_residual, norm=norm, method=method)


def l2_max_margin(X, y, *, tolerance: float = KKT_TOLERANCE) -> MaxMarginSolution:
    """The hard-margin SVM without intercept, ``argmin ||w||_2 s.t. y_i x_i^T w >= 1``.

    The limit direction of gradient descent on the logistic (or exponential) loss on separable data
    (Soudry et al. 2018). Solved as a least-distance program (module docstring).

    Args:
        X: ``(n, d)`` inputs (array-like: NumPy or a CPU tensor), converted to float64.
        y: ``(n,)`` labels in ``{-1, +1}``.
        tolerance: The largest KKT residual accepted (:class:`MaxMarginSolution`).

    Returns:
        The solution: ``weights`` with ``w = sum_i alpha_i y_i x_i`` (``dual_coefficients`` ``alpha``),
        ``margin`` ``1 / ||w||_2``, the Euclidean distance from the separating hyperplane to the nearest point.

    Raises:
        VolumelabError: (a ``ValueError``) for bad shapes or labels, or data not separable through the origin.
    """
    rows = _signed_rows(X, y)
    weights, duals, residual, method = _least_distance(rows, tolerance)
    return _solution(rows, weights, duals, np.linalg.norm(weights), residual, "l2", method)


def mahalanobis_max_margin(X, y, covariance, *, tolerance: float = KKT_TOLERANCE) -> MaxMarginSolution:
    """The max-margin solution in the norm ``||w||_S = sqrt(w^T S w)``: ``argmin w^T S w s.t. y_i x_i^T w >= 1``.

    With the Cholesky factor ``S = L L^T`` and ``v = L^T w`` the problem is :func:`l2_max_margin` on the
    rows ``L^{-1} x_i``, and ``w = L^{-T} v``; the certificate is checked in the original coordinates
    (stationarity ``S w = sum_i alpha_i y_i x_i``). Its accuracy degrades with ``S``'s condition number.

    Args:
        X: ``(n, d)`` inputs.
        y: ``(n,)`` labels in ``{-1, +1}``.
        covariance: ``(d, d)`` symmetric positive definite ``S`` (e.g. the data's second-moment matrix
            ``X^T X / n`` when ``n >= d``, a Fisher matrix).
        tolerance: The largest KKT residual accepted.

    Returns:
        The solution; ``margin`` is ``1 / ||w||_S`` and ``direction`` the Euclidean unit vector ``w / ||w||_2``.
    """
    rows = _signed_rows(X, y)
    dimension = rows.shape[1]
    matrix = _as_matrix(covariance, "covariance")
    if matrix.shape != (dimension, dimension):
        raise VolumelabError(f"covariance must be ({dimension}, {dimension}) for X's {dimension} columns, "
                             f"got shape {matrix.shape}")
    if not np.allclose(matrix, matrix.T, rtol=1e-10, atol=1e-12 * np.abs(matrix).max()):
        raise VolumelabError("covariance must be symmetric, got a matrix that differs from its transpose")
    matrix = (matrix + matrix.T) / 2
    try:
        factor = cholesky(matrix, lower=True)
    except np.linalg.LinAlgError:
        raise VolumelabError("covariance must be positive definite (its Cholesky factorization failed); "
                             "add a ridge, S + eps I, if it is singular") from None
    whitened_rows = solve_triangular(factor, rows.T, lower=True).T  # rows L^{-1} z_i
    whitened, duals, _, method = _least_distance(whitened_rows, tolerance)
    weights = solve_triangular(factor.T, whitened, lower=False)
    gradient = matrix @ weights
    residual = _quadratic_kkt_residual(rows, weights, duals, gradient)
    if not residual <= tolerance:
        raise VolumelabError(f"the Mahalanobis max-margin solution's KKT residual {residual:.1e} exceeds the "
                             f"tolerance {tolerance:.1e}: the covariance is too ill-conditioned; "
                             f"pass a larger tolerance")
    return _solution(rows, weights, duals, float(np.sqrt(weights @ gradient)), residual, "mahalanobis",
                     f"Cholesky whitening, then {method}")


def l1_max_margin(X, y, *, tolerance: float = KKT_TOLERANCE) -> MaxMarginSolution:
    """The max-margin solution in the l1 norm, ``argmin ||w||_1 s.t. y_i x_i^T w >= 1``, a linear program.

    Solved by HiGHS (:func:`scipy.optimize.linprog`) with ``w = u - v``, ``u, v >= 0``: minimize
    ``1^T (u + v)`` subject to ``Z (u - v) >= 1``, with the rows scaled to ``max_i ||z_i|| = 1`` so
    that HiGHS's absolute tolerances are relative ones. Its dual is ``max 1^T alpha`` subject to
    ``||Z^T alpha||_inf <= 1``, ``alpha >= 0``. The optimum need not be unique (a face of the l1
    ball can touch the feasible set): HiGHS returns a vertex, with at most n non-zero weights.

    Args:
        X: ``(n, d)`` inputs.
        y: ``(n,)`` labels in ``{-1, +1}``.
        tolerance: The largest KKT residual accepted.

    Returns:
        The solution; ``margin`` is ``1 / ||w||_1`` (the l-infinity distance from the hyperplane to the
        nearest point) and ``direction`` the Euclidean unit vector ``w / ||w||_2``.
    """
    rows = _signed_rows(X, y)
    count, dimension = rows.shape
    scale = np.linalg.norm(rows, axis=1).max()
    if scale == 0:
        raise _not_separable("every x_i is zero")
    scaled = rows / scale
    result = linprog(np.ones(2 * dimension), A_ub=np.hstack([-scaled, scaled]), b_ub=-np.ones(count),
                     bounds=(0, None), method="highs",
                     options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10})
    if result.status == 2:
        raise _not_separable("no w has y_i x_i^T w >= 1 for every i: HiGHS found the constraints infeasible")
    if result.status != 0:
        raise VolumelabError(f"HiGHS did not solve the l1 max-margin program: {result.message}")
    weights = result.x[:dimension] - result.x[dimension:]
    duals = -result.ineqlin.marginals  # linprog's marginals of A_ub x <= b_ub are <= 0
    norm_value = np.abs(weights).sum()
    residual = float(max(max(0.0, 1.0 - (scaled @ weights).min()),
                         max(0.0, -duals.min()) / max(duals.max(), np.finfo(float).tiny),
                         max(0.0, np.abs(scaled.T @ duals).max() - 1.0), abs(norm_value - duals.sum()) / norm_value))
    if not residual <= tolerance:
        raise VolumelabError(f"HiGHS's l1 max-margin solution has KKT residual {residual:.1e}, above the tolerance "
                             f"{tolerance:.1e}; pass a larger tolerance")
    weights = weights / scale
    return _solution(rows, weights, duals / scale, np.abs(weights).sum(), residual, "l1", "HiGHS linear program")


def min_norm_interpolant(X, targets, *, tolerance: float = KKT_TOLERANCE) -> np.ndarray:
    """The minimum-norm interpolant ``argmin ||w||_2 s.t. X w = t``, i.e. ``X^+ t``.

    Where gradient descent from ``w = 0`` on the squared loss converges (its iterates stay in the row space
    of ``X``). Computed by :func:`numpy.linalg.lstsq`; equal to ``X^T (X X^T)^{-1} t`` when ``X`` has full
    row rank (``n <= d``).

    Args:
        X: ``(n, d)`` inputs.
        targets: ``(n,)`` targets ``t``.
        tolerance: The largest relative residual ``||X w - t|| / ||t||`` accepted.

    Returns:
        ``(d,)`` the interpolant.

    Raises:
        VolumelabError: for bad shapes, or when no ``w`` interpolates (``t`` is not in ``X``'s range, as
        for ``n > d`` in general).
    """
    matrix = _as_matrix(X)
    values = np.asarray(targets, dtype=np.float64)
    if values.shape != (matrix.shape[0],):
        raise VolumelabError(f"targets must be a vector of X's {matrix.shape[0]} rows, got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise VolumelabError("targets must be finite, got a NaN or infinite entry")
    weights = np.linalg.lstsq(matrix, values, rcond=None)[0]
    residual = np.linalg.norm(matrix @ weights - values) / max(np.linalg.norm(values), np.finfo(float).tiny)
    if not residual <= tolerance:
        raise VolumelabError(f"no w interpolates the targets (relative residual {residual:.1e} of the least-squares "
                             f"solution): X's {matrix.shape[0]} rows are dependent, or more than its "
                             f"{matrix.shape[1]} columns, and t is not in its range")
    return weights


def cosine(first, second) -> float:
    """The cosine ``<a, b> / (||a|| ||b||)`` of two vectors (flattened, float64), in ``[-1, 1]``."""
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise VolumelabError(f"the two vectors must have the same size, got {a.size} and {b.size}")
    norms = np.linalg.norm(a) * np.linalg.norm(b)
    if not norms > 0:
        raise VolumelabError("the cosine of a zero vector is undefined")
    return float(np.clip(a @ b / norms, -1.0, 1.0))


def direction_report(weights, references: Mapping[str, MaxMarginSolution | np.ndarray]) -> dict[str, float]:
    """The cosine of ``weights`` with each reference direction, by the references' names.

    Args:
        weights: ``(d,)`` an optimizer's iterate (a tensor or array).
        references: Names to solutions (their ``direction``) or to plain vectors.

    Returns:
        ``{name: cosine}``, 1 where ``weights`` points along the reference.
    """
    return {name: cosine(weights, reference.direction if isinstance(reference, MaxMarginSolution) else reference)
            for name, reference in references.items()}


#: The references :func:`limit_references` computes, by the metric each run reports (``cos_<name>``).
LIMIT_REFERENCES = ("l2_margin", "l1_margin", "min_norm")


def limit_references(X, y) -> dict[str, np.ndarray | None]:
    """The unit directions a linear predictor trained on ``(X, y)`` is compared with, by name
    (:data:`LIMIT_REFERENCES`): ``l2_margin`` (:func:`l2_max_margin`), ``l1_margin`` (:func:`l1_max_margin`) and
    ``min_norm`` (:func:`min_norm_interpolant` of the labels). A reference that does not exist on these data is
    ``None``: both margins when the data are not separable through the origin, the interpolant when the labels
    are not in ``X``'s range (more points than features, in general). With isotropic inputs the Mahalanobis
    max-margin under the data covariance is ``l2_margin`` itself, so it is not repeated here."""
    references: dict[str, np.ndarray | None] = {}
    for name, solver in (("l2_margin", l2_max_margin), ("l1_margin", l1_max_margin)):
        try:
            references[name] = solver(X, y).direction
        except VolumelabError:
            references[name] = None
    try:
        interpolant = min_norm_interpolant(X, y)
        references["min_norm"] = interpolant / np.linalg.norm(interpolant)
    except VolumelabError:
        references["min_norm"] = None
    return references


def limit_direction_cosines(weights, references: Mapping[str, np.ndarray | None]) -> dict[str, float]:
    """``{"cos_<name>": cosine of weights with reference}`` for :func:`limit_references`' output; NaN where the
    reference does not exist or ``weights`` has no direction (zero, or not finite)."""
    w = np.asarray(weights, dtype=np.float64).ravel()
    largest = float(np.abs(w).max()) if w.size else 0.0
    no_direction = not (math.isfinite(largest) and largest > 0)  # w = 0, or a diverged run's infinite entries
    return {f"cos_{name}": (math.nan if reference is None or no_direction else cosine(w / largest, reference))
            for name, reference in references.items()}


class LimitDirections(Observer):
    """A GD/NGD observer (:mod:`volumelab.optimizers.observers`): the cosine of each run's final linear predictor
    ``w`` with the limit directions of its training set (:func:`limit_references`).

    Metrics ``cos_l2_margin``, ``cos_l1_margin`` and ``cos_min_norm`` (:func:`limit_direction_cosines`), for a
    model that is a linear predictor (:meth:`~volumelab.models.LayeredModel.linear_predictor`: a deep diagonal or
    deep linear network) on a classification task; ``None`` where the model is not one, a reference does not exist
    (the interpolant for ``n > d``) or the run has no result. The references are solved once per distinct training
    set of the batch, in float64. The sweep option is ``limit_directions: true``.
    """

    def start(self, context: TrainingContext) -> Recording:
        return _LimitRecording(context)


class _LimitRecording(FinalRecording):
    def __init__(self, context: TrainingContext) -> None:
        super().__init__(context)
        self._references: dict = {}  # the references of each distinct training set of the batch

    def metrics(self, outcome: RunOutcome) -> dict:
        empty = {f"cos_{name}": None for name in LIMIT_REFERENCES}
        objective = self.context.objective
        tensors = objective.tensors.run(outcome.index)
        classification = "test_error" in tensors.metric_names  # a task of labels (the logistic loss)
        if not outcome.has_result or self.final is None or not classification:
            return empty
        w = objective.model.linear_predictor(objective.layers(self.final[outcome.index].unsqueeze(0)))
        if w is None:
            return empty
        n = tensors.num_train
        X = tensors.inputs[..., :n, :].detach().to("cpu", torch.float64).numpy()
        y = tensors.targets[..., :n].detach().to("cpu", torch.float64).numpy()
        key = (X.tobytes(), y.tobytes())
        if key not in self._references:
            self._references[key] = limit_references(X, y)
        cosines = limit_direction_cosines(w[0].detach().to("cpu", torch.float64).numpy(), self._references[key])
        return {name: (value if math.isfinite(value) else None) for name, value in cosines.items()}
