"""Measured verdicts of the wide-MLP studies (Terjék & González-Sánchez, arXiv 2205.13507) and
of the volume hypothesis on real data.

A sweep whose ``claim`` is one of :data:`STUDY_CLAIMS` is judged here from its runs. Methods
are read by name, as the study configs name them: ``ntk`` (the NTK at initialization), ``gd``,
``gnc`` and ``gnc_uniform`` (G&C with the Gaussian and the uniform prior) and their prior rows.
The rules are stated in every report (:func:`study_rule`) and in docs/experiments.md; they were
written before the studies' final runs, and a claimed change counts only beyond
:data:`~volumelab.plotting.report.verdicts.CHANGE_STANDARD_ERRORS` standard errors.

* ``mlp-ntk`` (x: width; panels: depth; curves: parametrization). In every (parametrization,
  depth), with each seed's mean over its prior draws: the smallest eigenvalue is positive at
  the largest width (median over seeds above :data:`POSITIVE_STANDARD_ERRORS` SE); it
  concentrates (the median relative spread over draws, ``std / mean`` of ``lambda_min``,
  at the largest width is at most :data:`CONCENTRATION_RATIO` times that at the smallest);
  and, where the infinite-width value has a closed form (ntk parametrization, ReLU), the
  median at the largest width lies within :data:`LIMIT_TOLERANCE` (relative) of it.
* ``mlp-convergence`` (x: width; panels: depth). GD converges linearly: every run's
  measured rate ``ln(L_0 / L_T) / T`` is positive; the NTK's bound holds (the mean over
  seeds of ``loss_rate - predicted_rate`` is not below 0 by more than 2 SE, at every
  width); and the rate does not degrade with width (the median rate at the largest width is
  at least :data:`RATE_KEEP` times that at the smallest). Measured next to it: the
  generalization gap (test minus training loss) against width.
* ``mlp-lazy`` (x: width; panels: depth). GD trains lazily: the least-squares slope of
  ``log param_change`` and of ``log ntk_change`` against ``log width`` (all runs) is
  negative by more than 2 SE; reported next to the lazy-regime orders (:data:`LAZY_ORDERS`).
* ``mlp-lr-transfer`` (x: learning rate; panels: parametrization; curves: width). For each
  width, the best learning rate is the grid value of the smallest median training loss
  (a diverged run counts as worse than any finite one). The shift from the smallest to the
  largest width, in grid steps (factors of 2): under ``ntk`` and ``mup`` it transfers when
  the shift is at most :data:`TRANSFER_STEPS` (fails at :data:`DRIFT_STEPS` + 1 or more);
  under ``standard`` it drifts when the shift is at least :data:`DRIFT_STEPS` (fails at 0).
* ``mlp-volume`` (x: width; panels: depth). G&C's test error against GD's, paired over seeds:
  G&C falls behind GD as width grows when the mean over seeds of
  ``(G&C - GD)(largest width) - (G&C - GD)(smallest width)`` is positive by more than 2 SE
  (Gaussian prior; the uniform prior's is reported next to it); fails when it is negative
  by more than 2 SE. Reported with each method's test error, the prior's and the
  acceptance rate.
* ``mlp-volume-train`` (x: training points). Chiang et al.'s parity: at a training-set size,
  G&C generalizes about as well as GD when the mean over seeds of ``G&C - GD`` test error
  is at most :data:`PARITY_BAND`; it does not when that mean exceeds the band by more than
  2 SE; a size where fewer than 2 seeds accepted a draw is inconclusive.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..plotting.report.verdicts import CHANGE_STANDARD_ERRORS, PanelVerdict, Verdict
from .ngd import Stat, _combine, _exceeds, _mean_and_stderr, save_figure

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["CONCENTRATION_RATIO", "DRIFT_STEPS", "LAZY_ORDERS", "LIMIT_TOLERANCE", "PARITY_BAND", "POSITIVE_STANDARD_ERRORS", "RATE_KEEP",
           "STUDY_CLAIMS", "TRANSFER_STEPS", "best_learning_rates", "judge_study", "log_log_slope", "study_rule"]

#: The NTK's smallest eigenvalue is "positive" when its median exceeds this many standard errors.
POSITIVE_STANDARD_ERRORS = 3.0
#: lambda_min "concentrates" when its relative spread at the largest width is at most this times the smallest's.
CONCENTRATION_RATIO = 0.5
#: The measured lambda_min "matches" its infinite-width value within this relative distance.
LIMIT_TOLERANCE = 0.10
#: GD's rate "does not degrade" when the largest width's is at least this times the smallest's.
RATE_KEEP = 0.8
#: The best learning rate "transfers" when it moves at most this many grid steps across the widths.
TRANSFER_STEPS = 1
#: ... and "drifts" when it moves at least this many.
DRIFT_STEPS = 2

#: G&C and GD "generalize about as well" when G&C's test error exceeds GD's by at most this (absolute).
PARITY_BAND = 0.05
#: The lazy-regime order (log-log slope in width) of each laziness measure, by depth (see the mlp-lazy rule).
LAZY_ORDERS = {"param_change": lambda depth: -0.5 if depth <= 2 else -1.0, "ntk_change": lambda depth: -1.0}

NTK, GD, GNC, GNC_UNIFORM = "ntk", "gd", "gnc", "gnc_uniform"
PRIORS = {GNC: "prior", GNC_UNIFORM: "gnc_uniform_prior"}
S = CHANGE_STANDARD_ERRORS

_RULES = {
    "mlp-ntk": (
        "In every (parametrization, depth), with each seed's mean over its prior draws: the NTK's smallest "
        f"eigenvalue is positive at the largest width (median over seeds above {POSITIVE_STANDARD_ERRORS:g} SE); "
        "it concentrates (the median relative spread over draws, std/mean of lambda_min, at the largest width is "
        f"at most {CONCENTRATION_RATIO:g} times that at the smallest); and where the infinite-width value has a "
        f"closed form (ntk parametrization, ReLU: arc-cosine kernels), the median at the largest width is within "
        f"{LIMIT_TOLERANCE:.0%} of it (the median over seeds of lambda_min / limit, each seed's limit on its own "
        "training set, within 1 ± "
        f"{LIMIT_TOLERANCE:g}). A condition that cannot be measured (one width, one draw per seed) is inconclusive. "
        "A panel holds when all its conditions hold and fails when one fails on the medians; the claim holds when "
        "every panel holds. Medians carry the SE of volumelab.plotting.figures.median_standard_error."),
    "mlp-convergence": (
        "Every run's measured rate ln(L_0/L_T)/T must be positive; the NTK's bound holds if, "
        f"at every width, the mean over seeds of loss_rate - predicted_rate is not below 0 by more than {S:g} SE "
        "(predicted_rate = -2 ln max_i |1 - lr h lambda_i(K_0)|, h = 2/n for the mean squared loss); the rate "
        f"does not degrade with width if the median rate at the largest width is at least {RATE_KEEP:g} times "
        "that at the smallest (inconclusive with one width or fewer than 2 seeds). A panel (depth) holds when all "
        "three hold and fails when one fails."),
    "mlp-lazy": (
        "GD trains lazily if, in every depth, the least-squares slope of log param_change "
        "(||theta_T - theta_0|| / ||theta_0||) and of log ntk_change (||K_T - K_0||_F / ||K_0||_F) against "
        f"log width, over all runs, is negative by more than {S:g} SE (its regression standard error); it fails "
        "if a slope is 0 or positive and is inconclusive otherwise. The slopes are reported next to the "
        "lazy-regime orders, which do not enter the verdict: GD moves the weights by ||theta_T - theta_0|| = O(1) "
        "under the ntk parametrization (Jacot et al. 2018; Lee et al. 2019), while ||theta_0|| grows like "
        "sqrt(k) at depth 2 and like k with k x k hidden layers, so param_change ~ k^(-1/2) at depth 2 and k^(-1) "
        "deeper; the NTK moves by O(1/k) (Dyer & Gur-Ari 2020)."),
    "mlp-lr-transfer": (
        "For each width, the best learning rate is the grid value with the smallest median training loss over "
        "seeds (a diverged run counts as worse than any finite one). Its shift from the smallest to the largest "
        f"width is counted in grid steps (factors of 2). Under ntk and mup the learning rate transfers when the "
        f"shift is at most {TRANSFER_STEPS} step (fails at {DRIFT_STEPS + 1} or more, inconclusive in between); "
        f"under standard it drifts when the shift is at least {DRIFT_STEPS} steps (fails at 0, inconclusive at "
        f"1); with one width, or a width where every learning rate diverged, it is inconclusive. The claim holds "
        "when all three hold. The best learning rate by median test loss is reported next to it."),
    "mlp-volume": (
        "Test error of G&C (the accepted draws' mean) and of GD, paired over seeds (the same split). G&C falls "
        "behind GD as width grows if the mean over seeds of (G&C - GD)(largest width) - (G&C - GD)(smallest "
        f"width) is positive by more than {S:g} SE, with the Gaussian prior; it fails if that change is negative "
        f"by more than {S:g} SE and is inconclusive otherwise. The uniform prior's change, each method's test "
        "error, the prior's (chance) test error and the acceptance rate are reported next to it; depth is "
        "compared at each width the same way, as a measurement. Over the depths (panels): holds when every panel "
        "holds, fails when every panel fails, partly holds when some hold, and otherwise fails if one fails."),
    "mlp-volume-train": (
        "At each number of training points n, the per-seed difference of test error G&C - GD (the same split), "
        f"its mean over seeds and SE. G&C generalizes about as well as GD (Chiang et al., ICLR 2023) at n if "
        f"that mean is at most {PARITY_BAND:g}; it does not if the mean exceeds {PARITY_BAND:g} by more than "
        f"{S:g} SE; inconclusive otherwise, and where fewer than 2 seeds accepted a draw. The claim holds when it "
        "holds at every n, fails when it fails at some n, and is inconclusive otherwise."),
}

_STATEMENTS = {
    "mlp-ntk": ("the NTK's smallest eigenvalue at initialization stays away from 0 and concentrates as width "
                "grows (the framework's one strong assumption), towards its infinite-width value"),
    "mlp-convergence": ("GD drives a wide MLP's training loss down at least at the linear rate the NTK at "
                        "initialization predicts, and not slower as width grows"),
    "mlp-lazy": "wide MLPs train lazily: GD moves the weights and the NTK less, relatively, the wider the net",
    "mlp-lr-transfer": ("the best learning rate stays put across widths under the ntk parametrization and muP, "
                        "and drifts under the standard one"),
    "mlp-volume-train": ("with a few training images (Chiang et al.'s setting), G&C generalizes about as well as "
                         "GD"),
    "mlp-volume": ("on real data, G&C's test error falls behind GD's as width grows (the G&C paper's width "
                   "result for deep matrix factorization)"),
}

STUDY_CLAIMS = tuple(_RULES)


def study_rule(claim: str) -> str:
    """The rule of a study's verdict, in words (printed in its report)."""
    return _RULES[claim]


# ------------------------------------------------------------------ helpers
def _values(rows, column: str) -> list[float]:
    return [float(v) for v in rows[column] if v is not None and not _isnan(v)] if column in rows else []


def _isnan(value) -> bool:
    try:
        return math.isnan(float(value))
    except (TypeError, ValueError):
        return True


def _by_seed(rows, column: str) -> dict[int, float]:
    return {int(s): float(v) for s, v in zip(rows["seed"], rows[column]) if not _isnan(v)}


def log_log_slope(xs, ys) -> tuple[float, float, int]:
    """Least-squares slope of ``log y`` against ``log x`` over the positive pairs: ``(slope, stderr, n)``.

    ``scipy.stats.linregress``; NaN with fewer than three points or a single x.
    """
    import numpy as np
    from scipy.stats import linregress

    pairs = [(float(x), float(y)) for x, y in zip(xs, ys) if not _isnan(y) and float(x) > 0 and float(y) > 0]
    if len(pairs) < 3 or len({x for x, _ in pairs}) < 2:
        return math.nan, math.nan, len(pairs)
    fit = linregress(np.log([x for x, _ in pairs]), np.log([y for _, y in pairs]))
    return float(fit.slope), float(fit.stderr), len(pairs)


def best_learning_rates(rows, column: str = "train_loss") -> dict[float, tuple[float, float]]:
    """For each width in ``rows`` (one parametrization's GD runs): ``{width: (best lr, its median loss)}``.

    The best learning rate has the smallest median ``column`` over seeds; a run without a
    finite value (diverged) counts as ``+inf``, so a rate where half the seeds or more
    diverged loses to every rate where fewer did.
    """
    import numpy as np

    best = {}
    for width in sorted(set(rows["width"])):
        part = rows[rows["width"] == width]
        medians = {}
        for lr in sorted(set(part["lr"])):
            values = [float(v) if not _isnan(v) and math.isfinite(float(v)) else math.inf
                      for v in part[part["lr"] == lr][column]]
            medians[float(lr)] = float(np.median(values)) if values else math.inf
        lr = min(medians, key=lambda r: (medians[r], r))
        best[float(width)] = (lr, medians[lr])
    return best


def _grid_steps(a: float, b: float, lrs: list[float]) -> int:
    """How many grid positions apart two learning rates of the grid ``lrs`` lie."""
    ordered = sorted(lrs)
    return abs(ordered.index(b) - ordered.index(a))


# ------------------------------------------------------------------ judges
def _verdict(claim: str, outcomes: list[str], panels: list[PanelVerdict], empty: str) -> Verdict:
    """The claim's verdict from its panels' outcomes (inconclusive, saying ``empty``, without any)."""
    if not outcomes:
        panels.append(PanelVerdict("", "inconclusive", empty))
    return Verdict(claim, _RULES[claim], _combine(outcomes), panels, statement=_STATEMENTS[claim])


def _judge_ntk(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-ntk"
    rows = frame[frame["method"] == NTK]
    panels, outcomes = [], []
    parametrizations = sorted(set(rows["parametrization"])) if "parametrization" in rows else [None]
    for parametrization in parametrizations:
        part_p = rows if parametrization is None else rows[rows["parametrization"] == parametrization]
        for depth in sorted(set(part_p["depth"])):
            part = part_p[part_p["depth"] == depth]
            widths = sorted(set(part["width"]))  # every run's width, with a finite NTK or not
            first, last = widths[0], widths[-1]
            at = {w: part[(part["width"] == w) & part["lambda_min"].notna()] for w in widths}
            failed = int(part["lambda_min"].isna().sum())
            lam = {w: Stat.of(at[w]["lambda_min"]) for w in widths}
            spread = {w: Stat.of((at[w]["lambda_min_std"] / at[w]["lambda_min"]).tolist()) for w in widths}
            if lam[last].n == 0:
                positive = "fails"  # no draw at the largest width gave a finite NTK
            else:
                positive = "holds" if _exceeds_by(lam[last], POSITIVE_STANDARD_ERRORS) else (
                    "fails" if not lam[last].median > 0 else "inconclusive")
            if len(widths) < 2 or not (math.isfinite(spread[first].median) and math.isfinite(spread[last].median)):
                concentrates = "inconclusive"  # one width, or a single draw per seed: no spread to compare
            else:
                concentrates = "holds" if spread[last].median <= CONCENTRATION_RATIO * spread[first].median else "fails"
            conditions = [positive, concentrates]
            limits = _values(at[last], "lambda_min_limit")
            limit_text = ""
            if limits and any(limit <= 0 for limit in limits):
                conditions.append("inconclusive")
                limit_text = "; a closed-form limit is not positive (a singular infinite-width kernel)"
            elif limits:
                ratio = Stat.of([float(v) / float(limit) for v, limit in
                                 zip(at[last]["lambda_min"], at[last]["lambda_min_limit"]) if not _isnan(limit)])
                conditions.append("holds" if abs(ratio.median - 1) <= LIMIT_TOLERANCE else "fails")
                limit_text = (f"; measured / infinite-width value (closed form, each seed's training set) at "
                              f"width {last:g}: {ratio.text}; limit median {Stat.of(limits).median:.3g}")
            outcome = _combine(conditions)
            outcomes.append(outcome)
            name = f"{parametrization}, depth {depth:g}" if parametrization else f"depth {depth:g}"
            growth = lam[last].median / lam[first].median if lam[first].median > 0 else math.nan
            panels.append(PanelVerdict(name, outcome, (
                "median lambda_min: " + "; ".join(f"width {w:g}: {lam[w].text}" for w in widths)
                + f" (x{growth:.3g} from width {first:g} to {last:g}); relative spread over draws (std/mean): "
                + ", ".join(f"{spread[w].median:.3g}" for w in widths) + f" ({concentrates})" + limit_text
                + (f"; {failed} of {len(part)} runs gave a non-finite NTK" if failed else ""))))
    return _verdict(claim, outcomes, panels, "no NTK runs")


def _exceeds_by(stat: Stat, count: float) -> bool:
    return math.isfinite(stat.stderr) and stat.n > 1 and stat.median > count * stat.stderr


def _judge_convergence(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-convergence"
    rows = frame[frame["method"] == GD]
    panels, outcomes = [], []
    for depth in sorted(set(rows["depth"])):
        part = rows[rows["depth"] == depth]
        widths = sorted(set(part["width"]))
        rates = {w: Stat.of(part[part["width"] == w]["loss_rate"]) for w in widths}
        predicted = {w: Stat.of(part[part["width"] == w]["predicted_rate"]) for w in widths}
        runs = _values(part, "loss_rate")
        positive = sum(r > 0 for r in runs)
        linear = "holds" if runs and positive == len(part) else "fails"
        bound_parts, bound = [], []
        for w in widths:
            here = part[part["width"] == w]
            measured, bounded = _by_seed(here, "loss_rate"), _by_seed(here, "predicted_rate")
            mean, stderr, n = _mean_and_stderr([measured[s] - bounded[s] for s in sorted(set(measured) & set(bounded))])
            bound.append("inconclusive" if n < 2 else ("fails" if _exceeds(-mean, stderr) else "holds"))
            bound_parts.append(f"width {w:g}: {rates[w].median:.3g} vs {predicted[w].median:.3g} "
                               f"(difference {mean:.3g} ± {stderr:.2g})")
        keep = rates[widths[-1]].median / rates[widths[0]].median if rates[widths[0]].median > 0 else math.nan
        keeps = "inconclusive" if len(widths) < 2 or not math.isfinite(keep) else (
            "holds" if keep >= RATE_KEEP else "fails")
        outcome = _combine([linear, _combine(bound), keeps])
        outcomes.append(outcome)
        gap = {w: Stat.of((part[part["width"] == w]["gen_loss"] - part[part["width"] == w]["train_loss"]).tolist())
               for w in widths}
        panels.append(PanelVerdict(f"depth {depth:g}", outcome, (
            f"{positive} of {len(part)} runs with a positive rate: {linear}; measured vs predicted rate (median, "
            "per step): " + "; ".join(bound_parts) + f"; bound {_combine(bound)}; rate at width {widths[-1]:g} / "
            f"width {widths[0]:g}: {keep:.3g} ({keeps}); generalization gap (test - training loss): "
            + "; ".join(f"width {w:g}: {gap[w].text}" for w in widths))))
    return _verdict(claim, outcomes, panels, "no GD runs")


def _judge_lazy(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-lazy"
    rows = frame[frame["method"] == GD]
    panels, outcomes = [], []
    for depth in sorted(set(rows["depth"])):
        part = rows[rows["depth"] == depth]
        widths = sorted(set(part["width"]))
        texts, conditions = [], []
        for column in ("param_change", "ntk_change"):
            order = LAZY_ORDERS[column](depth)
            slope, stderr, n = log_log_slope(part["width"], part[column])
            conditions.append("holds" if _exceeds(-slope, stderr) else (
                "fails" if math.isfinite(slope) and slope >= 0 else "inconclusive"))
            medians = ", ".join(f"{Stat.of(part[part['width'] == w][column]).median:.3g}" for w in widths)
            texts.append(f"{column}: medians {medians} at widths {', '.join(f'{w:g}' for w in widths)}; log-log slope "
                         f"{slope:.3f} ± {stderr:.2g} over {n} runs (lazy-regime order {order:g})")
        outcome = _combine(conditions)
        outcomes.append(outcome)
        panels.append(PanelVerdict(f"depth {depth:g}", outcome, "; ".join(texts)))
    return _verdict(claim, outcomes, panels, "no GD runs")


def _judge_lr_transfer(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-lr-transfer"
    rows = frame[frame["method"] == GD]
    panels, outcomes = [], []
    for parametrization in ("ntk", "mup", "standard"):
        part = rows[rows["parametrization"] == parametrization]
        if part.empty:
            continue
        lrs = sorted({float(v) for v in part["lr"]})
        best = best_learning_rates(part)
        best_test = best_learning_rates(part, "gen_loss")
        widths = sorted(best)
        shift = _grid_steps(best[widths[0]][0], best[widths[-1]][0], lrs)
        untrained = [w for w in widths if not math.isfinite(best[w][1])]
        if len(widths) < 2 or untrained:
            outcome = "inconclusive"  # one width, or a width where every learning rate diverged
            wanted = "transfers" if parametrization != "standard" else "drifts"
        elif parametrization == "standard":
            outcome = "holds" if shift >= DRIFT_STEPS else ("fails" if shift == 0 else "inconclusive")
            wanted = "drifts"
        else:
            outcome = "holds" if shift <= TRANSFER_STEPS else ("fails" if shift > DRIFT_STEPS else "inconclusive")
            wanted = "transfers"
        outcomes.append(outcome)
        diverged = int((part["status"] == "diverged").sum())
        panels.append(PanelVerdict(f"{parametrization}: the best learning rate {wanted}", outcome, (
            "best lr (median training loss): " + "; ".join(
                f"width {w:g}: {best[w][0]:g} ({best[w][1]:.3g})" for w in widths)
            + f"; shift {shift} grid steps; by median test loss: "
            + "; ".join(f"width {w:g}: {best_test[w][0]:g} ({best_test[w][1]:.3g})" for w in widths)
            + f"; {diverged} of {len(part)} runs diverged"
            + (f"; every learning rate diverged at width {', '.join(f'{w:g}' for w in untrained)}" if untrained
               else ""))))
    return _verdict(claim, outcomes, panels, "no GD runs")


def _gap_change(part, sampler: str, first, last) -> tuple[float, float, int, dict]:
    """Per-seed (sampler - GD) test error at each width; the paired change from ``first`` to ``last``."""
    gaps = {}
    for w in (first, last):
        s = _by_seed(part[(part["method"] == sampler) & (part["width"] == w)], "test_error")
        g = _by_seed(part[(part["method"] == GD) & (part["width"] == w)], "test_error")
        gaps[w] = {seed: s[seed] - g[seed] for seed in sorted(set(s) & set(g))}
    common = sorted(set(gaps[first]) & set(gaps[last]))
    mean, stderr, n = _mean_and_stderr([gaps[last][s] - gaps[first][s] for s in common])
    return mean, stderr, n, gaps


def _judge_volume(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-volume"
    panels, outcomes = [], []
    depths = sorted(set(frame["depth"]))
    for depth in depths:
        part = frame[frame["depth"] == depth]
        widths = sorted(set(part["width"]))
        first, last = widths[0], widths[-1]
        lines = []
        for w in widths:
            here = part[part["width"] == w]
            cells = []
            for method, label in ((GNC, "G&C Gaussian"), (GNC_UNIFORM, "G&C uniform"), (GD, "GD"),
                                  (PRIORS[GNC], "Gaussian prior"), (PRIORS[GNC_UNIFORM], "uniform prior")):
                rows = here[here["method"] == method]
                if rows.empty:
                    continue
                mean, stderr, n = _mean_and_stderr(_values(rows, "test_error"))
                text = f"{label} {mean:.3f} ± {stderr:.2g} (n={n})"
                if method in (GNC, GNC_UNIFORM):
                    rate = Stat.of(_values(rows, "acceptance_rate"))
                    text += f", acceptance {rate.median:.2g}"
                cells.append(text)
            lines.append(f"width {w:g}: " + ", ".join(cells))
        changes, outcome = [], None
        for sampler in (GNC, GNC_UNIFORM):
            if part[part["method"] == sampler].empty:
                continue
            mean, stderr, n, _ = _gap_change(part, sampler, first, last)
            verdict = "inconclusive" if len(widths) < 2 else (
                "holds" if _exceeds(mean, stderr) else ("fails" if _exceeds(-mean, stderr) else "inconclusive"))
            if sampler == GNC:
                outcome = verdict
                outcomes.append(verdict)
            changes.append(f"{'Gaussian' if sampler == GNC else 'uniform'} prior: change of G&C - GD from width "
                           f"{first:g} to {last:g}: {mean:.3g} ± {stderr:.2g} over {n} seeds ({verdict})")
        outcome = outcome or "inconclusive"
        panels.append(PanelVerdict(f"depth {depth:g}", outcome, "; ".join(changes) + ". Test error (mean ± SE "
                                   "over seeds): " + "; ".join(lines)))
    if len(depths) > 1:
        parts = []
        for w in sorted(set(frame["width"])):
            cells = []
            for method, label in ((GNC, "G&C Gaussian"), (GD, "GD")):
                a = _by_seed(frame[(frame["method"] == method) & (frame["width"] == w) & (frame["depth"] == depths[0])],
                             "test_error")
                b = _by_seed(frame[(frame["method"] == method) & (frame["width"] == w)
                                   & (frame["depth"] == depths[-1])], "test_error")
                mean, stderr, n = _mean_and_stderr([b[s] - a[s] for s in sorted(set(a) & set(b))])
                cells.append(f"{label} {mean:+.3f} ± {stderr:.2g}")
            parts.append(f"width {w:g}: " + ", ".join(cells))
        panels.append(PanelVerdict(f"depth {depths[0]:g} -> {depths[-1]:g} (measured, paired over seeds)",
                                   "measured", "change of test error: " + "; ".join(parts)))
    if not outcomes:
        panels.append(PanelVerdict("", "inconclusive", "no G&C runs with the Gaussian prior and GD runs to compare"))
    return Verdict(claim, _RULES[claim], _combine_panels(outcomes), panels, statement=_STATEMENTS[claim])


def _combine_panels(outcomes: list[str]) -> str:
    """All panels hold: holds; all fail: fails; a mix with at least one holding: partly holds."""
    if outcomes and all(o == "holds" for o in outcomes):
        return "holds"
    if outcomes and all(o == "fails" for o in outcomes):
        return "fails"
    return "partly holds" if "holds" in outcomes else ("fails" if "fails" in outcomes else "inconclusive")


def _judge_volume_train(frame, out_dir: Path, coords: list[str]) -> Verdict:
    claim = "mlp-volume-train"
    panels, outcomes = [], []
    sizes = sorted(set(frame["train"])) if "train" in frame else []
    for n in sizes:
        here = frame[frame["train"] == n]
        sampler, gd = _by_seed(here[here["method"] == GNC], "test_error"), _by_seed(here[here["method"] == GD],
                                                                                   "test_error")
        mean, stderr, count = _mean_and_stderr([sampler[s] - gd[s] for s in sorted(set(sampler) & set(gd))])
        if count < 2:
            outcome = "inconclusive"
        else:
            outcome = "holds" if mean <= PARITY_BAND else (
                "fails" if _exceeds(mean - PARITY_BAND, stderr) else "inconclusive")
        outcomes.append(outcome)
        cells = []
        for method, label in ((GNC, "G&C"), (GD, "GD"), (PRIORS[GNC], "prior")):
            m, e, k = _mean_and_stderr(_values(here[here["method"] == method], "test_error"))
            cells.append(f"{label} {m:.3f} ± {e:.2g} (n={k})")
        rows = here[here["method"] == GNC]
        rate = Stat.of(_values(rows, "acceptance_rate"))
        accepted = Stat.of(_values(rows, "accepted"))
        none = int((rows["status"] == "no_acceptance").sum()) if "status" in rows else 0
        panels.append(PanelVerdict(f"n = {n:g}", outcome, (
            "test error (mean ± SE over seeds): " + ", ".join(cells) + f"; G&C - GD {mean:+.3f} ± {stderr:.2g} over "
            f"{count} seeds; acceptance {rate.median:.2g} (median {accepted.median:.0f} accepted"
            + (f", {none} of {len(rows)} seeds accepted nothing" if none else "") + ")")))
    return _verdict(claim, outcomes, panels, "no runs with a number of training points")


_JUDGES: dict[str, Callable] = {
    "mlp-ntk": _judge_ntk,
    "mlp-convergence": _judge_convergence,
    "mlp-lazy": _judge_lazy,
    "mlp-lr-transfer": _judge_lr_transfer,
    "mlp-volume": _judge_volume,
    "mlp-volume-train": _judge_volume_train,
}


# ------------------------------------------------------------------ plots
def _medians(rows, key: str, column: str):
    xs = sorted(set(rows[key]))
    return xs, [Stat.of(_values(rows[rows[key] == x], column)).median for x in xs]


def _width_ticks(ax, widths) -> None:
    """Label a log x axis at the swept widths only (plain numbers, no minor labels)."""
    from matplotlib.ticker import NullFormatter, ScalarFormatter

    ax.set_xticks([float(w) for w in widths])
    ax.xaxis.set_major_formatter(ScalarFormatter())
    ax.xaxis.set_minor_formatter(NullFormatter())


def _plot(claim: str, frame, out_stem: Path, title: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cmap = plt.cm.viridis
    if claim == "mlp-ntk":
        rows = frame[frame["method"] == NTK]
        depths = sorted(set(rows["depth"]))
        fig, axes = plt.subplots(2, len(depths), figsize=(4.6 * len(depths), 7.5), squeeze=False)
        for j, depth in enumerate(depths):
            for i, parametrization in enumerate(sorted(set(rows["parametrization"]))):
                part = rows[(rows["depth"] == depth) & (rows["parametrization"] == parametrization)]
                color = cmap(i / max(1, len(set(rows["parametrization"])) - 1) * 0.8)
                xs, ys = _medians(part, "width", "lambda_min")
                axes[0][j].plot(xs, ys, "o-", color=color, label=f"{parametrization}: median lambda_min")
                limits = _values(part, "lambda_min_limit")
                if limits:
                    axes[0][j].axhline(sum(limits) / len(limits), color=color, linestyle=":",
                                       label=f"{parametrization}: infinite width (closed form)")
                part = part.assign(cv=part["lambda_min_std"] / part["lambda_min"])
                xs, ys = _medians(part, "width", "cv")
                axes[1][j].plot(xs, ys, "o-", color=color, label=parametrization)
            axes[0][j].set(xscale="log", yscale="log", xlabel="width $k$", ylabel="NTK lambda_min",
                           title=f"depth {depth:g}")
            axes[1][j].set(xscale="log", yscale="log", xlabel="width $k$",
                           ylabel="spread over draws (std/mean of lambda_min)")
            for ax in axes[:, j]:
                ax.legend(fontsize=7)
    elif claim in ("mlp-convergence", "mlp-lazy"):
        rows = frame[frame["method"] == GD]
        depths = sorted(set(rows["depth"]))
        columns = ((("loss_rate", "measured rate"), ("predicted_rate", "NTK bound")),
                   (("gap", "test - training loss"),)) if claim == "mlp-convergence" else (
            (("param_change", "||theta_T - theta_0|| / ||theta_0||"),), (("ntk_change", "||K_T - K_0|| / ||K_0||"),))
        rows = rows.assign(gap=rows["gen_loss"] - rows["train_loss"])
        fig, axes = plt.subplots(1, len(columns), figsize=(5.5 * len(columns), 4.2), squeeze=False)
        for ax, group in zip(axes[0], columns):
            for i, depth in enumerate(depths):
                part = rows[rows["depth"] == depth]
                for (column, label), style in zip(group, ("o-", "s--")):
                    xs, ys = _medians(part, "width", column)
                    ax.plot(xs, ys, style, color=cmap(i / max(1, len(depths) - 1) * 0.8),
                            label=f"depth {depth:g}: {label}")
            if claim == "mlp-lazy" and len(rows):
                import numpy as np

                xs = np.array(sorted(set(rows["width"])), dtype=float)
                y0 = Stat.of(_values(rows[rows["width"] == xs[0]], group[0][0])).median
                ax.plot(xs, y0 * (xs / xs[0]) ** -0.5, ":", color="#555555", label="slope -1/2")
                ax.plot(xs, y0 * (xs / xs[0]) ** -1.0, "-.", color="#999999", label="slope -1")
            ax.set(xscale="log", yscale="log" if claim == "mlp-lazy" or group[0][0] != "gap" else "linear",
                   xlabel="width $k$", ylabel=group[0][1] if len(group) == 1 else "rate per step (median)")
            ax.legend(fontsize=7)
    elif claim == "mlp-lr-transfer":
        rows = frame[frame["method"] == GD]
        parametrizations = [p for p in ("standard", "ntk", "mup") if p in set(rows["parametrization"])]
        fig, axes = plt.subplots(2, len(parametrizations), figsize=(4.8 * len(parametrizations), 7.5),
                                 squeeze=False)
        widths = sorted(set(rows["width"]))
        for j, parametrization in enumerate(parametrizations):
            part = rows[rows["parametrization"] == parametrization]
            for row, column in enumerate(("train_loss", "gen_loss")):
                best = best_learning_rates(part, column)
                shown = []
                for i, width in enumerate(widths):
                    xs, ys = _medians(part[part["width"] == width], "lr", column)
                    color = cmap(i / max(1, len(widths) - 1) * 0.8)
                    axes[row][j].plot(xs, ys, "o-", color=color, label=f"width {width:g}")
                    if width in best:
                        axes[row][j].plot([best[width][0]], [best[width][1]], "*", color=color, markersize=14)
                        shown += [y for x, y in zip(xs, ys) if x <= best[width][0] and math.isfinite(y)]
                if shown:  # runs that blew up (finite but huge) past the best rate would flatten the curves
                    axes[row][j].set_ylim(top=10 * max(shown))
                axes[row][j].set(xscale="log", yscale="log", xlabel="learning rate",
                                 ylabel=f"{'training' if column == 'train_loss' else 'test'} loss (median; * best)",
                                 title=parametrization if row == 0 else "")
                axes[row][j].legend(fontsize=7)
    elif claim == "mlp-volume":
        depths = sorted(set(frame["depth"]))
        fig, axes = plt.subplots(2, len(depths), figsize=(5 * len(depths), 7.5), squeeze=False)
        styles = {GNC: ("#1f77b4", "o-", "G&C, Gaussian prior"), GNC_UNIFORM: ("#17becf", "o--", "G&C, uniform prior"),
                  GD: ("#d62728", "s-", "GD"), PRIORS[GNC]: ("#555555", ":", "Gaussian prior (chance)"),
                  PRIORS[GNC_UNIFORM]: ("#999999", ":", "uniform prior (chance)")}
        for j, depth in enumerate(depths):
            part = frame[frame["depth"] == depth]
            for method, (color, style, label) in styles.items():
                rows = part[part["method"] == method]
                if rows.empty:
                    continue
                xs = sorted(set(rows["width"]))
                stats = [_mean_and_stderr(_values(rows[rows["width"] == x], "test_error")) for x in xs]
                axes[0][j].errorbar(xs, [s[0] for s in stats], yerr=[s[1] if math.isfinite(s[1]) else 0 for s in stats],
                                    fmt=style, color=color, label=label, capsize=3)
                if method in (GNC, GNC_UNIFORM):
                    xs, ys = _medians(rows, "width", "acceptance_rate")
                    axes[1][j].plot(xs, ys, style, color=color, label=label)
            axes[0][j].set(xscale="log", xlabel="width $k$", ylabel="test error (mean ± SE over seeds)",
                           title=f"depth {depth:g}")
            axes[1][j].set(xscale="log", yscale="log", xlabel="width $k$", ylabel="acceptance rate (median)")
            for ax in axes[:, j]:
                _width_ticks(ax, sorted(set(part["width"])))
                ax.legend(fontsize=7)
    elif claim == "mlp-volume-train":
        fig, axes = plt.subplots(1, 2, figsize=(10, 4.2), squeeze=False)
        styles = {GNC: ("#1f77b4", "o-", "G&C, Gaussian prior"), GD: ("#d62728", "s-", "GD"),
                  PRIORS[GNC]: ("#555555", ":", "prior (chance)")}
        for method, (color, style, label) in styles.items():
            rows = frame[frame["method"] == method]
            if rows.empty:
                continue
            xs = sorted(set(rows["train"]))
            stats = [_mean_and_stderr(_values(rows[rows["train"] == x], "test_error")) for x in xs]
            axes[0][0].errorbar(xs, [s[0] for s in stats], yerr=[s[1] if math.isfinite(s[1]) else 0 for s in stats],
                                fmt=style, color=color, label=label, capsize=3)
            if method == GNC:
                xs, ys = _medians(rows, "train", "acceptance_rate")
                axes[0][1].plot(xs, ys, style, color=color, label=label)
        axes[0][0].set(xscale="log", xlabel="training points $n$", ylabel="test error (mean ± SE over seeds)")
        axes[0][1].set(xscale="log", yscale="log", xlabel="training points $n$", ylabel="acceptance rate (median)")
        for ax in axes[0]:
            _width_ticks(ax, sorted(set(frame["train"])))
            ax.legend(fontsize=7)
    else:
        return []
    return save_figure(fig, out_stem, title)


def judge_study(claim: str, frame: "pd.DataFrame", out_dir: Path, coords: list[str], *, stem: Path | None = None,
                title: str = "") -> tuple[Verdict, list[Path]]:
    """The verdict of an MLP study sweep and its extra plot (``<stem>.png|pdf``), from its rows.

    Args:
        claim: One of :data:`STUDY_CLAIMS`.
        frame: The sweep's rows (:func:`volumelab.experiments.results.rows_to_frame`); the grid's
            fields appear under their short names (``width``, ``depth``, ``parametrization``, ``lr``).
        out_dir: The sweep's folder (unused: these studies read their rows only).
        coords: The grid's short names.
        stem: Where to write the extra plot (none without).
        title: The plot's title.
    """
    frame = _with_fixed_coords(frame)
    verdict = _JUDGES[claim](frame, Path(out_dir), coords)
    paths = _plot(claim, frame, stem, title) if stem is not None and not frame.empty else []
    return verdict, paths


def _with_fixed_coords(frame):
    """The frame with ``width``, ``depth``, ``parametrization``, ``lr`` and ``train`` columns even where the grid
    does not sweep them (read from each run's stored configuration)."""
    frame = frame.copy()
    sources = {"width": ("model", "width"), "depth": ("model", "depth"),
               "parametrization": ("model", "parametrization"), "lr": ("method", "lr"), "train": ("problem", "train")}
    for name, (section, key) in sources.items():
        if name in frame and frame[name].notna().all():
            continue
        if "config" not in frame:
            continue
        frame[name] = [(config.get(section) or {}).get(key) if isinstance(config, dict) else None
                       for config in frame["config"]]
    return frame
