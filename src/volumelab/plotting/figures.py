"""Generalization loss against the swept field: median and interquartile range over seeds.

One subplot per value of the sweep's ``panel`` field (e.g. the activation), one
curve per method (G&C, GD, ...) and the prior's chance level as a dashed line, as in
arXiv 2506.03931's figures. Runs whose loss does not exist (G&C accepted nothing,
GD diverged) are left out of the median and counted on the plot.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["METHOD_STYLES", "plot_sweep", "summarize"]

METHOD_STYLES = {
    "gnc": {"label": "G&C", "color": "#1f77b4", "marker": "o", "linestyle": "-"},
    "gd": {"label": "GD", "color": "#d62728", "marker": "s", "linestyle": "-"},
    "prior": {"label": "prior (chance)", "color": "#555555", "marker": None, "linestyle": "--"},
}
_EXTRA_COLORS = ["#2ca02c", "#9467bd", "#8c564b", "#e377c2", "#17becf"]

AXIS_LABELS = {"width": "width $k$", "depth": "depth $d$", "measurements": "measurements $m$"}


def _style(method: str, index: int) -> dict:
    if method in METHOD_STYLES:
        return METHOD_STYLES[method]
    if method.endswith("_prior"):
        return {**METHOD_STYLES["prior"], "label": method.replace("_", " ")}
    return {"label": method, "color": _EXTRA_COLORS[index % len(_EXTRA_COLORS)], "marker": "^", "linestyle": "-"}


def summarize(frame: "pd.DataFrame", panel: str | None = None, panel_order: list | None = None) -> "pd.DataFrame":
    """Median, quartiles and counts of ``gen_loss`` per (panel, method, x).

    Returns:
        Columns ``panel, method, x, median, q25, q75, runs, missing, median_accepted``;
        ``missing`` counts runs without a loss (NULL in the store). Panels follow
        ``panel_order`` (e.g. the grid's order) when given.
    """
    import pandas as pd

    data = frame.copy()
    data["panel"] = data[panel] if panel and panel in data else ""
    records = []
    for (panel_value, method, x), group in data.groupby(["panel", "method", "x"], sort=False, dropna=False):
        losses = group["gen_loss"].dropna()
        records.append({
            "panel": panel_value, "method": method, "x": x,
            "median": losses.median() if len(losses) else float("nan"),
            "q25": losses.quantile(0.25) if len(losses) else float("nan"),
            "q75": losses.quantile(0.75) if len(losses) else float("nan"),
            "runs": len(group), "missing": int(group["gen_loss"].isna().sum()),
            "median_accepted": group["accepted"].median() if group["accepted"].notna().any() else float("nan"),
        })
    summary = pd.DataFrame.from_records(records)
    if len(summary):
        order = {value: i for i, value in enumerate(panel_order or [])}
        summary["_order"] = [order.get(value, len(order)) for value in summary["panel"]]
        summary = summary.sort_values(["_order", "panel", "method", "x"], kind="stable")
        summary = summary.drop(columns="_order").reset_index(drop=True)
    return summary


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

    Returns:
        The written files.
    """
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    summary = summarize(frame, panel, panel_order)
    panels = list(dict.fromkeys(summary["panel"])) if len(summary) else [""]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.6), squeeze=False, sharey=False)
    methods = list(dict.fromkeys(frame["method"]))
    methods.sort(key=lambda m: (m.endswith("prior"), m))
    for ax, panel_value in zip(axes[0], panels):
        part = summary[summary["panel"] == panel_value]
        for index, method in enumerate(methods):
            rows = part[part["method"] == method].sort_values("x")
            if rows.empty:
                continue
            style = _style(method, index)
            x = rows["x"].to_numpy()
            ax.plot(x, rows["median"], color=style["color"], marker=style["marker"], linestyle=style["linestyle"],
                    label=style["label"], markersize=4, linewidth=1.6)
            ax.fill_between(x, rows["q25"], rows["q75"], color=style["color"], alpha=0.18, linewidth=0)
            for xi, missing, runs in zip(x, rows["missing"], rows["runs"]):
                if missing:
                    ax.annotate(f"{missing}/{runs} none", (xi, 0), xycoords=("data", "axes fraction"),
                                xytext=(0, 3), textcoords="offset points", fontsize=6, ha="center",
                                color=style["color"])
        if x_log:
            ax.set_xscale("log", base=2)
            ticks = sorted(set(part["x"]))
            ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        else:
            ticks = sorted(set(part["x"]))
            if len(ticks) <= 12:
                ax.set_xticks(ticks, [f"{t:g}" for t in ticks])
        ax.set_xlabel(AXIS_LABELS.get(x_name, x_name))
        ax.set_ylabel("generalization loss")
        ax.set_ylim(bottom=0)
        if panel_value != "":
            ax.set_title(f"{panel} = {panel_value}".replace("activation = ", ""), fontsize=10)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8, frameon=False)
    import textwrap

    heading = title + ("\n" + textwrap.fill(" ".join(note.split()), width=40 * len(panels) + 20) if note else "")
    fig.suptitle(heading, fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1))
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix in (".png", ".pdf"):
        path = out_stem.with_suffix(suffix)
        fig.savefig(path, dpi=150)
        paths.append(path)
    plt.close(fig)
    return paths
