"""The decision statistics of every verdict: a per-seed effect, its interval, a three-way decision.

Every claim volumelab judges is reduced, per panel, to one **per-seed effect** ``d_s`` (the primary
endpoint, e.g. the fall of G&C/chance from the smallest to the largest depth on seed ``s``'s
problem). A seed makes the same problem at every point of a sweep, so ``d_s`` is a paired
difference and the seeds are independent replicates of it.

The interval is Student's t with ``n - 1`` degrees of freedom over the ``n`` seeds with an effect:
``mean(d) ± t_{1 - alpha/2, n-1} · sd(d) / sqrt(n)``. Why t and not a bootstrap: the effects are
means of a handful (5-24) of independent seeds, where the t interval is exact for Gaussian effects
and close for the mildly skewed ones measured here, while percentile and BCa bootstrap intervals
under-cover badly below about 20 replicates. ``sd(d)`` is the seed-to-seed spread, which already
holds each run's own Monte Carlo noise, so runs' standard errors are not added again.

Decisions (each a one-sided test at level ``alpha / 2``, i.e. read off the two-sided ``1 - alpha``
interval; ``alpha = 0.05``, 95% intervals):

* **directional** claims ("increases", "decreases", optionally by at least ``minimal_effect``):
  *holds* when the interval lies beyond ``minimal_effect`` in the claimed direction, *fails* when it
  lies entirely on the other side of it (the claimed effect is excluded), *inconclusive* otherwise;
* **equivalence** claims ("flat", "zero", "reaches chance", "bound not violated"): two one-sided
  tests with the stated ``margin`` around ``target``: *holds* when the interval lies inside
  ``target ± margin`` (both one-sided tests reject), *fails* when it lies entirely outside it,
  *inconclusive* otherwise. Never "not rejected, so holds".

Panels of one claim are corrected together by Holm's step-down procedure (:func:`holm`, tested
against ``statsmodels.stats.multitest.multipletests``), separately for the "holds" and the "fails"
tests.
Fewer than :data:`MIN_SEEDS` seeds is "inconclusive: too few seeds": with n = 2 or 3 a t interval
is wider than any effect these studies can have, and the seed-to-seed spread is not estimated.
NaN (a seed with no effect) is never a value: it is left out and counted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

__all__ = [
    "ALPHA", "Decision", "Effect", "HOLDS", "FAILS", "INCONCLUSIVE", "MIN_SEEDS", "Rule", "decide", "decide_panels",
    "effect_interval", "holm",
]

#: Two-sided level of every interval (95%); each decision is a one-sided test at ALPHA / 2.
ALPHA = 0.05
#: The fewest seeds a verdict accepts (a t interval over fewer is not meaningful).
MIN_SEEDS = 5
HOLDS, FAILS, INCONCLUSIVE = "holds", "fails", "inconclusive"

Direction = Literal["increase", "decrease", "equivalent"]


@dataclass(frozen=True)
class Rule:
    """The pre-registered decision rule of one endpoint.

    Attributes:
        endpoint: The per-seed effect in words (e.g. ``"fall of G&C/chance from the smallest to the
            largest depth"``).
        direction: What the claim predicts for the effect: ``"increase"`` (positive),
            ``"decrease"`` (negative) or ``"equivalent"`` (within ``margin`` of ``target``).
        minimal_effect: For directional claims, the smallest effect the claim predicts (0: any
            effect of the claimed sign). A claimed fall of at least 0.1 is ``direction="decrease",
            minimal_effect=0.1``.
        margin: For equivalence claims, the half-width of the region around ``target`` that counts
            as "equal" (required there, unused otherwise).
        target: The value an equivalence claim says the effect equals (default 0).
        min_seeds: The fewest seeds with an effect the decision accepts (at least :data:`MIN_SEEDS`).
    """

    endpoint: str
    direction: Direction
    minimal_effect: float = 0.0
    margin: float | None = None
    target: float = 0.0
    min_seeds: int = MIN_SEEDS

    def __post_init__(self):
        if self.direction not in ("increase", "decrease", "equivalent"):
            raise ValueError(f"direction must be 'increase', 'decrease' or 'equivalent', got {self.direction!r}")
        if self.direction == "equivalent":
            if self.margin is None or not self.margin > 0:
                raise ValueError(f"an equivalence rule needs a positive margin, got {self.margin!r}")
        elif self.minimal_effect < 0:
            raise ValueError(f"minimal_effect is a size (>= 0), got {self.minimal_effect!r}")
        if self.min_seeds < MIN_SEEDS:
            raise ValueError(f"min_seeds must be at least {MIN_SEEDS} (fewer seeds cannot support a t interval's "
                             f"verdict), got {self.min_seeds}")

    @property
    def claimed(self) -> str:
        """The claimed effect in words, e.g. ``"> 0"``, ``"< -0.1"``, ``"within 0 ± 0.05"``."""
        if self.direction == "equivalent":
            return f"within {self.target:.3g} ± {self.margin:.3g}"
        sign = ">" if self.direction == "increase" else "<"
        return f"{sign} {self.minimal_effect if self.direction == 'increase' else -self.minimal_effect:.3g}" \
            if self.minimal_effect else f"{sign} 0"

    @property
    def text(self) -> str:
        """The rule in one sentence."""
        if self.direction == "equivalent":
            return (f"{self.endpoint}: equivalent to {self.target:g} within ± {self.margin:g} (two one-sided "
                    f"tests); at least {self.min_seeds} seeds")
        size = f" by more than {self.minimal_effect:g}" if self.minimal_effect else ""
        word = "positive" if self.direction == "increase" else "negative"
        return f"{self.endpoint}: {word}{size}; at least {self.min_seeds} seeds"

    def parameters(self) -> dict:
        """What the rule's digest covers."""
        return {"endpoint": self.endpoint, "direction": self.direction, "minimal_effect": self.minimal_effect,
                "margin": self.margin, "target": self.target, "min_seeds": self.min_seeds, "alpha": ALPHA}


@dataclass(frozen=True)
class Effect:
    """A per-seed effect's mean and its Student-t interval.

    Attributes:
        estimate: Mean of the per-seed effects (NaN without any).
        stderr: ``sd / sqrt(n)`` (NaN below two seeds).
        low, high: The ``level`` interval (NaN below two seeds).
        n: Seeds with a finite effect.
        missing: Seeds left out because their effect is NaN.
        level: The interval's coverage.
        values: The per-seed effects, ``{seed: value}``.
    """

    estimate: float
    stderr: float
    low: float
    high: float
    n: int
    missing: int = 0
    level: float = 1 - ALPHA
    values: Mapping = field(default_factory=dict, compare=False, repr=False)

    @property
    def half_width(self) -> float:
        """Half the interval's width: the smallest effect this many seeds can resolve."""
        return (self.high - self.low) / 2

    def text(self, digits: int = 3) -> str:
        """``0.12 [0.05, 0.19] (n = 8)``."""
        if not math.isfinite(self.estimate):
            return f"no effect (n = {self.n})"
        if not math.isfinite(self.low):
            return f"{self.estimate:.{digits}g} (no interval, n = {self.n})"
        return f"{self.estimate:.{digits}g} [{self.low:.{digits}g}, {self.high:.{digits}g}] (n = {self.n})"


def effect_interval(values: Mapping | Sequence[float], *, level: float = 1 - ALPHA) -> Effect:
    """The mean of per-seed effects and its Student-t interval with ``n - 1`` degrees of freedom.

    Args:
        values: ``{seed: effect}`` or a sequence of effects; NaN and None are left out (counted
            in ``missing``).
        level: Two-sided coverage of the interval.

    Returns:
        The :class:`Effect`; its interval is NaN below two finite values.
    """
    from scipy import stats

    items = dict(values) if isinstance(values, Mapping) else dict(enumerate(values))
    finite = {k: float(v) for k, v in items.items() if v is not None and math.isfinite(float(v))}
    n = len(finite)
    missing = len(items) - n
    if n == 0:
        return Effect(math.nan, math.nan, math.nan, math.nan, 0, missing, level, finite)
    data = list(finite.values())
    mean = math.fsum(data) / n
    if n < 2:
        return Effect(mean, math.nan, math.nan, math.nan, n, missing, level, finite)
    variance = math.fsum((x - mean) ** 2 for x in data) / (n - 1)
    stderr = math.sqrt(variance / n)
    if stderr == 0:
        return Effect(mean, 0.0, mean, mean, n, missing, level, finite)
    low, high = stats.t.interval(level, n - 1, loc=mean, scale=stderr)
    return Effect(mean, stderr, float(low), float(high), n, missing, level, finite)


def _one_sided_p(effect: Effect, bound: float, greater: bool) -> float:
    """p of the one-sided t test of ``mean > bound`` (``greater``) or ``mean < bound``."""
    from scipy import stats

    if effect.stderr == 0:
        beyond = effect.estimate > bound if greater else effect.estimate < bound
        return 0.0 if beyond else 1.0
    t = (effect.estimate - bound) / effect.stderr
    return float(stats.t.sf(t, effect.n - 1) if greater else stats.t.cdf(t, effect.n - 1))


def _p_values(effect: Effect, rule: Rule) -> tuple[float, float]:
    """``(p_holds, p_fails)``: the one-sided tests whose rejection makes the panel hold or fail."""
    if rule.direction == "equivalent":
        low, high = rule.target - rule.margin, rule.target + rule.margin
        # Two one-sided tests: inside (low, high) needs both mean > low and mean < high.
        p_holds = max(_one_sided_p(effect, low, True), _one_sided_p(effect, high, False))
        # Outside: entirely above high or entirely below low (the smaller p of the two sides).
        p_fails = min(_one_sided_p(effect, high, True), _one_sided_p(effect, low, False))
        return p_holds, p_fails
    greater = rule.direction == "increase"
    bound = rule.minimal_effect if greater else -rule.minimal_effect
    return _one_sided_p(effect, bound, greater), _one_sided_p(effect, bound, not greater)


@dataclass(frozen=True)
class Decision:
    """One panel's decision on one endpoint.

    Attributes:
        outcome: ``"holds"``, ``"fails"`` or ``"inconclusive"``.
        effect: The effect and its interval.
        rule: The rule it was judged by.
        reason: Why, in words (always set for "inconclusive").
        p_holds, p_fails: The one-sided p-values (after Holm's correction where panels were
            corrected together; NaN where no test was run).
        worst: The decision with every flagged seed at its least favourable value (``None``
            where no seed was flagged).
        flagged: Seeds whose runs were flagged (left out of ``effect``).
    """

    outcome: str
    effect: Effect
    rule: Rule
    reason: str = ""
    p_holds: float = math.nan
    p_fails: float = math.nan
    worst: "Decision | None" = None
    flagged: int = 0

    @property
    def line(self) -> str:
        """``holds: effect 0.12 [0.05, 0.19] (n = 8), claimed > 0``, with the reason where there is one."""
        parts = [f"{self.outcome}: {self.rule.endpoint} {self.effect.text()}, claimed {self.rule.claimed}"]
        if self.flagged:
            shown = self.worst is not None and "flagged seed" not in self.reason
            parts.append(f"{self.flagged} flagged seed{'s' if self.flagged != 1 else ''} left out"
                         + (f" (worst case: {self.worst.outcome}, {self.worst.effect.text()})" if shown else ""))
        if self.reason:
            parts.append(self.reason)
        return "; ".join(parts)


def _unresolved(effect: Effect, rule: Rule) -> str | None:
    """Why no test can be run (``None`` when one can)."""
    if effect.n == 0:
        return "no seed has the effect" + (f" ({effect.missing} without a value)" if effect.missing else "")
    if effect.n < rule.min_seeds:
        return f"too few seeds (n = {effect.n}; the rule needs {rule.min_seeds})"
    return None


def decide(values: Mapping | Sequence[float], rule: Rule) -> Decision:
    """Decide one panel alone (no multiplicity correction): see :func:`decide_panels`."""
    return decide_panels({"": values}, rule)[""]


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (NaN entries stay NaN and are not counted).

    Sorted ascending, the i-th smallest of m p-values is multiplied by ``m - i`` (i from 0), capped
    at 1, and made non-decreasing along the order. Written out rather than through statsmodels'
    ``multipletests``, which collects garbage on every call (about 0.4 s with torch loaded).
    """
    indices = sorted((i for i, p in enumerate(p_values) if math.isfinite(p)), key=lambda i: p_values[i])
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, i in enumerate(indices):
        running = max(running, min(1.0, (len(indices) - rank) * p_values[i]))
        adjusted[i] = running
    return adjusted


def _decide_family(effects: Mapping[str, Effect], rules: Mapping[str, Rule]) -> dict[str, Decision]:
    names = list(effects)
    reasons = {name: _unresolved(effects[name], rules[name]) for name in names}
    raw = {name: _p_values(effects[name], rules[name]) if reasons[name] is None else (math.nan, math.nan)
           for name in names}
    adjusted_holds = holm([raw[name][0] for name in names])
    adjusted_fails = holm([raw[name][1] for name in names])
    corrected = sum(reasons[name] is None for name in names) > 1
    decisions = {}
    for name, p_holds, p_fails in zip(names, adjusted_holds, adjusted_fails):
        effect, rule = effects[name], rules[name]
        if reasons[name] is not None:
            decisions[name] = Decision(INCONCLUSIVE, effect, rule, reasons[name])
            continue
        level = "Holm-adjusted p" if corrected else "p"
        if p_holds < ALPHA / 2:
            outcome, reason = HOLDS, f"{level} {p_holds:.2g}"
        elif p_fails < ALPHA / 2:
            outcome, reason = FAILS, f"{level} {p_fails:.2g} against the claimed effect"
        else:
            outcome = INCONCLUSIVE
            reason = (f"the interval includes both the claimed effect and its opposite ({level} {p_holds:.2g} for, "
                      f"{p_fails:.2g} against); these {effect.n} seeds resolve effects beyond ± "
                      f"{effect.half_width:.2g}")
        decisions[name] = Decision(outcome, effect, rule, reason, p_holds, p_fails)
    return decisions


def _seeds(count: int) -> str:
    return "the flagged seed" if count == 1 else f"the {count} flagged seeds"


def decide_panels(panels: Mapping[str, Mapping | Sequence[float]], rule: Rule | Mapping[str, Rule], *,
                  worst: Mapping[str, Mapping | Sequence[float]] | None = None,
                  flagged: Mapping[str, int] | None = None) -> dict[str, Decision]:
    """Decide every panel of one claim, with Holm's correction across them.

    Args:
        panels: ``{panel: per-seed effects}`` with flagged seeds left out.
        rule: The endpoint's rule, shared by the panels or ``{panel: rule}``.
        worst: ``{panel: per-seed effects}`` with every flagged seed at the value least favourable
            to the claim (only panels that have flagged seeds need an entry).
        flagged: ``{panel: number of flagged seeds}``.

    Returns:
        ``{panel: Decision}``. Where the worst case decides differently, the panel is
        inconclusive and says so.
    """
    rules = {name: rule[name] for name in panels} if isinstance(rule, Mapping) else dict.fromkeys(panels, rule)
    effects = {name: effect_interval(values) for name, values in panels.items()}
    decisions = _decide_family(effects, rules)
    flagged = dict(flagged or {})
    if worst:
        worst_effects = {name: effect_interval(worst.get(name, panels[name])) for name in panels}
        worst_decisions = _decide_family(worst_effects, rules)
        for name, decision in decisions.items():
            count = flagged.get(name, 0)
            if not count:
                continue
            other = worst_decisions[name]
            if other.outcome != decision.outcome and decision.outcome != INCONCLUSIVE:
                decisions[name] = replace(
                    decision, outcome=INCONCLUSIVE, worst=other, flagged=count,
                    reason=(f"{_seeds(count)} decide{'s' if count == 1 else ''}: at "
                            f"{'its' if count == 1 else 'their'} least favourable value the panel "
                            f"{other.outcome.replace(INCONCLUSIVE, 'is inconclusive')} ({other.effect.text()}); "
                            f"without {'it' if count == 1 else 'them'} it {decision.outcome} ({decision.reason})"))
            else:
                decisions[name] = replace(decision, worst=other, flagged=count)
    else:
        decisions = {name: replace(d, flagged=flagged.get(name, 0)) for name, d in decisions.items()}
    return decisions
