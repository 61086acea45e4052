"""Where a swept quantity is smallest: the vertex of a parabola fitted around the grid's minimum.

A learning-rate sweep on a geometric grid locates its best learning rate only to a grid step by the
argmin; the vertex of a parabola fitted in ``log2 lr`` to the points around the argmin locates it between
grid points (as Tensor Programs V locates the optimum of its transfer curves). The fit is ordinary least
squares of ``y = a x^2 + b x + c`` on the ``window`` grid points centred on the smallest ``y``; the vertex is
``x* = -b / (2a)`` and its standard error comes from the fit's covariance by the delta method
(``dx*/da = b / (2a^2)``, ``dx*/db = -1 / (2a)``), with the residual variance ``RSS / (n - 3)``.

A vertex is returned only where it is one: the argmin must be interior (a smallest value at the grid's edge
says the grid must be extended, not where the optimum is), the parabola must open upwards, and the vertex
must lie within the fitted points. Anything else raises :class:`~volumelab.errors.VolumelabError` naming
what is wrong; no made-up optimum is returned.

Per seed, :func:`parabola_optimum` gives one vertex; a study's per-seed effect (the shift of the optimum
between widths, say) then gets its Student-t interval over the seeds from the study mechanism, which is the
interval a verdict uses. The per-fit standard error is reported beside it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import VolumelabError

__all__ = ["ParabolaOptimum", "parabola_optimum"]


@dataclass(frozen=True)
class ParabolaOptimum:
    """The vertex of the parabola fitted around a grid's minimum.

    Attributes:
        x: The vertex ``-b / (2a)``, in the coordinates of the ``xs`` given (e.g. ``log2 lr``).
        stderr: Its delta-method standard error; NaN with exactly 3 points (no residual degrees of freedom).
        curvature: ``2a``, the fitted second derivative (positive).
        value: The fitted ``y`` at the vertex.
        points: How many grid points were fitted.
    """

    x: float
    stderr: float
    curvature: float
    value: float
    points: int


def parabola_optimum(xs: Sequence[float], ys: Sequence[float], *, window: int = 5) -> ParabolaOptimum:
    """The vertex of ``y = a x^2 + b x + c`` fitted to the ``window`` points centred on the smallest ``y``.

    Args:
        xs: The grid, strictly increasing (e.g. ``log2`` of the learning rates).
        ys: The values at the grid points (e.g. a final loss), finite.
        window: Odd number of points to fit, at least 3; fewer where the argmin is closer to an edge than
            ``window // 2`` points (at least 3 always).

    Returns:
        The vertex, its standard error, the curvature, the fitted minimum and the number of points fitted.

    Raises:
        VolumelabError: fewer than 3 points, ``xs`` not strictly increasing, a non-finite value, an even or
            too small ``window``, the smallest value at the grid's first or last point (extend the grid), a
            parabola that does not open upwards, or a vertex outside the fitted points.
    """
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    if x.ndim != 1 or x.shape != y.shape:
        raise VolumelabError(f"xs and ys must be vectors of one length, got shapes {x.shape} and {y.shape}")
    if len(x) < 3:
        raise VolumelabError(f"a parabola needs at least 3 grid points, got {len(x)}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise VolumelabError("xs and ys must be finite (a diverged point has no value to fit)")
    if not np.all(np.diff(x) > 0):
        raise VolumelabError("xs must be strictly increasing")
    if isinstance(window, bool) or not isinstance(window, int) or window < 3 or window % 2 == 0:
        raise VolumelabError(f"window must be an odd integer of at least 3, got {window!r}")
    best = int(np.argmin(y))
    if best in (0, len(x) - 1):
        edge = "first" if best == 0 else "last"
        raise VolumelabError(f"the smallest value is at the grid's {edge} point (x = {x[best]:g}): the optimum is "
                             "not interior; extend the grid")
    half = min(window // 2, best, len(x) - 1 - best)
    low, high = best - half, best + half + 1
    fx, fy = x[low:high], y[low:high]
    centre = float(fx.mean())  # centred abscissae keep the normal equations well conditioned
    design = np.stack([(fx - centre) ** 2, fx - centre, np.ones_like(fx)], axis=1)
    coefficients, _residual, rank, _sv = np.linalg.lstsq(design, fy, rcond=None)
    if rank < 3:
        raise VolumelabError("the fitted points do not determine a parabola")
    a, b, c = (float(v) for v in coefficients)
    if not a > 0:
        raise VolumelabError(f"the parabola fitted around the minimum does not open upwards (a = {a:.3g}): no "
                             "interior optimum to locate")
    vertex = -b / (2 * a)
    if not fx[0] - centre <= vertex <= fx[-1] - centre:
        raise VolumelabError(f"the fitted vertex (x = {vertex + centre:g}) lies outside the fitted points "
                             f"[{fx[0]:g}, {fx[-1]:g}]")
    count = len(fx)
    stderr = math.nan
    if count > 3:
        residuals = fy - design @ coefficients
        variance = float(residuals @ residuals) / (count - 3)
        covariance = variance * np.linalg.inv(design.T @ design)
        gradient = np.array([b / (2 * a * a), -1 / (2 * a), 0.0])
        stderr = math.sqrt(max(float(gradient @ covariance @ gradient), 0.0))
    return ParabolaOptimum(x=vertex + centre, stderr=stderr, curvature=2 * a, value=c - b * b / (4 * a), points=count)
