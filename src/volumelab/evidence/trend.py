"""A trend over a sweep's x as a per-seed effect: each seed's own least-squares slope.

A claim that a quantity improves "as x grows" (width, training points) is a monotone trend, not a
comparison of two end points: every point of the sweep carries information about it. A seed makes the same
problem at every x, so the trend is paired: each seed's slope is fitted to its own values over the x grid,
and the seeds' slopes are the per-seed effect a :class:`~volumelab.evidence.Rule` decides (mean slope, its
Student-t interval over the seeds). The x axis is ``log2 x`` (the sweeps here are geometric), so a slope is
a change per doubling of x; with ``log_y`` the quantity is ``log2`` too, and the slope is the exponent of a
power law ``y ~ x^slope`` (scale-free: comparable across panels whose quantities differ in size).

Missing values: a seed's slope is fitted only where it has a value at *every* x of the method's grid. A
seed with a flagged run (whose numbers the study mechanism blanks) or an undefined value at one x has no
slope, so it is counted, not fitted on fewer points: a study's ``worst_effect`` then sets it to the value
least favourable to the claim (for a claimed trend, 0: no trend).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from .study import PanelData

__all__ = ["least_squares_slope", "power_law_crossing", "seed_slopes"]

#: ``(panel, x) -> {seed: value}``: a quantity read at one point of the sweep, or a metric's column name.
Quantity = str | Callable[[PanelData, object], Mapping[int, float]]


def least_squares_slope(xs: Sequence[float], ys: Sequence[float]) -> float:
    """The ordinary least-squares slope of ``ys`` on ``xs``.

    Args:
        xs: The abscissae, shape ``(n,)``.
        ys: The ordinates, shape ``(n,)``; every value finite.

    Returns:
        ``sum((x - mean x)(y - mean y)) / sum((x - mean x)^2)``; NaN below two distinct ``xs``.
    """
    if len(xs) != len(ys):
        raise ValueError(f"least_squares_slope needs as many xs as ys, got {len(xs)} and {len(ys)}")
    if len(set(xs)) < 2:
        return math.nan
    mean_x, mean_y = math.fsum(xs) / len(xs), math.fsum(ys) / len(ys)
    return (math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
            / math.fsum((x - mean_x) ** 2 for x in xs))


def power_law_crossing(xs: Sequence[float], ys: Sequence[float], level: float, *,
                       falling: bool = False) -> float | None:
    """Where a power law fitted to ``ys`` against ``xs`` reaches ``level``.

    ``ln y = a + b ln x`` is fitted by least squares over every point and solved for ``ln level``:
    ``x* = exp((ln level - a) / b)``, interpolated between the points or extrapolated beyond them. For a
    falling quantity (a spread that shrinks with width) it is the x at which the quantity has fallen to
    ``level``.

    Args:
        xs: Positive abscissae (at least two distinct ones).
        ys: Positive, finite ordinates.
        level: The positive level.
        falling: Only a falling law has a crossing (``None`` where the fitted slope is not negative).

    Returns:
        ``x*``; ``None`` where the fit has no finite crossing (fewer than two distinct ``xs``, a value that
        is not positive and finite, or a slope of 0).
    """
    if len(xs) != len(ys):
        raise ValueError(f"power_law_crossing needs as many xs as ys, got {len(xs)} and {len(ys)}")
    if not level > 0 or not all(float(x) > 0 for x in xs):
        raise ValueError(f"power_law_crossing needs a positive level and positive xs, got {level!r} and {list(xs)}")
    values = [float(y) for y in ys]
    if not all(math.isfinite(y) and y > 0 for y in values):
        return None
    logs_x, logs_y = [math.log(float(x)) for x in xs], [math.log(y) for y in values]
    slope = least_squares_slope(logs_x, logs_y)
    if not math.isfinite(slope) or slope == 0 or (falling and slope > 0):
        return None
    intercept = math.fsum(logs_y) / len(logs_y) - slope * math.fsum(logs_x) / len(logs_x)
    crossing = math.exp((math.log(level) - intercept) / slope)
    return crossing if math.isfinite(crossing) else None


def seed_slopes(panel: PanelData, method: str | None, quantity: Quantity, *, log_y: bool,
                log_x: bool = True) -> dict[int, float]:
    """Per seed: the least-squares slope of ``quantity`` against ``log2 x`` (or ``x``) over the x values ``method``
    ran at.

    Args:
        panel: The panel's runs (flagged runs blanked, as the study mechanism passes them).
        method: The method whose runs are read (``None``: no slope).
        quantity: A metric column of ``method``'s rows, or ``(panel, x) -> {seed: value}``.
        log_y: Fit ``log2`` of the quantity (the slope is a power law's exponent; a seed with a value
            ``<= 0`` anywhere has no slope), else the quantity itself (the slope is its change per
            doubling of x).
        log_x: Fit against ``log2 x`` (the default: x positive, a geometric sweep), else against ``x`` itself
            (an arithmetic sweep such as depth: the slope is a change per unit of x).

    Returns:
        ``{seed: slope}`` for the seeds with a finite value at every x (at least two distinct x); the
        others are absent, to be counted as missing (see the module's docstring).
    """
    xs = [x for x in (panel.xs(method) if method is not None else []) if (_positive(x) if log_x else _number(x))]
    if len(xs) < 2:
        return {}
    read = (lambda x: panel.values(method, x, quantity)) if isinstance(quantity, str) else (
        lambda x: quantity(panel, x))
    columns = [dict(read(x)) for x in xs]
    abscissae = [math.log2(float(x)) if log_x else float(x) for x in xs]
    slopes = {}
    for seed in panel.seeds():
        values = [column.get(seed) for column in columns]
        if not all(value is not None and math.isfinite(float(value)) for value in values):
            continue
        if log_y:
            if not all(float(value) > 0 for value in values):
                continue
            values = [math.log2(float(value)) for value in values]
        slopes[seed] = least_squares_slope(abscissae, [float(value) for value in values])
    return slopes


def _number(x) -> bool:
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def _positive(x) -> bool:
    return _number(x) and float(x) > 0
