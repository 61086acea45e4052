"""The G&C paper's two figure claims (arXiv 2506.03931), declared on the study mechanism.

Every figure config whose ``claim`` is ``width`` (figures 1, 3, 5, 7, 9 and the rare-event width
sweep) or ``depth`` (figures 2, 4, 6, 8, 10, 11 and the rare-event depth sweep) is judged here.
Methods are read by role: the *sampler* (G&C), its *chance* rows (the prior's loss on the same
draws) and the *trainer* (GD). On seed ``s`` (one problem at every point of the sweep) the
sampler's loss is read against chance at the same point: ``r_s(x) = sampler_s(x) / chance_s(x)``.

* ``width`` (Theorem 1, Figure 1): primary endpoint, the per-seed rise of ``r`` from the smallest
  to the largest width, ``r_s(last) - r_s(first)``, claimed positive (G&C's advantage over chance
  shrinks as width grows). Reported, not deciding: ``r`` at the largest width equals 1 within
  ± 0.15 (G&C has reached chance; two one-sided tests), and GD/chance at the largest width is
  below 0.5 (GD keeps generalizing).
* ``depth`` (Theorem 2, Figure 2): primary endpoint, the per-seed fall of ``r`` from the smallest
  to the largest depth, ``r_s(first) - r_s(last)``, claimed positive (G&C's advantage over chance
  grows with depth). Reported: ``r`` at the largest depth is below 1. Where the sampler drew from
  the unnormalized prior (figure 11), the report heads the same verdict as the paper's ablation.

The paper states no size for either effect, so the minimal effect is 0: the claims are about the
direction. Flagged G&C runs (not mixed, nothing accepted) are left out; in the worst case a flagged
run at the largest depth sits at chance (``r = 1``), and a flagged seed of the width sweep has no
change.
"""

from __future__ import annotations

import math

from ..evidence import Endpoint, PanelData, Rule, Study, at_chance, register_study

__all__ = ["DEPTH", "WIDTH", "at_last", "depth_fall", "prior_normalized", "ratio_per_seed", "width_rise"]

PAPER = "arXiv 2506.03931"
#: "G&C has reached chance": r within 1 ± this (an equivalence margin, stated before the runs).
CHANCE_MARGIN = 0.15
#: GD "stays low": GD/chance below this at the largest width.
TRAINER_FRACTION_MAX = 0.5


def ratio_per_seed(panel: PanelData, x, role: str = "sampler") -> dict[int, float]:
    """``{seed: role's loss / chance at x}`` over the seeds with both and a positive chance level.

    The chance level is read as stored even where its sampler's run is flagged: it is the prior's loss
    on the prior's own draws, defined whatever the sampler accepted.
    """
    values = panel.values(panel.method(role), x)
    chance = panel.values(panel.method("chance"), x, raw=True)
    return {s: v / chance[s] for s, v in values.items() if s in chance and chance[s] > 0}


def prior_normalized(frame) -> bool | None:
    """Whether the sampler sampled the normalized prior, from the stored settings of its runs.

    Returns:
        ``True`` or ``False`` when every sampler run of ``frame`` agrees, ``None`` when there are
        none, they differ, or the frame has no stored settings.
    """
    from ..experiments.methods import SAMPLER, row_kind

    if frame.empty or "config" not in frame or "method_type" not in frame:
        return None
    values = set()
    for config, method_type in zip(frame["config"], frame["method_type"]):
        if row_kind(method_type).role != SAMPLER or not isinstance(config, dict):
            continue
        model = {**(config.get("model") or {}), **((config.get("method") or {}).get("model") or {})}
        values.add(bool(model.get("normalize", False)))
    return values.pop() if len(values) == 1 else None


def _ablation(frame) -> str | None:
    """The depth claim on the unnormalized prior (figure 11) is the paper's ablation."""
    from ..experiments.methods import SAMPLER, role_labels

    if prior_normalized(frame) is False:
        return f"Ablation ({role_labels().get(SAMPLER, SAMPLER)}'s prior not normalized)"
    return None


def _ends(panel: PanelData) -> tuple:
    xs = panel.xs(panel.method("sampler"))
    return (xs[0], xs[-1]) if len(xs) >= 2 else (None, None)


def _change(panel: PanelData, sign: float) -> dict[int, float]:
    first, last = _ends(panel)
    if first is None:
        return {}
    before, after = ratio_per_seed(panel, first), ratio_per_seed(panel, last)
    return {s: sign * (after[s] - before[s]) for s in before if s in after}


def width_rise(panel: PanelData) -> dict[int, float]:
    """Per seed: ``r(largest width) - r(smallest width)``."""
    return _change(panel, 1.0)


def depth_fall(panel: PanelData) -> dict[int, float]:
    """Per seed: ``r(smallest depth) - r(largest depth)``."""
    return _change(panel, -1.0)


def at_last(role: str, offset: float):
    """An endpoint: per seed, ``role``/chance at the sampler's largest x, minus ``offset``."""

    def effect(panel: PanelData) -> dict[int, float]:
        xs = panel.xs(panel.method("sampler"))
        if not xs:
            return {}
        return {s: r - offset for s, r in ratio_per_seed(panel, xs[-1], role).items() if math.isfinite(r)}

    effect.__qualname__ = f"at_last_{role}_{offset:g}"
    return effect


WIDTH = register_study(Study(
    name="width",
    paper=PAPER,
    claim="G&C's generalization loss approaches the prior's (chance) as width grows, while GD's stays low "
          "(Theorem 1, Figure 1)",
    endpoints={"rise": Endpoint(
        Rule("rise of G&C/chance from the smallest to the largest width", "increase"), width_rise, worst_effect=0.0)},
    secondary={
        "at_chance": Endpoint(Rule("G&C/chance at the largest width, minus 1", "equivalent", margin=CHANCE_MARGIN),
                              at_last("sampler", 1.0), worst_case=at_chance()),
        "trainer_low": Endpoint(Rule(f"GD/chance at the largest width, minus {TRAINER_FRACTION_MAX:g}", "decrease"),
                                at_last("trainer", TRAINER_FRACTION_MAX)),
    },
    notes=("r = G&C/chance per seed, with chance the prior's loss on the same draws at the same point; the "
           "effect is paired over seeds (each seed is one problem at every width).",),
))

DEPTH = register_study(Study(
    name="depth",
    paper=PAPER,
    claim="G&C's advantage over chance (the prior's loss at the same depth) grows with depth (Theorem 2, Figure 2)",
    endpoints={"fall": Endpoint(
        Rule("fall of G&C/chance from the smallest to the largest depth", "increase"), depth_fall,
        worst_case=at_chance())},
    secondary={
        "below_chance": Endpoint(Rule("G&C/chance at the largest depth, minus 1", "decrease"),
                                 at_last("sampler", 1.0), worst_case=at_chance()),
    },
    notes=("r = G&C/chance per seed, with chance the prior's loss on the same draws at the same depth (the "
           "prior's own loss changes with depth, so G&C's absolute loss alone does not show the claim).",),
    heading=_ablation,
))
