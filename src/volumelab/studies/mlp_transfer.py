"""Learning-rate transfer as Tensor Programs V measures it (Yang et al. 2022, arXiv 2203.03466), declared on the
study mechanism (:mod:`volumelab.evidence`) beside the other wide-MLP studies (:mod:`volumelab.studies.mlp`: its
GD study ``mlp-lr-transfer`` stays as it is; no study module imports another's private names).

Two studies, one per optimizer, each its own sweep so each fits the quick scale's 15 minutes on a 2-core CPU:
**mlp-lr-transfer-sgd** (minibatch SGD) and **mlp-lr-transfer-adam** (Adam on the same minibatches; under muP with
muP's Adam learning rates, Table 3 of Tensor Programs V: :attr:`~volumelab.models.MLPModel.adam_learning_rate_multipliers`).
x: learning rate; panels: parametrization and depth (2-4); each panel's runs span the widths and the grid.

* **Each seed's optimum at each width** is the vertex of a parabola fitted by least squares to ``ln`` of its final
  training loss against ``log2 lr`` on the 5 grid points centred on its smallest loss
  (:func:`~volumelab.evidence.parabola_optimum`, as Tensor Programs V locates its optima). A run that diverged,
  or ended above the loss its seed reaches at the grid's smallest learning rate (barely trained), counts at that
  loss: "no better than not training" (a diverged run has no loss to fit, and a loss of ``1e276`` past the
  stability edge says only that). A smallest loss at the grid's edge, or a parabola that does not open upwards
  or whose vertex lies outside its points, gives no optimum: that seed has no effect and is counted as missing.
* **Primary endpoint**: per seed, the least-squares slope of the optimum (``log2 lr``) against ``log2 width``:
  the optimum's shift per doubling of width, over every width of the panel. Transfer (muP under both
  optimizers; ntk under SGD): equivalent to 0 within ``± TRANSFER_SLOPE_MARGIN`` (0.25 per doubling: the old
  GD rule's margin of one grid step over its four doublings, 64 to 1024). Drift (standard under both; ntk
  under Adam): negative beyond the same 0.25, so "stays put" and "drifts" split at one boundary. The scaling
  arguments predict ``-1`` for standard (its NTK grows like the width under SGD; under Adam every one of a
  hidden unit's ``k`` inputs moves by about ``lr``), ``-1/2`` for ntk under Adam (the stored weights move by
  about ``lr``, the multiplier ``1/sqrt(k)`` leaves ``sqrt(k)``), 0 for muP. A seed with a flagged run and no
  optimum counts, in the worst case, as a full standard drift (-1) against transfer and as no drift (0)
  against drift.
* The claim (Tensor Programs V; arXiv 2205.13507 for ntk under GD-like steps): under SGD the optimum stays put
  under ntk and muP and drifts under standard; under Adam it stays put under muP and drifts under standard.
  Under Adam ntk is an extension (Tensor Programs V contrasts muP with the standard parametrization).
* Secondary: the shift of the optimum from the smallest to the largest width in grid steps, within ± 1 (the
  old GD rule's endpoint); the same slope for the test-loss optimum.
* The report's figure adds muP's own check, the **coordinate check** (:func:`volumelab.diagnostics.coordinates.
  coordinate_check`): every layer's pre-activations and their change after 3 steps of the study's optimizer,
  against width, for each parametrization: flat in width under muP.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import Endpoint, PanelData, Rule, Study, parabola_optimum, register_study, row_settings, split_panels
from ..errors import VolumelabError
from ..plotting.figures import draw_seed_means, new_figure, save_figure
from .mlp import panel_outcomes, quiet_plotting

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ADAM_TRANSFER", "COORDINATE_WIDTHS", "FIT_WINDOW", "SGD_TRANSFER", "TRANSFER_SLOPE_MARGIN",
           "WORST_DRIFT", "optimum_shift", "optimum_slope", "seed_optima", "test_optimum_slope", "transfer_panels"]

PAPER = "arXiv 2203.03466"
#: "Stays put" / "drifts": the optimum's slope against log2 width within / beyond this (log2 lr per doubling).
TRANSFER_SLOPE_MARGIN = 0.25
#: Grid points of each seed's parabola (centred on its smallest loss).
FIT_WINDOW = 5
#: A seed without an optimum in the worst case, against transfer: the standard parametrization's drift.
WORST_DRIFT = -1.0
#: Widths of the report's coordinate check (3 steps from the study's initialization, 3 seeds).
COORDINATE_WIDTHS = (64, 128, 256, 512, 1024)


def _finite(value) -> bool:
    try:
        return math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _label(value) -> str:
    try:
        return f"{float(value):g}"
    except (TypeError, ValueError):
        return str(value)


def transfer_panels(frame: "pd.DataFrame") -> list[str]:
    """``"<parametrization>, depth <d>"`` of every row."""
    return [f"{p}, depth {_label(d)}" for p, d in zip(row_settings(frame, "parametrization", "model", "parametrization"),
                                                      row_settings(frame, "depth", "model", "depth"))]


def _curves(panel: PanelData, metric: str) -> dict[float, dict[int, dict[float, float]]]:
    """``{width: {seed: {lr: loss}}}`` of the trainer's runs as stored (a flagged, diverged run: ``inf``)."""
    method = panel.method("trainer")
    raw = panel.raw[panel.raw["method"] == method]
    losses = panel.frame.loc[raw.index, metric] if metric in panel.frame else [math.nan] * len(raw)
    curves: dict[float, dict[int, dict[float, float]]] = {}
    for width, lr, seed, value in zip(row_settings(raw, "width", "model", "width"), raw["x"], raw["seed"], losses):
        loss = float(value) if _finite(value) else math.inf
        curves.setdefault(float(width), {}).setdefault(int(seed), {})[float(lr)] = loss
    return curves


def seed_optima(losses: dict[float, float], grid: list[float]) -> float:
    """One seed's optimum at one width, ``log2 lr`` (the module docstring), or NaN where it has none.

    Args:
        losses: ``{lr: final loss}``; ``inf`` for a diverged run.
        grid: Every learning rate of the sweep (a seed missing one has an incomplete curve: NaN).
    """
    if sorted(losses) != sorted(grid) or len(grid) < 3:
        return math.nan
    rates = sorted(grid)
    values = [losses[lr] for lr in rates]
    cap = values[0]
    if not (_finite(cap) and cap > 0):
        return math.nan
    capped = [math.log(min(value, cap)) if value > 0 else math.log(cap) for value in values]
    try:
        return parabola_optimum([math.log2(lr) for lr in rates], capped, window=FIT_WINDOW).x
    except VolumelabError:
        return math.nan


def _optima(panel: PanelData, metric: str) -> dict[float, dict[int, float]]:
    curves = _curves(panel, metric)
    grid = sorted({lr for seeds in curves.values() for losses in seeds.values() for lr in losses})
    return {width: {seed: seed_optima(losses, grid) for seed, losses in seeds.items()}
            for width, seeds in sorted(curves.items())}


def _slopes(optima: dict[float, dict[int, float]]) -> dict[int, float]:
    """Per seed with an optimum at every width: the least-squares slope against ``log2 width``."""
    widths = sorted(optima)
    if len(widths) < 2:
        return {}
    xs = [math.log2(w) for w in widths]
    mean_x = math.fsum(xs) / len(xs)
    slopes = {}
    for seed in sorted(set().union(*(set(optima[w]) for w in widths))):
        ys = [optima[w].get(seed, math.nan) for w in widths]
        if not all(_finite(y) for y in ys):
            continue
        mean_y = math.fsum(ys) / len(ys)
        slopes[seed] = (math.fsum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys))
                        / math.fsum((x - mean_x) ** 2 for x in xs))
    return slopes


def optimum_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope of the training-loss optimum (``log2 lr``) against ``log2 width``."""
    return _slopes(_optima(panel, "train_loss"))


def test_optimum_slope(panel: PanelData) -> dict[int, float]:
    """Per seed: the slope of the test-loss optimum (``log2 lr``) against ``log2 width``."""
    return _slopes(_optima(panel, "gen_loss"))


def optimum_shift(panel: PanelData) -> dict[int, float]:
    """Per seed: the training-loss optimum at the largest width minus at the smallest (``log2 lr``)."""
    optima = _optima(panel, "train_loss")
    if len(optima) < 2:
        return {}
    first, last = optima[min(optima)], optima[max(optima)]
    return {s: last[s] - first[s] for s in first if s in last and _finite(first[s]) and _finite(last[s])}


_TRANSFER = Endpoint(Rule("slope of the seed's fitted optimum log2 lr against log2 width (shift per doubling)",
                          "equivalent", margin=TRANSFER_SLOPE_MARGIN), optimum_slope, worst_effect=WORST_DRIFT)
_DRIFT = Endpoint(Rule("slope of the seed's fitted optimum log2 lr against log2 width (shift per doubling)",
                       "decrease", minimal_effect=TRANSFER_SLOPE_MARGIN), optimum_slope, worst_effect=0.0)
_SECONDARY = {
    "shift": Endpoint(Rule("shift of the fitted optimum from the smallest to the largest width, in grid steps (log2)",
                           "equivalent", margin=1.0), optimum_shift),
    "test_loss": Endpoint(Rule("slope of the seed's test-loss optimum log2 lr against log2 width", "equivalent",
                               margin=TRANSFER_SLOPE_MARGIN), test_optimum_slope),
}
_NOTES = ("Each seed's optimum is the vertex of a parabola fitted to ln(training loss) against log2 lr on the 5 grid "
          "points around its smallest loss (losses above the seed's loss at the grid's smallest learning rate, and "
          "diverged runs, count at that loss); no optimum (an edge minimum, a parabola not opening upwards) leaves "
          "the seed out, counted. The slope is fitted over every width of the panel.",)


def _sgd_endpoint(panel: str) -> str:
    return "drift" if panel.startswith("standard,") else "transfer"


def _adam_endpoint(panel: str) -> str:
    return "transfer" if panel.startswith("mup,") else "drift"


SGD_TRANSFER = register_study(Study(
    name="mlp-lr-transfer-sgd",
    paper=PAPER,
    claim="Under minibatch SGD the best learning rate stays put across widths under muP (Tensor Programs V) and "
          "the ntk parametrization (arXiv 2205.13507), and drifts under the standard one, at depths 2-4",
    endpoints={"transfer": _TRANSFER, "drift": _DRIFT},
    panel_endpoint=_sgd_endpoint,
    secondary=_SECONDARY,
    parameters={"transfer_slope_margin": TRANSFER_SLOPE_MARGIN, "fit_window": FIT_WINDOW, "worst_drift": WORST_DRIFT},
    notes=_NOTES,
    plot=lambda verdict, frame, out_stem, title: _plot(verdict, frame, out_stem, title, "gd"),
    panels=transfer_panels,
))

ADAM_TRANSFER = register_study(Study(
    name="mlp-lr-transfer-adam",
    paper=PAPER,
    claim="Under Adam the best learning rate stays put across widths under muP with its Adam learning rates and "
          "drifts under the standard parametrization (Tensor Programs V), at depths 2-4",
    endpoints={"transfer": _TRANSFER, "drift": _DRIFT},
    panel_endpoint=_adam_endpoint,
    about=lambda panel: not panel.startswith("ntk,"),
    secondary=_SECONDARY,
    parameters={"transfer_slope_margin": TRANSFER_SLOPE_MARGIN, "fit_window": FIT_WINDOW, "worst_drift": WORST_DRIFT},
    notes=_NOTES + ("ntk under Adam is an extension, judged as drift (its stored weights move by about lr: the "
                    "optimum should fall like k^(-1/2)).",),
    plot=lambda verdict, frame, out_stem, title: _plot(verdict, frame, out_stem, title, "adam"),
    panels=transfer_panels,
))


# ------------------------------------------------------------------ plots
def _plot(verdict, frame, out_stem: Path, title: str, step_rule: str) -> list[Path]:
    import numpy as np
    from matplotlib import colormaps

    labels = transfer_panels(frame)
    views = split_panels(frame, labels)
    if not views:
        return []
    outcomes = panel_outcomes(verdict)
    # One column per parametrization; per depth a row of loss curves and a row of fitted optima.
    parametrizations = list(dict.fromkeys(name.split(",")[0] for name in views))
    depths = list(dict.fromkeys(name.split(", ", 1)[1] for name in views))
    fig = new_figure((4.2 * len(parametrizations), 3.4 * 2 * len(depths)))
    axes = fig.subplots(2 * len(depths), len(parametrizations), squeeze=False)
    with quiet_plotting():
        for name, panel in views.items():
            parametrization, depth = name.split(", ", 1)
            column, row = parametrizations.index(parametrization), 2 * depths.index(depth)
            top, bottom = axes[row][column], axes[row + 1][column]
            curves = _curves(panel, "train_loss")
            cmap = colormaps["viridis"]
            for i, (width, seeds) in enumerate(sorted(curves.items())):
                color = cmap(0.8 * i / max(1, len(curves) - 1))
                lrs = sorted({lr for losses in seeds.values() for lr in losses})
                # As the fit counts them: a loss above the seed's loss at the smallest rate (or diverged) at it.
                capped = [{lr: min(loss, losses.get(lrs[0], math.inf)) for lr, loss in losses.items()}
                          for losses in seeds.values()]
                median = np.array([np.nanmedian([c.get(lr, math.nan) for c in capped]) for lr in lrs])
                shown = np.isfinite(median)
                top.plot(np.array(lrs)[shown], median[shown], "o-", color=color, markersize=2.5,
                         label=f"width {width:g}")
            top.set(xscale="log", yscale="log", xlabel="learning rate",
                    ylabel="training loss (median over seeds)" if column == 0 else "")
            top.set_title(f"{name} ({outcomes.get(name, 'not judged')}); above the least-trained loss: at it",
                          fontsize=7)
            top.legend(fontsize=6)
            optima = _optima(panel, "train_loss")
            widths = sorted(optima)
            draw_seed_means(bottom, widths, [{s: 2.0 ** v for s, v in optima[w].items() if _finite(v)}
                                             for w in widths], log=True, color="#d62728",
                            label="fitted optimum (geometric mean, 95% t)")
            bottom.set(xscale="log", yscale="log", xlabel="width", ylabel="best learning rate" if column == 0 else "")
            bottom.legend(fontsize=6)
            missing = sum(not _finite(v) for w in widths for v in optima[w].values())
            if missing:
                bottom.set_title(f"{missing} (seed, width) without an optimum", fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.95))
    paths = save_figure(fig, out_stem, title)
    return paths + _plot_coordinates(frame, out_stem.with_name(out_stem.name + "_coordinates"), step_rule)


def _plot_coordinates(frame, out_stem: Path, step_rule: str) -> list[Path]:
    """The coordinate check (Yang & Hu 2021; Tensor Programs V): each layer's mean |pre-activation| and mean
    |change| after 3 steps of the study's optimizer, against width, per parametrization, at the sweep's depth
    3 (or its first), on the sweep's own training set (seed 0)."""
    import numpy as np

    from ..diagnostics.coordinates import coordinate_check
    from ..models import MLPModel
    from ..problems.supervised import make_supervised

    configs = [c for c in frame["config"] if isinstance(c, dict)] if "config" in frame else []
    if not configs:
        return []
    problem_config = configs[0].get("problem") or {}
    model_config = configs[0].get("model") or {}
    depths = sorted({int(d) for d in row_settings(frame, "depth", "model", "depth") if _finite(d)})
    depth = 3 if 3 in depths else (depths[0] if depths else 3)
    problem = make_supervised(problem_config.get("data", "digits"), int(problem_config.get("train", 64)), seed=0,
                              loss=problem_config.get("loss", "squared"))
    lr = 0.05 if step_rule == "gd" else 0.01
    parametrizations = list(dict.fromkeys(row_settings(frame, "parametrization", "model", "parametrization")))
    fig = new_figure((3.8 * len(parametrizations), 6.5))
    axes = fig.subplots(2, len(parametrizations), squeeze=False, sharey="row")
    for j, parametrization in enumerate(parametrizations):
        model = MLPModel(problem.num_features, COORDINATE_WIDTHS[0], depth, model_config.get("activation", "relu"),
                         parametrization=parametrization)
        try:
            check = coordinate_check(problem, model, list(COORDINATE_WIDTHS), lr=lr, step_rule=step_rule)
        except VolumelabError as exc:
            axes[0][j].set_title(f"{parametrization}: {exc}", fontsize=7)
            continue
        for row, key, word in ((0, "size", "mean |a_j| after 3 steps"), (1, "change", "mean |a_j(3) - a_j(0)|")):
            for layer in range(check[key].shape[1]):
                slope = check[f"{key}_slope"][layer]
                axes[row][j].plot(check["widths"], np.maximum(check[key][:, layer], 1e-300), "o-", markersize=3,
                                  label=f"layer {layer + 1}{' (output)' if layer == depth - 1 else ''}: "
                                        f"slope {slope:.2f}")
            axes[row][j].set(xscale="log", yscale="log", xlabel="width", ylabel=word if j == 0 else "")
            axes[row][j].legend(fontsize=6)
        axes[0][j].set_title(f"{parametrization} ({'Adam' if step_rule == 'adam' else 'SGD'}, lr {lr:g}, "
                             f"depth {depth})", fontsize=8)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return save_figure(fig, out_stem, "Coordinate check: pre-activations and their change after 3 steps, by width "
                                      "(flat under muP)")
