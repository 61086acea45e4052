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
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VolumelabError
from ..models import FactorizationModel

__all__ = ["depth1_quadratic_form", "quadratic_form_log_cdf"]


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
