"""GD's implicit regularization in wide deep MLPs (Terjék & González-Sánchez, arXiv 2205.13507), declared on the
study mechanism (:mod:`volumelab.evidence`) beside the other wide-MLP studies (:mod:`volumelab.studies.mlp`, whose
paper and relative tolerance it shares; no study module imports another's private names, so the few helpers for
reading panels and drawing are its own).

**mlp-implicit-reg** (x: width; panels: depth). When sufficiently wide, a deep MLP trained by GD "benefits from
GD's implicit regularization": it ends where the linearized network ends, at the kernel predictor of its
empirical NTK at initialization, kernel regression from the initial function,

    f_K(x) = f_0(x) + K(x, X) K(X, X)^{-1} (y - f_0(X)),

reached with the smallest weight change that fits the training set to first order, the minimum-norm distance
``sqrt((y - f_0)^T K^{-1} (y - f_0))`` (:mod:`volumelab.diagnostics.kernel_regression`; every number of a run is
computed at that run's own initialization, in float64).

* Primary endpoint: per seed, the least-squares slope of ``ln kernel_distance`` against ``ln width``, with
  ``kernel_distance = ||f_T - f_K|| / ||f_K - f_0||`` over the test inputs (the trained network's distance from
  the kernel predictor, relative to how far the kernel predictor moves from the initial function), claimed
  negative (minimal effect 0: the paper names no rate). The lazy-regime order ``-1/2`` (``f_T - f_lin =
  O(k^(-1/2))``, Lee et al. 2019, Thm. 2.1) is drawn, not judged. A seed's slope is fitted over every width of
  the panel: a seed with a flagged run (diverged) has none, and counts as no fall (slope 0) in the worst case.
* Secondary: the per-seed slope of ``ln |test loss(net) - test loss(kernel)|`` against ``ln width``, negative
  (the trained network's test loss approaches the kernel's); and at the largest width the per-seed ratio
  ``||theta_T - theta_0|| / min-norm distance`` minus 1, equivalent to 0 within ``± RATIO_MARGIN`` (0.10: the
  wide-MLP studies' relative tolerance at a width of 1024, :data:`volumelab.studies.mlp.LIMIT_MARGIN`; the paper
  names none), with no worst case (a diverged run's distance has no finite value).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import Endpoint, PanelData, Rule, Study, register_study, split_panels
from ..plotting.figures import draw_seed_means, new_figure, save_figure, seed_mean_interval
from ..evidence.trend import seed_slopes
from .mlp import LIMIT_MARGIN, PAPER, depth_panels, panel_outcomes, quiet_plotting

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["IMPLICIT_REG", "LAZY_FUNCTION_ORDER", "RATIO_MARGIN", "STUDIES", "distance_ratio_largest",
           "kernel_distance_slope", "loss_gap_slope"]

#: ``||theta_T - theta_0|| / min-norm distance`` at the largest width equals 1 within this (secondary).
RATIO_MARGIN = LIMIT_MARGIN
#: The lazy-regime order of the function's distance from the linearized network's: drawn, not judged.
LAZY_FUNCTION_ORDER = -0.5


# ------------------------------------------------------------------ reading the runs
def _trainer(panel: PanelData) -> str | None:
    return panel.method("trainer")


def kernel_distance_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of ``||f_T - f_K|| / ||f_K - f_0||`` (test inputs) against width."""
    return seed_slopes(panel, _trainer(panel), "kernel_distance", log_y=True)


def _loss_gap(panel: PanelData, x) -> dict[int, float]:
    """Per seed at ``x``: ``|test loss of the trained network - test loss of the kernel predictor|``."""
    method = _trainer(panel)
    net, kernel = panel.values(method, x, "gen_loss"), panel.values(method, x, "kernel_gen_loss")
    return {s: abs(v - kernel[s]) for s, v in net.items() if s in kernel}


def loss_gap_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of ``|test loss(net) - test loss(kernel)|`` against width."""
    return seed_slopes(panel, _trainer(panel), _loss_gap, log_y=True)


def distance_ratio_largest(panel: PanelData) -> dict[int, float]:
    """Per seed at the largest width: ``||theta_T - theta_0|| / min-norm distance - 1``."""
    method = _trainer(panel)
    xs = panel.xs(method)
    return {s: v - 1.0 for s, v in panel.values(method, xs[-1], "distance_ratio").items()} if xs else {}


IMPLICIT_REG = register_study(Study(
    name="mlp-implicit-reg",
    paper=PAPER,
    claim="When sufficiently wide, a deep MLP trained by GD benefits from GD's implicit regularization: its "
          "function approaches the kernel predictor of its NTK at initialization (kernel regression from the "
          "initial function) as width grows, and its test loss approaches the kernel's",
    endpoints={"kernel_distance": Endpoint(
        Rule("log-log slope of ||f_T - f_K|| / ||f_K - f_0|| on the test inputs against width", "decrease"),
        kernel_distance_slope, worst_effect=0.0)},
    secondary={
        "loss_gap": Endpoint(Rule("log-log slope of |test loss(net) - test loss(kernel)| against width", "decrease"),
                             loss_gap_slope, worst_effect=0.0),
        "distance_ratio": Endpoint(
            Rule("||theta_T - theta_0|| / the minimum-norm distance sqrt((y - f_0)^T K^-1 (y - f_0)), at the "
                 "largest width, minus 1", "equivalent", margin=RATIO_MARGIN), distance_ratio_largest),
    },
    parameters={"ratio_margin": RATIO_MARGIN},
    notes=("f_K = f_0 + K(x, X) K(X, X)^-1 (y - f_0(X)) is kernel regression from each run's own initial "
           "function with the empirical NTK K at its own initialization (float64, Cholesky); each seed's slope is "
           "a least-squares fit over every width of the panel (a seed with a flagged run has none). The "
           "lazy-regime order -1/2 of the function's distance is drawn, not judged. A seed with a flagged run "
           "counts as no fall (slope 0) in the worst case; the distance ratio has no worst case (a diverged run's "
           "distance is not finite).",),
    plot=lambda verdict, frame, out_stem, title: _plot_implicit_reg(verdict, frame, out_stem, title),
    panels=depth_panels,
))


# ------------------------------------------------------------------ the plot
def _views(frame: "pd.DataFrame") -> dict[str, PanelData]:
    """The plot's panels, by depth (flagged runs are already blanked in ``frame``)."""
    if not len(frame):
        return {}
    panels = split_panels(frame, depth_panels(frame))

    def depth(label: str) -> tuple:
        return tuple(float(n) for n in re.findall(r"-?\d+(?:\.\d+)?", label))

    return {name: panels[name] for name in sorted(panels, key=depth)}


def _finish_axes(ax, xs, *, ylog: bool = False, **labels) -> None:
    """Log x (and y where asked and where positive data are drawn), ticks at the swept widths, labels, legend."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    drawn = [line for line in ax.get_lines() if not str(line.get_label()).startswith("_")]
    if drawn:
        ax.set_xscale("log")
        if ylog and any(float(y) > 0 for line in drawn for y in line.get_ydata()):
            ax.set_yscale("log")
    else:
        ax.text(0.5, 0.5, "no finite values", transform=ax.transAxes, ha="center", va="center", fontsize=8,
                color="#555555")
    if xs and drawn:
        ax.set_xticks([float(x) for x in xs])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set(**labels)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7)


def _plot_implicit_reg(verdict, frame, out_stem: Path, title: str) -> list[Path]:
    import textwrap

    views = _views(frame)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    fig = new_figure((4.8 * len(views), 11.0))
    axes = fig.subplots(3, len(views), squeeze=False, sharey="row")
    with quiet_plotting():
        for j, (name, panel) in enumerate(views.items()):
            method = _trainer(panel)
            xs = panel.xs(method)
            top, middle, bottom = axes[0][j], axes[1][j], axes[2][j]
            distances = [panel.values(method, x, "kernel_distance") for x in xs]
            draw_seed_means(top, xs, distances, log=True, color="#d62728",
                            label="GD against the kernel predictor (geometric mean, 95% t)")
            means = [seed_mean_interval(values, log=True)[0] for values in distances if values]
            if xs and means and math.isfinite(means[0]):
                top.plot(xs, [means[0] * (x / xs[0]) ** LAZY_FUNCTION_ORDER for x in xs], ":", color="#555555",
                         label=f"lazy-regime order {LAZY_FUNCTION_ORDER:g}")
            _finish_axes(top, xs, ylog=True, xlabel="width", ylabel="||f_T − f_K|| / ||f_K − f_0|| (test inputs)",
                         title=f"{name} ({outcomes.get(name, 'not judged')})")
            draw_seed_means(middle, xs, [panel.values(method, x, "gen_loss") for x in xs], color="#d62728",
                            label="trained network (GD)")
            draw_seed_means(middle, xs, [panel.values(method, x, "kernel_gen_loss") for x in xs], style="s--",
                            color="#1f77b4", label="kernel predictor of the NTK at init")
            _finish_axes(middle, xs, xlabel="width", ylabel="test loss (mean, 95% t)")
            draw_seed_means(bottom, xs, [panel.values(method, x, "distance_ratio") for x in xs], color="#d62728",
                            label="||θ_T − θ_0|| / minimum-norm distance")
            bottom.axhspan(1 - RATIO_MARGIN, 1 + RATIO_MARGIN, color="#1a7f37", alpha=0.08,
                           label=f"1 ± {RATIO_MARGIN:g} (reported, not deciding)")
            bottom.axhline(1.0, color="#555555", linestyle=":", linewidth=1)
            _finish_axes(bottom, xs, xlabel="width", ylabel="weight change / minimum-norm distance")
            if j:
                for ax in (top, middle, bottom):
                    ax.set_ylabel("")
        note = ("Mean over seeds with its 95% t interval (geometric for the distance). f_K: kernel regression from "
                "each run's initial function f_0 with the empirical NTK at its initialization; the verdict reads "
                "each seed's log-log slope of the top row.")
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(note, int(fig.get_figwidth() * 15))), fontsize=7,
                 color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save_figure(fig, out_stem, title)


#: Every study of this module, by its sweep config's ``claim``.
STUDIES: dict[str, Study] = {IMPLICIT_REG.name: IMPLICIT_REG}
