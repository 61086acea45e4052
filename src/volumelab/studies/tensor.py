"""Measured verdicts on the G&C paper's first open question (arXiv 2506.03931): tensor factorization.

Do the paper's two findings carry over from matrices to tensors? A study sweeps the CP model
(:class:`volumelab.models.CPModel`) on order-3 tensor sensing and, in the same sweep, on 5x5 matrix
sensing, where the CP model *is* the matrix factorization (order 2: depth 1 is the depth-2 factorization
of width R, depth d the linear factorization of depth 2d; tested). Panels are (dims, ground-truth CP rank);
methods are read by their roles (G&C, GD, the prior's chance level), each panel by the paper's rule
(:func:`volumelab.plotting.report.verdicts.judge`).

* ``tensor-width`` (x: the number of components R; plain CP, Gaussian prior, not normalized). The paper's
  width rule in each panel: G&C/prior approaches 1 as R grows while GD/prior stays at most 0.5. The claim
  holds when every tensor panel holds; the matrix panels are the reference it is set against, and each
  tensor panel lists the x where its G&C/prior differs from the matrix's beyond 2 SE. Each panel
  also checks the prior's measured chance level against its closed form ``Var(T_i) + mean_B <B, T*>^2``
  (:meth:`CPModel.chance_gen_loss`; docs/design.md, "Tensors"): the mean over runs of (measured - closed
  form) must lie within :data:`~volumelab.studies.theory.ZERO_STANDARD_ERRORS` SE of 0, the SE pooled from
  the runs' own; a panel whose check fails fails.
* ``tensor-depth`` (x: the depth of each factor matrix; normalized prior, width fixed). The paper's depth
  rule in each panel (G&C/prior falls with depth). The claim holds when every tensor panel holds; the
  matrix panels (depth d there is the matrix factorization of depth 2d, Figure 2's setting) are the
  reference. Where the sweep has ``collapse`` runs, each panel also reports the prior's collapse towards
  (CP) rank one: the top singular value's share of every unfolding ``T_(n)``, averaged over the modes.
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
    _ratio_text,
    judge,
    read_roles,
)
from .ngd import _combine, save_figure
from .theory import COLLAPSE, ZERO_STANDARD_ERRORS, _panel_keys, _ratio_points, _seed_stat, _select

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["STUDY_CLAIMS", "chance_level_check", "judge_study", "study_rule"]

S = CHANGE_STANDARD_ERRORS
FIELDS = ["dims", "rank"]

_RULES = {
    "tensor-width": (
        "Per panel (dims, ground-truth CP rank): the paper's width rule (G&C/prior rises to within "
        f"{WIDTH_GAP_MAX:g} of 1 by the largest width, the rise beyond {S:g} SE; GD/prior at most 0.5 at every "
        "width), and the prior's measured chance level (its mean L_gen over each run's prior draws) agrees with "
        "the closed form Var(T_i) + mean_B <B, T*>^2 of the linear CP prior: the mean over runs of (measured - "
        f"closed form) within {ZERO_STANDARD_ERRORS:g} SE of 0, the SE pooled from the runs' own. The claim "
        "(the paper's width finding holds for CP tensors) holds when every tensor panel (order >= 3) holds; the "
        "matrix panels (5x5: the CP model of order 2 is the depth-2 matrix factorization) are the reference "
        "it is set against."),
    "tensor-depth": (
        "Per panel (dims, ground-truth CP rank): the paper's depth rule (G&C/prior falls from the smallest to "
        f"the largest depth to at most 0.8 times its value, Spearman rho <= -0.5, the fall beyond {S:g} SE). "
        "The claim (depth makes G&C generalize better on CP tensors, normalized prior, as Theorem 2 says for "
        "matrices) holds when every tensor panel (order >= 3) holds; the matrix panels (5x5: the linear CP "
        "model of order 2 and depth d is the matrix factorization of depth 2d) are the reference."),
}

_STATEMENTS = {
    "tensor-width": ("with CP tensor factorizations, as with matrices, G&C deteriorates to chance as the number "
                     "of components grows while GD keeps generalizing"),
    "tensor-depth": ("with CP tensor factorizations whose factor matrices are deep products, G&C generalizes "
                     "better as depth grows (normalized prior), as with matrices"),
}

STUDY_CLAIMS = tuple(_RULES)


def study_rule(claim: str) -> str:
    """The rule of a study's verdict, in words (printed in its report)."""
    return _RULES[claim]


# ------------------------------------------------------------------ helpers
def _order(dims) -> int:
    """The order of a panel's ``dims`` label (``"4x4x4"`` -> 3)."""
    return len(str(dims).split("x"))


def _panel_name(dims, rank) -> str:
    kind = "matrix" if _order(dims) == 2 else f"order-{_order(dims)} tensor"
    return f"{dims} {kind}, rank {rank}"


def chance_level_check(rows) -> tuple[float, float, float, int] | None:
    """``(mean difference, its SE, largest |z|, runs)`` of the prior rows' mean L_gen against the closed form.

    Each prior row's problem and model are rebuilt from its stored settings (the problem from its seed);
    ``z`` of a run is its difference over its own SE. ``None`` where no row is a linear, unnormalized CP prior
    with a standard error.
    """
    from ..experiments.kinds import build_model, build_problem, problem_shape, validate_model, validate_problem

    differences, errors = [], []
    for _, row in rows.iterrows():
        config = row.get("config")
        se = row.get("gen_loss_stderr")
        if not isinstance(config, dict) or se is None or not math.isfinite(float(se)) or float(se) <= 0:
            continue
        model_settings = validate_model({**config["model"], **config.get("method", {}).get("model", {})})
        if model_settings.kind != "cp" or model_settings.normalize or (
                model_settings.activation != "linear" and model_settings.depth > 1):
            continue
        problem_settings = validate_problem(config["problem"])
        seed = config.get("problem_seed", row["seed"])
        problem = build_problem(problem_settings, int(seed))
        model = build_model(model_settings, problem_shape(problem_settings))
        differences.append(float(row["gen_loss"]) - model.chance_gen_loss(problem))
        errors.append(float(se))
    if not differences:
        return None
    n = len(differences)
    mean = sum(differences) / n
    return mean, math.sqrt(sum(e * e for e in errors)) / n, max(abs(d) / e for d, e in zip(differences, errors)), n


def _collapse_points(part, column: str) -> dict:
    """``{depth: (mean, SE)}`` of a ``collapse`` statistic over the seeds (SEs pooled from the runs' own)."""
    rows = part[part["method_type"] == COLLAPSE] if "method_type" in part else part.iloc[0:0]
    return {x: _seed_stat(rows[rows["x"] == x], column)[:2] for x in sorted(set(rows["x"]))}


def _collapse_text(part) -> str:
    """The prior's collapse towards (CP) rank one from the smallest to the largest depth, where measured."""
    share, ratio = _collapse_points(part, "top_share"), _collapse_points(part, "sigma2_over_sigma1")
    if len(share) < 2:
        return ""
    first, last = min(share), max(share)
    return (f"; the prior's unfoldings (collapse): top share {share[first][0]:.3f} ± {share[first][1]:.2g} -> "
            f"{share[last][0]:.3f} ± {share[last][1]:.2g}, sigma2/sigma1 {ratio[first][0]:.3f} -> {ratio[last][0]:.3f}")


def _differences(tensor: dict, matrix: dict, claim: str) -> str:
    """Where G&C/prior of the tensor and of the matrix differ by more than CHANGE_STANDARD_ERRORS SE, x by x."""
    what = "R" if claim == "tensor-width" else "d"
    differ, agree = [], []
    for x in sorted(set(tensor) & set(matrix)):
        (a, sa), (b, sb) = tensor[x], matrix[x]
        se = math.hypot(sa, sb)
        if math.isfinite(se) and abs(a - b) > S * se:
            differ.append(f"{what} = {x:g} ({_ratio_text(a)} vs {_ratio_text(b)}, {(a - b) / se:+.1f} SE)")
        else:
            agree.append(f"{x:g}")
    parts = []
    if differ:
        parts.append(f"G&C/prior differs from the matrix's beyond {S:g} SE at " + ", ".join(differ))
    if agree:
        parts.append(f"agrees within {S:g} SE at {what} = " + ", ".join(agree))
    return "; ".join(parts) or "no shared points"


def _endpoints(points: dict) -> str:
    xs = sorted(points)
    if not xs:
        return "no points"
    (r0, s0), (r1, s1) = points[xs[0]], points[xs[-1]]
    return f"{_ratio_text(r0)} ± {s0:.2g} ({xs[0]:g}) -> {_ratio_text(r1)} ± {s1:.2g} ({xs[-1]:g})"


def _judge(claim: str, frame, out_dir: Path, coords: list[str]) -> Verdict:
    from ..plotting.figures import summarize

    rule_claim = "width" if claim == "tensor-width" else "depth"
    panels, judged = [], []
    keys = _panel_keys(frame, FIELDS)
    by_rank: dict = {}
    for key in keys:
        dims, rank = (key + (None, None))[:2]
        by_rank.setdefault(rank, []).append(dims)
    for key in keys:
        part = _select(frame, FIELDS, key)
        dims, rank = (key + (None, None))[:2]
        summary = summarize(part)
        verdict = judge(summary, rule_claim, normalized=True if rule_claim == "depth" else None)
        if verdict is None:
            continue
        panel = verdict.panels[0]
        outcome, detail = panel.outcome, panel.detail
        chance = read_roles(summary).chance
        if claim == "tensor-width" and chance is not None:
            check = chance_level_check(part[part["method"] == chance])
            if check is not None:
                mean, se, worst, n = check
                agrees = abs(mean) <= ZERO_STANDARD_ERRORS * se
                detail += (f"; chance level vs closed form: mean difference {mean:.2g} ± {se:.2g} over {n} runs "
                           f"(largest |z| {worst:.2f}): {'agrees' if agrees else 'DISAGREES'}")
                if not agrees:
                    outcome = "fails"
        if claim == "tensor-depth":
            detail += _collapse_text(part)
        if _order(dims) > 2:
            judged.append(outcome)
            ratios, trainer = _ratio_points(part)
            for other in by_rank.get(rank, []):
                if _order(other) == 2:
                    matrix_ratios, matrix_trainer = _ratio_points(_select(frame, FIELDS, (other, rank)))
                    detail += (f" || against the {other} matrix at rank {rank}: G&C/prior {_endpoints(ratios)} "
                               f"(tensor) vs {_endpoints(matrix_ratios)} (matrix); GD/prior {_endpoints(trainer)} "
                               f"vs {_endpoints(matrix_trainer)}; {_differences(ratios, matrix_ratios, claim)}")
        name = _panel_name(dims, rank) + ("" if _order(dims) > 2 else " (reference)")
        panels.append(PanelVerdict(name, outcome, detail))
    if not panels:
        panels.append(PanelVerdict("", "inconclusive", "no G&C runs"))
    return Verdict(claim, _RULES[claim], _combine(judged) if judged else "inconclusive", panels,
                   statement=_STATEMENTS[claim])


# ------------------------------------------------------------------ plot
def _plot(claim: str, frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    keys = _panel_keys(frame, FIELDS)
    ranks = list(dict.fromkeys((key + (None, None))[1] for key in keys))
    collapse = claim == "tensor-depth" and "method_type" in frame and bool((frame["method_type"] == COLLAPSE).any())
    rows = 2 if collapse else 1
    fig, axes = plt.subplots(rows, len(ranks), figsize=(6.5 * len(ranks), 4.5 * rows), squeeze=False)
    if collapse:
        for ax, rank in zip(axes[1], ranks):
            for key in keys:
                dims, key_rank = (key + (None, None))[:2]
                if key_rank != rank:
                    continue
                points = _collapse_points(_select(frame, FIELDS, key), "top_share")
                xs = sorted(points)
                ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], fmt="o-", ms=3,
                            capsize=2, color="C0" if _order(dims) == 2 else "C3", label=_panel_name(dims, rank))
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("depth of each factor matrix")
            ax.set_ylabel("top singular value's share, mean over unfoldings")
            ax.set_title(f"the prior's collapse towards (CP) rank one, ground-truth rank {rank}", fontsize=9)
            ax.legend(fontsize=7)
    for ax, rank in zip(axes[0], ranks):
        for key in keys:
            dims, key_rank = (key + (None, None))[:2]
            if key_rank != rank:
                continue
            ratios, trainer = _ratio_points(_select(frame, FIELDS, key))
            color = "C0" if _order(dims) == 2 else "C3"
            for points, style, who in ((ratios, "o-", "G&C"), (trainer, "s--", "GD")):
                xs = sorted(points)
                if xs:
                    ax.errorbar(xs, [points[x][0] for x in xs], yerr=[points[x][1] for x in xs], fmt=style,
                                color=color, ms=3, capsize=2, label=f"{who} / prior, {_panel_name(dims, rank)}")
        ax.axhline(1.0, color="#555555", linestyle="--", linewidth=0.8)
        if claim == "tensor-width":
            ax.set_xscale("log")  # R >= 1
            ax.set_xlabel("components R (width)")
        else:
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("depth of each factor matrix")
        ax.set_ylabel("gen. loss / prior's")
        ax.set_title(f"ground-truth CP rank {rank}", fontsize=9)
        ax.legend(fontsize=7)
    return save_figure(fig, out_stem, title)


def judge_study(claim: str, frame: "pd.DataFrame", out_dir: Path, coords: list[str], *, stem: Path | None = None,
                title: str = "") -> tuple[Verdict, list[Path]]:
    """The verdict of a tensor sweep and its plot (``<stem>.png|pdf``), from its rows."""
    verdict = _judge(claim, frame, Path(out_dir), coords)
    paths = _plot(claim, frame, stem, title) if stem is not None and not frame.empty else []
    return verdict, paths
