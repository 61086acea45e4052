"""The wide-MLP studies (Terjék & González-Sánchez, arXiv 2205.13507) and the volume hypothesis on real
data, declared on the study mechanism (:mod:`volumelab.evidence`).

Every claim below is one :class:`~volumelab.evidence.Study` with one primary endpoint per panel: a per-seed
effect (a seed is one data split, and one stream of initializations, at every point of the sweep), decided
by its Student-t interval over the seeds (holds / fails / inconclusive, Holm across the panels, at least
:data:`~volumelab.evidence.MIN_SEEDS` seeds). The other quantities are secondary endpoints, reported with
their intervals, never deciding. Methods are read by role (the *trainer* GD, the *sampler* G&C and its
*chance* rows) or by method type (``ntk``), not by the config's names. The panels are read from each run's
own settings (the grid's columns, else the stored config). Every margin and minimal effect was chosen
from the paper, the theory or the measurement's resolution before the runs they judge; where an old
threshold is kept, it says so.

**mlp-ntk** (x: width; panels: parametrization and depth). The framework's one strong assumption: the NTK's
smallest eigenvalue at initialization stays away from 0 as width grows, approaching its infinite-width value
(the paper: the coefficients built on it improve as width grows). Rule of 2026-12-06 (issue 32): the claim
is the monotone trend over every width of the sweep, not a comparison at one or two widths.

* Primary endpoint (ntk parametrization, the paper's): per seed, the least-squares slope of
  ``|lambda_min / lambda_min_limit - 1|`` against ``log2 width`` (its change per doubling of width;
  :func:`~volumelab.evidence.seed_slopes`), claimed negative (minimal effect 0: the paper names no rate).
  ``lambda_min`` is the seed's mean over its prior draws, the limit the closed form (arc-cosine kernels) on
  the seed's own training set. The deviation itself, not its logarithm: it is 0 at the claim's target and
  the draws' noise crosses 0 at the largest widths, where a logarithm would turn a chance near-zero into an
  outlier. Pairing: a seed is one training set (its own limit) and one stream of draws at every width; the
  draws enter through the seed's mean, the seeds are the replicates. A seed with a flagged run at any
  width has no slope and counts at no trend (slope 0) in the worst case.
* Secondary: concentration, the per-seed log-log slope of the relative spread ``std/mean`` of ``lambda_min``
  over the draws against width, claimed negative (the theory's ``k^(-1/2)`` is slope -1/2; log-log since
  the spread is positive and the theory's law is a power); the limit equivalence of the rule of 2026-12-05,
  ``lambda_min / lambda_min_limit - 1`` at the largest width within ``0 ± LIMIT_MARGIN`` (0.10), kept as a
  reported endpoint (worst case ``lambda_min = 0``).
* The standard parametrization is the project's contrast (its NTK grows like the width and has no finite
  limit): extension panels, judged by the concentration slope. The rule of 2026-12-05's concentration
  floor (a fall of ``ln(std/mean)`` from the smallest to the largest width above ``ln 2``) is replaced by
  the slope.

**mlp-convergence** (x: width; panels: depth). GD on a wide MLP converges linearly, and its convergence
coefficient improves as width grows (arXiv 2205.13507: "the corresponding coefficients, such as the
convergence rate, improve as width is further increased"). The linearized (NTK) dynamics contract the
squared loss by at least ``max_i |1 - lr h lambda_i(K_0)|^2`` per step (``h = 2/n``), so ``L_T <= L_0
exp(-T predicted_rate)`` with ``predicted_rate = -2 ln max_i |1 - lr h lambda_i(K_0)|``: the convergence
coefficient, read at each run's own initialization. The paper's coefficient is this guarantee (a rate the
theory proves, from the NTK's smallest eigenvalue at initialization), not the rate a run happens to reach.
Rule of 2026-12-06 (issue 32).

* Primary endpoint: per seed, the least-squares slope of ``log2 predicted_rate`` against ``log2 width``
  (:func:`~volumelab.evidence.seed_slopes`: the exponent of the guaranteed rate's power law in width),
  claimed positive (minimal effect 0: the paper names no size). Log-log: the rate is positive wherever it
  is defined, and "improves" is a relative statement, comparable across depths. Why it should rise: with
  one hidden layer ``K_0`` is an average of i.i.d. positive semi-definite terms, one per neuron, and
  ``lambda_min`` is concave, so ``E lambda_min(K_0)`` does not fall when the width doubles (an average of
  two independent halves) and stays below ``lambda_min(K_inf)`` (Jensen), while ``E lambda_max`` (convex)
  does not rise; ``predicted_rate`` rises with ``lambda_min`` and falls with ``lambda_max``. A seed with a
  flagged run (diverged: no rate) at any width has no slope and counts at no trend (0) in the worst case.
* Not the primary endpoint: ``|loss_rate - predicted_rate| / predicted_rate``, "the measured rate approaches
  the NTK's". At infinite width GD follows the linearized dynamics, whose average rate over ``T`` steps is
  the guarantee plus what the faster eigendirections add, set by the spectrum of ``K_inf`` and the start's
  residual: the gap tends to a positive constant, not to 0, and the theory gives its trend no sign. It is
  reported (its slope against ``log2 width``, not logged: it can be near 0), as is the measured rate's own
  log-log slope (positive).
* Secondary, the rule of 2026-12-05's endpoints: the measured rate ``ln(L_0/L_T)/T`` minus
  ``predicted_rate`` at the largest width ("at least the guaranteed rate"), positive, and the same at the
  smallest width; a flagged run counts in the worst case as no progress (rate 0) against the rate its
  width's other seeds were guaranteed. The floor "rate at the largest width at least 0.8 times the
  smallest's" is dropped: the slopes state the trend it stood in for.

**mlp-lazy** (x: width; panels: depth). Wide MLPs train lazily: GD moves the weights less, relatively, the
wider the net (the weights stay near their initialization, where the convergence proofs of the framework
work).

* Primary endpoint: per seed, the least-squares slope of ``ln param_change`` (``||theta_T - theta_0|| /
  ||theta_0||``) against ``ln width``, claimed negative (minimal effect 0: the claim names no rate). The
  lazy-regime orders (:data:`LAZY_ORDERS`: ``-1/2`` at depth 2, ``-1`` deeper, from ``||theta_T - theta_0||
  = O(1)`` and ``||theta_0||`` growing like ``sqrt(k)`` or ``k``) are drawn, not judged. A flagged run's
  seed has no fall in the worst case (slope 0).
* Secondary: the same slope of ``ln ntk_change`` (``||K_T - K_0||_F / ||K_0||_F``), negative.

**mlp-lr-transfer** (x: learning rate; panels: parametrization). The best learning rate stays put across
widths under the ntk parametrization (arXiv 2205.13507) and muP (Yang & Hu 2021), and drifts under the
standard one.

* Each seed's best learning rate at each width is its own (not an argmin of a median over seeds): the
  argmin of its training loss over the grid, refined by the vertex of the parabola through the log loss
  at the argmin and its two neighbours in ``log2(lr)`` (:func:`optimal_log2_lr`; the vertex lies within
  half a grid step of the argmin; a diverged run counts as an infinite loss and a diverged neighbour
  leaves the argmin unrefined). An argmin at the grid's edge is no optimum: that seed's effect is left
  out and counted. The refinement keeps the per-seed optima from being quantized to whole grid steps, so
  the t interval describes their spread instead of collapsing to a point.
* Primary endpoint: per seed, the shift of the optimum from the smallest to the largest width in grid
  steps (``log2`` of the ratio of learning rates). ntk and muP: equivalent to 0 within ``± TRANSFER_MARGIN``
  (1 step, a factor 2: the grid's resolution; the old rule's 1 step, kept). standard: negative by more
  than the same margin (the optimum falls: the NTK's scale grows like the width there, so the stable
  learning rate falls like ``1/k``). The old rule's separate 2-step drift threshold is replaced by the
  transfer margin, so that "stays put" and "drifts" are complements split at one boundary.
* Secondary: the test-loss optimum moves like the training-loss optimum (the per-seed difference of the
  two shifts within ``± TRANSFER_MARGIN``).
* Diverged runs are data here, not missing values: they enter as infinite losses, so no seed is left out
  for a diverged learning rate (only for an optimum at the grid's edge or a run not stored).

**mlp-volume** (x: width; panels: depth). The G&C paper's width result (arXiv 2506.03931) on real data,
as Peleg & Hein (ICML 2024, arXiv 2407.03848) found it: G&C's test error falls behind GD's as width grows.

* Primary endpoint: per seed, the change of ``G&C - GD`` test error from the smallest to the largest width
  (the first G&C method, the Gaussian prior in the packaged config), claimed positive (minimal effect 0:
  no size is named). A flagged run's seed has no change in the worst case.
* Secondary: the same change for a second G&C method (the uniform prior); GD's own change of test error
  from the smallest to the largest width, claimed negative (width helps GD). The old depth comparison
  ("measured") goes away from the verdict; the plot shows both depths.

**mlp-volume-train** (x: training points; one panel per size). Chiang et al. (ICLR 2023, "Loss landscapes
are all you need", OpenReview QC10RmRbZy9; no arXiv version): with a few training images, G&C generalizes
about as well as GD.

* Primary endpoint: per seed, ``G&C - GD`` test error at the size, an equivalence claim, ``0 ±
  PARITY_BAND`` (0.05, the old band, kept; now two-sided, "about as well" being an equality). In the worst
  case a G&C run that accepted nothing sits at chance (the prior's test error on its draws).
* Secondary: G&C beats chance (``G&C - prior`` test error negative).
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import (
    Endpoint, PanelData, Rule, Study, StudyVerdict, at_chance, register_study, row_settings, seed_slopes,
    split_panels,
)
from ..plotting.figures import draw_seed_means, new_figure, save_figure, seed_mean_interval

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "CONVERGENCE", "LAZY", "LAZY_ORDERS", "LIMIT_MARGIN", "LR_TRANSFER", "NTK", "PARITY_BAND", "STUDIES",
    "TRANSFER_MARGIN", "VOLUME", "VOLUME_TRAIN", "depth_panels", "log_log_slope", "optimal_log2_lr",
    "panel_outcomes", "quiet_plotting",
]

PAPER = "arXiv 2205.13507"
#: lambda_min at the largest width equals its infinite-width value within this relative margin (secondary).
LIMIT_MARGIN = 0.10
#: "Stays put" / "drifts": the optimum's shift across widths within / beyond this many grid steps (factors of 2).
TRANSFER_MARGIN = 1.0
#: G&C and GD "generalize about as well": their test errors within this (absolute).
PARITY_BAND = 0.05
#: The lazy-regime order (log-log slope in width) of each laziness measure, by depth: drawn, not judged.
LAZY_ORDERS = {"param_change": lambda depth: -0.5 if depth <= 2 else -1.0, "ntk_change": lambda depth: -1.0}


# ------------------------------------------------------------------ helpers
def _isnan(value) -> bool:
    """Whether ``value`` is not a number (None, NaN, or not convertible)."""
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _finite(value) -> bool:
    return not _isnan(value) and math.isfinite(float(value))


def _label(value) -> str:
    """``2.0`` -> ``"2"``; anything else as itself."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value)
    return f"{number:g}" if math.isfinite(number) else str(value)


def _number(text: str, default: float) -> float:
    try:
        return float(text)
    except ValueError:
        return default


#: Each row's grid coordinate, else its stored setting (:func:`volumelab.evidence.row_settings`).
_setting = row_settings


def depth_panels(frame: "pd.DataFrame") -> list[str]:
    return [f"depth {_label(d)}" for d in _setting(frame, "depth", "model", "depth")]


def _ntk_panels(frame: "pd.DataFrame") -> list[str]:
    return [f"{p}, depth {_label(d)}" for p, d in zip(_setting(frame, "parametrization", "model", "parametrization"),
                                                      _setting(frame, "depth", "model", "depth"))]


def _parametrization_panels(frame: "pd.DataFrame") -> list[str]:
    return [str(p) for p in _setting(frame, "parametrization", "model", "parametrization")]


def _size_panels(frame: "pd.DataFrame") -> list[str]:
    return [f"{_label(x)} training points" for x in frame["x"]]


def _ends(panel: PanelData, method: str | None) -> tuple:
    xs = panel.xs(method)
    return (xs[0], xs[-1]) if len(xs) >= 2 else (None, None)


def _slope(xs, ys) -> float:
    """Least-squares slope of ``ln y`` against ``ln x`` over the positive pairs (NaN below two distinct x)."""
    pairs = [(math.log(float(x)), math.log(float(y))) for x, y in zip(xs, ys)
             if _finite(x) and _finite(y) and float(x) > 0 and float(y) > 0]
    if len({x for x, _ in pairs}) < 2:
        return math.nan
    mean_x = math.fsum(x for x, _ in pairs) / len(pairs)
    mean_y = math.fsum(y for _, y in pairs) / len(pairs)
    return (math.fsum((x - mean_x) * (y - mean_y) for x, y in pairs)
            / math.fsum((x - mean_x) ** 2 for x, _ in pairs))


def log_log_slope(xs, ys) -> tuple[float, float, int]:
    """Least-squares slope of ``log y`` against ``log x`` over the positive pairs: ``(slope, stderr, n)``.

    ``scipy.stats.linregress``; NaN with fewer than three points or a single x.
    """
    import numpy as np
    from scipy.stats import linregress

    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if not _isnan(y) and float(x) > 0 and float(y) > 0]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2:
        return math.nan, math.nan, len(pairs)
    fit = linregress(np.log([x for x, _ in pairs]), np.log([y for _, y in pairs]))
    return float(fit.slope), float(fit.stderr), len(pairs)


# ------------------------------------------------------------------ mlp-ntk
def _ntk(panel: PanelData) -> str | None:
    return panel.method("ntk")


def limit_ratio(panel: PanelData) -> dict[int, float]:
    """Per seed at the largest width: ``lambda_min / lambda_min_limit - 1`` (seeds with a positive limit)."""
    method = _ntk(panel)
    xs = panel.xs(method)
    if not xs:
        return {}
    measured = panel.values(method, xs[-1], "lambda_min")
    limit = panel.values(method, xs[-1], "lambda_min_limit")
    return {s: v / limit[s] - 1 for s, v in measured.items() if s in limit and limit[s] > 0}


def _relative_spread(panel: PanelData, x) -> dict[int, float]:
    method = _ntk(panel)
    mean, std = panel.values(method, x, "lambda_min"), panel.values(method, x, "lambda_min_std")
    return {s: std[s] / m for s, m in mean.items() if s in std and m > 0 and std[s] > 0}


def _limit_deviation(panel: PanelData, x) -> dict[int, float]:
    """Per seed at width ``x``: ``|lambda_min / lambda_min_limit - 1|`` (seeds with a positive limit)."""
    method = _ntk(panel)
    measured, limit = panel.values(method, x, "lambda_min"), panel.values(method, x, "lambda_min_limit")
    return {s: abs(v / limit[s] - 1) for s, v in measured.items() if s in limit and limit[s] > 0}


def limit_approach(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope of ``|lambda_min / lambda_min_limit - 1|`` against ``log2 width`` (per doubling)."""
    return seed_slopes(panel, _ntk(panel), _limit_deviation, log_y=False)


def concentration_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of ``std/mean`` of ``lambda_min`` over the draws against width."""
    return seed_slopes(panel, _ntk(panel), _relative_spread, log_y=True)


_CONCENTRATION = Endpoint(
    Rule("log-log slope of the relative spread std/mean of lambda_min over draws against width", "decrease"),
    concentration_slope, worst_effect=0.0)

NTK = register_study(Study(
    name="mlp-ntk",
    paper=PAPER,
    claim="As width grows, the NTK's smallest eigenvalue at initialization approaches its infinite-width value "
          "(the framework's one strong assumption: it stays away from 0; the coefficients built on it improve "
          "with width)",
    endpoints={
        "approach": Endpoint(Rule("slope of |lambda_min / its infinite-width value - 1| against log2 width "
                                  "(change per doubling)", "decrease"), limit_approach, worst_effect=0.0),
        "concentration": _CONCENTRATION,
    },
    panel_endpoint=lambda panel: "approach" if panel.startswith("ntk,") else "concentration",
    about=lambda panel: panel.startswith("ntk,"),
    secondary={
        "concentration": _CONCENTRATION,
        "limit": Endpoint(Rule("lambda_min / its infinite-width value at the largest width, minus 1", "equivalent",
                               margin=LIMIT_MARGIN), limit_ratio, worst_effect=-1.0),
    },
    parameters={"limit_margin": LIMIT_MARGIN},
    notes=("lambda_min is each seed's mean over its prior draws; the infinite-width value is the closed form "
           "(arc-cosine kernels) on the seed's own training set. Each seed's slope is a least-squares fit over "
           "every width of the sweep; a seed with a flagged run at any width has no slope and counts at 0 (no "
           "trend) in the worst case. The claim is about the ntk parametrization (the paper's); the standard "
           "parametrization (no finite limit) is an extension, judged on the concentration slope.",),
    plot=lambda verdict, frame, out_stem, title: _plot_ntk(verdict, frame, out_stem, title),
    panels=_ntk_panels,
))


# ------------------------------------------------------------------ mlp-convergence
def _trainer(panel: PanelData) -> str | None:
    return panel.method("trainer")


def _rate_over_bound(panel: PanelData, x) -> dict[int, float]:
    method = _trainer(panel)
    measured = panel.values(method, x, "loss_rate")
    bound = panel.values(method, x, "predicted_rate")
    return {s: v - bound[s] for s, v in measured.items() if s in bound}


def rate_over_bound_largest(panel: PanelData) -> dict[int, float]:
    """Per seed at the largest width: measured rate ``ln(L_0/L_T)/T`` minus the NTK's guaranteed rate."""
    xs = panel.xs(_trainer(panel))
    return _rate_over_bound(panel, xs[-1]) if xs else {}


def rate_over_bound_smallest(panel: PanelData) -> dict[int, float]:
    """Per seed at the smallest width: measured rate minus the NTK's guaranteed rate."""
    xs = panel.xs(_trainer(panel))
    return _rate_over_bound(panel, xs[0]) if xs else {}


def guaranteed_rate_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of the NTK's guaranteed rate ``predicted_rate`` against width."""
    return seed_slopes(panel, _trainer(panel), "predicted_rate", log_y=True)


def measured_rate_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of the measured rate ``loss_rate`` against width."""
    return seed_slopes(panel, _trainer(panel), "loss_rate", log_y=True)


def _relative_rate_gap(panel: PanelData, x) -> dict[int, float]:
    method = _trainer(panel)
    measured, bound = panel.values(method, x, "loss_rate"), panel.values(method, x, "predicted_rate")
    return {s: abs(v - bound[s]) / bound[s] for s, v in measured.items() if s in bound and bound[s] > 0}


def rate_gap_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope of ``|loss_rate - predicted_rate| / predicted_rate`` against ``log2 width``."""
    return seed_slopes(panel, _trainer(panel), _relative_rate_gap, log_y=False)


def _stalled(panel: PanelData) -> PanelData:
    """The worst case: a flagged GD run made no progress (rate 0) against the rate its width's other seeds
    were guaranteed (the mean of their ``predicted_rate``; its own where it has one)."""
    method = _trainer(panel)
    frame = panel.frame.copy()
    for flagged_method, x, seed in panel.flagged:
        if flagged_method != method:
            continue
        rows = (frame["method"] == method) & (frame["x"] == x) & (frame["seed"] == seed)
        own = panel.values(method, x, "predicted_rate", raw=True).get(seed)
        others = list(panel.values(method, x, "predicted_rate").values())
        bound = own if own is not None else (math.fsum(others) / len(others) if others else math.nan)
        frame.loc[rows, "loss_rate"] = 0.0
        frame.loc[rows, "predicted_rate"] = bound
    return PanelData(panel.name, frame, panel.raw, panel.flagged)


CONVERGENCE = register_study(Study(
    name="mlp-convergence",
    paper=PAPER,
    claim="GD on a wide MLP converges linearly, and its convergence coefficient, the rate the NTK at "
          "initialization guarantees, improves as width grows",
    endpoints={"coefficient": Endpoint(
        Rule("log-log slope of the NTK's guaranteed rate -2 ln max_i |1 - lr h lambda_i(K_0)| against width",
             "increase"), guaranteed_rate_slope, worst_effect=0.0)},
    secondary={
        "measured_slope": Endpoint(Rule("log-log slope of the measured rate ln(L_0/L_T)/T against width",
                                        "increase"), measured_rate_slope, worst_effect=0.0),
        "gap_slope": Endpoint(
            Rule("slope of |measured - guaranteed rate| / guaranteed rate against log2 width (change per doubling)",
                 "decrease"), rate_gap_slope, worst_effect=0.0),
        "bound": Endpoint(
            Rule("measured rate ln(L_0/L_T)/T minus the NTK's guaranteed rate, at the largest width", "increase"),
            rate_over_bound_largest, worst_case=_stalled),
        "bound_smallest": Endpoint(
            Rule("measured rate minus the NTK's guaranteed rate, at the smallest width", "increase"),
            rate_over_bound_smallest, worst_case=_stalled),
    },
    notes=("The guaranteed rate is -2 ln max_i |1 - lr h lambda_i(K_0)| per step (h = 2/n for the mean squared "
           "loss), the linearized dynamics' slowest contraction of the squared loss, with K_0 the NTK Gram at "
           "initialization on the training set: the paper's convergence coefficient at each run's own start. "
           "Each seed's slope is a least-squares fit over every width of the sweep; a seed with a flagged run "
           "(no rate) at any width has no slope and counts at 0 (no trend) in the worst case. The gap between "
           "the measured and the guaranteed rate tends to a positive constant at infinite width (the faster "
           "eigendirections), so its trend is reported, not judged.",),
    plot=lambda verdict, frame, out_stem, title: _plot_convergence(verdict, frame, out_stem, title),
    panels=depth_panels,
))


# ------------------------------------------------------------------ mlp-lazy
def _per_seed_slope(panel: PanelData, metric: str) -> dict[int, float]:
    method = _trainer(panel)
    xs = panel.xs(method)
    series: dict[int, list] = {}
    for x in xs:
        for seed, value in panel.values(method, x, metric).items():
            series.setdefault(seed, []).append((x, value))
    slopes = {s: _slope([x for x, _ in points], [y for _, y in points]) for s, points in series.items()}
    return {s: v for s, v in slopes.items() if math.isfinite(v)}


def param_change_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of the relative weight change against width."""
    return _per_seed_slope(panel, "param_change")


def ntk_change_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of the NTK's relative change against width."""
    return _per_seed_slope(panel, "ntk_change")


LAZY = register_study(Study(
    name="mlp-lazy",
    paper=PAPER,
    claim="Wide MLPs train lazily: GD moves the weights less, relatively to their initialization, the wider "
          "the net",
    endpoints={"param_change": Endpoint(
        Rule("log-log slope of ||theta_T - theta_0|| / ||theta_0|| against width", "decrease"),
        param_change_slope, worst_effect=0.0)},
    secondary={"ntk_change": Endpoint(Rule("log-log slope of ||K_T - K_0||_F / ||K_0||_F against width",
                                           "decrease"), ntk_change_slope, worst_effect=0.0)},
    notes=("Each seed's slope is a least-squares fit over the widths of its runs. The lazy-regime orders (-1/2 at "
           "depth 2, -1 deeper for the weights; -1 for the NTK) are drawn on the plot, not judged.",),
    plot=lambda verdict, frame, out_stem, title: _plot_lazy(verdict, frame, out_stem, title),
    panels=depth_panels,
))


# ------------------------------------------------------------------ mlp-lr-transfer
def optimal_log2_lr(losses: Mapping[float, float]) -> float:
    """A seed's best learning rate on a grid, as ``log2(lr)``, refined between grid points.

    The argmin of ``ln loss`` over the grid, moved to the vertex of the parabola through the argmin and its
    two neighbours (in ``log2 lr``); with the argmin the lowest of the three the vertex lies within half
    a spacing of it. A neighbour with an infinite loss (diverged) leaves the argmin unrefined.

    Args:
        losses: ``{lr: loss}`` over the grid; ``inf`` (or NaN) for a diverged run.

    Returns:
        ``log2`` of the optimum; NaN when the argmin is at the grid's edge (no optimum inside it) or no
        loss is finite.
    """
    points = sorted((math.log2(float(lr)), float(loss) if _finite(loss) else math.inf)
                    for lr, loss in losses.items() if float(lr) > 0)
    if not points or not any(math.isfinite(loss) for _, loss in points):
        return math.nan
    best = min(range(len(points)), key=lambda i: points[i][1])
    if best == 0 or best == len(points) - 1:
        return math.nan
    (x0, y0), (x1, y1), (x2, y2) = (points[best - 1], points[best], points[best + 1])
    if not (math.isfinite(y0) and math.isfinite(y2)):
        return x1
    y0, y1, y2 = (math.log(max(y, 1e-300)) for y in (y0, y1, y2))
    # Vertex of the parabola through three points (Lagrange form, unequal spacings allowed).
    numerator = (x1 - x0) ** 2 * (y1 - y2) - (x1 - x2) ** 2 * (y1 - y0)
    denominator = (x1 - x0) * (y1 - y2) - (x1 - x2) * (y1 - y0)
    if denominator == 0:
        return x1
    return x1 - 0.5 * numerator / denominator


def _learning_rate_curves(panel: PanelData, metric: str) -> dict[float, dict[int, dict[float, float]]]:
    """``{width: {seed: {lr: loss}}}`` of the trainer's runs; a diverged (flagged) run's loss is ``inf``."""
    method = _trainer(panel)
    raw = panel.raw[panel.raw["method"] == method]
    # Coordinates from the stored rows; losses from the panel's (a flagged run's are blanked: it diverged).
    widths = _setting(raw, "width", "model", "width")
    losses = panel.frame.loc[raw.index, metric] if metric in panel.frame else [math.nan] * len(raw)
    curves: dict[float, dict[int, dict[float, float]]] = {}
    for width, lr, seed, value in zip(widths, raw["x"], raw["seed"], losses):
        loss = float(value) if _finite(value) else math.inf
        curves.setdefault(float(width), {}).setdefault(int(seed), {})[float(lr)] = loss
    return curves


def _optima(panel: PanelData, metric: str) -> dict[float, dict[int, float]]:
    """``{width: {seed: log2 of the seed's best learning rate}}`` (NaN where it lies at the grid's edge)."""
    curves = _learning_rate_curves(panel, metric)
    grid = sorted({lr for seeds in curves.values() for losses in seeds.values() for lr in losses})
    optima = {}
    for width, seeds in curves.items():
        # A seed missing a learning rate (a run not stored) has no optimum: its curve is incomplete.
        optima[width] = {s: optimal_log2_lr(losses) if len(losses) == len(grid) else math.nan
                         for s, losses in seeds.items()}
    return optima


def _shift(panel: PanelData, metric: str) -> dict[int, float]:
    optima = _optima(panel, metric)
    if len(optima) < 2:
        return {}
    first, last = optima[min(optima)], optima[max(optima)]
    return {s: last[s] - first[s] for s in first if s in last}


def optimum_shift(panel: PanelData) -> dict[int, float]:
    """Per seed: ``log2`` of the best learning rate (training loss) at the largest width minus at the smallest."""
    return _shift(panel, "train_loss")


def optimum_shift_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: the test-loss optimum's shift minus the training-loss optimum's."""
    train, test = _shift(panel, "train_loss"), _shift(panel, "gen_loss")
    return {s: test[s] - train[s] for s in train if s in test}


LR_TRANSFER = register_study(Study(
    name="mlp-lr-transfer",
    paper=PAPER,
    claim="The best learning rate stays put across widths under the ntk parametrization (the framework's) and "
          "muP (Yang & Hu 2021), and drifts under the standard one",
    endpoints={
        "transfer": Endpoint(Rule("shift of the best learning rate from the smallest to the largest width, in "
                                  "grid steps (log2)", "equivalent", margin=TRANSFER_MARGIN), optimum_shift),
        "drift": Endpoint(Rule("shift of the best learning rate from the smallest to the largest width, in grid "
                               "steps (log2)", "decrease", minimal_effect=TRANSFER_MARGIN), optimum_shift),
    },
    panel_endpoint=lambda panel: "drift" if panel == "standard" else "transfer",
    secondary={"test_loss": Endpoint(Rule("shift of the test-loss optimum minus the training-loss optimum's, in "
                                          "grid steps", "equivalent", margin=TRANSFER_MARGIN),
                                     optimum_shift_gap)},
    parameters={"transfer_margin": TRANSFER_MARGIN},
    notes=("Each seed's best learning rate at each width is the argmin of its own training loss over the grid, "
           "refined by a parabola through the log losses at the argmin and its neighbours; an argmin at the "
           "grid's edge leaves that seed out. Diverged runs are data, not missing values: they count as infinite "
           "losses.",),
    plot=lambda verdict, frame, out_stem, title: _plot_lr_transfer(verdict, frame, out_stem, title),
    panels=_parametrization_panels,
))


# ------------------------------------------------------------------ mlp-volume
def _samplers(panel: PanelData) -> list[str]:
    """Every method of the sampler's type, the sampler first (e.g. G&C with the Gaussian, then the uniform
    prior)."""
    first = panel.method("sampler")
    if first is None:
        return []
    types = dict(zip(panel.raw["method"].astype(str), panel.raw["method_type"].astype(str)))
    return [first] + sorted(m for m, t in types.items() if t == types[first] and m != first)


def _gap(panel: PanelData, sampler: str | None, x) -> dict[int, float]:
    """Per seed at ``x``: the sampler's test error minus GD's."""
    values = panel.values(sampler, x, "test_error")
    trainer = panel.values(_trainer(panel), x, "test_error")
    return {s: v - trainer[s] for s, v in values.items() if s in trainer}


def _gap_rise(panel: PanelData, index: int) -> dict[int, float]:
    samplers = _samplers(panel)
    if len(samplers) <= index:
        return {}
    first, last = _ends(panel, samplers[index])
    if first is None:
        return {}
    before, after = _gap(panel, samplers[index], first), _gap(panel, samplers[index], last)
    return {s: after[s] - v for s, v in before.items() if s in after}


def gap_rise(panel: PanelData) -> dict[int, float]:
    """Per seed: ``(G&C - GD)`` test error at the largest width minus at the smallest (the first G&C method)."""
    return _gap_rise(panel, 0)


def second_prior_gap_rise(panel: PanelData) -> dict[int, float]:
    """The same for the second G&C method (the uniform prior in the packaged config)."""
    return _gap_rise(panel, 1)


def trainer_change(panel: PanelData) -> dict[int, float]:
    """Per seed: GD's test error at the largest width minus at the smallest."""
    method = _trainer(panel)
    first, last = _ends(panel, method)
    if first is None:
        return {}
    before, after = panel.values(method, first, "test_error"), panel.values(method, last, "test_error")
    return {s: after[s] - v for s, v in before.items() if s in after}


VOLUME = register_study(Study(
    name="mlp-volume",
    paper="arXiv 2506.03931; on real data as in arXiv 2407.03848 (Peleg & Hein, ICML 2024)",
    claim="On real data, G&C's test error falls behind GD's as width grows (the G&C paper's width result, "
          "found on image tasks by Peleg & Hein)",
    endpoints={"gap_rise": Endpoint(
        Rule("rise of (G&C - GD) test error from the smallest to the largest width", "increase"), gap_rise,
        worst_effect=0.0)},
    secondary={
        "second_prior": Endpoint(Rule("rise of (second G&C method - GD) test error, e.g. the uniform prior",
                                      "increase"), second_prior_gap_rise, worst_effect=0.0),
        "trainer": Endpoint(Rule("change of GD's test error from the smallest to the largest width", "decrease"),
                            trainer_change, worst_effect=0.0),
    },
    notes=("Test error of G&C is the accepted draws' mean; each seed is one split, paired across widths and "
           "methods.",),
    plot=lambda verdict, frame, out_stem, title: _plot_volume(verdict, frame, out_stem, title),
    panels=depth_panels,
))


# ------------------------------------------------------------------ mlp-volume-train
def parity_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: G&C's test error minus GD's at the panel's training-set size."""
    xs = panel.xs(panel.method("sampler"))
    return _gap(panel, panel.method("sampler"), xs[0]) if xs else {}


def below_chance(panel: PanelData) -> dict[int, float]:
    """Per seed: G&C's test error minus the prior's (chance) on the same draws."""
    sampler = panel.method("sampler")
    xs = panel.xs(sampler)
    if not xs:
        return {}
    values, chance = panel.values(sampler, xs[0], "test_error"), panel.values(panel.method("chance"), xs[0],
                                                                              "test_error")
    return {s: v - chance[s] for s, v in values.items() if s in chance}


VOLUME_TRAIN = register_study(Study(
    name="mlp-volume-train",
    paper="Chiang et al., ICLR 2023 (OpenReview QC10RmRbZy9; no arXiv version)",
    claim="With a few training images, G&C generalizes about as well as GD (\"Loss landscapes are all you need\")",
    endpoints={"parity": Endpoint(Rule("G&C - GD test error", "equivalent", margin=PARITY_BAND), parity_gap,
                                  worst_case=at_chance("test_error"))},
    secondary={"below_chance": Endpoint(Rule("G&C - prior (chance) test error", "decrease"), below_chance,
                                        worst_case=at_chance("test_error"))},
    parameters={"parity_band": PARITY_BAND},
    notes=("One panel per training-set size; each seed is one split, the same for G&C and GD.",),
    plot=lambda verdict, frame, out_stem, title: _plot_volume_train(verdict, frame, out_stem, title),
    panels=_size_panels,
))


# ------------------------------------------------------------------ plots
def _views(study: Study, frame: "pd.DataFrame") -> dict[str, PanelData]:
    """The plot's panels, in the frame's order (flagged runs are already blanked in ``frame``)."""
    if not len(frame):
        return {}
    labels = list(study.panels(frame))
    views = {}
    # Panels in the order of the numbers they name (depth 2 before depth 4), else as they come.
    panels = split_panels(frame, labels)
    for name in sorted(panels, key=_numbers_in):
        views[name] = panels[name]
    return views


def _numbers_in(label: str) -> tuple:
    import re

    return tuple(float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", label))


def panel_outcomes(verdict: StudyVerdict | None) -> dict[str, str]:
    if verdict is None:
        return {}
    return {p.panel: p.outcome + ("" if p.about else ", extension") for p in verdict.panels if p.decision is not None}


def _scales(ax, *, xlog: bool = True, ylog: bool = False, **labels) -> None:
    """Label ``ax`` and make its axes logarithmic where asked and where it holds positive data (an axis
    without any keeps a linear scale and says so)."""
    import numpy as np

    # The drawn data (labelled lines), not reference lines such as axhline's (in axes coordinates).
    lines = [line for line in ax.get_lines() if not str(line.get_label()).startswith("_")]
    xs = np.concatenate([np.asarray(line.get_xdata(), dtype=float) for line in lines] or [np.array([])])
    ys = np.concatenate([np.asarray(line.get_ydata(), dtype=float) for line in lines] or [np.array([])])
    if xlog and np.any(np.isfinite(xs) & (xs > 0)):
        ax.set_xscale("log")
    if ylog and np.any(np.isfinite(ys) & (ys > 0)):
        ax.set_yscale("log")
    if not lines:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="#555555")
    ax.set(**labels)


def _footnote(fig, text: str) -> None:
    """``text`` under the axes, wrapped to the figure's width."""
    import textwrap

    width = int(fig.get_figwidth() * 15)
    fig.text(0.01, 0.005, "\n".join(textwrap.wrap(text, width)), fontsize=7, color="#555555", va="bottom")


def _inner_labels_off(axes) -> None:
    """Only the first column names its y axis (the rows share their y ranges)."""
    for row in axes:
        for ax in row[1:]:
            ax.set_ylabel("")


def _legend(ax) -> None:
    """A legend where the axes have labelled artists."""
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _ticks(ax, values) -> None:
    """Label a log x axis at the swept values only."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks([float(v) for v in values])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _colors(count: int) -> list:
    from matplotlib import colormaps

    cmap = colormaps["viridis"]
    return [cmap(0.8 * i / max(1, count - 1)) for i in range(count)]


@contextlib.contextmanager
def quiet_plotting():
    """Silence the expected numpy/scipy warnings of empty or all-infinite slices while drawing."""
    import numpy as np

    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _plot_ntk(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    views = _views(NTK, frame)
    if not views:
        return []
    depths = list(dict.fromkeys(name.split(", ")[1] for name in views))
    parametrizations = list(dict.fromkeys(name.split(", ")[0] for name in views))
    colors = dict(zip(parametrizations, _colors(len(parametrizations))))
    outcomes = panel_outcomes(verdict)
    fig = new_figure((4.6 * len(depths), 7.8))
    axes = fig.subplots(2, len(depths), squeeze=False, sharey="row")
    with quiet_plotting():
        for j, depth in enumerate(depths):
            top, bottom = axes[0][j], axes[1][j]
            widths_seen = set()
            for parametrization in parametrizations:
                panel = views.get(f"{parametrization}, {depth}")
                if panel is None:
                    continue
                method = _ntk(panel)
                xs = panel.xs(method)
                widths_seen.update(xs)
                label = f"{parametrization} ({outcomes.get(panel.name, 'not judged')})"
                ratios = []
                for x in xs:
                    measured, limit = panel.values(method, x, "lambda_min"), panel.values(method, x, "lambda_min_limit")
                    ratios.append({s: v / limit[s] for s, v in measured.items() if s in limit and limit[s] > 0})
                if any(ratios):
                    draw_seed_means(top, xs, ratios, color=colors[parametrization], label=label)
                draw_seed_means(bottom, xs, [_relative_spread(panel, x) for x in xs], log=True, color=colors[parametrization],
                                label=label)
            top.axhspan(1 - LIMIT_MARGIN, 1 + LIMIT_MARGIN, color="#1a7f37", alpha=0.08,
                        label=f"1 ± {LIMIT_MARGIN:g} (the claim's margin)")
            top.axhline(1.0, color="#555555", linestyle=":", linewidth=1)
            _scales(top, title=depth, xlabel="width",
                    ylabel="λ_min / its infinite-width value")
            _scales(bottom, ylog=True, xlabel="width",
                    ylabel="spread of λ_min over draws (std / mean)")
            for ax in (top, bottom):
                if widths_seen:
                    _ticks(ax, sorted(widths_seen))
                _legend(ax)
        _footnote(fig, "Mean over seeds with its 95% t interval (geometric for the spread). Only the ntk "
                       "parametrization has a closed-form infinite-width value. The verdict reads each seed's "
                       "slope over the widths: of |λ_min / its limit − 1| (ntk), of the spread (standard).")
    _inner_labels_off(axes)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save_figure(fig, out_stem, title)


def _plot_convergence(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    views = _views(CONVERGENCE, frame)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    fig = new_figure((5.0 * len(views), 7.8))
    axes = fig.subplots(2, len(views), squeeze=False, sharey="row")
    with quiet_plotting():
        for j, (name, panel) in enumerate(views.items()):
            method = _trainer(panel)
            xs = panel.xs(method)
            draw_seed_means(axes[0][j], xs, [panel.values(method, x, "loss_rate") for x in xs], color="#d62728",
                            label="measured: ln(L_0 / L_T) / T")
            draw_seed_means(axes[0][j], xs, [panel.values(method, x, "predicted_rate") for x in xs], style="s--",
                            color="#555555", label="guaranteed by the NTK at initialization")
            draw_seed_means(axes[1][j], xs, [_rate_over_bound(panel, x) for x in xs], color="#d62728",
                            label="measured minus guaranteed")
            axes[1][j].axhline(0.0, color="#555555", linestyle=":", linewidth=1)
            _scales(axes[0][j], xlabel="width", ylabel="training-loss rate per step",
                    title=f"{name} ({outcomes.get(name, 'not judged')})")
            _scales(axes[1][j], xlabel="width", ylabel="measured − guaranteed rate per step")
            for ax in axes[:, j]:
                if xs:
                    _ticks(ax, xs)
                _legend(ax)
        _footnote(fig, "Mean over seeds with its 95% t interval; the verdict reads each seed's log-log slope of "
                       "the guaranteed rate over the widths (the difference is reported).")
    _inner_labels_off(axes)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save_figure(fig, out_stem, title)


def _plot_lazy(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    views = _views(LAZY, frame)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    rows = (("param_change", "relative weight change ||θ_T − θ_0|| / ||θ_0||"),
            ("ntk_change", "relative NTK change ||K_T − K_0|| / ||K_0||"))
    fig = new_figure((4.8 * len(views), 7.8))
    axes = fig.subplots(2, len(views), squeeze=False, sharey="row")
    with quiet_plotting():
        for j, (name, panel) in enumerate(views.items()):
            method = _trainer(panel)
            xs = panel.xs(method)
            depth = _number(name.split()[-1], default=2.0)
            for i, (metric, label) in enumerate(rows):
                ax = axes[i][j]
                series = [panel.values(method, x, metric) for x in xs]
                draw_seed_means(ax, xs, series, log=True, color="#d62728", label="GD (geometric mean, 95% t interval)")
                means = [seed_mean_interval(values, log=True)[0] for values in series if values]
                if xs and means and math.isfinite(means[0]):
                    order = LAZY_ORDERS[metric](depth)
                    ax.plot(xs, [means[0] * (x / xs[0]) ** order for x in xs], ":", color="#555555",
                            label=f"lazy-regime order {order:g}")
                _scales(ax, ylog=True, xlabel="width", ylabel=label)
                if i == 0:
                    ax.set_title(f"{name} ({outcomes.get(name, 'not judged')})")
                if xs:
                    _ticks(ax, xs)
                _legend(ax)
    _inner_labels_off(axes)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save_figure(fig, out_stem, title)


#: Losses above this are drawn at it in the learning-rate plot: a run past GD's stability edge can end with a
#: finite test loss of 1e276, beyond what a log axis can lay out.
PLOT_LOSS_CAP = 1e30


def _plot_lr_transfer(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    import numpy as np

    views = _views(LR_TRANSFER, frame)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    fig = new_figure((4.8 * len(views), 11.0))
    axes = fig.subplots(3, len(views), squeeze=False, sharey="row")
    edge_notes = []
    clipped = 0
    with quiet_plotting():
        for j, (name, panel) in enumerate(views.items()):
            for i, (metric, word) in enumerate((("train_loss", "training"), ("gen_loss", "test"))):
                curves = _learning_rate_curves(panel, metric)
                colors = _colors(len(curves))
                for color, (width, seeds) in zip(colors, sorted(curves.items())):
                    lrs = sorted({lr for losses in seeds.values() for lr in losses})
                    stats = []
                    for lr in lrs:
                        values = np.array([losses.get(lr, math.nan) for losses in seeds.values()], dtype=float)
                        clipped += int(np.sum(values > PLOT_LOSS_CAP))
                        # Clipping is monotone, so the quartiles drawn are the true ones, or the cap.
                        values = np.minimum(values, PLOT_LOSS_CAP)
                        stats.append(np.nanpercentile(values, [25, 50, 75]) if np.isfinite(values).any()
                                     else [math.nan] * 3)
                    low, median, high = (np.array(column, dtype=float) for column in zip(*stats))
                    shown = np.isfinite(median)
                    axes[i][j].plot(np.array(lrs)[shown], median[shown], "o-", color=color, markersize=3,
                                    label=f"width {_label(width)}")
                    band = shown & np.isfinite(low) & np.isfinite(high)
                    axes[i][j].fill_between(np.array(lrs)[band], low[band], high[band], color=color, alpha=0.15,
                                            linewidth=0)
                _scales(axes[i][j], ylog=True, xlabel="learning rate",
                        ylabel=f"{word} loss (median, IQR)")
                if i == 0:
                    axes[i][j].set_title(f"{name} ({outcomes.get(name, 'not judged')})")
                _legend(axes[i][j])
                optima = _optima(panel, metric)
                widths = sorted(optima)
                style = "o-" if metric == "train_loss" else "s--"
                best = [{s: 2.0 ** v for s, v in optima[w].items() if math.isfinite(v)} for w in widths]
                draw_seed_means(axes[2][j], widths, best, log=True, style=style,
                                color="#d62728" if metric == "train_loss" else "#1f77b4",
                                label=f"best learning rate by {word} loss")
                edge = sum(not math.isfinite(v) for w in widths for v in optima[w].values())
                if edge:
                    edge_notes.append(f"{name}, {word} loss: {edge} (seed, width) optima at the grid's edge")
            _scales(axes[2][j], ylog=True, xlabel="width",
                    ylabel="best learning rate (geometric mean, 95% t)")
            if len(axes[2][j].lines):
                _legend(axes[2][j])
        note = ("Each seed's best learning rate is the argmin of its own loss, refined between grid points; a "
                "diverged run counts as an infinite loss (off the curves).")
        if edge_notes:
            note += " Left out: " + "; ".join(edge_notes) + "."
        if clipped:
            note += (f" {clipped} runs' losses above {PLOT_LOSS_CAP:.0e} (finite, past the stability edge) are drawn "
                     "at that value.")
        _footnote(fig, note)
    _inner_labels_off(axes)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save_figure(fig, out_stem, title)


def _plot_volume(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    from ..experiments.methods import companion

    views = _views(VOLUME, frame)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    fig = new_figure((5.0 * len(views), 11.0))
    axes = fig.subplots(3, len(views), squeeze=False, sharey="row")
    sampler_styles = (("#1f77b4", "o-"), ("#9467bd", "o--"), ("#17becf", "o-."))
    with quiet_plotting():
        for j, (name, panel) in enumerate(views.items()):
            samplers = _samplers(panel)
            trainer = _trainer(panel)
            types = dict(zip(panel.raw["method"].astype(str), panel.raw["method_type"].astype(str)))
            xs = panel.xs(trainer) or panel.xs(samplers[0] if samplers else None)
            for (color, style), sampler in zip(sampler_styles, samplers):
                draw_seed_means(axes[0][j], xs, [panel.values(sampler, x, "test_error") for x in xs], style=style,
                                color=color, label=f"{sampler} (G&C)")
                draw_seed_means(axes[1][j], xs, [_gap(panel, sampler, x) for x in xs], style=style, color=color,
                                label=f"{sampler} − {trainer}")
                draw_seed_means(axes[2][j], xs, [panel.values(sampler, x, "acceptance_rate") for x in xs], log=True,
                                style=style, color=color, label=f"{sampler}")
                chance = companion(sampler, types.get(sampler, ""), "chance")
                if chance in types:
                    draw_seed_means(axes[0][j], xs, [panel.values(chance, x, "test_error") for x in xs], style=":",
                                    color=color, label=f"{chance} (chance)")
            draw_seed_means(axes[0][j], xs, [panel.values(trainer, x, "test_error") for x in xs], style="s-", color="#d62728",
                            label=f"{trainer} (GD)")
            axes[1][j].axhline(0.0, color="#555555", linestyle=":", linewidth=1)
            _scales(axes[0][j], xlabel="width", ylabel="test error (mean, 95% t)",
                    title=f"{name} ({outcomes.get(name, 'not judged')})")
            _scales(axes[1][j], xlabel="width", ylabel="G&C − GD test error (mean, 95% t)")
            _scales(axes[2][j], ylog=True, xlabel="width",
                    ylabel="G&C acceptance rate (geometric mean, 95% t)")
            for ax in axes[:, j]:
                if xs:
                    _ticks(ax, xs)
                _legend(ax)
    _inner_labels_off(axes)
    fig.tight_layout(rect=(0, 0, 1, 0.96))
    return save_figure(fig, out_stem, title)


def _plot_volume_train(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    if not len(frame):
        return []
    whole = PanelData("", frame, frame)
    sampler, trainer, chance = whole.method("sampler"), _trainer(whole), whole.method("chance")
    xs = whole.xs(sampler) or whole.xs(trainer)
    outcomes = panel_outcomes(verdict)
    fig = new_figure((15.0, 4.6))
    axes = fig.subplots(1, 3, squeeze=False)[0]
    with quiet_plotting():
        for method, color, style, label in ((sampler, "#1f77b4", "o-", "G&C"), (trainer, "#d62728", "s-", "GD"),
                                            (chance, "#555555", ":", "prior (chance)")):
            if method is not None:
                draw_seed_means(axes[0], xs, [whole.values(method, x, "test_error") for x in xs], style=style, color=color,
                                label=label)
        draw_seed_means(axes[1], xs, [_gap(whole, sampler, x) for x in xs], color="#1f77b4", label="G&C − GD")
        axes[1].axhspan(-PARITY_BAND, PARITY_BAND, color="#1a7f37", alpha=0.08,
                        label=f"0 ± {PARITY_BAND:g} (the claim's margin)")
        axes[1].axhline(0.0, color="#555555", linestyle=":", linewidth=1)
        for x in xs:
            outcome = outcomes.get(f"{_label(x)} training points")
            if outcome:
                axes[1].annotate(outcome, (x, PARITY_BAND), textcoords="offset points", xytext=(0, 4), fontsize=7,
                                 ha="center")
        draw_seed_means(axes[2], xs, [whole.values(sampler, x, "acceptance_rate") for x in xs], log=True, color="#1f77b4",
                        label="G&C")
        _scales(axes[0], xlabel="training points", ylabel="test error (mean, 95% t)")
        _scales(axes[1], xlabel="training points", ylabel="G&C − GD test error (mean, 95% t)")
        _scales(axes[2], ylog=True, xlabel="training points",
                ylabel="G&C acceptance rate (geometric mean, 95% t)")
        for ax in axes:
            if xs:
                _ticks(ax, xs)
            _legend(ax)
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, out_stem, title)


#: Every study of this module, by its sweep config's ``claim``.
STUDIES: dict[str, Study] = {study.name: study for study in (NTK, CONVERGENCE, LAZY, LR_TRANSFER, VOLUME,
                                                             VOLUME_TRAIN)}
