"""How much width a deep MLP needs for the NTK regime, against the number of training points (Terjék &
González-Sánchez, arXiv 2205.13507: the framework's one strong assumption, the concentration of the NTK's smallest
eigenvalue, holds "when sufficiently wide"), declared on the study mechanism (:mod:`volumelab.evidence`).

**mlp-width-needed** (x: training points ``n``; panels: data set; the widths are a grid field read inside each
panel). For each seed (one training set per ``n``, one stream of prior draws) and each ``n``:

* ``k*(n)``, the width at which a prior draw's ``lambda_min`` is within :data:`WITHIN` (10%) of its
  infinite-width value ``lambda_inf`` (the arc-cosine closed form on the same inputs) in root mean square over
  the ``ntk`` method's draws: ``rms = sqrt((m / lambda_inf - 1)^2 + s^2 (D - 1) / (D lambda_inf^2))`` for the
  draws' mean ``m``, sample standard deviation ``s`` and count ``D`` (:func:`rms_deviation`), fitted as a power
  law in width over every width of the sweep and solved for ``rms = 0.1``
  (:func:`~volumelab.evidence.power_law_crossing`; no ``k*`` where the fitted law does not fall).
* Primary endpoint: per seed, the log-log slope of ``k*(n)`` against ``n`` (the exponent of the width needed,
  :func:`~volumelab.evidence.seed_slopes`), minus :data:`LITERATURE_EXPONENT` (2), claimed negative (minimal
  effect 0): the width the assumption needs grows more slowly than ``n^2``, the mildest of the polynomial
  widths the NTK convergence literature requires (Oymak & Soltanolkotabi 2020, "Toward moderate
  overparameterization", ``k`` of order ``n^2`` for one hidden layer; Du et al. 2019, ICLR, ``n^6 /
  lambda_0^4``; those are sufficient conditions for GD's convergence, of which ``lambda_min``'s concentration
  is the ingredient measured here). A seed with a flagged run has no exponent and counts at the literature's
  (effect 0) in the worst case; a seed whose fitted deviation does not fall with width at some ``n`` has no
  ``k*`` there and no exponent, and is left out (the decision's seed count shows it).
* Secondary, reported: the exponent itself, claimed positive (more data needs more width); and ``k_GD(n)``,
  the smallest width of the grid from which on (that width and every wider one) GD's measured rate
  ``ln(L_0 / L_T) / T`` reaches the rate the NTK at its initialization guarantees (``predicted_rate``,
  :class:`~volumelab.diagnostics.ntk.NTKLaziness`), its log-log slope against ``n``, positive (quantized to
  the width grid; a seed with no such width at some ``n`` has none).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import (
    Endpoint, PanelData, Rule, Study, power_law_crossing, register_study, seed_slopes,
    split_panels,
)
from ..plotting.figures import draw_seed_means, new_figure, save_figure
from .mlp import PAPER, panel_outcomes, quiet_plotting

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LITERATURE_EXPONENT", "STUDIES", "WIDTH_NEEDED", "WITHIN", "exponent_below_literature",
           "gd_width_exponent", "gd_width_needed", "rms_deviation", "width_exponent", "width_needed"]

#: A draw's ``lambda_min`` counts as at its limit within this relative deviation (root mean square over draws).
WITHIN = 0.1
#: The exponent of the mildest polynomial width in the NTK convergence literature (``k ~ n^2``).
LITERATURE_EXPONENT = 2.0


def _widths(panel: PanelData) -> list[float]:
    return sorted({float(w) for w in panel.raw["width"]}) if "width" in panel.raw and len(panel.raw) else []


def rms_deviation(mean: float, std: float | None, draws: int, limit: float) -> float | None:
    """``sqrt(mean over draws of (lambda_i / limit - 1)^2)`` from the draws' mean, sample std and count."""
    if not (limit > 0 and draws >= 1 and math.isfinite(mean)):
        return None
    spread = 0.0 if draws == 1 or std is None else std * std * (draws - 1) / draws
    return math.sqrt((mean / limit - 1.0) ** 2 + spread / limit ** 2)


def _deviation(panel: PanelData, x) -> dict[int, float]:
    method = panel.method("ntk")
    means, stds = panel.values(method, x, "lambda_min"), panel.values(method, x, "lambda_min_std")
    limits, draws = panel.values(method, x, "lambda_min_limit"), panel.values(method, x, "draws")
    out = {}
    for seed, mean in means.items():
        if seed in limits and seed in draws:
            value = rms_deviation(mean, stds.get(seed), int(draws[seed]), limits[seed])
            if value is not None:
                out[seed] = value
    return out


def width_needed(panel: PanelData, x) -> dict[int, float]:
    """Per seed at ``n = x``: ``k*``, where the power law of the RMS deviation over the widths reaches 10%."""
    widths = _widths(panel)
    if len(widths) < 2:
        return {}
    columns = [_deviation(panel.where("width", w), x) for w in widths]
    out = {}
    for seed in set.intersection(*(set(c) for c in columns)):
        values = [c[seed] for c in columns]
        if not all(v > 0 for v in values):
            continue
        crossing = power_law_crossing(widths, values, WITHIN, falling=True)
        if crossing is not None:
            out[seed] = crossing
    return out


def gd_width_needed(panel: PanelData, x) -> dict[int, float]:
    """Per seed at ``n = x``: the smallest grid width from which on GD's rate reaches the NTK's guarantee."""
    widths = _widths(panel)
    method = panel.method("trainer")
    if method is None or not widths:
        return {}
    reached = []
    for w in widths:
        at = panel.where("width", w)
        measured, guaranteed = at.values(method, x, "loss_rate"), at.values(method, x, "predicted_rate")
        reached.append({s: v >= guaranteed[s] for s, v in measured.items() if s in guaranteed})
    out = {}
    for seed in panel.seeds():
        flags = [column.get(seed) for column in reached]
        for i, _ in enumerate(widths):
            if all(flag is True for flag in flags[i:]):
                out[seed] = widths[i]
                break
    return out


def width_exponent(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of ``k*(n)`` against ``n``."""
    return seed_slopes(panel, panel.method("ntk"), width_needed, log_y=True)


def exponent_below_literature(panel: PanelData) -> dict[int, float]:
    """Per seed: the exponent of ``k*(n)`` minus :data:`LITERATURE_EXPONENT`."""
    return {s: v - LITERATURE_EXPONENT for s, v in width_exponent(panel).items()}


def gd_width_exponent(panel: PanelData) -> dict[int, float]:
    """Per seed: the log-log slope of ``k_GD(n)`` against ``n``."""
    return seed_slopes(panel, panel.method("trainer"), gd_width_needed, log_y=True)


WIDTH_NEEDED = register_study(Study(
    name="mlp-width-needed",
    paper=PAPER,
    claim="The width at which the NTK's smallest eigenvalue is at its infinite-width value (within 10%) grows with "
          "the number of training points more slowly than n^2, the mildest polynomial width the NTK convergence "
          "literature requires (a measurement of the paper's one assumption, 'when sufficiently wide')",
    endpoints={"exponent": Endpoint(
        Rule("log-log slope of k*(n) against n minus 2, k* the width at which a draw's lambda_min is within 10% of "
             "lambda_inf in root mean square", "decrease"), exponent_below_literature, worst_effect=0.0)},
    secondary={
        "grows": Endpoint(Rule("log-log slope of k*(n) against n", "increase"), width_exponent, worst_effect=0.0),
        "gd_width": Endpoint(Rule("log-log slope of k_GD(n) against n, k_GD the smallest grid width from which on "
                                  "GD's measured rate reaches the NTK's guaranteed rate", "increase"),
                             gd_width_exponent, worst_effect=0.0),
    },
    parameters={"within": WITHIN, "literature_exponent": LITERATURE_EXPONENT},
    notes=("k*: per seed and n, the RMS relative deviation of a draw's lambda_min from the closed-form lambda_inf "
           "(arc-cosine kernels, same inputs) is fitted as a power law over every width of the sweep and solved "
           "for 0.1; extrapolated where no width of the grid reaches 10%.",
           "The literature's widths (n^2: Oymak & Soltanolkotabi 2020; n^6 / lambda_0^4: Du et al. 2019) are "
           "sufficient conditions for GD's convergence; the exponent here is the measured growth of one of their "
           "ingredients. A seed with a flagged run counts at the literature's exponent in the worst case; one whose "
           "deviation does not fall with width at some n has no exponent and is left out."),
    plot=lambda verdict, frame, out_stem, title: _plot_width_needed(verdict, frame, out_stem, title),
    panels=lambda frame: [f"{data}" for data in frame["data"]] if "data" in frame else [""] * len(frame),
))


def _plot_width_needed(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    import textwrap

    if not len(frame) or "width" not in frame:
        return []
    labels = [str(d) for d in frame["data"]] if "data" in frame else [""] * len(frame)
    panels = split_panels(frame, labels)
    outcomes = panel_outcomes(verdict)
    fig = new_figure((4.8 * len(panels), 4.8))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    with quiet_plotting():
        for ax, (name, panel) in zip(axes, panels.items()):
            xs = panel.xs(panel.method("ntk"))
            draw_seed_means(ax, xs, [width_needed(panel, x) for x in xs], log=True, color="#d62728",
                            label="k*: λ_min within 10% of its limit (geometric mean, 95% t)")
            gd_xs = panel.xs(panel.method("trainer"))
            if gd_xs:
                draw_seed_means(ax, gd_xs, [gd_width_needed(panel, x) for x in gd_xs], log=True, style="s--",
                                color="#1f77b4", label="k_GD: GD reaches the NTK's rate (grid width)")
            values = [v for x in xs for v in width_needed(panel, x).values()]
            if xs and values:
                anchor = math.exp(sum(math.log(v) for v in width_needed(panel, xs[0]).values())
                                  / max(1, len(width_needed(panel, xs[0]))))
                ax.plot(xs, [anchor * (x / xs[0]) ** LITERATURE_EXPONENT for x in xs], ":", color="#555555",
                        label="n^2 (the literature's mildest)")
            ax.set_xscale("log")
            if ax.get_lines():
                ax.set_yscale("log")
            ax.set(xlabel="training points n", ylabel="width", title=f"{name} ({outcomes.get(name, 'not judged')})")
            if ax.get_legend_handles_labels()[0]:
                ax.legend(fontsize=7)
        note = ("k*: per seed, the width at which the power law of a draw's RMS relative deviation of λ_min from the "
                "arc-cosine limit reaches 10%. The verdict reads each seed's log-log slope of k* against n, minus 2.")
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(note, int(fig.get_figwidth() * 15))), fontsize=7,
                 color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    return save_figure(fig, out_stem, title)


#: Every study of this module, by its sweep config's ``claim``.
STUDIES: dict[str, Study] = {WIDTH_NEEDED.name: WIDTH_NEEDED}
