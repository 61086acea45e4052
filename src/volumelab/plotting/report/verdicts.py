"""Measured verdicts on the paper's claims, computed from a sweep's summary table.

Verdicts read methods by the *role* their registration gives them
(:mod:`volumelab.experiments.methods`), never by name: the ``sampler`` (samples the
prior and keeps what fits the data), the ``trainer`` (trains from an initialization)
and the ``chance`` rows the sampler stores (the prior's loss on the same draws). Where
a sweep has several methods of a role, the one named like its type is read, else the
first by name. Texts use the roles' registered labels; below, S, T and C.

The rules (also stated in every report, :data:`WIDTH_RULE` and :data:`DEPTH_RULE`, and in
docs/experiments.md):

* S is read against chance at the same point: ``r(x) = S median / C median``
  (the chance level measured on the same draws), and ``gap(x) = 1 - r(x)`` is S's
  advantage over chance.
* **Width claim** (arXiv 2506.03931, Thm. 1 and Fig. 1): in each panel, S approaches
  chance if ``gap(largest width) <= 0.15`` and the gap shrinks,
  ``gap(smallest width) - gap(largest width) > 2 SE``; T stays low if, at every width,
  ``T median / C median <= 0.5`` with ``0.5 - T/C > 2 SE``.
* **Depth claim** (Thm. 2 and Fig. 2): in each panel, S's advantage over chance grows
  with depth if ``r(largest depth) <= 0.8 * r(smallest depth)``, the Spearman rank
  correlation between depth and ``r`` is at most -0.5, and
  ``r(smallest depth) - r(largest depth) > 2 SE``. Where S sampled the unnormalized
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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...experiments.methods import CHANCE, SAMPLER, TRAINER, companion, role_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEPTH_RULE", "EVIDENCE_RULE", "PanelVerdict", "Roles", "SummaryPoint", "Verdict", "WIDTH_RULE", "depth_rule",
    "evidence_rule", "judge", "paired_ratio_change", "ratio_and_stderr", "read_roles", "width_rule",
]

WIDTH_GAP_MAX = 0.15
TRAINER_FRACTION_MAX = 0.5
DEPTH_RATIO_MAX = 0.8
DEPTH_SPEARMAN_MAX = -0.5
#: A claimed change counts only where it exceeds this many standard errors of the change.
CHANGE_STANDARD_ERRORS = 2.0
#: A point where fewer than this fraction of the seeds have a loss makes a verdict inconclusive.
MIN_SEED_FRACTION = 0.5


def _labels(labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """The words for the roles: ``labels``, else the registered ones, else the roles' names."""
    words = {SAMPLER: SAMPLER, TRAINER: TRAINER, CHANCE: CHANCE, **role_labels()}
    return {**words, **(labels or {})}


def evidence_rule(labels: Mapping[str, str] | None = None) -> str:
    """The evidence rule, in the words of ``labels`` (``{role: label}``; default: the registered labels)."""
    s = _labels(labels)[SAMPLER]
    return (
        f"Medians are over the seeds with a loss; a point the rule needs where fewer than half of the seeds have a "
        f"loss makes the panel inconclusive, since the seeds left out are those where {s} does worst. Each median "
        f"has the standard error SE = sqrt(pi/2) * sqrt((IQR/1.349)^2 + mean(s_i^2)) / sqrt(n) over its n seeds "
        f"with a loss (IQR: their interquartile range; s_i: each run's own standard error, 0 where a run has "
        f"none); a ratio a/b of medians has SE sqrt(SE_a^2 + (a/b)^2 SE_b^2) / b. A change of r = {s}/chance "
        f"between two points of a curve is measured on the same seeds, since a seed makes the same problem at "
        f"every point: per seed r_s = {s}_s / chance_s, the change is the mean over the n seeds with a loss at "
        f"both points of the per-seed difference d_s of r_s, with SE = sqrt((var(d) + mean(v_s)) / n), v_s the "
        f"variance of d_s propagated from its runs' own standard errors (where seeds cannot be matched, the "
        f"difference of the medians' ratios with SE sqrt(SE_1^2 + SE_2^2)). A claimed change "
        f"counts only where it exceeds {CHANGE_STANDARD_ERRORS:g} SE. A panel "
        f"holds when every condition holds on the medians and every claimed change exceeds {CHANGE_STANDARD_ERRORS:g} "
        f"SE; it fails when a condition does not hold on the medians; otherwise (the medians agree with the claim but "
        f"a change is within {CHANGE_STANDARD_ERRORS:g} SE, or a SE is unknown because fewer than two seeds have a "
        f"loss) it is inconclusive. A figure holds when every panel holds, fails when some panel fails and none holds, "
        f"is inconclusive when every panel is, and partly holds otherwise."
    )


def width_rule(labels: Mapping[str, str] | None = None) -> str:
    """The width rule, in the words of ``labels`` (see :func:`evidence_rule`)."""
    words = _labels(labels)
    s, t, c = words[SAMPLER], words[TRAINER], words[CHANCE]
    return (
        f"{s} is read against chance at the same width: r = {s} median / {c} median and gap = 1 - r ({s}'s "
        f"advantage over chance). {s} approaches chance if, at the largest width, gap <= {WIDTH_GAP_MAX} and the gap "
        f"has shrunk since the smallest width by more than {CHANGE_STANDARD_ERRORS:g} SE; {t} stays low if, at every "
        f"width, {t} median / {c} median <= {TRAINER_FRACTION_MAX:g}, below {TRAINER_FRACTION_MAX:g} by more than "
        f"{CHANGE_STANDARD_ERRORS:g} SE. Points needed: {s} and {c} at the smallest and largest width, {t} and {c} "
        f"at every width. The claim holds in a panel when both hold. " + evidence_rule(labels)
    )


def depth_rule(labels: Mapping[str, str] | None = None) -> str:
    """The depth rule, in the words of ``labels`` (see :func:`evidence_rule`)."""
    words = _labels(labels)
    s, c = words[SAMPLER], words[CHANCE]
    return (
        f"{s} is read against chance at the same depth: r = {s} median / {c} median ({s}'s advantage over chance is "
        f"1 - r; the {c}'s own loss changes with depth, so {s}'s absolute loss alone does not show the claim). "
        f"{s}'s advantage over chance grows with depth if r at the largest depth is at most {DEPTH_RATIO_MAX:g} times "
        f"r at the smallest depth, the Spearman rank correlation between depth and r is at most "
        f"{DEPTH_SPEARMAN_MAX:g}, and r falls from the smallest to the largest depth by more than "
        f"{CHANGE_STANDARD_ERRORS:g} SE. Points needed: {s} and {c} at every depth. The claim holds in a panel when "
        f"this holds; where {s} sampled the unnormalized prior (an ablation) the same rule says whether the depth "
        f"improvement survives without normalization. " + evidence_rule(labels)
    )


def __getattr__(name: str) -> str:
    """``EVIDENCE_RULE``, ``WIDTH_RULE`` and ``DEPTH_RULE``: the rules in the registered labels' words."""
    rules = {"EVIDENCE_RULE": evidence_rule, "WIDTH_RULE": width_rule, "DEPTH_RULE": depth_rule}
    if name in rules:
        return rules[name]()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@dataclass(frozen=True)
class Roles:
    """The methods of a summary the verdicts read, by role, and the words for the roles."""

    sampler: str | None
    trainer: str | None
    chance: str | None
    labels: dict[str, str]


def _primary(candidates: list[tuple[str, str]]) -> str | None:
    """Of ``(method, method_type)`` pairs: the method named like its type, else the first by name."""
    if not candidates:
        return None
    for method, method_type in sorted(candidates):
        if method == method_type:
            return method
    return sorted(candidates)[0][0]


def read_roles(summary: "pd.DataFrame") -> Roles:
    """Which methods of ``summary`` (:func:`volumelab.plotting.summarize`) the verdicts read.

    The chance rows are those the sampler stores with the role ``chance`` (see
    :func:`volumelab.experiments.methods.companion`), else any rows of that role.
    """
    from ...experiments.methods import row_kind

    methods = list(dict.fromkeys(summary["method"])) if len(summary) else []
    if "method_type" in summary:
        types = {str(m): str(t) for m, t in zip(summary["method"], summary["method_type"])}
    else:
        types = {str(m): str(m) for m in methods}
    by_role: dict[str, list[tuple[str, str]]] = {}
    for method in methods:
        by_role.setdefault(row_kind(types[str(method)]).role, []).append((str(method), types[str(method)]))
    sampler = _primary(by_role.get(SAMPLER, []))
    trainer = _primary(by_role.get(TRAINER, []))
    chance = companion(sampler, types[sampler], CHANCE) if sampler is not None else None
    if chance not in types:
        chance = _primary(by_role.get(CHANCE, []))
    labels = {}
    for role, method in ((SAMPLER, sampler), (TRAINER, trainer), (CHANCE, chance)):
        if method is not None:
            labels[role] = row_kind(types[method]).label if method == types[method] or role == CHANCE else method
    return Roles(sampler, trainer, chance, _labels(labels))


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
        statement: The claim in words where it is not the width or depth claim (a study's).
        labels: ``{role: label}``: the words for the methods read (default: the registered labels).
    """

    claim: str
    rule: str
    outcome: str
    panels: list[PanelVerdict] = field(default_factory=list)
    ablation: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    #: The claim in words, for verdicts that are not the width/depth claims (a study's).
    statement: str = ""

    @property
    def heading(self) -> str:
        """What the verdict is on, for a report: the paper's claim or the ablation."""
        s = _labels(self.labels)[SAMPLER]
        return f"Ablation ({s}'s prior not normalized)" if self.ablation else "Paper's claim"

    @property
    def sentence(self) -> str:
        words = _labels(self.labels)
        s, t, c = words[SAMPLER], words[TRAINER], words[CHANCE]
        statement = {
            "width": f"{s}'s generalization loss approaches the {c}'s as width grows while {t}'s stays low",
            "depth": f"{s}'s advantage over chance (the {c}'s loss at the same depth) grows with depth",
        }.get(self.claim, self.statement)
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
    seed_losses: Mapping[int, float] = field(default_factory=dict)
    seed_stderrs: Mapping[int, float] = field(default_factory=dict)

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
    note: str = ""

    @property
    def shown(self) -> bool:
        return math.isfinite(self.stderr) and self.value > CHANGE_STANDARD_ERRORS * self.stderr

    @property
    def text(self) -> str:
        return f"{self.name} {self.value:.3g} ± {self.stderr:.2g}" + (f" ({self.note})" if self.note else "")


def _points(summary: "pd.DataFrame", panel, method: str) -> dict[float, SummaryPoint]:
    rows = summary[(summary["panel"] == panel) & (summary["method"] == method)].sort_values("x")
    points = {}
    for _, row in rows.iterrows():
        runs = int(row["runs"]) if "runs" in row else 0
        with_loss = int(row["with_loss"]) if "with_loss" in row else runs - int(row.get("missing", 0))
        stderr = float(row["median_stderr"]) if "median_stderr" in row else math.nan
        seeds, errors = ({}, {})
        if "seed_losses" in row and isinstance(row["seed_losses"], Mapping):
            seeds, errors = row["seed_losses"], row.get("seed_stderrs") or {}
        points[float(row["x"])] = SummaryPoint(float(row["median"]), stderr, with_loss, runs, seeds, errors)
    return points


def paired_ratio_change(sampler_from: SummaryPoint, chance_from: SummaryPoint, sampler_to: SummaryPoint,
                        chance_to: SummaryPoint) -> tuple[float, float, int]:
    """The change of ``r_s = sampler_s / chance_s`` from one point to another, on the same seeds.

    Returns:
        ``(mean over seeds of d_s = r_s(from) - r_s(to), its standard error, n)`` over the
        ``n`` seeds with a loss and a positive chance level at both points. The standard
        error is ``sqrt((var(d) + mean(v_s)) / n)``: the sample variance of the differences
        plus the mean of each difference's own variance ``v_s``, propagated from its four
        runs' standard errors (like the medians' SE, this leans large: the spread between
        seeds already holds the runs' noise). NaN for ``n < 2``.
    """

    def ratio_and_variance(sampler: SummaryPoint, chance: SummaryPoint, seed: int) -> tuple[float, float]:
        value, level = sampler.seed_losses[seed], chance.seed_losses[seed]
        ratio = value / level
        error_value = sampler.seed_stderrs.get(seed, 0.0)
        error_level = chance.seed_stderrs.get(seed, 0.0)
        return ratio, (error_value / level) ** 2 + (ratio * error_level / level) ** 2

    differences, variances = [], []
    for seed in sorted(set(sampler_from.seed_losses) & set(sampler_to.seed_losses)):
        low, high = chance_from.seed_losses.get(seed), chance_to.seed_losses.get(seed)
        if low is None or high is None or not (low > 0 and high > 0):
            continue
        ratio_from, variance_from = ratio_and_variance(sampler_from, chance_from, seed)
        ratio_to, variance_to = ratio_and_variance(sampler_to, chance_to, seed)
        differences.append(ratio_from - ratio_to)
        variances.append(variance_from + variance_to)
    count = len(differences)
    if count == 0:
        return math.nan, math.nan, 0
    mean = sum(differences) / count
    if count < 2:
        return mean, math.nan, count
    spread = sum((d - mean) ** 2 for d in differences) / (count - 1)
    return mean, math.sqrt((spread + sum(variances) / count) / count), count


def _ratio_change(name: str, sampler_from, chance_from, sampler_to, chance_to, unpaired: tuple[float, float]
                  ) -> "_Change":
    """The claimed fall of ``r`` from one point to another: paired over seeds where they match."""
    value, stderr, count = paired_ratio_change(sampler_from, chance_from, sampler_to, chance_to)
    if count >= 2:
        return _Change(name, value, stderr, f"paired over {count} seeds")
    return _Change(name, *unpaired)


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


def _scarcity(needed: list[tuple[str, str, float, SummaryPoint | None]], sampler: str) -> str | None:
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
            + f"; the median over the others would leave out the seeds where {sampler} does worst")


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
    return "holds", f"every change exceeds {CHANGE_STANDARD_ERRORS:g} SE ({changes[0].text})"


def _spearman(xs: list[float], ys: list[float]) -> float:
    from scipy.stats import spearmanr

    if len(xs) < 3:
        return float("nan")
    if len(set(ys)) == 1:  # no trend at all (spearmanr would warn and return NaN)
        return 0.0
    return float(spearmanr(xs, ys).statistic)


def _judge_width(summary, panel, roles: Roles) -> PanelVerdict:
    s, t, c = roles.labels[SAMPLER], roles.labels[TRAINER], roles.labels[CHANCE]
    sampler, trainer, chance = (_points(summary, panel, m) if m is not None else {}
                                for m in (roles.sampler, roles.trainer, roles.chance))
    if not sampler or not chance:
        return PanelVerdict(str(panel), "inconclusive", f"no {s} or {c} data")
    if not trainer:
        return PanelVerdict(str(panel), "inconclusive", f"no {t} data")
    first, last = min(sampler), max(sampler)
    needed = [(s, "width", x, sampler[x]) for x in (first, last)]
    needed += [(c, "width", x, chance.get(x)) for x in sorted({first, last, *trainer})]
    needed += [(t, "width", x, trainer[x]) for x in trainer]
    scarce = _scarcity(needed, s)
    if scarce:
        return PanelVerdict(str(panel), "inconclusive", scarce)
    ratio_first, stderr_first = ratio_and_stderr(sampler[first], chance[first])
    ratio_last, stderr_last = ratio_and_stderr(sampler[last], chance[last])
    trainer_ratios = {x: ratio_and_stderr(trainer[x], chance[x]) for x in trainer}
    if any(math.isnan(v) for v in (ratio_first, ratio_last, *(r for r, _ in trainer_ratios.values()))):
        return PanelVerdict(str(panel), "inconclusive", f"a {c} median is not positive")
    gap_first, gap_last = 1 - ratio_first, 1 - ratio_last
    worst = max(trainer_ratios, key=lambda x: trainer_ratios[x][0])
    conditions = {
        f"gap at width {last:g} {gap_last:.2f} > {WIDTH_GAP_MAX}": gap_last <= WIDTH_GAP_MAX,
        f"gap does not shrink ({gap_first:.2f} -> {gap_last:.2f})": gap_last < gap_first,
        f"{t}/{c} {trainer_ratios[worst][0]:.2g} > {TRAINER_FRACTION_MAX:g} at width {worst:g}":
            trainer_ratios[worst][0] <= TRAINER_FRACTION_MAX,
    }
    # The gap shrinks by r(last) - r(first): the fall of r from the last width to the first.
    changes = [_ratio_change("gap shrinks by", sampler[last], chance[last], sampler[first], chance[first],
                             (gap_first - gap_last, math.hypot(stderr_first, stderr_last)))]
    changes += [_Change(f"{t}/{c} below {TRAINER_FRACTION_MAX:g} at width {x:g} by", TRAINER_FRACTION_MAX - r, e)
                for x, (r, e) in trainer_ratios.items()]
    outcome, reason = _outcome(conditions, changes)
    detail = (f"{s}/{c} {_ratio_text(ratio_first)} ± {stderr_first:.2g} at width {first:g} -> "
              f"{_ratio_text(ratio_last)} ± "
              f"{stderr_last:.2g} at width {last:g} (gap to chance {gap_first:.2f} -> {gap_last:.2f}; {s} "
              f"{sampler[last].median:.3g} vs {c} {chance[last].median:.3g}); {t}/{c} at most "
              f"{trainer_ratios[worst][0]:.2g} ± {trainer_ratios[worst][1]:.2g} (width {worst:g}); {reason}")
    return PanelVerdict(str(panel), outcome, detail)


def _judge_depth(summary, panel, roles: Roles) -> PanelVerdict:
    s, c = roles.labels[SAMPLER], roles.labels[CHANCE]
    sampler, chance = (_points(summary, panel, m) if m is not None else {} for m in (roles.sampler, roles.chance))
    if len(sampler) < 2 or not chance:
        return PanelVerdict(str(panel), "inconclusive", f"{s} ran at fewer than two depths, or no {c} data")
    depths = sorted(sampler)
    needed = [(s, "depth", x, sampler[x]) for x in depths] + [(c, "depth", x, chance.get(x)) for x in depths]
    scarce = _scarcity(needed, s)
    if scarce:
        return PanelVerdict(str(panel), "inconclusive", scarce)
    ratios = {x: ratio_and_stderr(sampler[x], chance[x]) for x in depths}
    if any(math.isnan(r) for r, _ in ratios.values()):
        return PanelVerdict(str(panel), "inconclusive", f"a {c} median is not positive")
    first, last = depths[0], depths[-1]
    (ratio_first, stderr_first), (ratio_last, stderr_last) = ratios[first], ratios[last]
    relative = ratio_last / ratio_first
    rho = _spearman(depths, [ratios[x][0] for x in depths])
    conditions = {
        f"r at depth {last:g} is {relative:.2f} times r at depth {first:g} (above {DEPTH_RATIO_MAX:g})":
            relative <= DEPTH_RATIO_MAX,
        f"Spearman rho {rho:.2f} > {DEPTH_SPEARMAN_MAX:g}": rho <= DEPTH_SPEARMAN_MAX,
    }
    change = _ratio_change(f"{s}/{c} falls by", sampler[first], chance[first], sampler[last], chance[last],
                           (ratio_first - ratio_last, math.hypot(stderr_first, stderr_last)))
    outcome, reason = _outcome(conditions, [change])
    advantage = {"holds": "grows with depth", "fails": "does not grow with depth",
                 "inconclusive": "not resolved"}[outcome]
    detail = (f"{s}/{c} {_ratio_text(ratio_first)} ± {stderr_first:.2g} at depth {first:g} -> "
              f"{_ratio_text(ratio_last)} ± "
              f"{stderr_last:.2g} at depth {last:g} (ratio {_ratio_text(relative)}, Spearman rho {rho:.2f}; {s} "
              f"{sampler[first].median:.3g} -> {sampler[last].median:.3g}, {c} {chance[first].median:.3g} -> "
              f"{chance[last].median:.3g}); {s}'s advantage over chance {1 - ratio_first:.2f} -> "
              f"{1 - ratio_last:.2f}: {advantage}; {reason}")
    return PanelVerdict(str(panel), outcome, detail)


def _ratio_text(ratio: float) -> str:
    """A ratio of medians with two decimals, or two significant digits below 0.1 (0.0048, not 0.00)."""
    return f"{ratio:.2f}" if abs(ratio) >= 0.1 else f"{ratio:.2g}"


def judge(summary: "pd.DataFrame", claim: str, *, normalized: bool | None = None) -> Verdict | None:
    """The verdict on ``claim`` (``"width"`` or ``"depth"``) from :func:`volumelab.plotting.summarize`'s table.

    Args:
        summary: The summary table (columns ``panel, method, x, median, median_stderr,
            runs, with_loss``, ...).
        claim: ``"width"``, ``"depth"`` or anything else (no verdict).
        normalized: Whether the sampler sampled the normalized prior (``None``: unknown). A
            depth claim with ``normalized=False`` is the paper's ablation (figure 11): the
            same rule, reported as whether the depth improvement survives without normalization.

    Returns:
        The verdict, or ``None`` for no claim or an empty table.
    """
    if claim not in ("width", "depth") or summary.empty:
        return None
    roles = read_roles(summary)
    rule = width_rule(roles.labels) if claim == "width" else depth_rule(roles.labels)
    judge_panel = _judge_width if claim == "width" else _judge_depth
    panels = [judge_panel(summary, p, roles) for p in dict.fromkeys(summary["panel"])]
    outcomes = {p.outcome for p in panels}
    if outcomes == {"holds"}:
        outcome = "holds"
    elif "fails" in outcomes and "holds" not in outcomes:
        outcome = "fails"
    elif outcomes == {"inconclusive"}:
        outcome = "inconclusive"
    else:
        outcome = "partly holds"
    return Verdict(claim, rule, outcome, panels, ablation=claim == "depth" and normalized is False,
                   labels=roles.labels)
