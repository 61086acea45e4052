"""The prior volume ``P(L_train < eps)`` in closed form, where one exists (issue 14's reference).

For a depth-1 factorization (``W`` itself) with the Gaussian prior, entries i.i.d.
``N(0, s^2)``, the training outputs ``u_i = <A_i, W>`` are jointly Gaussian with covariance
``s^2 G``, ``G = A A^T`` the Gram matrix of the flattened measurement matrices. With
``G = V diag(g) V^T`` and ``c = V^T b``,

    L_train = (1/m) ||u - b||^2 = sum_j lam_j (z_j - delta_j)^2,
    lam_j = s^2 g_j / m,  delta_j = c_j / (s sqrt(g_j)),  z ~ N(0, I),

a positive definite quadratic form in Gaussian variables: a generalized chi-square. Its CDF
is computed with Ruben's (1962) mixture representation, which suits the lower tail: for
``0 < beta <= min lam_j``,

    P(Q <= x) = sum_k a_k P(chi2_{n + 2k} <= x / beta),   a_k >= 0,  sum_k a_k = 1,

with ``a_0 = prod_j (beta / lam_j)^(1/2) exp(-|delta|^2 / 2)`` and ``a_k = a_0 c_k``, where
``sum_k c_k z^k = exp(sum_k d_k z^k)``, ``gamma_j = 1 - beta / lam_j`` and
``d_k = (1/(2k)) sum_j gamma_j^k + (1/2) sum_j delta_j^2 (1 - gamma_j) gamma_j^(k-1)``
(from the moment generating function: with ``z = 1 / (1 - 2 beta t)``, the MGF of ``Q`` is
``a_0 z^(n/2) exp(sum_k d_k z^k)`` and ``z^(n/2 + k)`` is that of ``beta chi2_{n+2k}``). Every term
is positive, so the sum is computed in log space without cancellation, and the truncation
error after ``K`` terms is at most ``(1 - sum_{k<=K} a_k) P(chi2_{n+2K+2} <= x / beta)``.

**A linear classifier's volume** (:func:`linear_classifier_log_volume`). A depth-1 MLP ``f(x) = <w, x>`` with
the Gaussian prior ``w ~ N(0, s^2 I)`` classifies every training point correctly when every margin
``m_i = y_i <w, x_i>`` is positive. The margins are jointly Gaussian, ``m ~ N(0, s^2 M M^T)`` with ``M`` the rows
``y_i x_i``, so ``P(all m_i > 0)`` is a Gaussian orthant probability, by symmetry ``P(m <= 0)``: the normal CDF of
``N(0, M M^T)`` at 0 (the scale ``s`` drops out), computed by Genz's quasi-Monte Carlo algorithm
(``scipy.stats.multivariate_normal.cdf``). ``M M^T`` is singular when the points are linearly dependent: always
when ``n`` exceeds the input dimension, and for standardized real data (the training inputs are centred, so they
sum to 0 and ``M M^T`` has rank ``n - 1``); Genz's algorithm integrates over the covariance's range and is used
as is (checked against Monte Carlo in the tests at both ranks).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VolumelabError
from dataclasses import dataclass

from ..models import FactorizationModel, MLPModel
from ..problems.supervised import SupervisedProblem

__all__ = ["OrthantVolume", "depth1_quadratic_form", "linear_classifier_log_volume", "orthant_log_probability",
           "quadratic_form_log_cdf"]


def quadratic_form_log_cdf(weights, shifts, x: float, *, tolerance: float = 1e-12,
                           max_terms: int = 10_000) -> float:
    """``log P(sum_j w_j (Z_j + d_j)^2 <= x)`` for ``Z ~ N(0, I)``, weights ``w_j > 0`` (Ruben's series).

    Args:
        weights: The positive weights ``w_j``.
        shifts: The shifts ``d_j`` (the same length).
        x: The threshold (``x <= 0`` gives ``-inf``).
        tolerance: Stop once the bound on the remaining terms is below this fraction of the sum.
        max_terms: Give up (an error, never a truncated answer) after this many terms.
    """
    from scipy.special import logsumexp
    from scipy.stats import chi2

    w = np.asarray(weights, dtype=float).ravel()
    d = np.asarray(shifts, dtype=float).ravel()
    if w.size == 0 or w.shape != d.shape:
        raise VolumelabError(f"weights and shifts must be non-empty and of one length, got {w.size} and {d.size}")
    if not (np.all(np.isfinite(w)) and np.all(w > 0) and np.all(np.isfinite(d))):
        raise VolumelabError("the weights must be positive and finite and the shifts finite")
    if not math.isfinite(x):
        raise VolumelabError(f"the threshold must be finite, got {x!r}")
    if x <= 0:
        return -math.inf
    n = w.size
    beta = float(w.min())
    gamma = 1.0 - beta / w
    with np.errstate(divide="ignore"):
        log_gamma = np.log(gamma)  # -inf for the smallest weight's gamma = 0
        log_shift = np.log(0.5 * d * d * (1 - gamma))
    log_a0 = 0.5 * float(np.sum(np.log(beta / w))) - 0.5 * float(np.sum(d * d))
    y = x / beta
    # log d_k and log c_k (sum_k c_k z^k = exp(sum_k d_k z^k)), in log space: every term is positive.
    log_d = np.full(max_terms + 1, -np.inf)
    log_c = np.full(max_terms + 1, -np.inf)
    log_c[0] = 0.0
    logs = [log_a0 + float(chi2.logcdf(y, n))]
    mass = math.exp(log_a0)  # sum of a_k so far
    for k in range(1, max_terms + 1):
        # gamma^(k-1) is 1 at k = 1, also for gamma = 0.
        powers = log_gamma * (k - 1) if k > 1 else np.zeros_like(log_gamma)
        log_d[k] = float(logsumexp(np.concatenate([log_gamma * k - math.log(2 * k), log_shift + powers])))
        r = np.arange(1, k + 1)
        log_c[k] = float(logsumexp(np.log(r) + log_d[1:k + 1] + log_c[k - r])) - math.log(k)
        log_a = log_a0 + log_c[k]
        logs.append(log_a + float(chi2.logcdf(y, n + 2 * k)))
        mass += math.exp(log_a)
        total = float(logsumexp(logs))
        if math.isnan(total):
            raise VolumelabError("Ruben's series produced NaN (weights or threshold out of floating-point range)")
        remaining = max(1.0 - mass, 0.0)
        bound = math.log(remaining) + float(chi2.logcdf(y, n + 2 * k + 2)) if remaining > 0 else -math.inf
        if bound - total < math.log(tolerance):
            return total
    raise VolumelabError(f"Ruben's series did not converge within {max_terms} terms (x = {x:g})")


def depth1_quadratic_form(problem, model) -> tuple[np.ndarray, np.ndarray]:
    """The weights and shifts of ``L_train`` as a generalized chi-square under a depth-1 Gaussian prior.

    Args:
        problem: A matrix problem (``A_train``, ``b_train``) whose measurements are linearly independent.
        model: A :class:`~volumelab.models.FactorizationModel` of depth 1, Gaussian prior, not normalized.
    """
    if not isinstance(model, FactorizationModel) or model.depth != 1 or model.prior != "gaussian" \
            or model.normalize or model.weight_mean:
        raise VolumelabError("the closed form needs a depth-1 factorization with the Gaussian prior, not normalized")
    scale = float(model.layer_scales[0])
    a = problem.A_train.reshape(problem.A_train.shape[0], -1).double().numpy()
    b = problem.b_train.double().numpy()
    m = a.shape[0]
    g, v = np.linalg.eigh(a @ a.T)
    if g.min() <= 1e-12 * g.max():
        raise VolumelabError("the measurement matrices are linearly dependent: L_train has a constant part")
    c = v.T @ b
    return scale ** 2 * g / m, c / (scale * np.sqrt(g))


@dataclass(frozen=True)
class OrthantVolume:
    """``log P(all margins > 0)`` from Genz's algorithm, with the spread of its independent repeats.

    Attributes:
        log_volume: Log of the mean of the repeats' probabilities.
        log_volume_stderr: ``sd(P_r) / (sqrt(R) mean P_r)`` over the ``R`` repeats (each with its own random
            lattice shift): Genz's own error, an independent estimate of the one its tolerance aims at.
        repeats: ``R``.
        method: How it was computed.
    """

    log_volume: float
    log_volume_stderr: float
    repeats: int
    method: str = "Genz quasi-Monte Carlo (scipy.stats.multivariate_normal.cdf)"


def orthant_log_probability(covariance, *, relative_error: float = 1e-3, repeats: int = 3,
                            seed: int = 0) -> OrthantVolume:
    """``log P(Z > 0)`` for ``Z ~ N(0, covariance)`` (equal to ``log P(Z <= 0)``), by Genz's algorithm.

    A first pass at the default tolerance sizes the probability ``p``; each of ``repeats`` passes then asks for
    an absolute error of ``relative_error * p`` (scipy's ``abseps``; its ``releps`` is not used by its
    algorithm), with up to ``10^5`` points per dimension.

    Args:
        covariance: ``(n, n)`` symmetric positive semi-definite, ``n >= 2``.
        relative_error: The target error of each pass relative to ``p`` (about 3 of Genz's standard errors).
        repeats: Independent passes (their spread is the reported standard error).
        seed: Seed of the passes' lattice shifts.
    """
    from scipy.stats import multivariate_normal

    sigma = np.asarray(covariance, dtype=float)
    if sigma.ndim != 2 or sigma.shape[0] != sigma.shape[1] or sigma.shape[0] < 2:
        raise VolumelabError(f"the covariance must be a square matrix of size at least 2, got shape {sigma.shape}")
    if not (np.all(np.isfinite(sigma)) and np.allclose(sigma, sigma.T, rtol=1e-12, atol=0)):
        raise VolumelabError("the covariance must be finite and symmetric")
    if not (0 < relative_error < 1) or isinstance(repeats, bool) or not isinstance(repeats, int) or repeats < 2:
        raise VolumelabError(f"relative_error must be in (0, 1) and repeats an integer >= 2, got {relative_error!r} "
                             f"and {repeats!r}")
    n = sigma.shape[0]
    zeros = np.zeros(n)
    generator = np.random.default_rng(seed)
    rough = float(multivariate_normal.cdf(zeros, cov=sigma, allow_singular=True, abseps=1e-6 * 2.0 ** -n,
                                          maxpts=10_000 * n, rng=generator))
    if not rough > 0:
        raise VolumelabError(f"the orthant probability is below Genz's resolution ({rough:g} at n = {n}): the "
                             "margins may have no common positive solution")
    values = np.array([multivariate_normal.cdf(zeros, cov=sigma, allow_singular=True, abseps=relative_error * rough,
                                               maxpts=100_000 * n, rng=generator) for _ in range(repeats)])
    mean = float(values.mean())
    return OrthantVolume(math.log(mean), float(values.std(ddof=1) / math.sqrt(repeats) / mean), repeats)


def linear_classifier_log_volume(problem, model, **options) -> OrthantVolume:
    """``log P(every training point classified correctly)`` for a depth-1 MLP under its Gaussian prior.

    The margins' covariance is ``M M^T`` with rows ``y_i x_i`` (with ``bias=True``, ``x_i`` with a trailing 1:
    the bias has the other weights' prior scale), so the volume is :func:`orthant_log_probability` of it (the
    module docstring). ``options`` go to :func:`orthant_log_probability`.

    Args:
        problem: A supervised classification problem (labels -1 and +1).
        model: A depth-1 :class:`~volumelab.models.MLPModel` with the Gaussian prior of mean 0.
    """
    if not isinstance(model, MLPModel) or model.depth != 1 or model.prior != "gaussian" or model.weight_mean:
        raise VolumelabError("the orthant volume needs a depth-1 MLP (a linear classifier) with the Gaussian prior "
                             "of mean 0")
    if not isinstance(problem, SupervisedProblem) or problem.loss != "logistic":
        raise VolumelabError("the orthant volume needs a supervised classification problem (labels -1 and +1)")
    if problem.num_train < 2:
        raise VolumelabError(f"the orthant volume needs at least 2 training points, got {problem.num_train}")
    inputs = problem.X_train.double().numpy()
    if model.bias:
        inputs = np.concatenate([inputs, np.ones((inputs.shape[0], 1))], axis=1)
    rows = problem.y_train.double().numpy()[:, None] * inputs
    return orthant_log_probability(rows @ rows.T, **options)
