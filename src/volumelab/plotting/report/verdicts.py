"""Measured verdicts on the paper's claims, computed from a sweep's summary table.

The rules (also stated in every report and in docs/experiments.md):

* **Width claim** (arXiv 2506.03931, Thm. 1 and Fig. 1): in each panel, with
  ``gap(k) = (prior median - G&C median) / prior median`` at width ``k``,
  G&C approaches chance if ``gap(largest width) <= 0.15`` and
  ``gap(largest width) < gap(smallest width)``; GD stays low if its median is at most
  half the prior median at every width. The claim holds when both do.
* **Depth claim** (Thm. 2 and Fig. 2): in each panel, G&C's loss falls with depth if
  its median at the largest depth is at most 0.8 times its median at the smallest
  depth and the Spearman rank correlation between depth and G&C median is at most -0.5.

Medians are over the seeds with a loss; a point where no seed has one makes the
verdict "inconclusive" rather than a guess.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DEPTH_RULE", "PanelVerdict", "Verdict", "WIDTH_RULE", "judge"]

WIDTH_GAP_MAX = 0.15
GD_FRACTION_MAX = 0.5
DEPTH_RATIO_MAX = 0.8
DEPTH_SPEARMAN_MAX = -0.5

WIDTH_RULE = (
    f"G&C approaches chance if, at the largest width, its median generalization loss is within "
    f"{WIDTH_GAP_MAX:.0%} of the prior's median (gap = (prior - G&C) / prior <= {WIDTH_GAP_MAX}) and that gap "
    f"is smaller than at the smallest width; GD stays low if its median is at most {GD_FRACTION_MAX:g} times the "
    f"prior's median at every width. The claim holds when both hold in every panel."
)
DEPTH_RULE = (
    f"G&C's loss falls with depth if its median at the largest depth is at most {DEPTH_RATIO_MAX:g} times its "
    f"median at the smallest depth and the Spearman rank correlation between depth and G&C median is at most "
    f"{DEPTH_SPEARMAN_MAX:g}. The claim holds when this holds in every panel."
)


@dataclass
class PanelVerdict:
    panel: str
    outcome: str  # "holds" | "fails" | "inconclusive"
    detail: str


@dataclass
class Verdict:
    claim: str
    rule: str
    outcome: str
    panels: list[PanelVerdict] = field(default_factory=list)

    @property
    def sentence(self) -> str:
        statement = {
            "width": "G&C's generalization loss approaches the prior's as width grows while GD's stays low",
            "depth": "G&C's generalization loss falls with depth",
        }.get(self.claim, "")
        return f"**{self.outcome.upper()}** (measured): {statement}."


def _series(summary: "pd.DataFrame", panel, method: str) -> dict[float, float]:
    rows = summary[(summary["panel"] == panel) & (summary["method"] == method)].sort_values("x")
    return {float(x): float(m) for x, m in zip(rows["x"], rows["median"])}


def _spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return float("nan")
    if len(set(ys)) == 1:  # no trend at all (spearmanr would warn and return NaN)
        return 0.0
    return float(spearmanr(xs, ys).statistic)


def _judge_width(summary, panel) -> PanelVerdict:
    gnc, gd, prior = (_series(summary, panel, m) for m in ("gnc", "gd", "prior"))
    if not gnc or not prior:
        return PanelVerdict(str(panel), "inconclusive", "no G&C or prior data")
    first, last = min(gnc), max(gnc)
    values = [gnc[first], gnc[last], prior.get(first, math.nan), prior.get(last, math.nan)]
    if any(math.isnan(v) for v in values):
        return PanelVerdict(str(panel), "inconclusive",
                            "G&C accepted nothing at the smallest or largest width in every seed")
    gap_first = (prior[first] - gnc[first]) / prior[first]
    gap_last = (prior[last] - gnc[last]) / prior[last]
    gnc_ok = gap_last <= WIDTH_GAP_MAX and gap_last < gap_first
    gd_ratios = {x: gd[x] / prior[x] for x in gd if x in prior and not math.isnan(gd[x])}
    gd_ok = bool(gd_ratios) and max(gd_ratios.values()) <= GD_FRACTION_MAX
    detail = (f"gap at width {first:g}: {gap_first:.2f}, at width {last:g}: {gap_last:.2f} "
              f"(G&C {gnc[last]:.3g} vs prior {prior[last]:.3g}); "
              + (f"GD/prior at most {max(gd_ratios.values()):.2f}" if gd_ratios else "no GD data"))
    return PanelVerdict(str(panel), "holds" if gnc_ok and gd_ok else "fails", detail)


def _judge_depth(summary, panel) -> PanelVerdict:
    gnc = {x: v for x, v in _series(summary, panel, "gnc").items() if not math.isnan(v)}
    if len(gnc) < 2:
        return PanelVerdict(str(panel), "inconclusive", "G&C accepted draws at fewer than two depths")
    all_x = sorted(_series(summary, panel, "gnc"))
    if min(all_x) not in gnc or max(all_x) not in gnc:
        return PanelVerdict(str(panel), "inconclusive",
                            "G&C accepted nothing at the smallest or largest depth in every seed")
    first, last = min(gnc), max(gnc)
    ratio = gnc[last] / gnc[first]
    rho = _spearman(list(gnc), list(gnc.values()))
    holds = ratio <= DEPTH_RATIO_MAX and rho <= DEPTH_SPEARMAN_MAX
    detail = (f"G&C median {gnc[first]:.3g} at depth {first:g} -> {gnc[last]:.3g} at depth {last:g} "
              f"(ratio {ratio:.2f}); Spearman rho {rho:.2f}")
    return PanelVerdict(str(panel), "holds" if holds else "fails", detail)


def judge(summary: "pd.DataFrame", claim: str) -> Verdict | None:
    """The verdict on ``claim`` (``"width"`` or ``"depth"``) from :func:`volumelab.plotting.summarize`'s table."""
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
    return Verdict(claim, rule, outcome, panels)
