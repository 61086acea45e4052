"""The mechanisms behind the G&C paper's two theorems (arXiv 2506.03931) and its open questions, declared
on the study mechanism (:mod:`volumelab.evidence`).

Every claim below is one :class:`~volumelab.evidence.Study` with one primary endpoint per panel, a per-seed
effect (each seed is one problem, and one stream of prior draws, at every point of the sweep), decided by
its Student-t interval over the seeds; the other quantities are secondary endpoints, reported with their
intervals, never deciding. Methods are read by role (the *sampler* G&C, its *chance* rows, the *trainer*
GD) or by method type (``prior_law``, ``collapse``), not by the config's names. The panels a study groups
are read from each run's own settings (the grid's columns, else the stored config), so a sweep that fixes
a setting outside its grid (theory-width-mean's prior mean) is labelled by it.

**theory-width** (configs ``theory-width`` and ``theory-width-mean``; x: width; panels: activation and
the prior's mean). Theorem 1's mechanism: with an anti-symmetric activation and a zero-mean i.i.d. prior,
the end-to-end ``W`` tends to an i.i.d. Gaussian matrix as width grows, so ``L_train`` and ``L_gen`` (functions
of ``W``'s projections on orthogonal subspaces) become independent under the prior, and G&C tends to chance.

* Primary endpoint: the Pearson correlation of ``L_train`` and ``L_gen`` under the prior at the largest
  width, per seed; an equivalence claim, ``0 ± LOSS_CORRELATION_MARGIN`` (0.1). Why 0.1 (from the theory,
  before any run): regressing ``L_gen`` on ``L_train`` under the prior, accepting ``L_train`` near 0 moves
  ``E[L_gen]`` by about ``rho · CV_gen / CV_train`` of chance, with the coefficients of variation of
  chi-square-like losses over 10 test and 15 training directions, ``sqrt(2/10) / sqrt(2/15) ≈ 1.2``. A
  correlation within ± 0.1 thus moves G&C by at most about 12% of chance, inside the ± 0.15 band that counts
  as chance (:data:`~volumelab.studies.figures.CHANCE_MARGIN`, the width figure's, kept from the old rule).
* Secondary (reported): at the largest width, the entries' excess kurtosis, Mardia's excess, the
  correlation of entries sharing a row and of their squares (each ``0 ± SECONDARY_MARGIN``, 0.1: the
  primary's size on each statistic's own scale; a convention, as they do not decide), the losses' mutual
  information (``0 ± 0.005`` nats, the Gaussian mutual information ``-log(1 - 0.1^2) / 2`` of correlation
  0.1), and G&C/chance (``1 ± 0.15``). The column statistics of the old rule are dropped: the column
  correlation is 0 for every zero-mean output layer by construction, and a shared random scale shows in
  the kurtosis and Mardia's excess.
* The claim is about the panels inside the theorem's assumptions (linear, tanh; prior mean 0); the others
  (leaky ReLU, ReLU, any non-zero mean) are extensions, judged and reported. theory-width-mean has only
  extension panels, so its claim's verdict is inconclusive by construction (the sweep says nothing about
  the theorem's setting); its panels say what the mechanism does outside it.

**theory-depth** (x: depth; panels: activation). Theorem 2's mechanism: the normalized prior's deep
product collapses towards rank one.

* Primary endpoint: the fall of the mean ``sigma2/sigma1`` of ``W`` from the smallest to the largest
  depth, per seed; claimed positive (the paper names no size: minimal effect 0).
* Secondary: the rise of the top singular value's share of ``||W||_F^2`` (positive); and for the linear
  product, the rate: the QR-method gap ``lambda_1 - lambda_2`` against Newman's closed form
  ``(1/2)[psi(k/2) - psi((k-1)/2)]``, as the per-seed mean over depths of the relative deviation
  ``gap / closed form - 1``, equivalent to 0 within ``± GAP_MARGIN`` (10%). The margin is justified by
  the theorem, not by a bias allowance: for Gaussian layers ``|R_t[i,i]|^2 / sigma^2`` is chi-square with
  ``k - i + 1`` degrees of freedom at every step (rotation invariance), so the QR estimator is exactly
  unbiased at every depth (:mod:`volumelab.diagnostics.lyapunov`); 10% is then a precision requirement,
  smaller than the gap's change to a neighbouring width (0.193, 0.140, 0.110 at widths 4, 5, 6), so an
  agreement identifies the product's rate. ``log(sigma1/sigma2)/D`` of ``W`` is plotted, not judged (its
  finite-depth bias is O(1/D) with no closed form for the constant).
* The claim is about the linear panel (the theorem's); tanh, leaky ReLU and ReLU are extensions. Draws
  that are exactly 0 (ReLU: every unit of a layer off) and runs with a product whose ``sigma2`` is exactly
  0 (so ``log(sigma1/sigma2)`` is infinite) are counted on the plot, not printed as warnings.

**theory-relu-width** (x: width; panel: activation). Open question: with ReLU (outside Theorem 1), does G&C
still reach chance as width grows? Primary endpoint: G&C/chance at the largest width minus 1, per seed, an
equivalence claim ``0 ± CHANCE_MARGIN`` (0.15, the width figure's band, kept from the old rule: "reaches
chance" is an equivalence, not "not below chance by 2 SE"). A G&C run that accepted nothing counts, in the
worst case, at G&C/chance = 0 (the furthest from chance a loss ratio can be below it). Secondary: the rise
of G&C/chance from the smallest to the largest width (the width figure's endpoint), and GD/chance at the
largest width below 0.5 (the width figure's). The old "floor" rule (no change over the last doubling) goes
away: the equivalence test fails exactly when the interval lies outside the band.

**theory-rank-depth** (x: depth; panels: ground-truth rank and normalization). Open question: does depth
help G&C for ground truth of rank > 1? Each panel is judged by the depth figure's declaration
(:data:`volumelab.studies.figures.DEPTH`): the per-seed fall of G&C/chance from the smallest to the largest
depth, claimed positive (minimal effect 0: the old 0.8-times bound and Spearman condition go away, as in the
figure), a flagged G&C run at chance in the worst case; reported, G&C/chance at the largest depth below 1.
The claim (depth helps at every rank with the normalized prior, Theorem 2's) is about the normalized
panels; the unnormalized ones are the ablation (extensions).

Every study needs at least 5 seeds per panel (:data:`~volumelab.evidence.MIN_SEEDS`); the packaged quick
scales run 6 or 8.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from ..evidence import Endpoint, PanelData, Rule, Study, effect_interval, panel_data, register_study
from ..plotting.figures import new_figure, save_figure
from .figures import CHANCE_MARGIN, DEPTH, TRAINER_FRACTION_MAX, WIDTH, ratio_per_seed

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "GAP_MARGIN", "LAW_STATISTICS", "LOSS_CORRELATION_MARGIN", "MUTUAL_INFORMATION_MARGIN", "SECONDARY_MARGIN",
    "THEORY_DEPTH", "THEORY_RANK_DEPTH", "THEORY_RELU_WIDTH", "THEORY_WIDTH",
]

PAPER = "arXiv 2506.03931"
#: theory-width's primary margin: corr(L_train, L_gen) under the prior within 0 ± this (module docstring).
LOSS_CORRELATION_MARGIN = 0.1
#: The margin of theory-width's reported law statistics (correlations, excess kurtosis, Mardia's excess).
SECONDARY_MARGIN = 0.1
#: The Gaussian mutual information (nats) of correlation LOSS_CORRELATION_MARGIN: -log(1 - 0.1^2) / 2.
MUTUAL_INFORMATION_MARGIN = round(-0.5 * math.log(1 - LOSS_CORRELATION_MARGIN ** 2), 4)
#: theory-depth's Newman check: the QR gap within (1 ± this) times the closed form.
GAP_MARGIN = 0.1

#: The prior-law statistics theory-width reads at the largest width, with their words and margins.
LAW_STATISTICS = {
    "loss_correlation": ("corr(L_train, L_gen) under the prior", LOSS_CORRELATION_MARGIN),
    "excess_kurtosis": ("excess kurtosis of the entries", SECONDARY_MARGIN),
    "mardia_excess": ("Mardia's excess (b2 / E_0[b2] - 1)", SECONDARY_MARGIN),
    "row_correlation": ("correlation of entries sharing a row", SECONDARY_MARGIN),
    "row_square_correlation": ("correlation of squared entries sharing a row", SECONDARY_MARGIN),
    "loss_mutual_information": ("mutual information of L_train and L_gen (nats)", MUTUAL_INFORMATION_MARGIN),
}
#: Activations inside Theorem 1's assumption (anti-symmetric).
ANTI_SYMMETRIC = ("linear", "tanh")


# ------------------------------------------------------------------ panels from each run's settings
def _setting(frame: "pd.DataFrame", column: str, path: tuple[str, ...], default) -> list:
    """Each row's ``column`` (a grid coordinate) or, where the grid lacks it, its stored config's ``path``."""
    if column in frame:
        return [default if value is None or (isinstance(value, float) and math.isnan(value)) else value
                for value in frame[column]]
    values = []
    for config in frame["config"] if "config" in frame else [None] * len(frame):
        value = config
        for key in path:
            value = value.get(key) if isinstance(value, Mapping) else None
        values.append(default if value is None else value)
    return values


def _mean_label(activation, mean) -> str:
    mean = float(mean)
    return str(activation) + (f", prior mean {mean:g}" if mean else "")


def width_panels(frame: "pd.DataFrame") -> list[str]:
    """theory-width's panel of each row: its activation, with the prior's mean where it is not 0."""
    activations = _setting(frame, "activation", ("model", "activation"), "linear")
    means = _setting(frame, "weight_mean", ("model", "weight_mean"), 0.0)
    return [_mean_label(a, m) for a, m in zip(activations, means)]


def activation_panels(frame: "pd.DataFrame") -> list[str]:
    """Each row's activation (theory-depth's and theory-relu-width's panels)."""
    return [str(a) for a in _setting(frame, "activation", ("model", "activation"), "linear")]


def rank_panels(frame: "pd.DataFrame") -> list[str]:
    """theory-rank-depth's panel of each row, as the report names a two-field panel: ``rank=2, normalize=True``."""
    ranks = _setting(frame, "rank", ("problem", "rank"), 1)
    normalized = _setting(frame, "normalize", ("model", "normalize"), False)
    return [f"rank={int(r)}, normalize={bool(n)}" for r, n in zip(ranks, normalized)]


def _inside_theorem_1(panel: str) -> bool:
    return panel in ANTI_SYMMETRIC  # a non-zero prior mean is in the label, so the label is then another


def _normalized(panel: str) -> bool:
    return panel.endswith("normalize=True")


def _linear(panel: str) -> bool:
    return panel == "linear"


# ------------------------------------------------------------------ worst cases
def _flagged_set(role: str, metric: str, value_at: Callable[[object, list], float]):
    """A worst case: every flagged run of ``role`` (a role or method type) gets ``value_at(x, xs)`` as ``metric``."""

    def worst(panel: PanelData) -> PanelData:
        method = panel.method(role)
        xs = panel.xs(method)
        frame = panel.frame.copy()
        for flagged_method, x, seed in panel.flagged:
            if flagged_method != method:
                continue
            rows = (frame["method"] == method) & (frame["x"] == x) & (frame["seed"] == seed)
            frame.loc[rows, metric] = value_at(x, xs)
        return PanelData(panel.name, frame, panel.raw, panel.flagged)

    worst.__qualname__ = f"flagged_{role}_{metric}"
    return worst


# ------------------------------------------------------------------ per-seed effects
def _largest(panel: PanelData, role: str):
    xs = panel.xs(panel.method(role))
    return xs[-1] if xs else None


def _law_at_largest(metric: str) -> Callable[[PanelData], dict[int, float]]:
    """Per seed: the prior-law statistic ``metric`` at the largest width."""

    def effect(panel: PanelData) -> dict[int, float]:
        last = _largest(panel, "prior_law")
        return {} if last is None else panel.values(panel.method("prior_law"), last, metric)

    effect.__qualname__ = f"law_at_largest_{metric}"
    return effect


def sampler_minus_chance(panel: PanelData) -> dict[int, float]:
    """Per seed: G&C/chance at the largest width, minus 1."""
    last = _largest(panel, "sampler")
    return {} if last is None else {s: r - 1.0 for s, r in ratio_per_seed(panel, last).items()}


def _collapse_change(metric: str, sign: float) -> Callable[[PanelData], dict[int, float]]:
    """Per seed: ``sign * (metric at the largest depth - metric at the smallest)`` of the collapse runs."""

    def effect(panel: PanelData) -> dict[int, float]:
        method = panel.method("collapse")
        xs = panel.xs(method)
        if len(xs) < 2:
            return {}
        first, last = panel.values(method, xs[0], metric), panel.values(method, xs[-1], metric)
        return {s: sign * (last[s] - first[s]) for s in first if s in last}

    effect.__qualname__ = f"collapse_change_{metric}"
    return effect


sigma_ratio_fall = _collapse_change("sigma2_over_sigma1", -1.0)
top_share_rise = _collapse_change("top_share", 1.0)


def _closed_gap(panel: PanelData) -> float:
    """Newman's gap for the panel's width: every linear run stores the same value."""
    values = [v for v in panel.raw.get("gap_closed_form", []) if v is not None and math.isfinite(float(v))]
    return float(values[0]) if values else math.nan


def gap_deviation(panel: PanelData) -> dict[int, float]:
    """Per seed: the mean over depths of ``gap / closed form - 1`` (linear runs only; others have no gap)."""
    method = panel.method("collapse")
    closed = _closed_gap(panel)
    if not (math.isfinite(closed) and closed > 0):
        return {}
    per_seed: dict[int, list[float]] = {}
    for x in panel.xs(method):
        for seed, gap in panel.values(method, x, "gap").items():
            per_seed.setdefault(seed, []).append(gap / closed - 1.0)
    return {s: math.fsum(v) / len(v) for s, v in per_seed.items()}


# ------------------------------------------------------------------ plots
def _panel_data(frame: "pd.DataFrame", labels: list[str], name: str) -> PanelData:
    return panel_data(frame[[label == name for label in labels]], name)


def _interval_points(xs, per_x: Callable[[object], Mapping]) -> tuple[list, list, list]:
    """``(xs, means, [lower, upper] error bars)``: the mean over seeds and its 95% t interval at each x."""
    means, lower, upper = [], [], []
    for x in xs:
        effect = effect_interval(per_x(x))
        means.append(effect.estimate)
        finite = math.isfinite(effect.low)
        lower.append(effect.estimate - effect.low if finite else 0.0)
        upper.append(effect.high - effect.estimate if finite else 0.0)
    return list(xs), means, [lower, upper]


def _finite(values: Mapping) -> dict:
    return {s: v for s, v in values.items() if math.isfinite(v)}


def _draw(ax, points, **style) -> None:
    xs, means, errors = points
    if xs:
        ax.errorbar(xs, means, yerr=errors, marker=style.pop("marker", "o"), ms=3, capsize=2, **style)


def _band(ax, target: float, margin: float) -> None:
    ax.axhline(target, color="#555555", linestyle="--", linewidth=0.8)
    ax.axhspan(target - margin, target + margin, color="#999999", alpha=0.15, linewidth=0)


def _panel_names(verdict, labels: list[str]) -> list[str]:
    names = [p.panel for p in verdict.panels] if verdict is not None else []
    return names + [n for n in dict.fromkeys(labels) if n not in names]


def plot_width(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """theory-width: each law statistic and G&C/chance against width, mean over seeds with its 95% t interval,
    one line per panel, with the equivalence band the verdict uses."""
    if frame.empty:
        return []
    labels = width_panels(frame)
    names = _panel_names(verdict, labels)
    quantities = list(LAW_STATISTICS) + ["sampler_ratio"]
    fig = new_figure((13, 8.5))
    axes = fig.subplots(2, 4).flat
    for ax, quantity in zip(axes, quantities):
        for name in names:
            panel = _panel_data(frame, labels, name)
            if quantity == "sampler_ratio":
                points = _interval_points(panel.xs(panel.method("sampler")), lambda x: ratio_per_seed(panel, x))
            else:
                law = panel.method("prior_law")
                points = _interval_points(panel.xs(law), lambda x: panel.values(law, x, quantity))
                closed = [v for v in panel.raw.get("row_correlation_closed_form", []) if v and math.isfinite(v)]
                if quantity == "row_correlation" and closed:
                    # The exact row correlation E[s(g)]^2 / E[s(g)^2] at every width (ReLU: 1/pi).
                    ax.axhline(closed[0], color="#999999", linestyle=":", linewidth=0.8)
            _draw(ax, points, label=name)
        if quantity == "sampler_ratio":
            _band(ax, 1.0, CHANCE_MARGIN)
            ax.set_ylabel("G&C loss / chance")
            ax.set_title("G&C / chance (gen. loss)", fontsize=9)
        else:
            words, margin = LAW_STATISTICS[quantity]
            _band(ax, 0.0, margin)
            ax.set_title(words + (" [primary]" if quantity == "loss_correlation" else ""), fontsize=9)
        ax.set_xscale("log")
        ax.set_xlabel("width k")
    for ax in fig.axes[len(quantities):]:  # the unused axes
        ax.set_axis_off()
    fig.axes[0].legend(fontsize=7)
    fig.text(0.01, 0.005, "Mean over seeds with its 95% Student-t interval; shaded: the equivalence margin "
             "(values at the largest width are judged).", fontsize=7)
    fig.tight_layout(rect=(0, 0.02, 1, 0.96))
    return save_figure(fig, out_stem, title)


def _count(rows: "pd.DataFrame", column: str) -> int:
    import pandas as pd

    return int(pd.to_numeric(rows[column], errors="coerce").fillna(0).sum()) if column in rows else 0


def depth_notes(frame: "pd.DataFrame", labels: list[str]) -> list[str]:
    """Counted notes of theory-depth's collapse runs, one per panel that has any: draws exactly 0 (every unit of a
    layer off) by depth, and runs with a product whose sigma2 is exactly 0.

    Such a product makes ``log(sigma1/sigma2)`` infinite, and its run stores that mean as missing (an infinite
    value is not stored): a run whose ``sigma2/sigma1`` exists but whose ``log_sigma1_over_sigma2_per_layer`` does
    not is counted here.
    """
    import numpy as np

    notes = []
    for name in dict.fromkeys(labels):
        rows = frame[[label == name for label in labels]]
        rows = rows[rows["method_type"] == "collapse"] if "method_type" in rows else rows
        zero, degenerate, runs = [], [], 0
        for depth in sorted(set(rows["x"])):
            here = rows[rows["x"] == depth]
            count = _count(here, "zero_draws")
            if count:
                zero.append(f"{depth:g}: {count} of {_count(here, 'draws')}")
            if "sigma2_over_sigma1" in here and "log_sigma1_over_sigma2_per_layer" in here:
                measured = np.isfinite(np.asarray(here["sigma2_over_sigma1"], dtype=float))
                rate = np.isfinite(np.asarray(here["log_sigma1_over_sigma2_per_layer"], dtype=float))
                count = int((measured & ~rate).sum())
                runs += int(measured.sum())
                if count:
                    degenerate.append(f"{depth:g}: {count}")
        parts = []
        if zero:
            parts.append("draws exactly 0 at depth " + ", ".join(zero))
        if degenerate:
            parts.append("runs with a product where sigma2 = 0 (log(sigma1/sigma2) infinite, left out of its "
                         "plotted mean) at depth " + ", ".join(degenerate) + f" (of {runs} runs)")
        if parts:
            notes.append(f"{name}: " + "; ".join(parts))
    return notes


def plot_depth(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """theory-depth: sigma2/sigma1 and the top share against depth per panel, and the linear product's QR gap
    against Newman's closed form, each a mean over seeds with its 95% t interval; counted notes below."""
    if frame.empty:
        return []
    labels = activation_panels(frame)
    names = _panel_names(verdict, labels)
    fig = new_figure((15, 4.8))
    axes = fig.subplots(1, 3)
    closed = math.nan
    for name in names:
        panel = _panel_data(frame, labels, name)
        method = panel.method("collapse")
        depths = panel.xs(method)
        for ax, metric in zip(axes[:2], ("sigma2_over_sigma1", "top_share")):
            _draw(ax, _interval_points(depths, lambda x: _finite(panel.values(method, x, metric))), label=name)
        gaps = {x: panel.values(method, x, "gap") for x in depths}
        if any(gaps.values()):
            closed = _closed_gap(panel)
            _draw(axes[2], _interval_points([x for x in depths if gaps[x]], lambda x: gaps[x]),
                  label=f"{name}: QR estimate of lambda1 - lambda2")
            _draw(axes[2], _interval_points(
                depths, lambda x: _finite(panel.values(method, x, "log_sigma1_over_sigma2_per_layer"))),
                marker="s", linestyle=":", label=f"{name}: log(sigma1/sigma2)/D of W (not judged)")
    if math.isfinite(closed):
        axes[2].axhline(closed, color="#555555", linestyle="--", linewidth=0.8, label="Newman's closed form")
        axes[2].axhspan(closed * (1 - GAP_MARGIN), closed * (1 + GAP_MARGIN), color="#999999", alpha=0.15,
                        linewidth=0)
    axes[0].set_yscale("log")
    for ax, (label, ylabel) in zip(axes, (("sigma2 / sigma1 of W [primary: its fall]", "sigma2 / sigma1"),
                                          ("top singular value's share of ||W||_F^2", "share"),
                                          ("Lyapunov gap of the linear product", "lambda1 - lambda2"))):
        ax.set_xlabel("depth d")
        ax.set_ylabel(ylabel)
        ax.set_title(label, fontsize=9)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    notes = depth_notes(frame, labels)
    notes = notes or ["No draw exactly 0 and no product with sigma2 = 0."]
    fig.text(0.01, 0.01, "\n".join(["Mean over seeds with its 95% Student-t interval."] + notes), fontsize=7,
             wrap=True)
    fig.tight_layout(rect=(0, 0.03 + 0.035 * len(notes), 1, 0.95))
    return save_figure(fig, out_stem, title)


def plot_relu_width(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """theory-relu-width: G&C/chance and GD/chance against width, mean over seeds with its 95% t interval, with
    the band that counts as chance."""
    if frame.empty:
        return []
    labels = activation_panels(frame)
    fig = new_figure((7.5, 4.8))
    ax = fig.subplots()
    for name in _panel_names(verdict, labels):
        panel = _panel_data(frame, labels, name)
        for role, style, who in (("sampler", "-", "G&C"), ("trainer", "--", "GD")):
            xs = panel.xs(panel.method(role))
            _draw(ax, _interval_points(xs, lambda x: ratio_per_seed(panel, x, role)), linestyle=style,
                  marker="o" if role == "sampler" else "s", label=f"{who} / chance, {name}")
    _band(ax, 1.0, CHANCE_MARGIN)
    ax.axhline(TRAINER_FRACTION_MAX, color="#999999", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("width k")
    ax.set_ylabel("gen. loss / chance (mean over seeds, 95% interval)")
    ax.legend(fontsize=7)
    fig.tight_layout(rect=(0, 0, 1, 0.94))
    return save_figure(fig, out_stem, title)


def plot_rank_depth(verdict, frame: "pd.DataFrame", out_stem: Path, title: str) -> list[Path]:
    """theory-rank-depth: G&C/chance against depth, one subplot per rank (shared y), normalized prior solid and
    unnormalized dashed, mean over seeds with its 95% t interval."""
    if frame.empty:
        return []
    labels = rank_panels(frame)
    names = _panel_names(verdict, labels)
    ranks = list(dict.fromkeys(name.split(",")[0] for name in names))
    fig = new_figure((4.2 * max(len(ranks), 1), 4.5))
    axes = fig.subplots(1, max(len(ranks), 1), sharey=True, squeeze=False)[0]
    for ax, rank in zip(axes, ranks):
        for name in names:
            if name.split(",")[0] != rank:
                continue
            panel = _panel_data(frame, labels, name)
            normalized = _normalized(name)
            xs = panel.xs(panel.method("sampler"))
            _draw(ax, _interval_points(xs, lambda x: ratio_per_seed(panel, x)), linestyle="-" if normalized else "--",
                  marker="o" if normalized else "s",
                  label="normalized prior (the claim)" if normalized else "not normalized (ablation)")
        ax.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
        ax.set_title(rank.replace("=", " "), fontsize=9)
        ax.set_xlabel("depth d")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    axes[0].set_ylabel("G&C loss / chance (mean over seeds, 95% interval)")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    return save_figure(fig, out_stem, title)


def _quiet(plot):
    """``plot`` with NumPy's expected warnings (empty or infinite values) kept off the terminal."""

    def quiet(*args, **kwargs):
        import numpy as np

        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return plot(*args, **kwargs)

    quiet.__qualname__ = plot.__qualname__
    quiet.__doc__ = plot.__doc__
    return quiet


# ------------------------------------------------------------------ the declarations
def _law_endpoint(metric: str) -> Endpoint:
    words, margin = LAW_STATISTICS[metric]
    # A flagged (diverged) prior-law run: the statistic at its least favourable value, a full correlation of 1.
    return Endpoint(Rule(f"{words} at the largest width", "equivalent", margin=margin), _law_at_largest(metric),
                    worst_case=_flagged_set("prior_law", metric, lambda x, xs: 1.0))


#: A G&C run that accepted nothing, in the worst case for "reaches chance": G&C/chance = 0.
_SAMPLER_AT_ZERO = _flagged_set("sampler", "gen_loss", lambda x, xs: 0.0)

THEORY_WIDTH = register_study(Study(
    name="theory-width",
    paper=PAPER,
    claim="Theorem 1's mechanism: with an anti-symmetric activation and a zero-mean i.i.d. prior, the end-to-end "
          "W tends to an i.i.d. Gaussian matrix as width grows, so L_train and L_gen become independent under the "
          "prior (and G&C tends to chance)",
    endpoints={"loss_correlation": _law_endpoint("loss_correlation")},
    about=_inside_theorem_1,
    secondary={
        **{metric: _law_endpoint(metric) for metric in LAW_STATISTICS if metric != "loss_correlation"},
        "sampler_at_chance": Endpoint(
            Rule("G&C/chance at the largest width, minus 1", "equivalent", margin=CHANCE_MARGIN),
            sampler_minus_chance, worst_case=_SAMPLER_AT_ZERO),
    },
    parameters={"anti_symmetric": ANTI_SYMMETRIC},
    notes=("Each statistic is one run's over its prior draws at the largest width; the interval is over seeds "
           "(their spread holds each run's own Monte Carlo noise). Panels outside Theorem 1 (leaky ReLU, ReLU, "
           "a non-zero prior mean) are extensions.",),
    plot=_quiet(plot_width),
    panels=width_panels,
))

THEORY_DEPTH = register_study(Study(
    name="theory-depth",
    paper=PAPER,
    claim="Theorem 2's mechanism: the normalized prior's deep product collapses towards rank one as depth grows "
          "(linear layers, Gaussian prior), at the rate of the Lyapunov gap of Gaussian products",
    # A flagged collapse run (diverged, or every draw exactly 0): in the worst case its seed shows no collapse
    # (effect 0). The sweep holds collapse runs only, so a flagged seed is one of them.
    endpoints={"fall": Endpoint(
        Rule("fall of sigma2/sigma1 of W from the smallest to the largest depth", "increase"), sigma_ratio_fall,
        worst_effect=0.0)},
    about=_linear,
    secondary={
        "top_share": Endpoint(
            Rule("rise of the top singular value's share of ||W||_F^2 from the smallest to the largest depth",
                 "increase"), top_share_rise, worst_effect=0.0),
        "newman": Endpoint(
            Rule("QR gap lambda1 - lambda2 over Newman's closed form, minus 1 (mean over depths; linear only)",
                 "equivalent", margin=GAP_MARGIN), gap_deviation,
            worst_case=_flagged_set("collapse", "gap", lambda x, xs: 0.0)),
    },
    notes=("sigma2/sigma1 and the top share are each run's means over its prior draws; the interval is over "
           "seeds. The QR estimator of the gap is unbiased at every depth for Gaussian layers, so the Newman "
           "margin is a precision requirement, not a bias allowance. Nonlinear panels are extensions.",),
    plot=_quiet(plot_depth),
    panels=activation_panels,
))

THEORY_RELU_WIDTH = register_study(Study(
    name="theory-relu-width",
    paper=PAPER,
    claim="open question (outside Theorem 1): with ReLU, G&C still reaches chance (the prior's loss) as width grows",
    endpoints={"at_chance": Endpoint(
        Rule("G&C/chance at the largest width, minus 1", "equivalent", margin=CHANCE_MARGIN), sampler_minus_chance,
        worst_case=_SAMPLER_AT_ZERO)},
    secondary={"rise": WIDTH.endpoints["rise"], "trainer_low": WIDTH.secondary["trainer_low"]},
    notes=("r = G&C/chance per seed, chance the prior's loss on the same problem at the same width. \"Reaches "
           "chance\" is an equivalence: the interval of r - 1 must lie inside the band.",),
    plot=_quiet(plot_relu_width),
    panels=activation_panels,
))

THEORY_RANK_DEPTH = register_study(Study(
    name="theory-rank-depth",
    paper=PAPER,
    claim="open question: depth makes G&C's generalization better relative to chance for ground truth of every "
          "rank (1, 2, 3), with the normalized prior of Theorem 2",
    endpoints=dict(DEPTH.endpoints),
    about=_normalized,
    secondary=dict(DEPTH.secondary),
    notes=("Each panel is judged by the depth figure's rule (volumelab.studies.figures.DEPTH). The unnormalized "
           "panels are the ablation (extensions).",),
    plot=_quiet(plot_rank_depth),
    panels=rank_panels,
))
