"""Measured verdicts on the mechanisms behind the G&C paper's two theorems (arXiv 2506.03931) and on
the open questions it leaves.

A sweep whose ``claim`` is one of :data:`STUDY_CLAIMS` is judged here from its runs. Methods are
read by name, as the theory configs name them: ``law`` (:class:`~volumelab.diagnostics.PriorLaw`),
``collapse`` (:class:`~volumelab.diagnostics.ProductCollapse`), ``gnc`` with its ``prior`` rows and
``gd``. The rules were written before the studies' final runs; a mean "is zero" when it lies within
:data:`ZERO_STANDARD_ERRORS` of 0 and a claimed change counts only beyond
:data:`~volumelab.plotting.report.verdicts.CHANGE_STANDARD_ERRORS` standard errors. Means and SEs
of a diagnostic are over seeds (each seed one run of many prior draws), the SE pooled from the
runs' own (:func:`_seed_stat`).

* ``theory-width`` (x: width; panels: activation and the prior's mean). Theorem 1: with an
  anti-symmetric activation and an i.i.d. zero-mean prior, ``W`` tends to an i.i.d. Gaussian
  matrix, ``L_train`` and ``L_gen`` become independent and G&C tends to chance. In a panel, at
  the largest width: the excess kurtosis, Mardia's excess, the row and column correlations of the
  entries and of their squares are zero; the losses' correlation and mutual information are zero;
  and G&C/prior (medians) is at least ``1 - WIDTH_GAP_MAX``. It holds when all hold, fails when
  a statistic differs from 0 by more than ZERO_STANDARD_ERRORS SE or G&C/prior is below the band
  by more than 2 SE, and is inconclusive otherwise. The claim is judged on the panels inside the
  theorem's assumptions (linear, tanh; zero mean); the others are judged by the same rule and
  reported as measurements of where the limit differs.
* ``theory-depth`` (x: depth; panels: activation). Theorem 2's mechanism: deep products collapse
  towards rank one. In a panel: the mean sigma2/sigma1 falls from the smallest to the largest
  depth and the top singular value's share of ``||W||_F^2`` rises, each by more than 2 SE; for
  the linear product (the theorem's), the QR-method gap ``lambda_1 - lambda_2`` lies within
  ZERO_STANDARD_ERRORS SE of Newman's closed form at every depth. The claim holds when every panel
  of the theorem's setting (linear) holds; the nonlinear panels are measurements.
* ``theory-relu-width`` (x: width; panels: activation). Open question: with ReLU, does G&C still
  deteriorate to chance as width grows, or does it keep a floor? With ``r`` = G&C/prior (medians):
  it deteriorates to chance (holds) when ``r`` at the largest width is at least
  ``1 - WIDTH_GAP_MAX`` and rose from the smallest width by more than 2 SE; it has a floor (fails)
  when ``r`` at the largest width is below ``1 - WIDTH_GAP_MAX`` by more than 2 SE and its change
  over the last doubling range (the two largest widths) is within 2 SE of 0; inconclusive
  otherwise (still moving, or not resolved).
* ``theory-rank-depth`` (x: depth; panels: ground-truth rank and normalization). Open question:
  does depth help G&C for ground truth of rank > 1? Each (rank, normalization) is judged by the
  paper's depth rule (:func:`volumelab.plotting.report.verdicts.judge`, "depth"): G&C/prior falls
  with depth. The claim (depth helps at every rank with the normalized prior) holds when every
  normalized panel holds; the unnormalized panels are the ablation, reported next to them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING

from ..plotting.report.verdicts import (
    CHANGE_STANDARD_ERRORS,
    WIDTH_GAP_MAX,
    PanelVerdict,
    Verdict,
    _points,
    _ratio_text,
    judge,
    ratio_and_stderr,
    read_roles,
)
from .mlp import _isnan
from .ngd import _combine, _mean_and_stderr, save_figure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LAW_STATISTICS", "STUDY_CLAIMS", "ZERO_STANDARD_ERRORS", "judge_study", "study_rule"]

#: A mean "is zero" when it lies within this many standard errors of 0 (and differs from 0 beyond it).
ZERO_STANDARD_ERRORS = 3.0
S = CHANGE_STANDARD_ERRORS
LAW, COLLAPSE = "law", "collapse"

#: The Gaussian-limit and independence statistics of theory-width, each 0 in Theorem 1's limit.
LAW_STATISTICS = {
    "excess_kurtosis": "excess kurtosis",
    "mardia_excess": "Mardia excess",
    "row_correlation": "row corr.",
    "col_correlation": "column corr.",
    "row_square_correlation": "row corr. of squares",
    "col_square_correlation": "column corr. of squares",
    "loss_correlation": "corr(L_train, L_gen)",
    "loss_mutual_information": "MI(L_train; L_gen) [nats]",
}
_LOSS_STATISTICS = ("loss_correlation", "loss_mutual_information")

_RULES = {
    "theory-width": (
        "Per panel (activation, prior mean), at the largest width, with means over seeds and SEs pooled from the "
        "runs' own (batch means over each run's prior draws): the excess "
        "kurtosis of the entries, Mardia's multivariate excess, the mean correlation of entries sharing a row and "
        "a column and of their squares, and the Pearson correlation and KSG mutual information of L_train and "
        f"L_gen under the prior are each zero (within {ZERO_STANDARD_ERRORS:g} SE); and G&C/prior (medians over "
        f"seeds) is at least 1 - {WIDTH_GAP_MAX:g}. The panel holds when all hold; it fails when a statistic differs "
        f"from 0 by more than {ZERO_STANDARD_ERRORS:g} SE or G&C/prior is below 1 - {WIDTH_GAP_MAX:g} by more than "
        f"{S:g} SE; otherwise inconclusive. The claim (Theorem 1) is judged on the panels inside its assumptions "
        "(anti-symmetric activation: linear, tanh; zero-mean prior): holds when each of them holds. The other "
        "panels are judged by the same rule and reported as measurements."),
    "theory-depth": (
        "Per panel (activation), with means over seeds and SEs pooled from the runs' own (over each run's prior "
        "draws): sigma2/sigma1 of the "
        "end-to-end W falls from the smallest to the largest depth, and the top singular value's share of "
        f"||W||_F^2 rises, each by more than {S:g} SE; for the linear product, the QR-method gap lambda_1 - lambda_2 "
        f"of width x width Gaussian layers (variance 1/width) lies within {ZERO_STANDARD_ERRORS:g} SE of Newman's "
        "closed form (1/2)[psi(k/2) - psi((k-1)/2)] at every depth. A panel holds when all hold and fails when a "
        "change has the wrong sign or the gap differs; the claim (Theorem 2's mechanism) holds when the linear "
        "panel holds. Nonlinear panels are measurements."),
    "theory-relu-width": (
        "Per panel (activation), with r = G&C/prior (medians over seeds, SE by first-order propagation): G&C "
        f"deteriorates to chance (holds) when r at the largest width is at least 1 - {WIDTH_GAP_MAX:g} and r rose "
        f"from the smallest width by more than {S:g} SE; it keeps a floor (fails) when r at the largest width is "
        f"below 1 - {WIDTH_GAP_MAX:g} by more than {S:g} SE and r changed by less than {S:g} SE between the two "
        "largest widths; otherwise inconclusive. GD/prior is reported next to it. The claim (G&C tends to chance "
        "with width for ReLU too) holds when every panel holds."),
    "theory-rank-depth": (
        "Per panel (ground-truth rank, normalization): the paper's depth rule (G&C/prior falls from the smallest "
        "to the largest depth to at most 0.8 times its value, Spearman rho <= -0.5, the fall beyond "
        f"{S:g} SE). The claim (depth helps G&C at every rank, with the normalized prior as in Theorem 2) holds "
        "when every normalized panel holds; the unnormalized panels are the ablation, reported next to them."),
}

_STATEMENTS = {
    "theory-width": ("Theorem 1's mechanism: as width grows, W tends to an i.i.d. Gaussian matrix, L_train and "
                     "L_gen become independent under the prior, and G&C tends to chance (anti-symmetric "
                     "activation, zero-mean prior)"),
    "theory-depth": ("Theorem 2's mechanism: deep random products collapse towards rank one, at the rate of the "
                     "Lyapunov gap of Gaussian products"),
    "theory-relu-width": "with ReLU (outside Theorem 1), G&C still deteriorates to chance as width grows",
    "theory-rank-depth": "depth makes G&C generalize better for ground truth of rank 1, 2 and 3 (normalized prior)",
}

STUDY_CLAIMS = tuple(_RULES)


def study_rule(claim: str) -> str:
    """The rule of a study's verdict, in words (printed in its report)."""
    return _RULES[claim]


# ------------------------------------------------------------------ helpers
def _seed_stat(rows, column: str) -> tuple[float, float, int]:
    """Mean over seeds of ``column``, its SE and the seeds' count.

    Where the runs report their own SE (``<column>_stderr``, from many prior draws each), the SE
    is pooled from them, ``sqrt(sum se_i^2) / n``: it has the draws' degrees of freedom, where the
    spread of a few seeds' values has only ``n - 1``. Otherwise it is the seeds' spread.
    """
    if column not in rows:
        return math.nan, math.nan, 0
    errors = f"{column}_stderr"
    pairs = [(float(v), float(e) if errors in rows else math.nan)
             for v, e in zip(rows[column], rows[errors] if errors in rows else rows[column]) if not _isnan(v)]
    if pairs and errors in rows and all(math.isfinite(e) for _, e in pairs):
        mean = sum(v for v, _ in pairs) / len(pairs)
        return mean, math.sqrt(sum(e * e for _, e in pairs)) / len(pairs), len(pairs)
    return _mean_and_stderr([v for v, _ in pairs])


def _zero_outcome(mean: float, stderr: float, n: int) -> str:
    if n < 1 or not math.isfinite(stderr):
        return "inconclusive"
    return "holds" if abs(mean) <= ZERO_STANDARD_ERRORS * stderr else "fails"


def _panel_keys(frame, fields: list[str]) -> list[tuple]:
    present = [f for f in fields if f in frame]
    if not present:
        return [()]
    return list(dict.fromkeys(tuple(row) for row in frame[present].itertuples(index=False, name=None)))


def _select(frame, fields: list[str], key: tuple):
    present = [f for f in fields if f in frame]
    mask = frame.index == frame.index
    for field, value in zip(present, key):
        mask &= frame[field] == value
    return frame[mask]


def _width_panel_name(activation, mean) -> str:
    name = str(activation) if activation is not None else "sweep"
    return name + (f", prior mean {float(mean):g}" if mean is not None and not _isnan(mean) and float(mean) else "")


def _inside_width_theorem(activation, mean) -> bool:
    return str(activation) in ("linear", "tanh") and (mean is None or _isnan(mean) or float(mean) == 0.0)


def _ratio_points(frame):
    """``({x: (r, se)}, {x: (gd/prior, se)})`` from the sweep's G&C, prior and GD rows of one panel."""
    from ..plotting.figures import summarize

    summary = summarize(frame)
    roles = read_roles(summary)
    if roles.sampler is None or roles.chance is None:
        return {}, {}
    sampler, chance = _points(summary, "", roles.sampler), _points(summary, "", roles.chance)
    trainer = _points(summary, "", roles.trainer) if roles.trainer is not None else {}
    ratios = {x: ratio_and_stderr(sampler[x], chance[x]) for x in sorted(sampler) if x in chance
              and sampler[x].with_loss > 0}
    trainer_ratios = {x: ratio_and_stderr(trainer[x], chance[x]) for x in sorted(trainer) if x in chance
                      and trainer[x].with_loss > 0}
    return ratios, trainer_ratios


def _verdict(claim: str, judged: list[str], panels: list[PanelVerdict], empty: str) -> Verdict:
    if not panels:
        panels.append(PanelVerdict("", "inconclusive", empty))
    return Verdict(claim, _RULES[claim], _combine(judged) if judged else "inconclusive", panels,
                   statement=_STATEMENTS[claim])


# ------------------------------------------------------------------ theory-width
def _with_weight_mean(frame):
    """The frame with a ``weight_mean`` column: the grid's, else each run's model setting (0 where unset)."""
    if "weight_mean" in frame or frame.empty:
        return frame
    frame = frame.copy()
    frame["weight_mean"] = [float(((config or {}).get("model") or {}).get("weight_mean", 0.0))
                            if isinstance(config, dict) else 0.0 for config in frame.get("config", [None] * len(frame))]
    return frame


def _judge_width(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "theory-width"
    frame = _with_weight_mean(frame)
    fields = ["activation", "weight_mean"]
    panels, judged = [], []
    for key in _panel_keys(frame, fields):
        part = _select(frame, fields, key)
        activation = key[0] if key else None
        mean = key[1] if len(key) > 1 else None
        law = part[part["method"] == LAW]
        widths = sorted(set(law["x"])) if len(law) else sorted(set(part["x"]))
        if not widths:
            continue
        last = widths[-1]
        at_last = law[law["x"] == last]
        outcomes, texts = [], []
        for column, label in LAW_STATISTICS.items():
            m, se, n = _seed_stat(at_last, column)
            first_m = _seed_stat(law[law["x"] == widths[0]], column)[0]
            outcomes.append(_zero_outcome(m, se, n))
            texts.append(f"{label} {first_m:.3g} -> {m:.3g} ± {se:.2g}")
        ratios, _ = _ratio_points(part[part["method"] != LAW])
        if last in ratios:
            r, se = ratios[last]
            gap = ("holds" if r >= 1 - WIDTH_GAP_MAX else
                   "fails" if (1 - WIDTH_GAP_MAX) - r > S * se else "inconclusive")
            first_r = ratios[min(ratios)][0]
            texts.append(f"G&C/prior {_ratio_text(first_r)} -> {_ratio_text(r)} ± {se:.2g}")
        else:
            gap = "inconclusive"
            texts.append("G&C accepted nothing at the largest width" + (
                f" (G&C/prior {', '.join(f'{_ratio_text(r)} at width {x:g}' for x, (r, _) in ratios.items())})"
                if ratios else ""))
        outcomes.append(gap)
        outcome = _combine(outcomes)
        inside = _inside_width_theorem(activation, mean)
        if inside:
            judged.append(outcome)
        name = _width_panel_name(activation, mean) + ("" if inside else " (outside Theorem 1's assumptions)")
        closed = _seed_stat(at_last, "row_correlation_closed_form")[0]
        if math.isfinite(closed) and closed:
            texts.append(f"row corr. closed form E[s(g)]^2/E[s(g)^2] = {closed:.4f} at every width (the limit "
                         "is Gaussian but its entries are not independent)")
        variance = _seed_stat(at_last, "entry_variance")
        texts.append(f"entry variance x rows {variance[0] * _rows(part):.4g} ± {variance[1] * _rows(part):.2g}")
        panels.append(PanelVerdict(name, outcome, f"width {widths[0]:g} -> {last:g}: " + "; ".join(texts)))
    if panels and not judged:
        # Every panel lies outside the theorem (e.g. theory-width-mean): the verdict is on the same mechanism
        # measured there, and says so.
        outcomes = [p.outcome for p in panels]
        outcome = "holds" if all(o == "holds" for o in outcomes) else (
            "fails" if all(o == "fails" for o in outcomes) else "partly holds")
        return Verdict(claim, _RULES[claim], outcome, panels, statement=(
            "outside Theorem 1's assumptions (every panel here), W still tends to an i.i.d. Gaussian matrix, "
            "L_train and L_gen become independent under the prior, and G&C tends to chance"))
    return _verdict(claim, judged, panels, "no prior-law runs")


def _rows(part) -> float:
    """The problem's rows, from a run's stored config (1 where unknown)."""
    for config in part.get("config", []):
        try:
            return float(config["problem"]["rows"])
        except (KeyError, TypeError):
            continue
    return 1.0


# ------------------------------------------------------------------ theory-depth
def _judge_depth(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "theory-depth"
    rows = frame[frame["method"] == COLLAPSE]
    panels, judged = [], []
    for key in _panel_keys(rows, ["activation"]):
        part = _select(rows, ["activation"], key)
        activation = key[0] if key else "sweep"
        depths = sorted(set(part["x"]))
        if len(depths) < 2:
            panels.append(PanelVerdict(str(activation), "inconclusive", "fewer than two depths"))
            continue
        first, last = depths[0], depths[-1]
        outcomes, texts = [], []
        for column, label, sign in (("sigma2_over_sigma1", "sigma2/sigma1", -1), ("top_share", "top share", 1)):
            a, a_se, _ = _seed_stat(part[part["x"] == first], column)
            b, b_se, n = _seed_stat(part[part["x"] == last], column)
            change, change_se = sign * (b - a), math.hypot(a_se, b_se)
            outcomes.append("holds" if change > S * change_se else "fails" if change < 0 else "inconclusive")
            texts.append(f"{label} {a:.3g} -> {b:.3g} (change {change:+.3g} ± {change_se:.2g})")
        rank = {d: _seed_stat(part[part["x"] == d], "effective_rank")[0] for d in (first, last)}
        texts.append(f"effective rank {rank[first]:.3g} -> {rank[last]:.3g}")
        at_last = part[part["x"] == last]
        zero = int(at_last["zero_draws"].fillna(0).sum()) if "zero_draws" in at_last else 0
        if zero:
            total = int(at_last["draws"].fillna(0).sum()) if "draws" in at_last else 0
            texts.append(f"{zero} of {total} draws at depth {last:g} are exactly 0 (every unit of a layer off); "
                         "the statistics are over the others")
        if str(activation) == "linear" and "gap" in part:
            gaps = []
            for depth in depths:
                here = part[part["x"] == depth]
                m, se, n = _seed_stat(here, "gap")
                closed = _seed_stat(here, "gap_closed_form")[0]
                outcomes.append(_zero_outcome(m - closed, se, n))
                gaps.append(f"{depth:g}: {m:.4f} ± {se:.2g}")
            rate = _seed_stat(part[part["x"] == last], "log_sigma1_over_sigma2_per_layer")[0]
            texts.append(f"QR gap lambda1 - lambda2 by depth {', '.join(gaps)} vs closed form {closed:.4f}; "
                         f"log(sigma1/sigma2)/D of W at depth {last:g}: {rate:.4f} (tends to the gap as 1/D)")
        outcome = _combine(outcomes)
        if str(activation) == "linear":
            judged.append(outcome)
        name = str(activation) + ("" if str(activation) == "linear" else " (outside Theorem 2's assumptions)")
        panels.append(PanelVerdict(name, outcome, f"depth {first:g} -> {last:g}: " + "; ".join(texts)))
    return _verdict(claim, judged, panels, "no collapse runs")


# ------------------------------------------------------------------ theory-relu-width
def _judge_relu_width(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "theory-relu-width"
    panels, judged = [], []
    for key in _panel_keys(frame, ["activation"]):
        part = _select(frame, ["activation"], key)
        activation = key[0] if key else "sweep"
        ratios, trainer_ratios = _ratio_points(part)
        widths = sorted(ratios)
        if len(widths) < 2:
            panels.append(PanelVerdict(str(activation), "inconclusive", "G&C accepted at fewer than two widths"))
            judged.append("inconclusive")
            continue
        (r0, se0), (r1, se1), (rp, sep) = ratios[widths[0]], ratios[widths[-1]], ratios[widths[-2]]
        band = 1 - WIDTH_GAP_MAX
        if r1 >= band and r1 - r0 > S * math.hypot(se0, se1):
            outcome, finding = "holds", "deteriorates to chance"
        elif band - r1 > S * se1 and abs(r1 - rp) <= S * math.hypot(se1, sep):
            outcome, finding = "fails", "keeps a floor above chance"
        else:
            outcome, finding = "inconclusive", "not resolved (still moving or within the SEs)"
        judged.append(outcome)
        worst = max(trainer_ratios.values(), key=lambda v: v[0]) if trainer_ratios else (math.nan, math.nan)
        panels.append(PanelVerdict(str(activation), outcome, (
            "G&C/prior " + ", ".join(f"{_ratio_text(ratios[w][0])} ± {ratios[w][1]:.2g} (width {w:g})" for w in widths)
            + f": {finding}; GD/prior at most {_ratio_text(worst[0])} ± {worst[1]:.2g}")))
    return _verdict(claim, judged, panels, "no G&C runs")


# ------------------------------------------------------------------ theory-rank-depth
def _judge_rank_depth(frame, out_dir: Path, coords: list[str]) -> Verdict:
    from ..plotting.figures import summarize

    claim = "theory-rank-depth"
    fields = ["rank", "normalize"]
    panels, judged = [], []
    for key in _panel_keys(frame, fields):
        part = _select(frame, fields, key)
        rank = key[0] if key else None
        normalized = bool(key[1]) if len(key) > 1 else True
        verdict = judge(summarize(part), "depth", normalized=normalized)
        if verdict is None:
            continue
        panel = verdict.panels[0]
        if normalized:
            judged.append(panel.outcome)
        name = f"rank {rank}, {'normalized' if normalized else 'not normalized (ablation)'}"
        panels.append(PanelVerdict(name, panel.outcome, panel.detail))
    return _verdict(claim, judged, panels, "no G&C runs")


_JUDGES = {"theory-width": _judge_width, "theory-depth": _judge_depth, "theory-relu-width": _judge_relu_width,
           "theory-rank-depth": _judge_rank_depth}


# ------------------------------------------------------------------ plots
def _plot_width(frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    frame = _with_weight_mean(frame)
    law = frame[frame["method"] == LAW]
    if law.empty:
        return []
    keys = _panel_keys(law, ["activation", "weight_mean"])
    columns = list(LAW_STATISTICS) + ["ratio"]
    fig, axes = plt.subplots(3, 3, figsize=(13, 10))
    for ax, column in zip(axes.flat, columns):
        for key in keys:
            part = _select(frame, ["activation", "weight_mean"], key)
            label = _width_panel_name(key[0] if key else None, key[1] if len(key) > 1 else None)
            if column == "ratio":
                ratios, _ = _ratio_points(part[part["method"] != LAW])
                xs = sorted(ratios)
                ys, es = [ratios[x][0] for x in xs], [ratios[x][1] for x in xs]
            else:
                rows = part[part["method"] == LAW]
                xs = sorted(set(rows["x"]))
                stats = [_seed_stat(rows[rows["x"] == x], column) for x in xs]
                ys, es = [s[0] for s in stats], [s[1] for s in stats]
            if xs:
                ax.errorbar(xs, ys, yerr=[e if math.isfinite(e) else 0 for e in es], marker="o", ms=3, capsize=2,
                            label=label)
        ax.axhline(1.0 if column == "ratio" else 0.0, color="#555555", linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("width $k$")
        ax.set_title("G&C / prior (gen. loss)" if column == "ratio" else LAW_STATISTICS[column], fontsize=9)
    axes.flat[0].legend(fontsize=7)
    return save_figure(fig, out_stem, title)


def _plot_depth(frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    rows = frame[frame["method"] == COLLAPSE]
    if rows.empty:
        return []
    fig, axes = plt.subplots(1, 4, figsize=(16, 4))
    for key in _panel_keys(rows, ["activation"]):
        part = _select(rows, ["activation"], key)
        depths = sorted(set(part["x"]))
        for ax, column in zip(axes, ("sigma2_over_sigma1", "top_share", "effective_rank")):
            stats = [_seed_stat(part[part["x"] == d], column) for d in depths]
            ax.errorbar(depths, [s[0] for s in stats], yerr=[s[1] if math.isfinite(s[1]) else 0 for s in stats],
                        marker="o", ms=3, capsize=2, label=str(key[0]) if key else "")
        if "gap" in part and part["gap"].notna().any():
            stats = [_seed_stat(part[part["x"] == d], "gap") for d in depths]
            axes[3].errorbar(depths, [s[0] for s in stats], yerr=[s[1] for s in stats], marker="o", ms=3,
                             capsize=2, label=f"{key[0] if key else ''}: QR estimate")
            closed = _seed_stat(part, "gap_closed_form")[0]
            axes[3].axhline(closed, color="#555555", linestyle="--", label="Newman's closed form")
            rate = [_seed_stat(part[part["x"] == d], "log_sigma1_over_sigma2_per_layer")[0] for d in depths]
            axes[3].plot(depths, rate, "s:", ms=3, label="log(s1/s2)/D of W")
    for ax, name in zip(axes, ("sigma2 / sigma1 (mean over draws)", "top share of ||W||_F^2", "effective rank",
                               "lambda1 - lambda2 (linear)")):
        ax.set_xlabel("depth $d$")
        ax.set_title(name, fontsize=9)
        ax.legend(fontsize=7)
    axes[0].set_yscale("log")
    return save_figure(fig, out_stem, title)


def _plot_relu_width(frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key in _panel_keys(frame, ["activation"]):
        part = _select(frame, ["activation"], key)
        ratios, trainer_ratios = _ratio_points(part)
        for points, style, who in ((ratios, "o-", "G&C"), (trainer_ratios, "s--", "GD")):
            xs = sorted(points)
            if xs:
                ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], fmt=style, ms=3,
                            capsize=2, label=f"{who} / prior, {key[0] if key else ''}")
    ax.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
    ax.axhline(1 - WIDTH_GAP_MAX, color="#999999", linestyle=":", linewidth=0.8)
    ax.set_xscale("log")
    ax.set_xlabel("width $k$")
    ax.set_ylabel("gen. loss / prior's")
    ax.legend(fontsize=7)
    return save_figure(fig, out_stem, title)


def _plot_rank_depth(frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt

    fields = ["rank", "normalize"]
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for key in _panel_keys(frame, fields):
        part = _select(frame, fields, key)
        ratios, _ = _ratio_points(part)
        xs = sorted(ratios)
        if xs:
            normalized = bool(key[1]) if len(key) > 1 else True
            ax.errorbar(xs, [ratios[x][0] for x in xs], yerr=[ratios[x][1] for x in xs],
                        fmt="o-" if normalized else "s--", ms=3, capsize=2,
                        label=f"rank {key[0] if key else ''}, {'normalized' if normalized else 'not normalized'}")
    ax.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
    ax.set_xlabel("depth $d$")
    ax.set_ylabel("G&C / prior (gen. loss)")
    ax.legend(fontsize=7)
    return save_figure(fig, out_stem, title)


_PLOTS = {"theory-width": _plot_width, "theory-depth": _plot_depth, "theory-relu-width": _plot_relu_width,
          "theory-rank-depth": _plot_rank_depth}


def judge_study(claim: str, frame: "pd.DataFrame", out_dir: Path, coords: list[str], *, stem: Path | None = None,
                title: str = "") -> tuple[Verdict, list[Path]]:
    """The verdict of a theory sweep and its plot (``<stem>.png|pdf``), from its rows."""
    verdict = _JUDGES[claim](frame, Path(out_dir), coords)
    paths = _PLOTS[claim](frame, stem, title) if stem is not None and not frame.empty else []
    return verdict, paths
