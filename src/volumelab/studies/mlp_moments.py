"""The moment-dependent generalization of wide deep MLPs (Terjék & González-Sánchez, arXiv 2205.13507), declared
on the study mechanism (:mod:`volumelab.evidence`) beside the other wide-MLP studies.

**mlp-moments** (x: depth; one panel, the input laws and the two widths are grid fields read inside it). The
paper's generalization bounds have coefficients that depend on the even-order moments of the data up to an
order that grows with the number of layers. Inputs with **one covariance and different tails** separate that
dependence from everything a covariance decides: ``gaussian``, ``sphere`` (light tails, every moment finite)
and ``student_t`` with ``nu`` degrees of freedom (a moment of order ``k`` exists iff ``k < nu``;
:mod:`volumelab.problems.input_moments`), the same teacher, split and Gaussian directions for the three laws
of a seed (only each point's radius differs), so every comparison between laws is paired. With ``nu = 5``
the moments of order ``2L`` exist at depth ``L = 2`` and diverge from ``L = 3`` on. The prediction read from
the paper (issue 32's reading, not a sentence of the paper): heavier tails hurt deeper nets first.

* Primary endpoint: per seed, the least-squares slope over depth (per added layer, :func:`seed_slopes` with
  ``log_x=False``) of ``ln(gap(student_t) / gap(gaussian))``, the relative tail penalty of GD's
  generalization gap ``gap = test loss - training loss`` at the widest width of the sweep, claimed
  positive (minimal effect 0: the paper names no size). A log ratio: scale-free across depths, 0 where the
  tails do not matter. A seed with a flagged run (GD diverged) or a gap ``<= 0`` at any depth has no slope
  and counts as no trend (0) in the worst case.
* Secondary, reported, never deciding: the same slope for the light-tailed ``sphere`` against the Gaussian,
  claimed negative; the tail penalty itself at the shallowest and at the deepest depth,
  ``ln(gap(student_t) / gap(gaussian))``, positive; the width at which the NTK's smallest eigenvalue
  concentrates, ``ln(k*(student_t) / k*(gaussian))``, its slope over depth, positive; GD's measured
  convergence rate, ``ln(rate(student_t) / rate(gaussian))``, its slope over depth, negative.
* ``k*`` (:func:`concentration_width`): each seed's coefficient of variation of ``lambda_min`` over the
  ``ntk`` method's prior draws (``lambda_min_std / lambda_min``) at every width of the sweep, a power law
  ``cv = C k^slope`` fitted by least squares in log-log, solved for ``cv = CV_LEVEL`` (0.1). The theory's
  slope is ``-1/2`` (``mlp-ntk`` measures -0.48 to -0.55 on digits); a seed whose fitted slope is not negative
  has no ``k*``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import Endpoint, PanelData, Rule, Study, register_study
from ..evidence.trend import power_law_crossing, seed_slopes
from ..plotting.figures import draw_seed_means, new_figure, save_figure
from .mlp import PAPER, panel_outcomes, quiet_plotting

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CV_LEVEL", "HEAVY", "LIGHT", "MOMENTS", "REFERENCE", "STUDIES", "concentration_width",
           "light_tail_gap_slope", "tail_gap_deepest", "tail_gap_shallowest", "tail_gap_slope", "tail_rate_slope",
           "tail_width_slope"]

#: The input laws compared (grid field ``problem.inputs``, short name ``inputs``).
REFERENCE, HEAVY, LIGHT = "gaussian", "student_t", "sphere"
#: The coefficient of variation of ``lambda_min`` over prior draws at which it counts as concentrated.
CV_LEVEL = 0.1

Reader = Callable[[PanelData, object], Mapping[int, float]]


# ------------------------------------------------------------------ reading the runs
def _widths(panel: PanelData) -> list[float]:
    return sorted({float(w) for w in panel.raw["width"]}) if "width" in panel.raw and len(panel.raw) else []


def _arm(panel: PanelData, law: str, width: float | None = None) -> PanelData:
    """The runs of one input law, at one width (``None``: every width)."""
    arm = panel.where("inputs", law)
    return arm if width is None else arm.where("width", width)


def _widest(panel: PanelData) -> float | None:
    widths = _widths(panel)
    return widths[-1] if widths else None


def _gap(arm: PanelData, x) -> dict[int, float]:
    """Per seed at depth ``x``: GD's ``test loss - training loss``."""
    method = arm.method("trainer")
    test, train = arm.values(method, x, "gen_loss"), arm.values(method, x, "train_loss")
    return {s: v - train[s] for s, v in test.items() if s in train}


def _rate(arm: PanelData, x) -> dict[int, float]:
    """Per seed at depth ``x``: GD's measured rate ``ln(L_0 / L_T) / T``."""
    return arm.values(arm.method("trainer"), x, "loss_rate")


def concentration_width(arm: PanelData, x, level: float = CV_LEVEL) -> dict[int, float]:
    """Per seed at depth ``x``: the width ``k*`` at which ``cv = lambda_min_std / lambda_min`` reaches ``level``.

    ``ln cv`` is fitted by least squares against ``ln width`` over every width of ``arm`` (the ``ntk`` method's
    runs), and the line solved for ``ln level`` (:func:`~volumelab.evidence.power_law_crossing`). A seed without a value at every width, with a ``cv`` that is
    not positive, or whose slope is not negative has none.
    """
    method = arm.method("ntk")
    widths = _widths(arm)
    if method is None or len(widths) < 2:
        return {}
    columns = []
    for width in widths:
        at = arm.where("width", width)
        spread, mean = at.values(method, x, "lambda_min_std"), at.values(method, x, "lambda_min")
        columns.append({s: spread[s] / m for s, m in mean.items() if s in spread and m > 0})
    out = {}
    for seed in set.intersection(*(set(c) for c in columns)):
        crossing = power_law_crossing(widths, [c[seed] for c in columns], level, falling=True)
        if crossing is not None:
            out[seed] = crossing
    return out


def _log_ratio(read: Reader, heavy: str, light: str, *, widest: bool) -> Reader:
    """``(panel, x) -> {seed: ln(read(heavy arm) / read(light arm))}`` where both are positive."""
    def quantity(panel: PanelData, x) -> dict[int, float]:
        width = _widest(panel) if widest else None
        a, b = read(_arm(panel, heavy, width), x), read(_arm(panel, light, width), x)
        return {s: math.log(v / b[s]) for s, v in a.items() if s in b and v > 0 and b[s] > 0
                and math.isfinite(v) and math.isfinite(b[s])}
    return quantity


def _depth_slope(panel: PanelData, quantity: Reader) -> dict[int, float]:
    trainer = _arm(panel, REFERENCE).method("trainer") or panel.method("ntk")
    return seed_slopes(panel, trainer, quantity, log_y=False, log_x=False)


def tail_gap_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope over depth of ``ln(gap(student_t) / gap(gaussian))`` at the widest width."""
    return _depth_slope(panel, _log_ratio(_gap, HEAVY, REFERENCE, widest=True))


def light_tail_gap_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope over depth of ``ln(gap(sphere) / gap(gaussian))`` at the widest width."""
    return _depth_slope(panel, _log_ratio(_gap, LIGHT, REFERENCE, widest=True))


def _at_depth(panel: PanelData, index: int) -> dict[int, float]:
    xs = panel.xs(panel.method("trainer"))
    return _log_ratio(_gap, HEAVY, REFERENCE, widest=True)(panel, xs[index]) if xs else {}


def tail_gap_shallowest(panel: PanelData) -> dict[int, float]:
    """Per seed: ``ln(gap(student_t) / gap(gaussian))`` at the shallowest depth."""
    return _at_depth(panel, 0)


def tail_gap_deepest(panel: PanelData) -> dict[int, float]:
    """Per seed: ``ln(gap(student_t) / gap(gaussian))`` at the deepest depth."""
    return _at_depth(panel, -1)


def tail_width_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope over depth of ``ln(k*(student_t) / k*(gaussian))``."""
    return _depth_slope(panel, _log_ratio(concentration_width, HEAVY, REFERENCE, widest=False))


def tail_rate_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope over depth of ``ln(rate(student_t) / rate(gaussian))`` at the widest width."""
    return _depth_slope(panel, _log_ratio(_rate, HEAVY, REFERENCE, widest=True))


MOMENTS = register_study(Study(
    name="mlp-moments",
    paper=PAPER,
    claim="A wide deep MLP's generalization depends on the even-order moments of its inputs up to an order that "
          "grows with depth: at one covariance, heavier-tailed inputs widen GD's generalization gap, and more so "
          "the deeper the net (issue 32's reading of the paper's bound; the paper states the dependence, not "
          "this experiment)",
    endpoints={"tail_gap": Endpoint(
        Rule("slope over depth (per layer) of ln(gap(student_t) / gap(gaussian)), gap = GD's test loss - "
             "training loss at the widest width", "increase"), tail_gap_slope, worst_effect=0.0)},
    secondary={
        "light_tail_gap": Endpoint(Rule("slope over depth of ln(gap(sphere) / gap(gaussian))", "decrease"),
                                   light_tail_gap_slope, worst_effect=0.0),
        "tail_gap_shallowest": Endpoint(Rule("ln(gap(student_t) / gap(gaussian)) at the shallowest depth",
                                             "increase"), tail_gap_shallowest),
        "tail_gap_deepest": Endpoint(Rule("ln(gap(student_t) / gap(gaussian)) at the deepest depth", "increase"),
                                     tail_gap_deepest),
        "tail_width": Endpoint(Rule("slope over depth of ln(k*(student_t) / k*(gaussian)), k* the width at which "
                                    "lambda_min's coefficient of variation over prior draws reaches 0.1",
                                    "increase"), tail_width_slope, worst_effect=0.0),
        "tail_rate": Endpoint(Rule("slope over depth of ln(rate(student_t) / rate(gaussian)), GD's measured "
                                   "ln(L_0 / L_T) / T at the widest width", "decrease"), tail_rate_slope,
                              worst_effect=0.0),
    },
    parameters={"cv_level": CV_LEVEL, "reference": REFERENCE, "heavy": HEAVY, "light": LIGHT},
    notes=("Every comparison is paired: the three laws of a seed share the teacher, the split, the Gaussian "
           "directions of the inputs and the initializations; only each point's radius differs. A slope is fitted "
           "over every depth of the sweep; a seed with a flagged run or a non-positive gap at any depth has none "
           "and counts as no trend (0) in the worst case.",
           "k*: per seed, ln(lambda_min_std / lambda_min) over the ntk method's draws fitted against ln width over "
           "the sweep's widths, solved for a coefficient of variation of 0.1 (no k* where the fitted slope is not "
           "negative)."),
    plot=lambda verdict, frame, out_stem, title: _plot_moments(verdict, frame, out_stem, title),
))


# ------------------------------------------------------------------ the plot
_COLORS = {REFERENCE: "#1f77b4", LIGHT: "#2ca02c", HEAVY: "#d62728"}


def _plot_moments(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    import textwrap

    from ..evidence import panel_data

    if not len(frame) or "inputs" not in frame or "width" not in frame:
        return []
    panel = panel_data(frame, "")
    widest = _widest(panel)
    laws = [law for law in (REFERENCE, LIGHT, HEAVY) if law in set(frame["inputs"])]
    outcome = panel_outcomes(verdict).get("", "not judged")
    fig = new_figure((15.0, 4.6))
    axes = fig.subplots(1, 3)
    with quiet_plotting():
        for law in laws:
            wide = _arm(panel, law, widest)
            method = wide.method("trainer")
            xs = wide.xs(method)
            draw_seed_means(axes[0], xs, [_gap(wide, x) for x in xs], log=True, color=_COLORS[law], label=law)
            draw_seed_means(axes[1], xs, [_rate(wide, x) for x in xs], log=True, color=_COLORS[law], label=law)
            arm = _arm(panel, law)
            ntk_xs = arm.xs(arm.method("ntk"))
            draw_seed_means(axes[2], ntk_xs, [concentration_width(arm, x) for x in ntk_xs], log=True,
                            color=_COLORS[law], label=law)
        labels = [("GD's test − training loss (width %g)" % widest if widest else "gap", f"generalization gap "
                   f"({outcome})"), ("measured rate ln(L_0/L_T)/T", "convergence rate"),
                  (f"k*: width at which cv(λ_min) = {CV_LEVEL:g}", "width for λ_min to concentrate")]
        for ax, (ylabel, heading) in zip(axes, labels):
            if any(float(y) > 0 for line in ax.get_lines() for y in line.get_ydata()):
                ax.set_yscale("log")
            ax.set(xlabel="depth", ylabel=ylabel, title=heading)
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        note = ("Geometric mean over seeds with its 95% t interval. One covariance (I_d), three tails: gaussian, "
                "sphere (light), student_t (heavy). The verdict reads each seed's slope over depth of "
                "ln(gap(student_t) / gap(gaussian)).")
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(note, 200)), fontsize=7, color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.04, 1, 0.95))
    return save_figure(fig, out_stem, title)


#: Every study of this module, by its sweep config's ``claim``.
STUDIES: dict[str, Study] = {MOMENTS.name: MOMENTS}
