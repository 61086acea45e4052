"""Measured verdicts on the paper's claims, computed from a sweep's summary table.

The rules (also stated in every report, :data:`WIDTH_RULE` and :data:`DEPTH_RULE`, and in
docs/experiments.md):

* G&C is read against chance at the same point: ``r(x) = G&C median / prior median``
  (the prior's loss is the chance level measured on the same draws), and
  ``gap(x) = 1 - r(x)`` is G&C's advantage over chance.
* **Width claim** (arXiv 2506.03931, Thm. 1 and Fig. 1): in each panel, G&C approaches
  chance if ``gap(largest width) <= 0.15`` and the gap shrinks,
  ``gap(smallest width) - gap(largest width) > 2 SE``; GD stays low if, at every width,
  ``GD median / prior median <= 0.5`` with ``0.5 - GD/prior > 2 SE``.
* **Depth claim** (Thm. 2 and Fig. 2): in each panel, G&C's advantage over chance grows
  with depth if ``r(largest depth) <= 0.8 * r(smallest depth)``, the Spearman rank
  correlation between depth and ``r`` is at most -0.5, and
  ``r(smallest depth) - r(largest depth) > 2 SE``. Where G&C sampled the unnormalized
  prior (figure 11, an ablation) the same rule says whether the depth improvement
  survives without normalization.
* **Evidence** (both claims): medians are over the seeds with a loss; a point a rule
  needs where fewer than half of the seeds have a loss makes the panel inconclusive.
  Each median has the standard error of
  :func:`volumelab.plotting.figures.median_standard_error`; ratios and differences
  combine them as independent. A panel holds when every condition holds on the medians
  and every claimed change exceeds 2 SE, fails when a condition does not hold on the
  medians, and is inconclusive otherwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEPTH_RULE", "EVIDENCE_RULE", "PanelVerdict", "SummaryPoint", "Verdict", "WIDTH_RULE", "judge", "ratio_and_stderr",
]

WIDTH_GAP_MAX = 0.15
GD_FRACTION_MAX = 0.5
DEPTH_RATIO_MAX = 0.8
DEPTH_SPEARMAN_MAX = -0.5
#: A claimed change counts only where it exceeds this many standard errors of the change.
CHANGE_STANDARD_ERRORS = 2.0
#: A point where fewer than this fraction of the seeds have a loss makes a verdict inconclusive.
MIN_SEED_FRACTION = 0.5

EVIDENCE_RULE = (
    f"Medians are over the seeds with a loss (for G&C, the seeds that accepted a draw); a point the rule needs "
    f"where fewer than half of the seeds have a loss makes the panel inconclusive, since the seeds left out are "
    f"those where G&C does worst. Each median has the standard error SE = sqrt(pi/2) * sqrt((IQR/1.349)^2 + "
    f"mean(s_i^2)) / sqrt(n) over its n seeds with a loss (IQR: their interquartile range; s_i: each run's own "
    f"standard error, 0 for GD); a ratio a/b of medians has SE sqrt(SE_a^2 + (a/b)^2 SE_b^2) / b and a difference "
    f"sqrt(SE_1^2 + SE_2^2). A claimed change counts only where it exceeds {CHANGE_STANDARD_ERRORS:g} SE. A panel "
    f"holds when every condition holds on the medians and every claimed change exceeds {CHANGE_STANDARD_ERRORS:g} "
    f"SE; it fails when a condition does not hold on the medians; otherwise (the medians agree with the claim but "
    f"a change is within {CHANGE_STANDARD_ERRORS:g} SE, or a SE is unknown because fewer than two seeds have a "
    f"loss) it is inconclusive. A figure holds when every panel holds, fails when some panel fails and none holds, "
    f"is inconclusive when every panel is, and partly holds otherwise."
)
WIDTH_RULE = (
    f"G&C is read against chance at the same width: r = G&C median / prior median and gap = 1 - r (G&C's "
    f"advantage over chance). G&C approaches chance if, at the largest width, gap <= {WIDTH_GAP_MAX} and the gap "
    f"has shrunk since the smallest width by more than {CHANGE_STANDARD_ERRORS:g} SE; GD stays low if, at every "
    f"width, GD median / prior median <= {GD_FRACTION_MAX:g}, below {GD_FRACTION_MAX:g} by more than "
    f"{CHANGE_STANDARD_ERRORS:g} SE. Points needed: G&C and prior at the smallest and largest width, GD and prior "
    f"at every width. The claim holds in a panel when both hold. " + EVIDENCE_RULE
)
DEPTH_RULE = (
    f"G&C is read against chance at the same depth: r = G&C median / prior median (G&C's advantage over chance is "
    f"1 - r; the prior's own loss changes with depth, so G&C's absolute loss alone does not show the claim). "
    f"G&C's advantage over chance grows with depth if r at the largest depth is at most {DEPTH_RATIO_MAX:g} times "
    f"r at the smallest depth, the Spearman rank correlation between depth and r is at most "
    f"{DEPTH_SPEARMAN_MAX:g}, and r falls from the smallest to the largest depth by more than "
    f"{CHANGE_STANDARD_ERRORS:g} SE. Points needed: G&C and prior at every depth. The claim holds in a panel when "
    f"this holds; where G&C sampled the unnormalized prior (an ablation) the same rule says whether the depth "
    f"improvement survives without normalization. " + EVIDENCE_RULE
)


@dataclass
class PanelVerdict:
    """The verdict in one panel (e.g. one activation)."""

    panel: str
    outcome: str  # "holds" | "fails" | "inconclusive"
    detail: str


@dataclass
class Verdict:
    """The verdict on one claim over all panels of a sweep.

    Attributes:
        claim: ``"width"`` or ``"depth"``.
        rule: The rule's text (printed in reports).
        outcome: ``"holds"``, ``"fails"``, ``"partly holds"`` or ``"inconclusive"``.
        panels: One verdict per panel.
        ablation: The depth claim measured on the unnormalized prior (figure 11): the
            outcome says whether the depth improvement survives without normalization.
    """

    claim: str
    rule: str
    outcome: str
    panels: list[PanelVerdict] = field(default_factory=list)
    ablation: bool = False

    @property
    def heading(self) -> str:
        """What the verdict is on, for a report: the paper's claim or the ablation."""
        return "Ablation (G&C's prior not normalized)" if self.ablation else "Paper's claim"

    @property
    def sentence(self) -> str:
        statement = {
            "width": "G&C's generalization loss approaches the prior's as width grows while GD's stays low",
            "depth": "G&C's advantage over chance (the prior's loss at the same depth) grows with depth",
        }.get(self.claim, "")
        if self.ablation:
            statement = "without normalization, " + statement + self._survival()
        return f"**{self.outcome.upper()}** (measured): {statement}."

    def _survival(self) -> str:
        """Per panel, whether the depth improvement survives without normalization."""
        words = {"holds": "it survives for", "fails": "it does not survive for", "inconclusive": "inconclusive for"}
        parts = []
        for outcome, phrase in words.items():
            names = [p.panel or "the sweep" for p in self.panels if p.outcome == outcome]
            if names:
                parts.append(f"{phrase} {', '.join(names)}")
        return (" (the paper's depth result uses the normalized prior): " + "; ".join(parts)) if parts else ""


@dataclass(frozen=True)
class SummaryPoint:
    """One (panel, method, x) row of the summary table: median, its standard error and seed counts."""

    median: float
    stderr: float
    with_loss: int
    runs: int

    @property
    def scarce(self) -> bool:
        """Fewer than half of the seeds have a loss."""
        return self.with_loss < MIN_SEED_FRACTION * self.runs


@dataclass(frozen=True)
class _Change:
    """A change the claim says is positive, with its standard error."""

    name: str
    value: float
    stderr: float

    @property
    def shown(self) -> bool:
        return math.isfinite(self.stderr) and self.value > CHANGE_STANDARD_ERRORS * self.stderr

    @property
    def text(self) -> str:
        return f"{self.name} {self.value:.3g} ± {self.stderr:.2g}"


def _points(summary: "pd.DataFrame", panel, method: str) -> dict[float, SummaryPoint]:
    rows = summary[(summary["panel"] == panel) & (summary["method"] == method)].sort_values("x")
    points = {}
    for _, row in rows.iterrows():
        runs = int(row["runs"]) if "runs" in row else 0
        with_loss = int(row["with_loss"]) if "with_loss" in row else runs - int(row.get("missing", 0))
        stderr = float(row["median_stderr"]) if "median_stderr" in row else math.nan
        points[float(row["x"])] = SummaryPoint(float(row["median"]), stderr, with_loss, runs)
    return points


def ratio_and_stderr(numerator: SummaryPoint, denominator: SummaryPoint) -> tuple[float, float]:
    """``numerator / denominator`` of two medians and its standard error.

    The errors are combined as independent (first order):
    ``SE = sqrt(SE_n^2 + r^2 SE_d^2) / d``. ``(NaN, NaN)`` where the denominator is not positive.
    """
    if not denominator.median > 0:
        return math.nan, math.nan
    value = numerator.median / denominator.median
    stderr = math.sqrt(numerator.stderr ** 2 + value ** 2 * denominator.stderr ** 2) / denominator.median
    return value, stderr


def _scarcity(needed: list[tuple[str, str, float, SummaryPoint | None]]) -> str | None:
    """Which needed points have fewer than half of their seeds with a loss, in words (``None``: none)."""
    short = []
    for label, x_name, x, point in needed:
        if point is None:
            short.append(f"{label} at {x_name} {x:g} (no runs)")
        elif point.scarce:
            short.append(f"{label} at {x_name} {x:g} ({point.with_loss} of {point.runs} seeds)")
    if not short:
        return None
    return ("fewer than half of the seeds have a loss: " + ", ".join(dict.fromkeys(short))
            + "; the median over the others would leave out the seeds where G&C does worst")


def _outcome(conditions: dict[str, bool], changes: list[_Change]) -> tuple[str, str]:
    """``(outcome, reason)`` from conditions on the medians and the changes the claim needs."""
    missed = [name for name, met in conditions.items() if not met]
    if missed:
        return "fails", "not met on the medians: " + "; ".join(missed)
    unresolved = [c for c in changes if not c.shown]
    if unresolved:
        return "inconclusive", (f"the medians agree with the claim, but within {CHANGE_STANDARD_ERRORS:g} SE: "
                                + "; ".join(c.text + ("" if math.isfinite(c.stderr) else " (SE unknown)")
                                            for c in unresolved))
    return "holds", f"every change exceeds {CHANGE_STANDARD_ERRORS:g} SE"


def _spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return float("nan")
    if len(set(ys)) == 1:  # no trend at all (spearmanr would warn and return NaN)
        return 0.0
    return float(spearmanr(xs, ys).statistic)


def _judge_width(summary, panel) -> PanelVerdict:
    gnc, gd, prior = (_points(summary, panel, m) for m in ("gnc", "gd", "prior"))
    if not gnc or not prior:
        return PanelVerdict(str(panel), "inconclusive", "no G&C or prior data")
    if not gd:
        return PanelVerdict(str(panel), "inconclusive", "no GD data")
    first, last = min(gnc), max(gnc)
    needed = [("G&C", "width", x, gnc[x]) for x in (first, last)]
    needed += [("prior", "width", x, prior.get(x)) for x in sorted({first, last, *gd})]
    needed += [("GD", "width", x, gd[x]) for x in gd]
    scarce = _scarcity(needed)
    if scarce:
        return PanelVerdict(str(panel), "inconclusive", scarce)
    ratio_first, stderr_first = ratio_and_stderr(gnc[first], prior[first])
    ratio_last, stderr_last = ratio_and_stderr(gnc[last], prior[last])
    gd_ratios = {x: ratio_and_stderr(gd[x], prior[x]) for x in gd}
    if any(math.isnan(v) for v in (ratio_first, ratio_last, *(r for r, _ in gd_ratios.values()))):
        return PanelVerdict(str(panel), "inconclusive", "a prior median is not positive")
    gap_first, gap_last = 1 - ratio_first, 1 - ratio_last
    worst = max(gd_ratios, key=lambda x: gd_ratios[x][0])
    conditions = {
        f"gap at width {last:g} {gap_last:.2f} > {WIDTH_GAP_MAX}": gap_last <= WIDTH_GAP_MAX,
        f"gap does not shrink ({gap_first:.2f} -> {gap_last:.2f})": gap_last < gap_first,
        f"GD/prior {gd_ratios[worst][0]:.2g} > {GD_FRACTION_MAX:g} at width {worst:g}":
            gd_ratios[worst][0] <= GD_FRACTION_MAX,
    }
    changes = [_Change("gap shrinks by", gap_first - gap_last, math.hypot(stderr_first, stderr_last))]
    changes += [_Change(f"GD/prior below {GD_FRACTION_MAX:g} at width {x:g} by", GD_FRACTION_MAX - r, s)
                for x, (r, s) in gd_ratios.items()]
    outcome, reason = _outcome(conditions, changes)
    detail = (f"G&C/prior {ratio_first:.2f} ± {stderr_first:.2g} at width {first:g} -> {ratio_last:.2f} ± "
              f"{stderr_last:.2g} at width {last:g} (gap to chance {gap_first:.2f} -> {gap_last:.2f}; G&C "
              f"{gnc[last].median:.3g} vs prior {prior[last].median:.3g}); GD/prior at most "
              f"{gd_ratios[worst][0]:.2g} ± {gd_ratios[worst][1]:.2g} (width {worst:g}); {reason}")
    return PanelVerdict(str(panel), outcome, detail)


def _judge_depth(summary, panel) -> PanelVerdict:
    gnc, prior = _points(summary, panel, "gnc"), _points(summary, panel, "prior")
    if len(gnc) < 2 or not prior:
        return PanelVerdict(str(panel), "inconclusive", "G&C ran at fewer than two depths, or no prior data")
    depths = sorted(gnc)
    needed = [("G&C", "depth", x, gnc[x]) for x in depths] + [("prior", "depth", x, prior.get(x)) for x in depths]
    scarce = _scarcity(needed)
    if scarce:
        return PanelVerdict(str(panel), "inconclusive", scarce)
    ratios = {x: ratio_and_stderr(gnc[x], prior[x]) for x in depths}
    if any(math.isnan(r) for r, _ in ratios.values()):
        return PanelVerdict(str(panel), "inconclusive", "a prior median is not positive")
    first, last = depths[0], depths[-1]
    (ratio_first, stderr_first), (ratio_last, stderr_last) = ratios[first], ratios[last]
    relative = ratio_last / ratio_first
    rho = _spearman(depths, [ratios[x][0] for x in depths])
    conditions = {
        f"r at depth {last:g} is {relative:.2f} times r at depth {first:g} (above {DEPTH_RATIO_MAX:g})":
            relative <= DEPTH_RATIO_MAX,
        f"Spearman rho {rho:.2f} > {DEPTH_SPEARMAN_MAX:g}": rho <= DEPTH_SPEARMAN_MAX,
    }
    change = _Change("G&C/prior falls by", ratio_first - ratio_last, math.hypot(stderr_first, stderr_last))
    outcome, reason = _outcome(conditions, [change])
    advantage = {"holds": "grows with depth", "fails": "does not grow with depth",
                 "inconclusive": "not resolved"}[outcome]
    detail = (f"G&C/prior {ratio_first:.2f} ± {stderr_first:.2g} at depth {first:g} -> {ratio_last:.2f} ± "
              f"{stderr_last:.2g} at depth {last:g} (ratio {relative:.2f}, Spearman rho {rho:.2f}; G&C "
              f"{gnc[first].median:.3g} -> {gnc[last].median:.3g}, prior {prior[first].median:.3g} -> "
              f"{prior[last].median:.3g}); G&C's advantage over chance {1 - ratio_first:.2f} -> "
              f"{1 - ratio_last:.2f}: {advantage}; {reason}")
    return PanelVerdict(str(panel), outcome, detail)


def judge(summary: "pd.DataFrame", claim: str, *, normalized: bool | None = None) -> Verdict | None:
    """The verdict on ``claim`` (``"width"`` or ``"depth"``) from :func:`volumelab.plotting.summarize`'s table.

    Args:
        summary: The summary table (columns ``panel, method, x, median, median_stderr,
            runs, with_loss``, ...).
        claim: ``"width"``, ``"depth"`` or anything else (no verdict).
        normalized: Whether G&C sampled the normalized prior (``None``: unknown). A depth
            claim with ``normalized=False`` is the paper's ablation (figure 11): the same
            rule, reported as whether the depth improvement survives without normalization.

    Returns:
        The verdict, or ``None`` for no claim or an empty table.
    """
    if claim not in ("width", "depth") or summary.empty:
        return None
    rule = WIDTH_RULE if claim == "width" else DEPTH_RULE
    judge_panel = _judge_width if claim == "width" else _judge_depth
    panels = [judge_panel(summary, p) for p in dict.fromkeys(summary["panel"])]
    outcomes = {p.outcome for p in panels}
    if outcomes == {"holds"}:
        outcome = "holds"
    elif "fails" in outcomes and "holds" not in outcomes:
        outcome = "fails"
    elif outcomes == {"inconclusive"}:
        outcome = "inconclusive"
    else:
        outcome = "partly holds"
    return Verdict(claim, rule, outcome, panels, ablation=claim == "depth" and normalized is False)
