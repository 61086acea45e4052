"""Closed forms for the teacher's input distributions (issue 32 item 2, ``mlp-moments``): which moments exist, and
the absolute moments of one coordinate.

All three distributions (:data:`volumelab.problems.supervised.INPUT_DISTRIBUTIONS`) are spherically symmetric with
mean 0 and covariance ``I_d``; they differ in their tails. For one coordinate ``x_1`` and order ``k >= 0``:

* ``gaussian``, ``x ~ N(0, I_d)``: ``E|x_1|^k = 2^(k/2) Gamma((k + 1) / 2) / sqrt(pi)`` (``(k - 1)!!`` for even
  ``k``); every moment exists.
* ``sphere``, uniform on the sphere of radius ``sqrt(d)``: ``x_1 = sqrt(d) u_1`` with ``u_1^2 ~ Beta(1/2, (d-1)/2)``,
  so ``E|x_1|^k = d^(k/2) Gamma((k + 1) / 2) Gamma(d / 2) / (sqrt(pi) Gamma((d + k) / 2))``; every moment exists
  (``|x_1| <= sqrt(d)``).
* ``student_t`` with ``nu > 2`` degrees of freedom, ``x = sqrt(nu - 2) z / sqrt(g)`` (``z ~ N(0, I_d)``,
  ``g ~ chi2(nu)``): with ``E[g^s] = 2^s Gamma(nu/2 + s) / Gamma(nu/2)`` for ``s > -nu/2``,
  ``E|x_1|^k = (nu - 2)^(k/2) Gamma((k + 1) / 2) Gamma((nu - k) / 2) / (sqrt(pi) Gamma(nu / 2))`` for ``k < nu``;
  at ``k >= nu`` the integral diverges (``Gamma((nu - k) / 2)`` has its pole at ``k = nu``). The same holds for
  any moment of order ``k`` of ``x`` (of ``||x||``, of a product of coordinates): it exists iff ``k < nu``.

Each gives ``E x_1^2 = 1``. For a spherically symmetric law ``E[x_1^2 x_2^2] = E[x_1^4] / 3``, so the sample
covariance's entries have variances ``E x_1^4 - 1`` (diagonal) and ``E x_1^4 / 3`` (off the diagonal) per point.
"""

from __future__ import annotations

import math

from ..errors import ProblemError
from .supervised import checked_inputs

__all__ = ["coordinate_absolute_moment", "moment_order_exists"]


def _checked_order(order: float) -> float:
    if isinstance(order, bool) or not isinstance(order, (int, float)) or not math.isfinite(order) or order < 0:
        raise ProblemError(f"a moment's order must be a finite number >= 0, got {order!r}")
    return float(order)


def moment_order_exists(inputs: str, order: float, nu: float | None = None) -> bool:
    """Whether the moments of order ``order`` of the ``inputs`` distribution are finite.

    Args:
        inputs: ``"gaussian"``, ``"sphere"`` or ``"student_t"``.
        order: ``k >= 0``.
        nu: The Student-t's degrees of freedom (above 2); ``None`` for the others.

    Returns:
        ``True`` for the Gaussian and the sphere; ``k < nu`` for the Student-t.

    Raises:
        ProblemError: an unknown distribution, ``nu`` that does not fit it, or a negative order.
    """
    nu = checked_inputs("teacher", inputs, nu)
    order = _checked_order(order)
    return inputs != "student_t" or order < nu


def coordinate_absolute_moment(inputs: str, order: float, *, num_features: int, nu: float | None = None) -> float:
    """``E|x_1|^k``: the absolute moment of order ``k`` of one coordinate of the ``inputs`` distribution.

    Args:
        inputs: ``"gaussian"``, ``"sphere"`` or ``"student_t"``.
        order: ``k >= 0``.
        num_features: ``d`` (only the sphere's coordinates depend on it).
        nu: The Student-t's degrees of freedom (above 2); ``None`` for the others.

    Returns:
        The moment (see the module's formulas), or ``math.inf`` where it does not exist (Student-t, ``k >= nu``).

    Raises:
        ProblemError: as :func:`moment_order_exists`, or ``num_features`` not a positive integer.
    """
    if isinstance(num_features, bool) or not isinstance(num_features, int) or num_features < 1:
        raise ProblemError(f"num_features must be a positive integer, got {num_features!r}")
    if not moment_order_exists(inputs, order, nu):
        return math.inf
    k = float(order)
    # log E|z|^k of a standard Gaussian coordinate, less (k/2) log 2: lgamma((k+1)/2) - log sqrt(pi).
    gaussian_core = math.lgamma((k + 1) / 2) - 0.5 * math.log(math.pi)
    if inputs == "gaussian":
        return math.exp(0.5 * k * math.log(2.0) + gaussian_core)
    if inputs == "sphere":
        d = num_features
        return math.exp(0.5 * k * math.log(d) + gaussian_core + math.lgamma(d / 2) - math.lgamma((d + k) / 2))
    # student_t: (nu - 2)^(k/2) E|z|^k E[g^(-k/2)], the 2^(k/2) of E|z|^k cancelling the 2^(-k/2) of E[g^(-k/2)].
    return math.exp(0.5 * k * math.log(nu - 2) + gaussian_core + math.lgamma((nu - k) / 2) - math.lgamma(nu / 2))
