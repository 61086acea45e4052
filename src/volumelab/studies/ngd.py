"""Measured verdicts of the natural-gradient studies (Kerekes, Mészáros, Huszár, arXiv 2111.11542).

A sweep whose ``claim`` is one of :data:`STUDY_CLAIMS` is judged here from its runs
(and, for the invariance studies, from the trajectories its runs recorded with
``trajectory_every``). Methods are read by name, as the study configs name them: ``ngd``
(NGD as defined, the Gauss-Newton matrix of the training outputs), ``ngd_output`` (the
ablation with the Fisher over every output of the model) and ``gd``. The rules are
stated in every report (:func:`study_rule`) and in docs/experiments.md; like the paper
figures' rules they were written before the studies were run, and a claimed change
counts only beyond :data:`CHANGE_STANDARD_ERRORS` standard errors.

* ``ngd-invariance`` (x: depth). For each run, its distance to the run of the smallest
  depth with the same seed: ``max_t ||W_d(t) - W_1(t)||_F / max_t ||W_1(t)||_F`` over the
  recorded checkpoints ``t`` (the whole end-to-end matrix), and the same for the
  training outputs ``<A_i, W>``. NGD's trajectories nearly coincide if, at every depth,
  NGD's median distance is at most :data:`INVARIANCE_MAX`, below it by more than 2 SE;
  GD's do not if, at the largest depth, GD's distance exceeds NGD's by more than 2 SE
  (paired over seeds). The claim holds when both hold and fails when NGD's median
  distance is above :data:`INVARIANCE_MAX` at some depth.
* ``ngd-invariance-width`` (x: width, panels: depth). Invariance improves with
  over-parametrization if NGD's median distance at the largest width is at most 0.8
  times that at the smallest, the Spearman correlation of width and distance is at most
  -0.5, and the paired fall exceeds 2 SE, in every panel above the smallest depth.
* ``ngd-completion`` (x: depth). GD improves with depth if GD's median generalization
  loss at the largest depth is at most 0.8 times that at the smallest, the Spearman
  correlation of depth and GD's loss is at most -0.5, and the per-seed ratio
  ``GD_s(largest) / GD_s(smallest)`` is below 1 by more than 2 SE. NGD stays at the
  depth-1 level if at every depth the mean over seeds of ``NGD_s(d) / NGD_s(smallest)``
  lies in ``[1/FLAT_BAND, FLAT_BAND]``; it changes with depth if the mean lies outside
  by more than 2 SE. The claim holds when both hold and fails when either fails.
* ``ngd-sparse`` (x: training points or depth, panels: architecture). GD's solution depends on
  the architecture if, at every point of the sweep, the diagonal network's
  median sparsity ``||w||_1^2 / ||w||_2^2`` is at most 0.8 times the fully connected
  net's and the paired difference exceeds 2 SE; NGD's does not if, at every point, the
  ratio of the two architectures' median sparsities lies in ``[1/FLAT_BAND, FLAT_BAND]``
  and their median test errors differ by at most :data:`ERROR_BAND`; GD on the fully
  connected net approaches the max-l2-margin classifier if its median l2 training margin
  is at least :data:`MARGIN_FRACTION` of the largest (:func:`max_margin_l2`). The claim
  holds when all three hold and fails when any fails on the medians.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..plotting.figures import median_standard_error
from ..plotting.report.verdicts import CHANGE_STANDARD_ERRORS, PanelVerdict, Verdict, _spearman

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["ERROR_BAND", "FLAT_BAND", "INVARIANCE_MAX", "MARGIN_FRACTION", "STUDY_CLAIMS", "judge_study",
           "max_margin_l2", "study_rule", "trajectory_distances"]

#: NGD's trajectories "nearly coincide" when their relative distance is at most this.
INVARIANCE_MAX = 0.1
#: A quantity "does not change" when its ratio to the reference lies in [1/FLAT_BAND, FLAT_BAND].
FLAT_BAND = 1.25
#: Two test errors "agree" when they differ by at most this (absolute).
ERROR_BAND = 0.02
#: GD "approaches" the max-l2-margin classifier when its l2 margin is at least this share of the largest.
MARGIN_FRACTION = 0.9
#: A fall "counts" when the later value is at most this times the earlier one.
FALL_RATIO = 0.8
FALL_SPEARMAN = -0.5

NGD, NGD_OUTPUT, GD = "ngd", "ngd_output", "gd"


# ------------------------------------------------------------------ small statistics
@dataclass(frozen=True)
class Stat:
    """A median over seeds with its standard error and count."""

    median: float
    stderr: float
    n: int

    @classmethod
    def of(cls, values) -> "Stat":
        values = [float(v) for v in values if v is not None and math.isfinite(float(v))]
        if not values:
            return cls(math.nan, math.nan, 0)
        import numpy as np

        return cls(float(np.median(values)), median_standard_error(values, [0.0] * len(values)), len(values))

    @property
    def text(self) -> str:
        return f"{self.median:.3g} ± {self.stderr:.2g} (n={self.n})"


def _mean_and_stderr(values: list[float]) -> tuple[float, float, int]:
    """Mean of the finite ``values``, its standard error (``scipy.stats.sem``; NaN below two) and their count."""
    import numpy as np
    from scipy.stats import sem

    finite = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if finite.size == 0:
        return math.nan, math.nan, 0
    return float(finite.mean()), float(sem(finite)) if finite.size > 1 else math.nan, int(finite.size)


def _exceeds(value: float, stderr: float) -> bool:
    return math.isfinite(stderr) and value > CHANGE_STANDARD_ERRORS * stderr


# ------------------------------------------------------------------ trajectories
def trajectory_distances(run, reference) -> dict[str, float]:
    """Relative distances between two recorded trajectories (arrays of ``trajectory_every``).

    Returns:
        ``whole``: ``max_t ||T_run(t) - T_ref(t)|| / max_t ||T_ref(t)||`` of the whole
        outputs (a factorization's W); ``train``: the same for the training outputs;
        ``final``: ``||T_run(T) - T_ref(T)|| / ||T_ref(T)||`` at the last checkpoint.
    """
    import numpy as np

    if not np.array_equal(run["trajectory_steps"], reference["trajectory_steps"]):
        raise ValueError("the two runs recorded different checkpoints; give them the same steps and "
                         "trajectory_every")
    out = {}
    for name, key in (("whole", "trajectory"), ("train", "trajectory_train")):
        a = np.asarray(run[key], dtype=float).reshape(len(run[key]), -1)
        b = np.asarray(reference[key], dtype=float).reshape(len(reference[key]), -1)
        scale = float(np.linalg.norm(b, axis=1).max())
        out[name] = float(np.linalg.norm(a - b, axis=1).max() / scale) if scale > 0 else math.nan
        if name == "whole":
            final = float(np.linalg.norm(b[-1]))
            out["final"] = float(np.linalg.norm(a[-1] - b[-1]) / final) if final > 0 else math.nan
    return out


def _distance_frame(frame: "pd.DataFrame", out_dir: Path, coords: list[str]) -> "pd.DataFrame":
    """One row per run (above the smallest depth): its distances to the smallest depth's run
    with the same method, seed and other grid coordinates; with the per-checkpoint curve."""
    import numpy as np
    import pandas as pd

    from ..experiments.results import load_arrays

    arrays = load_arrays(out_dir)
    data = frame[frame["gen_loss"].notna()] if "gen_loss" in frame else frame
    others = [c for c in coords if c != "depth"]
    reference_depth = data["depth"].min()
    references = {}
    for _, row in data[data["depth"] == reference_depth].iterrows():
        references[(row["method"], row["seed"], *(row[c] for c in others))] = arrays.get(row["run_key"])
    records = []
    for _, row in data[data["depth"] != reference_depth].iterrows():
        reference = references.get((row["method"], row["seed"], *(row[c] for c in others)))
        run = arrays.get(row["run_key"])
        if reference is None or run is None or "trajectory" not in run or "trajectory" not in reference:
            continue
        record = {c: row[c] for c in coords}
        record.update(method=row["method"], seed=row["seed"], **trajectory_distances(run, reference))
        a = np.asarray(run["trajectory"], dtype=float).reshape(len(run["trajectory"]), -1)
        b = np.asarray(reference["trajectory"], dtype=float).reshape(len(reference["trajectory"]), -1)
        record["curve"] = np.linalg.norm(a - b, axis=1) / max(float(np.linalg.norm(b, axis=1).max()), 1e-300)
        record["steps"] = np.asarray(run["trajectory_steps"])
        records.append(record)
    return pd.DataFrame.from_records(records)


# ------------------------------------------------------------------ the rules in words
_RULES = {
    "ngd-invariance": (
        "For each run, its distance to the run of the smallest depth with the same method and seed: "
        "max over the recorded checkpoints t of ||W_d(t) - W_1(t)||_F / max_t ||W_1(t)||_F (the whole end-to-end "
        "matrix; 'training outputs': the same for <A_i, W>). NGD's trajectories nearly coincide if, at every depth, "
        f"NGD's median distance is at most {INVARIANCE_MAX:g}, below it by more than {CHANGE_STANDARD_ERRORS:g} SE; "
        f"GD's do not if, at the largest depth, GD's distance exceeds NGD's by more than {CHANGE_STANDARD_ERRORS:g} "
        "SE (paired over seeds). The claim holds when both hold, fails when NGD's median distance is above "
        f"{INVARIANCE_MAX:g} at some depth, and is inconclusive otherwise. Medians carry the SE of "
        "volumelab.plotting.figures.median_standard_error."),
    "ngd-invariance-width": (
        "Distances as in ngd-invariance (each run against the smallest depth's run with the same width and seed). "
        f"Invariance improves with width if, in every panel above the smallest depth, NGD's median distance at the "
        f"largest width is at most {FALL_RATIO:g} times that at the smallest, the Spearman correlation of width and "
        f"the median distance is at most {FALL_SPEARMAN:g}, and the per-seed fall exceeds "
        f"{CHANGE_STANDARD_ERRORS:g} SE. It holds when this holds in every panel and fails when a condition fails "
        "on the medians."),
    "ngd-completion": (
        f"GD improves with depth if GD's median generalization loss at the largest depth is at most {FALL_RATIO:g} "
        f"times that at the smallest, the Spearman correlation of depth and GD's median is at most "
        f"{FALL_SPEARMAN:g}, and the mean over seeds of GD_s(largest) / GD_s(smallest) is below 1 by more than "
        f"{CHANGE_STANDARD_ERRORS:g} SE. NGD stays at the depth-1 level if, at every depth, the mean over seeds "
        f"of NGD_s(d) / NGD_s(smallest) lies in [{1 / FLAT_BAND:g}, {FLAT_BAND:g}]; it changes with depth if "
        f"that mean lies outside by more than {CHANGE_STANDARD_ERRORS:g} SE. The claim holds when both hold and "
        "fails when either fails."),
    "ngd-sparse": (
        f"GD's solution depends on the architecture if, at every point of the sweep (number of training points or "
        f"depth), the diagonal network's "
        f"median sparsity ||w||_1^2/||w||_2^2 is at most {FALL_RATIO:g} times the fully connected net's and the "
        f"per-seed difference exceeds {CHANGE_STANDARD_ERRORS:g} SE. NGD's does not if, at every point, the "
        f"ratio of the two architectures' median sparsities lies in "
        f"[{1 / FLAT_BAND:g}, {FLAT_BAND:g}] and their median test errors differ by at most {ERROR_BAND:g}. The "
        "GD on the fully connected net approaches the max-l2-margin classifier if, at every point, its median l2 "
        f"training margin is at least {MARGIN_FRACTION:g} of the largest l2 margin of its training set (a "
        "hard-margin SVM without bias, solved with SciPy's SLSQP). The claim holds when all three hold and fails "
        "when any fails on the medians."),
}

_STATEMENTS = {
    "ngd-invariance": "NGD's trajectories of different depths nearly coincide, GD's do not",
    "ngd-invariance-width": "NGD's invariance across depth improves as the network gets wider",
    "ngd-completion": "GD's generalization improves with depth while NGD's stays at the depth-1 level",
    "ngd-sparse": ("GD's solution depends on the architecture (sparse on a diagonal network, near the "
                   "max-l2-margin classifier on a fully connected one) while NGD's does not"),
}

STUDY_CLAIMS = tuple(_RULES)


def study_rule(claim: str) -> str:
    """The rule of a study's verdict, in words (printed in its report)."""
    return _RULES[claim]


def _combine(outcomes: list[str]) -> str:
    if "fails" in outcomes:
        return "fails"
    return "holds" if outcomes and all(o == "holds" for o in outcomes) else "inconclusive"


# ------------------------------------------------------------------ judges
def _judge_invariance(frame, out_dir: Path, coords: list[str]) -> tuple[Verdict, "pd.DataFrame"]:
    distances = _distance_frame(frame, out_dir, coords)
    claim = "ngd-invariance"
    if distances.empty or NGD not in set(distances["method"]):
        return Verdict(claim, _RULES[claim], "inconclusive", [PanelVerdict("", "inconclusive", "no NGD trajectories")],
                       statement=_STATEMENTS[claim]), distances
    panels = []
    depths = sorted(set(distances["depth"]))
    outcomes = []
    for label, method, column in (("NGD, whole W (the claim)", NGD, "whole"),
                                  ("NGD, training outputs", NGD, "train"),
                                  ("NGD with the output Fisher, whole W (ablation)", NGD_OUTPUT, "whole")):
        rows = distances[distances["method"] == method]
        if rows.empty:
            continue
        stats = {d: Stat.of(rows[rows["depth"] == d][column]) for d in depths}
        near = all(s.median <= INVARIANCE_MAX for s in stats.values())
        resolved = all(_exceeds(INVARIANCE_MAX - s.median, s.stderr) for s in stats.values())
        outcome = "holds" if near and resolved else ("fails" if not near else "inconclusive")
        detail = "; ".join(f"depth {d:g}: {stats[d].text}" for d in depths)
        if method == NGD and column == "whole":
            outcomes.append(outcome)
        panels.append(PanelVerdict(label, outcome, f"median distance to depth {frame['depth'].min():g}: {detail}"))
    gd = distances[distances["method"] == GD]
    if not gd.empty:
        last = depths[-1]
        ngd_last = distances[(distances["method"] == NGD) & (distances["depth"] == last)].set_index("seed")["whole"]
        gd_last = gd[gd["depth"] == last].set_index("seed")["whole"]
        common = sorted(set(ngd_last.index) & set(gd_last.index))
        mean, stderr, n = _mean_and_stderr([float(gd_last[s] - ngd_last[s]) for s in common])
        outcome = "holds" if _exceeds(mean, stderr) else ("fails" if not mean > 0 else "inconclusive")
        outcomes.append(outcome)
        stats = {d: Stat.of(gd[gd["depth"] == d]["whole"]) for d in depths}
        panels.append(PanelVerdict(
            "GD, whole W", outcome,
            "median distance: " + "; ".join(f"depth {d:g}: {stats[d].text}" for d in depths)
            + f"; at depth {last:g} GD - NGD = {mean:.3g} ± {stderr:.2g} (paired over {n} seeds)"))
    return Verdict(claim, _RULES[claim], _combine(outcomes), panels, statement=_STATEMENTS[claim]), distances


def _judge_invariance_width(frame, out_dir: Path, coords: list[str]) -> tuple[Verdict, "pd.DataFrame"]:
    distances = _distance_frame(frame, out_dir, coords)
    claim = "ngd-invariance-width"
    panels, outcomes = [], []
    rows = distances[distances["method"] == NGD] if not distances.empty else distances
    for depth in sorted(set(rows["depth"])) if not rows.empty else []:
        part = rows[rows["depth"] == depth]
        widths = sorted(set(part["width"]))
        stats = {w: Stat.of(part[part["width"] == w]["whole"]) for w in widths}
        first, last = widths[0], widths[-1]
        rho = _spearman(widths, [stats[w].median for w in widths])
        a = part[part["width"] == first].set_index("seed")["whole"]
        b = part[part["width"] == last].set_index("seed")["whole"]
        mean, stderr, n = _mean_and_stderr([float(a[s] - b[s]) for s in sorted(set(a.index) & set(b.index))])
        conditions = stats[last].median <= FALL_RATIO * stats[first].median and rho <= FALL_SPEARMAN
        outcome = "fails" if not conditions else ("holds" if _exceeds(mean, stderr) else "inconclusive")
        outcomes.append(outcome)
        panels.append(PanelVerdict(
            f"depth {depth:g}", outcome,
            "NGD's median distance to depth 1: " + "; ".join(f"width {w:g}: {stats[w].text}" for w in widths)
            + f"; Spearman rho {rho:.2f}; paired fall {mean:.3g} ± {stderr:.2g} over {n} seeds"))
    for depth in sorted(set(distances["depth"])) if not distances.empty else []:
        part = distances[(distances["method"] == GD) & (distances["depth"] == depth)]
        if not part.empty:
            widths = sorted(set(part["width"]))
            panels.append(PanelVerdict(f"GD, depth {depth:g} (for comparison)", "measured", "; ".join(
                f"width {w:g}: {Stat.of(part[part['width'] == w]['whole']).text}" for w in widths)))
    if not outcomes:
        panels.append(PanelVerdict("", "inconclusive", "no NGD trajectories above the smallest depth"))
    return (Verdict(claim, _RULES[claim], _combine(outcomes) if outcomes else "inconclusive", panels,
                    statement=_STATEMENTS[claim]), distances)


def _per_seed(frame, method: str, x, column: str = "gen_loss") -> dict:
    rows = frame[(frame["method"] == method) & (frame["x"] == x) & frame[column].notna()]
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column])}


def _judge_completion(frame, out_dir: Path, coords: list[str]) -> tuple[Verdict, None]:
    claim = "ngd-completion"
    depths = sorted(set(frame["x"]))
    panels, outcomes = [], []
    first, last = depths[0], depths[-1]
    for method in (GD, NGD, NGD_OUTPUT):
        if method not in set(frame["method"]):
            continue
        stats = {d: Stat.of(frame[(frame["method"] == method) & (frame["x"] == d)]["gen_loss"]) for d in depths}
        ranks = {d: Stat.of(frame[(frame["method"] == method) & (frame["x"] == d)]["effective_rank"])
                 for d in depths} if "effective_rank" in frame else {}
        base = _per_seed(frame, method, first)
        summary = "; ".join(f"depth {d:g}: {stats[d].text}" + (f", effective rank {ranks[d].median:.2f}"
                                                               if d in ranks else "") for d in depths)
        if method == GD:
            end = _per_seed(frame, method, last)
            ratios = [end[s] / base[s] for s in sorted(set(base) & set(end)) if base[s] > 0]
            mean, stderr, n = _mean_and_stderr(ratios)
            rho = _spearman(depths, [stats[d].median for d in depths])
            conditions = stats[last].median <= FALL_RATIO * stats[first].median and rho <= FALL_SPEARMAN
            outcome = "fails" if not conditions else ("holds" if _exceeds(1 - mean, stderr) else "inconclusive")
            outcomes.append(outcome)
            panels.append(PanelVerdict("GD improves with depth", outcome, f"median generalization loss: {summary}; "
                                       f"Spearman rho {rho:.2f}; GD_s({last:g})/GD_s({first:g}) = {mean:.3g} ± "
                                       f"{stderr:.2g} over {n} seeds"))
            continue
        parts, flat_outcomes = [], []
        for d in depths[1:]:
            end = _per_seed(frame, method, d)
            ratios = [end[s] / base[s] for s in sorted(set(base) & set(end)) if base[s] > 0]
            mean, stderr, n = _mean_and_stderr(ratios)
            inside = 1 / FLAT_BAND <= mean <= FLAT_BAND
            distance = max(1 / FLAT_BAND - mean, mean - FLAT_BAND)
            flat_outcomes.append("holds" if inside else ("fails" if _exceeds(distance, stderr) else "inconclusive"))
            parts.append(f"depth {d:g}: {mean:.3g} ± {stderr:.2g}")
        outcome = _combine(flat_outcomes)
        label = ("NGD stays at the depth-1 level" if method == NGD
                 else "NGD with the output Fisher stays at the depth-1 level (ablation)")
        if method == NGD:
            outcomes.append(outcome)
        panels.append(PanelVerdict(label, outcome, f"median generalization loss: {summary}; mean per-seed ratio "
                                   f"to depth {first:g}: " + "; ".join(parts)))
    return Verdict(claim, _RULES[claim], _combine(outcomes), panels, statement=_STATEMENTS[claim]), None


def _judge_sparse(frame, out_dir: Path, coords: list[str]) -> tuple[Verdict, None]:
    claim = "ngd-sparse"
    panels, outcomes = [], []
    points = sorted(set(frame["x"]))
    swept = next((c for c in coords if c != "architecture"), "x")
    label = "n" if swept == "train" else swept
    for method in (GD, NGD):
        rows = frame[frame["method"] == method]
        if rows.empty:
            continue
        parts, point_outcomes = [], []
        for x in points:
            here = rows[rows["x"] == x]
            diag, full = here[here["architecture"] == "diagonal"], here[here["architecture"] == "fully_connected"]
            s_diag, s_full = Stat.of(diag["sparsity"]), Stat.of(full["sparsity"])
            e_diag, e_full = Stat.of(diag["test_error"]), Stat.of(full["test_error"])
            ratio = s_diag.median / s_full.median if s_full.median > 0 else math.nan
            a = dict(zip(diag["seed"].astype(int), diag["sparsity"].astype(float)))
            b = dict(zip(full["seed"].astype(int), full["sparsity"].astype(float)))
            mean, stderr, n = _mean_and_stderr([b[s] - a[s] for s in sorted(set(a) & set(b))])
            if method == GD:
                met = ratio <= FALL_RATIO
                point_outcomes.append("fails" if not met else ("holds" if _exceeds(mean, stderr) else "inconclusive"))
            else:
                met = 1 / FLAT_BAND <= ratio <= FLAT_BAND and abs(e_diag.median - e_full.median) <= ERROR_BAND
                point_outcomes.append("holds" if met else "fails")
            margins = ""
            if "margin_l2" in here and "margin_l1" in here:
                margins = "; normalized margins l2/l1 " + " vs ".join(
                    f"{Stat.of(part['margin_l2']).median:.3g}/{Stat.of(part['margin_l1']).median:.3g}"
                    for part in (diag, full))
            parts.append(f"{label} {x:g}: sparsity diagonal {s_diag.text} vs fully connected {s_full.text} (ratio "
                         f"{ratio:.2f}; paired difference {mean:.3g} ± {stderr:.2g}); test error {e_diag.median:.3g} "
                         f"vs {e_full.median:.3g}{margins}")
        outcome = _combine(point_outcomes)
        outcomes.append(outcome)
        heading = ("GD: the diagonal network's solution is sparser" if method == GD
                   else "NGD: the solution does not depend on the architecture")
        panels.append(PanelVerdict(heading, outcome, "; ".join(parts)))
    margin = _judge_max_margin(frame, points, label)
    if margin is not None:
        panels.append(margin)
        outcomes.append(margin.outcome)
    return Verdict(claim, _RULES[claim], _combine(outcomes), panels, statement=_STATEMENTS[claim]), None


def max_margin_l2(inputs, labels) -> float:
    """The largest l2 margin ``max_{||w|| = 1} min_i y_i <w, x_i>`` of separable data (no bias).

    Solved as the hard-margin SVM ``min ||w||^2 / 2`` subject to ``y_i <w, x_i> >= 1``
    (SciPy's SLSQP, from the minimum-norm solution of ``y_i <w, x_i> = 1``); the margin is
    ``1 / ||w*||``. NaN when the solver fails (e.g. data that are not separable).
    """
    import numpy as np
    from scipy.optimize import minimize

    X = np.asarray(inputs, dtype=float)
    y = np.asarray(labels, dtype=float)
    signed = y[:, None] * X
    start = np.linalg.lstsq(signed, np.ones(len(y)), rcond=None)[0]
    result = minimize(lambda w: 0.5 * w @ w, start, jac=lambda w: w, method="SLSQP",
                      constraints=[{"type": "ineq", "fun": lambda w: signed @ w - 1.0, "jac": lambda w: signed}],
                      options={"ftol": 1e-12, "maxiter": 500})
    if not result.success or float((signed @ result.x).min()) < 1 - 1e-6:
        return math.nan
    return 1.0 / float(np.linalg.norm(result.x))


def _margin_ratios(rows) -> list[float]:
    """Each run's l2 training margin over the largest one its training set allows."""
    from ..experiments.kinds import build_problem, validate_problem

    ratios = []
    for margin, seed, config in zip(rows["margin_l2"], rows["seed"], rows["config"]):
        if margin is None or not math.isfinite(float(margin)) or not isinstance(config, dict):
            continue
        problem = build_problem(validate_problem(config["problem"]), int(config.get("problem_seed", seed)))
        best = max_margin_l2(problem.X_train.numpy(), problem.y_train.numpy())
        if math.isfinite(best) and best > 0:
            ratios.append(float(margin) / best)
    return ratios


def _judge_max_margin(frame, points, label) -> PanelVerdict | None:
    """Whether GD on the fully connected net approaches the max-l2-margin classifier (a measured panel)."""
    if "margin_l2" not in frame or "config" not in frame:
        return None
    rows = frame[(frame["method"] == GD) & (frame["architecture"] == "fully_connected")]
    if rows.empty:
        return None
    parts, outcomes = [], []
    for x in points:
        stat = Stat.of(_margin_ratios(rows[rows["x"] == x]))
        outcomes.append("inconclusive" if stat.n < 2 else ("holds" if stat.median >= MARGIN_FRACTION else "fails"))
        parts.append(f"{label} {x:g}: {stat.text}")
    return PanelVerdict(f"GD on the fully connected net approaches the max-l2-margin classifier (median l2 margin / "
                        f"max margin at least {MARGIN_FRACTION:g})", _combine(outcomes),
                        "margin ratio: " + "; ".join(parts))


_JUDGES: dict[str, Callable] = {
    "ngd-invariance": _judge_invariance,
    "ngd-invariance-width": _judge_invariance_width,
    "ngd-completion": _judge_completion,
    "ngd-sparse": _judge_sparse,
}


# ------------------------------------------------------------------ plots
def _plot(claim: str, frame, distances, out_stem: Path, title: str, x_label: str = "x") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    colors = {GD: "#d62728", NGD: "#2ca02c", NGD_OUTPUT: "#9467bd"}
    labels = {GD: "GD", NGD: "NGD", NGD_OUTPUT: "NGD, output Fisher"}
    if claim == "ngd-invariance" and distances is not None and not distances.empty:
        fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
        for column, ax, name in (("whole", axes[0], "whole W"), ("train", axes[1], "training outputs")):
            for method in (NGD, NGD_OUTPUT, GD):
                rows = distances[distances["method"] == method]
                if rows.empty:
                    continue
                depths = sorted(set(rows["depth"]))
                med = [rows[rows["depth"] == d][column].median() for d in depths]
                lo = [rows[rows["depth"] == d][column].quantile(0.25) for d in depths]
                hi = [rows[rows["depth"] == d][column].quantile(0.75) for d in depths]
                ax.plot(depths, med, "o-", color=colors[method], label=labels[method])
                ax.set_xticks(depths)
                ax.fill_between(depths, lo, hi, color=colors[method], alpha=0.2)
            ax.axhline(INVARIANCE_MAX, color="#555555", linestyle=":", label=f"{INVARIANCE_MAX:g} (rule)")
            ax.set(xlabel="depth $d$", ylabel=f"distance to depth 1 ({name})", yscale="log")
            ax.legend(fontsize=8)
        ax = axes[2]
        for method, style in ((NGD, "-"), (GD, "--")):
            rows = distances[distances["method"] == method]
            for i, depth in enumerate(sorted(set(rows["depth"]))):
                part = rows[rows["depth"] == depth]
                curve = np.median(np.stack(part["curve"].to_list()), axis=0)
                ax.plot(part["steps"].iloc[0], curve, style, color=plt.cm.viridis(i / 3),
                        label=f"{labels[method]} depth {depth:g}")
        ax.set(xlabel="step", ylabel="||W_d(t) - W_1(t)|| / max ||W_1||", title="along the run (median)")
        ax.legend(fontsize=7)
    elif claim == "ngd-invariance-width" and distances is not None and not distances.empty:
        depths = sorted(set(distances["depth"]))
        fig, axes = plt.subplots(1, len(depths), figsize=(5 * len(depths), 4.2), squeeze=False)
        for ax, depth in zip(axes[0], depths):
            for method in (NGD, GD):
                rows = distances[(distances["method"] == method) & (distances["depth"] == depth)]
                if rows.empty:
                    continue
                widths = sorted(set(rows["width"]))
                ax.plot(widths, [rows[rows["width"] == w]["whole"].median() for w in widths], "o-",
                        color=colors[method], label=labels[method])
            ax.set(xscale="log", yscale="log", xlabel="width $k$", ylabel="distance to depth 1 (whole W)",
                   title=f"depth {depth:g}")
            ax.legend(fontsize=8)
    elif claim == "ngd-completion" and "effective_rank" in frame:
        fig, axes = plt.subplots(1, 1, figsize=(5.5, 4.2), squeeze=False)
        ax = axes[0][0]
        for method in (GD, NGD, NGD_OUTPUT):
            rows = frame[frame["method"] == method]
            if rows.empty:
                continue
            depths = sorted(set(rows["x"]))
            ax.plot(depths, [rows[rows["x"] == d]["effective_rank"].median() for d in depths], "o-",
                    color=colors[method], label=labels[method])
            ax.set_xticks(depths)
        ax.set(xlabel="depth $d$", ylabel="effective rank of W (median)")
        ax.legend(fontsize=8)
    elif claim == "ngd-sparse":
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        for method in (GD, NGD):
            for architecture, style in (("diagonal", "-"), ("fully_connected", "--")):
                rows = frame[(frame["method"] == method) & (frame["architecture"] == architecture)]
                if rows.empty:
                    continue
                xs = sorted(set(rows["x"]))
                for ax, column in zip(axes, ("sparsity", "test_error")):
                    ax.plot(xs, [rows[rows["x"] == x][column].median() for x in xs], "o" + style,
                            color=colors[method], label=f"{labels[method]}, {architecture.replace('_', ' ')}")
        axes[0].set(xlabel=x_label, ylabel="sparsity ||w||_1^2/||w||_2^2 (median)", yscale="log")
        axes[1].set(xlabel=x_label, ylabel="test error (median)")
        for ax in axes:
            ax.legend(fontsize=8)
    else:
        return []
    return save_figure(fig, out_stem, title)


def save_figure(fig, out_stem: Path, title: str) -> list[Path]:
    """Title, lay out and write a study's figure as ``<out_stem>.png`` and ``.pdf``; closes it."""
    import matplotlib.pyplot as plt

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    out_stem.parent.mkdir(parents=True, exist_ok=True)
    paths = [out_stem.with_suffix(".png"), out_stem.with_suffix(".pdf")]
    for path in paths:
        fig.savefig(path, dpi=120)
    plt.close(fig)
    return paths


def judge_study(claim: str, frame: "pd.DataFrame", out_dir: Path, coords: list[str], *, stem: Path | None = None,
                title: str = "") -> tuple[Verdict, list[Path]]:
    """The verdict of a study sweep and its extra plot (``<stem>.png|pdf``), from its rows.

    Args:
        claim: One of :data:`STUDY_CLAIMS`.
        frame: The sweep's rows (:func:`volumelab.experiments.results.rows_to_frame`).
        out_dir: The sweep's folder (its store holds the recorded trajectories).
        coords: The grid's short names (e.g. ``["depth"]``).
        stem: Where to write the extra plot (none without).
        title: The plot's title.
    """
    verdict, distances = _JUDGES[claim](frame, Path(out_dir), coords)
    swept = next((c for c in coords if c not in ("architecture",)), "x")
    x_label = {"train": "training points $n$", "depth": "depth $d$", "width": "width $k$"}.get(swept, swept)
    paths = _plot(claim, frame, distances, stem, title, x_label) if stem is not None and not frame.empty else []
    return verdict, paths
