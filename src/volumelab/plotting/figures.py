"""Generalization loss against the swept field: median and interquartile range over seeds.

One subplot per value of the sweep's ``panel`` field (e.g. the activation), one
curve per method in the style its registration gives, and extra rows such as a
chance level after the methods (dashed, in their registered style), as in arXiv
2506.03931's figures. Runs whose loss does not exist (a method registered with a
``no_loss`` reason, e.g. nothing accepted or a diverged run) are left out of the
median and counted on the plot: a point where some seeds have no loss is labelled
``n/N`` (seeds with a loss / seeds), and drawn with an open marker where fewer than
half have one (the verdicts call such a point inconclusive). The y axis is
logarithmic when the plotted medians span more than :data:`LOG_AXIS_SPAN`, linear
from zero otherwise.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..experiments.methods import row_kind

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "LOG_AXIS_SPAN", "draw_seed_means", "log_axis", "median_standard_error", "method_types_of", "new_figure",
    "plot_forest", "plot_sweep", "save_figure", "seed_mean_interval", "summarize",
]

AXIS_LABELS = {"width": "width $k$", "depth": "depth $d$", "measurements": "measurements $m$",
               "train": "training points $n$"}

#: The y axis is logarithmic when the largest positive median in the figure is more than
#: this many times the smallest (two orders of magnitude); otherwise it is linear from zero.
LOG_AXIS_SPAN = 100.0

#: ``sqrt(pi / 2)``: the standard error of the median of ``n`` normal values is this times
#: ``sigma / sqrt(n)``.
MEDIAN_EFFICIENCY = math.sqrt(math.pi / 2)

#: The interquartile range of a normal distribution in units of its standard deviation.
IQR_PER_SIGMA = 1.349


def method_types_of(frame: "pd.DataFrame") -> dict[str, str]:
    """``{method: method_type}`` of a results frame; without a ``method_type`` column a
    method's type is its name (as in sweep files, where ``type`` defaults to the name)."""
    if "method_type" not in frame:
        return {str(m): str(m) for m in dict.fromkeys(frame["method"])}
    return {str(m): str(t) for m, t in dict(zip(frame["method"], frame["method_type"])).items()}


def _style(method: str, method_type: str, index: int) -> dict:
    return row_kind(method_type).style_for(method, index)


def median_standard_error(losses: list[float], run_standard_errors: list[float]) -> float:
    """The standard error of the median of ``losses`` (one per seed), from their spread and the runs' own errors.

    ``SE = sqrt(pi/2) * sqrt((IQR / 1.349)^2 + mean(s_i^2)) / sqrt(n)``: the normal-theory
    standard error of a median of ``n`` values, with the seed-to-seed standard deviation
    estimated robustly from the interquartile range and the runs' own (Monte Carlo)
    standard errors ``s_i`` added in quadrature. The spread between seeds already contains
    the runs' own noise, so this counts that noise twice: it errs on the side of a larger
    error.

    Args:
        losses: The seeds' losses (only those that exist).
        run_standard_errors: Each run's standard error of its loss, in the same order;
            NaN where a run has none (a trainer's loss is exact for its run) counts as 0.

    Returns:
        The standard error, or NaN for fewer than two losses (the spread between seeds is unknown).
    """
    import numpy as np

    values = np.asarray(losses, dtype=float)
    if len(values) < 2:
        return math.nan
    q25, q75 = np.quantile(values, [0.25, 0.75])
    spread = float(q75 - q25) / IQR_PER_SIGMA
    errors = np.nan_to_num(np.asarray(run_standard_errors, dtype=float), nan=0.0)
    # Root mean square by hypot: no overflow (and no warning) for losses near float64's limit (a learning
    # rate past the stability edge leaves losses of 1e160 that have not diverged yet).
    run_rms = math.hypot(*errors) / math.sqrt(len(errors)) if len(errors) else 0.0
    return MEDIAN_EFFICIENCY * math.hypot(spread, run_rms) / math.sqrt(len(values))


def summarize(frame: "pd.DataFrame", panel: str | None = None, panel_order: list | None = None) -> "pd.DataFrame":
    """Median, its standard error, quartiles and counts of ``gen_loss`` per (panel, method, x).

    Returns:
        Columns ``panel, method, method_type, role, x, median, median_stderr, q25, q75, runs,
        with_loss, missing, median_count, seed_losses, seed_stderrs``. ``role`` is what the method's registration says
        the verdicts read it as. ``runs`` counts the runs (seeds) at the point, ``with_loss``
        those with a loss and ``missing`` those without one (NULL in the store, e.g. nothing
        accepted or a diverged run); the median and quartiles are over the ``with_loss``
        seeds only. ``median_stderr`` is :func:`median_standard_error` of those seeds' losses
        and their ``gen_loss_stderr`` (NaN with fewer than two). ``median_count`` is the
        median of the count column the method registers for reports (NaN without one).
        ``seed_losses`` maps each seed with a loss to it, ``seed_stderrs`` to that run's own
        standard error (0 where it has none).
        Panels follow ``panel_order`` (e.g. the grid's order) when given.
    """
    import pandas as pd

    data = frame.copy()
    data["panel"] = data[panel] if panel and panel in data else ""
    if "gen_loss_stderr" not in data:
        data["gen_loss_stderr"] = math.nan
    types = method_types_of(data) if len(data) else {}
    records = []
    for (panel_value, method, x), group in data.groupby(["panel", "method", "x"], sort=False, dropna=False):
        present = group[group["gen_loss"].notna()]
        losses = present["gen_loss"].astype(float)
        kind = row_kind(types.get(str(method), str(method)))
        counted = kind.count_column.column if kind.count_column is not None else None
        count = (group[counted].median() if counted in group and group[counted].notna().any()
                 else float("nan"))
        records.append({
            "panel": panel_value, "method": method, "method_type": kind.type, "role": kind.role, "x": x,
            "median": losses.median() if len(losses) else float("nan"),
            "median_stderr": median_standard_error(list(losses), list(present["gen_loss_stderr"].astype(float))),
            "q25": losses.quantile(0.25) if len(losses) else float("nan"),
            "q75": losses.quantile(0.75) if len(losses) else float("nan"),
            "runs": len(group), "with_loss": len(losses), "missing": int(group["gen_loss"].isna().sum()),
            "median_count": float(count),
            # Per-seed losses, for changes measured on the same seeds (paired) by the verdicts.
            "seed_losses": ({int(seed): float(loss) for seed, loss in zip(present["seed"], losses)}
                            if "seed" in present else {}),
            "seed_stderrs": ({int(seed): (float(error) if math.isfinite(error) else 0.0) for seed, error
                              in zip(present["seed"], present["gen_loss_stderr"].astype(float))}
                             if "seed" in present else {}),
        })
    summary = pd.DataFrame.from_records(records)
    if len(summary):
        order = {value: i for i, value in enumerate(panel_order or [])}
        summary["_order"] = [order.get(value, len(order)) for value in summary["panel"]]
        summary = summary.sort_values(["_order", "panel", "method", "x"], kind="stable")
        summary = summary.drop(columns="_order").reset_index(drop=True)
    return summary


def log_axis(summary: "pd.DataFrame") -> bool:
    """Whether the plotted medians span more than :data:`LOG_AXIS_SPAN` (then the y axis is logarithmic)."""
    medians = [value for value in summary["median"] if value > 0] if len(summary) else []
    return bool(medians) and max(medians) > LOG_AXIS_SPAN * min(medians)


#: Values above this are drawn at it on a log axis (matplotlib cannot lay out ticks up to 1e288).
PLOT_VALUE_CAP = 1e30


def plot_sweep(frame: "pd.DataFrame", *, title: str, x_name: str, panel: str | None, out_stem: Path,
               x_log: bool = False, note: str = "", panel_order: list | None = None) -> list[Path]:
    """Draw the sweep and save ``<out_stem>.png`` and ``<out_stem>.pdf``.

    Args:
        frame: Rows of one sweep (see :func:`volumelab.load_results`).
        title: Figure title.
        x_name: Short name of the swept field (axis label).
        panel: Short name of the field splitting subplots, or ``None``.
        out_stem: Output path without suffix.
        x_log: Logarithmic x axis (base 2).
        note: Extra line under the title (e.g. the quick scale's deviations).
        panel_order: Order of the panels (default: sorted).

    The y axis is logarithmic where :func:`log_axis` says so. A point where some seeds
    have no loss is labelled ``n/N`` (seeds with a loss / seeds) and has an open marker
    where fewer than half have one.

    Returns:
        The written files.
    """
    summary = summarize(frame, panel, panel_order)
    panels = list(dict.fromkeys(summary["panel"])) if len(summary) else [""]
    fig = new_figure((4.2 * len(panels), 3.6))
    axes = fig.subplots(1, len(panels), squeeze=False, sharey=False)
    types = method_types_of(frame)
    methods = list(dict.fromkeys(frame["method"]))
    methods.sort(key=lambda m: (row_kind(types[m]).extra, m))  # extra rows (e.g. chance) after the methods
    y_log = log_axis(summary)
    clipped = False
    if y_log and len(summary):
        # A finite loss of 1e288 (a run past the stability edge that stayed finite) is beyond what a log axis can
        # lay out: such values are drawn at the cap, and a note says so.
        columns = ["median", "q25", "q75"]
        clipped = bool((summary[columns] > PLOT_VALUE_CAP).any().any())
        summary = summary.assign(**{c: summary[c].clip(upper=PLOT_VALUE_CAP) for c in columns})
    counted = False  # some point is labelled n/N
    for ax, panel_value in zip(axes[0], panels):
        part = summary[summary["panel"] == panel_value]
        for index, method in enumerate(methods):
            rows = part[part["method"] == method].sort_values("x")
            if rows.empty:
                continue
            style = _style(method, types[method], index)
            x = rows["x"].to_numpy()
            ax.plot(x, rows["median"], color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                    label=style["label"], markersize=4, linewidth=1.6)
            ax.fill_between(x, rows["q25"], rows["q75"], color=style["color"], alpha=0.18, linewidth=0)
            scarce = rows[2 * rows["with_loss"] < rows["runs"]]
            if len(scarce):  # fewer than half of the seeds have a loss: an open marker
                ax.plot(scarce["x"], scarce["median"], linestyle="none", marker=style["marker"] or "o",
                        markersize=5, markerfacecolor="white", markeredgecolor=style["color"], zorder=3)
            for xi, median, with_loss, runs in zip(x, rows["median"], rows["with_loss"], rows["runs"]):
                if with_loss == runs:
                    continue
                counted = True
                if math.isnan(median):  # no seed has a loss: at the top of the panel, one line per method
                    anchor, coordinates, offset, align = (xi, 1), ("data", "axes fraction"), -3 - 8 * index, "top"
                else:  # under the point (above it may run the chance line a method nears)
                    anchor, coordinates, offset, align = (xi, median), "data", -5, "top"
                ax.annotate(f"{with_loss}/{runs}", anchor, xycoords=coordinates, xytext=(0, offset),
                            textcoords="offset points", fontsize=6, ha="center", va=align, color=style["color"])
        if x_log:
            ax.set_xscale("log", base=2)
            ticks = sorted(set(part["x"]))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        else:
            ticks = sorted(set(part["x"]))
            if len(ticks) <= 12:
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(AXIS_LABELS.get(x_name, x_name))
        ax.set_ylabel("generalization loss" + (" (log scale)" if y_log else ""))
        if y_log:
            ax.set_yscale("log")
        else:
            ax.set_ylim(bottom=0)
        if panel_value != "":
            ax.set_title(f"{panel} = {panel_value}".replace("activation = ", ""), fontsize=10)
        ax.grid(alpha=0.3, which="major")
    axes[0][0].legend(fontsize=8, frameon=False)
    import textwrap

    heading = title + ("\n" + textwrap.fill(" ".join(note.split()), width=40 * len(panels) + 20) if note else "")
    fig.suptitle(heading, fontsize=10)
    bottom = 0.0
    notes = []
    if counted:
        notes.append("n/N: seeds with a loss / seeds (where some have none); open marker: fewer than half of the "
                     "seeds have a loss (the median leaves out the others)")
    if clipped:
        notes.append(f"losses above {PLOT_VALUE_CAP:.0e} are drawn at that value")
    if notes:
        fig.text(0.01, 0.01, "; ".join(notes), fontsize=6, color="#555555")
        bottom = 0.04
    fig.tight_layout(rect=(0, bottom, 1, 1))
    return save_figure(fig, out_stem)


def new_figure(size: tuple[float, float]):
    """A matplotlib ``Figure`` that belongs to no pyplot state: drawing it never touches the
    user's backend (the library never calls ``matplotlib.use``)."""
    from matplotlib.figure import Figure

    return Figure(figsize=size)


def save_figure(fig, out_stem: Path, title: str | None = None) -> list[Path]:
    """Save ``fig`` as ``<out_stem>.png`` and ``<out_stem>.pdf`` (with ``title`` as its heading, if given)."""
    if title:
        fig.suptitle(title, fontsize=10)
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = out_stem.with_suffix(suffix)
        fig.savefig(path, dpi=150)
        paths.append(path)
    return paths


def seed_mean_interval(values, log: bool = False) -> tuple[float, float, float]:
    """``(mean, low, high)``: the mean of per-seed values and its 95% Student-t interval (geometric, over
    the logs of the positive values, where ``log``); the interval collapses to the mean below two seeds."""
    from ..evidence import effect_interval

    data = {s: (math.log(v) if log else v) for s, v in values.items()
            if v is not None and math.isfinite(v) and (v > 0 or not log)}
    effect = effect_interval(data)
    low = effect.low if math.isfinite(effect.low) else effect.estimate
    high = effect.high if math.isfinite(effect.high) else effect.estimate
    if log:
        return math.exp(effect.estimate), math.exp(low), math.exp(high)
    return effect.estimate, low, high


def draw_seed_means(ax, xs, series, *, log: bool = False, style: str = "o-", **kwargs) -> None:
    """At each x, the mean over seeds of ``series[i]`` (``{seed: value}``) with its 95% t interval as a band."""
    points = [(x, *seed_mean_interval(values, log)) for x, values in zip(xs, series) if values]
    points = [p for p in points if math.isfinite(p[1])]
    if not points:
        return
    x, mean, low, high = (list(column) for column in zip(*points))
    ax.plot(x, mean, style, markersize=4, linewidth=1.5, **kwargs)
    ax.fill_between(x, low, high, color=kwargs.get("color"), alpha=0.18, linewidth=0)


def plot_forest(verdict, out_stem: Path, title: str) -> list[Path]:
    """The per-panel effects of a study's verdict with their intervals and the claim's threshold.

    One row per judged panel (primary endpoint): the mean per-seed effect, its 95% Student-t
    interval, coloured by the decision; the claimed boundary (minimal effect, or the equivalence
    margin) as a dashed line. Panels outside the claim are drawn hollow.
    """
    colors = {"holds": "#1a7f37", "fails": "#cf222e", "inconclusive": "#9a6700"}
    rows = [p for p in verdict.panels if p.decision is not None]
    fig = new_figure((6.4, 0.9 + 0.42 * max(len(rows), 1)))
    ax = fig.subplots()
    for index, result in enumerate(reversed(rows)):
        decision = result.decision
        effect, color = decision.effect, colors.get(decision.outcome, "#555555")
        if math.isfinite(effect.estimate):
            if math.isfinite(effect.low):
                ax.plot([effect.low, effect.high], [index, index], color=color, linewidth=2)
            ax.plot([effect.estimate], [index], marker="o", color=color,
                    markerfacecolor=color if result.about else "white", markersize=6)
        ax.annotate(f"{decision.outcome} (n = {effect.n})", (1.01, index), xycoords=("axes fraction", "data"),
                    fontsize=7, va="center", color=color)
    rules = {p.decision.rule for p in rows}
    for rule in rules:
        if rule.direction == "equivalent":
            for bound in (rule.target - rule.margin, rule.target + rule.margin):
                ax.axvline(bound, color="#555555", linestyle="--", linewidth=1)
        else:
            bound = rule.minimal_effect if rule.direction == "increase" else -rule.minimal_effect
            ax.axvline(bound, color="#555555", linestyle="--", linewidth=1)
    ax.set_yticks(list(range(len(rows))), [p.panel or "(all)" for p in reversed(rows)], fontsize=7)
    ax.set_ylim(-0.7, max(len(rows), 1) - 0.3)
    endpoint = rows[0].decision.rule.endpoint if rows else "effect"
    ax.set_xlabel(f"{endpoint} (mean over seeds, 95% interval)", fontsize=8)
    ax.grid(alpha=0.3, axis="x")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return save_figure(fig, out_stem)
