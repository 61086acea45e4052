"""G&C by subset simulation against GD and SGD as the training set grows (issue 33, item 3), declared on the study
mechanism (:mod:`volumelab.evidence`).

**volume-scale** (x: training points ``n``; panels: data set and width; the depths 2 and 3 are a grid field read
inside each panel, paired: a seed is one split per ``n``, the same for every method and depth). G&C is the
Gaussian prior conditioned on zero training errors, sampled and its volume estimated by subset simulation
(``method: subset``, ``accept: train_error``, ``eps: 0``); GD is full-batch, SGD the same trainer on minibatches.
Three claims from the literature, each its own endpoint and rule:

* (a) Chiang et al. (ICLR 2023, "Loss landscapes are all you need", OpenReview QC10RmRbZy9): with few
  training points G&C's test accuracy is about SGD's. Primary endpoint (:func:`small_n_parity`): per seed, the
  mean over both depths and every ``n <= SMALL_N`` (32, the largest training set of theirs) of
  ``G&C - SGD`` test error, equivalent to 0 within ``± PARITY_MARGIN`` (0.05 test-error points, the margin of
  ``mlp-volume-train``), by two one-sided tests. A flagged G&C run is set to chance (the prior's test error on
  its own draws) in the worst case.
* (b) Pakman, Kreimer & Berchenko (ICML 2026, "Revisiting the Volume Hypothesis", arXiv 2606.31282, abstract):
  "the generalization advantage of gradient learning over random sampling training generally diminishes as
  the training data size grows". Endpoint (:func:`advantage_trend`, reported with its own decision): per seed,
  the least-squares slope against ``log2 n`` of ``G&C - SGD`` test error (mean over both depths), over every
  ``n`` of the sweep, claimed negative (minimal effect 0). A seed with a flagged run at some ``n`` has no slope
  and counts at 0 (no trend) in the worst case.
* (c) Peleg & Hein (ICML 2024, arXiv 2407.03848): depth hurts G&C. Endpoint (:func:`depth_gap`, reported with
  its own decision): per seed, G&C's test error at depth 3 minus depth 2, averaged over every ``n``, claimed
  positive (minimal effect 0); a seed with a flagged G&C run counts at 0 in the worst case.

Also reported: (a) and (b) with full-batch GD in place of SGD.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import (
    Endpoint, PanelData, Rule, Study, at_chance, register_study, row_settings, seed_slopes,
    split_panels,
)
from ..plotting.figures import draw_seed_means, new_figure, save_figure
from .mlp import PARITY_BAND, panel_outcomes, quiet_plotting

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEPTHS", "PARITY_MARGIN", "SMALL_N", "STUDIES", "VOLUME_SCALE", "advantage_trend", "depth_gap",
           "gap", "gd_advantage_trend", "gd_small_n_parity", "small_n_parity", "volume_scale_panels"]

#: The equivalence margin of claim (a), in test-error points: ``mlp-volume-train``'s parity band, kept.
PARITY_MARGIN = PARITY_BAND
#: "Small n" for claim (a): Chiang et al.'s training sets go up to 32 images.
SMALL_N = 32
#: The depths claim (c) compares: (shallow, deep).
DEPTHS = (2, 3)


def volume_scale_panels(frame: "pd.DataFrame") -> list[str]:
    """One panel per data set and width (``"digits, width 16"``); the depths are arms inside a panel."""
    data = row_settings(frame, "data", "problem", "data")
    widths = row_settings(frame, "width", "model", "width")
    return [f"{d}, width {int(float(w)) if w is not None else '?'}" for d, w in zip(data, widths)]


def _depths(panel: PanelData) -> list[int]:
    if not len(panel.raw):
        return []
    return sorted({int(float(d)) for d in row_settings(panel.raw, "depth", "model", "depth") if d is not None})


def _arm(panel: PanelData, depth: int) -> PanelData:
    """The panel's runs at one depth (every method), with the flagged runs of that depth; a worst case set on the
    panel's frame carries over (:meth:`PanelData.where`)."""
    return panel.where("depth", depth) if "depth" in panel.raw else panel  # one depth: not a grid field


def _trainers(panel: PanelData) -> tuple[str | None, str | None]:
    """``(GD, SGD)``: the first trainer (by name) without minibatches and the first with ``batch_size`` set, read
    from the runs' stored settings (no method name is assumed)."""
    from ..evidence.roles import role_of

    rows = panel.raw
    if not len(rows) or "config" not in rows:
        return None, None
    full, minibatch = None, None
    for method, method_type, config in sorted(zip(rows["method"].astype(str), rows["method_type"].astype(str),
                                                  rows["config"]), key=lambda item: item[0]):
        if role_of(method_type) != "trainer" or method in (full, minibatch):
            continue
        settings = config.get("method", {}) if isinstance(config, dict) else {}
        if settings.get("batch_size") is None:
            full = full or method
        else:
            minibatch = minibatch or method
    return full, minibatch


def gap(panel: PanelData, x, *, trainer: str = "sgd") -> dict[int, float]:
    """Per seed at ``n = x``: ``G&C - trainer`` test error, the mean over the panel's depths (a seed needs both)."""
    gd, sgd = _trainers(panel)
    method = sgd if trainer == "sgd" else gd
    sampler = panel.method("sampler")
    per_depth = []
    for depth in _depths(panel):
        arm = _arm(panel, depth)
        values, reference = arm.values(sampler, x, "test_error"), arm.values(method, x, "test_error")
        per_depth.append({s: v - reference[s] for s, v in values.items() if s in reference})
    if not per_depth:
        return {}
    seeds = set.intersection(*(set(d) for d in per_depth))
    return {s: math.fsum(d[s] for d in per_depth) / len(per_depth) for s in seeds}


def _small_n_parity(panel: PanelData, trainer: str) -> dict[int, float]:
    xs = [x for x in panel.xs(panel.method("sampler")) if float(x) <= SMALL_N]
    if not xs:
        return {}
    columns = [gap(panel, x, trainer=trainer) for x in xs]
    seeds = set.intersection(*(set(c) for c in columns))
    return {s: math.fsum(c[s] for c in columns) / len(columns) for s in seeds}


def small_n_parity(panel: PanelData) -> dict[int, float]:
    """Per seed: ``G&C - SGD`` test error, the mean over both depths and every ``n <= SMALL_N`` (claim (a))."""
    return _small_n_parity(panel, "sgd")


def gd_small_n_parity(panel: PanelData) -> dict[int, float]:
    """The same with full-batch GD in place of SGD."""
    return _small_n_parity(panel, "gd")


def advantage_trend(panel: PanelData) -> dict[int, float]:
    """Per seed: the least-squares slope of ``G&C - SGD`` test error against ``log2 n`` (claim (b))."""
    return seed_slopes(panel, panel.method("sampler"), lambda p, x: gap(p, x, trainer="sgd"), log_y=False)


def gd_advantage_trend(panel: PanelData) -> dict[int, float]:
    """The same with full-batch GD in place of SGD."""
    return seed_slopes(panel, panel.method("sampler"), lambda p, x: gap(p, x, trainer="gd"), log_y=False)


def depth_gap(panel: PanelData) -> dict[int, float]:
    """Per seed: G&C's test error at depth 3 minus at depth 2, the mean over every ``n`` (claim (c)); a seed
    needs a value at every ``n`` and both depths."""
    if not set(DEPTHS) <= set(_depths(panel)):
        return {}
    sampler = panel.method("sampler")
    shallow, deep = _arm(panel, DEPTHS[0]), _arm(panel, DEPTHS[1])
    xs = panel.xs(sampler)
    columns = []
    for x in xs:
        low, high = shallow.values(sampler, x, "test_error"), deep.values(sampler, x, "test_error")
        columns.append({s: high[s] - v for s, v in low.items() if s in high})
    if not columns:
        return {}
    seeds = set.intersection(*(set(c) for c in columns))
    return {s: math.fsum(c[s] for c in columns) / len(columns) for s in seeds}


def _at_chance_per_depth(panel: PanelData) -> PanelData:
    """:func:`~volumelab.evidence.at_chance` on G&C's test error, depth by depth (a seed's chance level is its
    own run's prior test error at that depth and ``n``)."""
    import pandas as pd

    depths = _depths(panel)
    if "depth" not in panel.raw or len(depths) < 2:
        return at_chance("test_error")(panel)
    arms = [at_chance("test_error")(_arm(panel, d)) for d in depths]
    return PanelData(panel.name, pd.concat([a.frame for a in arms]), panel.raw, panel.flagged)


VOLUME_SCALE = register_study(Study(
    name="volume-scale",
    paper="Chiang et al., ICLR 2023 (OpenReview QC10RmRbZy9); Pakman, Kreimer & Berchenko, ICML 2026 "
          "(arXiv 2606.31282); Peleg & Hein, ICML 2024 (arXiv 2407.03848)",
    claim="With few training points (n <= 32) G&C's test error is SGD's within 0.05 (Chiang et al.'s parity); "
          "reported with their own decisions: the advantage of SGD over G&C diminishes as n grows (Pakman et al.), "
          "and depth hurts G&C (Peleg & Hein)",
    endpoints={"parity": Endpoint(
        Rule(f"G&C - SGD test error, mean over depths 2-3 and n <= {SMALL_N}", "equivalent", margin=PARITY_MARGIN),
        small_n_parity, worst_case=_at_chance_per_depth)},
    secondary={
        "advantage_trend": Endpoint(
            Rule("(b) slope of G&C - SGD test error (mean over depths) against log2 n", "decrease"),
            advantage_trend, worst_effect=0.0),
        "depth_hurts": Endpoint(
            Rule("(c) G&C test error at depth 3 minus depth 2, mean over n", "increase"), depth_gap,
            worst_effect=0.0),
        "parity_gd": Endpoint(
            Rule(f"G&C - GD test error, mean over depths 2-3 and n <= {SMALL_N}", "equivalent",
                 margin=PARITY_MARGIN), gd_small_n_parity, worst_case=_at_chance_per_depth),
        "advantage_trend_gd": Endpoint(
            Rule("slope of G&C - GD test error (mean over depths) against log2 n", "decrease"),
            gd_advantage_trend, worst_effect=0.0),
    },
    parameters={"parity_margin": PARITY_MARGIN, "small_n": SMALL_N, "depths": DEPTHS},
    notes=("G&C: the Gaussian prior conditioned on zero training errors, by subset simulation; its test error is "
           "the conditional mean over the chains' states at eps. A seed is one split per n, shared by G&C, GD, SGD "
           "and both depths, so every difference is paired.",
           "Runs flagged not_mixed, not_reached or budget_too_small are counted and left out; in the worst case a "
           "flagged G&C run sits at chance (parity) or its seed has no trend and no depth effect (0)."),
    plot=lambda verdict, frame, out_stem, title: _plot_volume_scale(verdict, frame, out_stem, title),
    panels=volume_scale_panels,
))


def _plot_volume_scale(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """Per panel and depth (columns): test error of G&C, GD, SGD and the prior against n; G&C - SGD and G&C - GD
    with the parity margin; G&C's log volume of zero training errors (mean over seeds, 95% t)."""
    import textwrap

    if not len(frame):
        return []
    panels = split_panels(frame, volume_scale_panels(frame))
    columns = [(name, depth) for name, panel in panels.items() for depth in (_depths(panel) or [None])]
    outcomes = panel_outcomes(verdict)
    fig = new_figure((4.4 * len(columns), 11.0))
    axes = fig.subplots(3, len(columns), squeeze=False)
    with quiet_plotting():
        for j, (name, depth) in enumerate(columns):
            panel = panels[name]
            arm = _arm(panel, depth) if depth is not None else panel
            sampler, chance = arm.method("sampler"), arm.method("chance")
            gd, sgd = _trainers(panel)
            xs = panel.xs(sampler) or panel.xs(gd)
            for method, color, style, label in ((sampler, "#1f77b4", "o-", "G&C (subset)"),
                                                (gd, "#d62728", "s-", "GD"), (sgd, "#ff7f0e", "^-", "SGD"),
                                                (chance, "#555555", ":", "prior (chance)")):
                if method is not None:
                    draw_seed_means(axes[0][j], xs, [arm.values(method, x, "test_error") for x in xs], style=style,
                                    color=color, label=label)
            for method, color, style, label in ((sgd, "#ff7f0e", "^-", "G&C − SGD"), (gd, "#d62728", "s--",
                                                                                         "G&C − GD")):
                if method is None:
                    continue
                series = []
                for x in xs:
                    values = arm.values(sampler, x, "test_error")
                    reference = arm.values(method, x, "test_error")
                    series.append({s: v - reference[s] for s, v in values.items() if s in reference})
                draw_seed_means(axes[1][j], xs, series, style=style, color=color, label=label)
            axes[1][j].axhspan(-PARITY_MARGIN, PARITY_MARGIN, color="#1a7f37", alpha=0.08,
                               label=f"0 ± {PARITY_MARGIN:g} (claim (a)'s margin)")
            axes[1][j].axvline(SMALL_N, color="#555555", linestyle=":", linewidth=1)
            draw_seed_means(axes[2][j], xs, [arm.values(sampler, x, "log_volume_mean_log") for x in xs],
                            color="#1f77b4", label="mean over replicates of log P")
            draw_seed_means(axes[2][j], xs, [arm.values(sampler, x, "log_volume") for x in xs], style="o--",
                            color="#9467bd", label="log of the mean P")
            heading = f"{name}" + (f", depth {depth}" if depth is not None else "")
            axes[0][j].set_title(f"{heading} ({outcomes.get(name, 'not judged')})", fontsize=9)
            for i, ylabel in enumerate(("test error (mean, 95% t)", "test-error difference (mean, 95% t)",
                                        "log P(zero training errors)")):
                ax = axes[i][j]
                ax.set_xscale("log")
                ax.set(xlabel="training points n", ylabel=ylabel if j == 0 else "")
                if xs:
                    ax.set_xticks([float(x) for x in xs], [str(int(float(x))) for x in xs])
                    ax.minorticks_off()
                if ax.get_legend_handles_labels()[0]:
                    ax.legend(fontsize=7)
        note = ("Bands: 95% t intervals over seeds (a seed is one split per n, shared by every method and depth). "
                "Flagged G&C runs (not_mixed, not_reached, budget_too_small) are left out. Dotted line: n = "
                f"{SMALL_N}, the largest n of claim (a).")
        fig.text(0.01, 0.005, "\n".join(textwrap.wrap(note, int(fig.get_figwidth() * 15))), fontsize=7,
                 color="#555555", va="bottom")
    fig.tight_layout(rect=(0, 0.03, 1, 0.96))
    return save_figure(fig, out_stem, title)


#: Every study of this module, by its sweep config's ``claim``.
STUDIES: dict[str, Study] = {VOLUME_SCALE.name: VOLUME_SCALE}
