"""The decision statistics against independent computations (statsmodels, plain loops) and known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from volumelab.evidence import (
    ALPHA, FAILS, HOLDS, INCONCLUSIVE, MIN_SEEDS, Rule, decide, decide_panels, effect_interval, holm,
)

INCREASE = Rule("effect", "increase")


def test_interval_equals_statsmodels_t_interval():
    from statsmodels.stats.weightstats import DescrStatsW

    values = [0.3, -0.1, 0.25, 0.4, 0.05, 0.18, 0.22]
    effect = effect_interval(values)
    low, high = DescrStatsW(np.array(values)).tconfint_mean(alpha=ALPHA)
    assert effect.n == 7 and effect.estimate == pytest.approx(np.mean(values))
    assert effect.stderr == pytest.approx(np.std(values, ddof=1) / math.sqrt(7))
    assert (effect.low, effect.high) == (pytest.approx(low), pytest.approx(high))


def test_nan_is_left_out_and_counted_never_a_value():
    effect = effect_interval({0: 0.1, 1: float("nan"), 2: None, 3: 0.3})
    assert effect.n == 2 and effect.missing == 2 and effect.estimate == pytest.approx(0.2)
    nothing = decide({0: float("nan"), 1: float("nan")}, INCREASE)
    assert nothing.outcome == INCONCLUSIVE and "no seed" in nothing.reason


def test_holds_fails_inconclusive_on_known_effects():
    clear = [0.10, 0.20, 0.15, 0.30, 0.12, 0.18]
    assert decide(clear, INCREASE).outcome == HOLDS
    assert decide([-v for v in clear], INCREASE).outcome == FAILS
    assert decide([0.1, -0.2, 0.05, 0.0, 0.1, -0.05], INCREASE).outcome == INCONCLUSIVE
    decrease = Rule("effect", "decrease")
    assert decide([-v for v in clear], decrease).outcome == HOLDS


def test_minimal_effect_is_the_boundary_of_both_decisions():
    values = [0.10, 0.11, 0.09, 0.10, 0.12, 0.08]  # mean 0.1, SE 0.0058
    assert decide(values, Rule("e", "increase", minimal_effect=0.05)).outcome == HOLDS
    # Clearly positive, but clearly below the claimed size: the claimed effect is excluded.
    assert decide(values, Rule("e", "increase", minimal_effect=0.2)).outcome == FAILS
    assert decide(values, Rule("e", "increase", minimal_effect=0.1)).outcome == INCONCLUSIVE


def test_too_few_seeds_never_holds_or_fails():
    for n in range(1, MIN_SEEDS):
        decision = decide([1.0 + 0.01 * i for i in range(n)], INCREASE)
        assert decision.outcome == INCONCLUSIVE and f"too few seeds (n = {n}" in decision.reason
        decision = decide([-1.0 - 0.01 * i for i in range(n)], INCREASE)
        assert decision.outcome == INCONCLUSIVE


def test_equivalence_is_two_one_sided_tests_with_statsmodels_p_value():
    from statsmodels.stats.weightstats import DescrStatsW

    rule = Rule("r - 1", "equivalent", margin=0.15)
    near = [0.01, -0.02, 0.03, 0.0, 0.01, 0.02]
    decision = decide(near, rule)
    p_tost = DescrStatsW(np.array(near)).ttost_mean(-0.15, 0.15)[0]
    assert decision.outcome == HOLDS and decision.p_holds == pytest.approx(p_tost)
    assert decide([-0.5, -0.6, -0.55, -0.52, -0.58], rule).outcome == FAILS
    # The mean is inside the margin, but the interval is not: not rejected is not "holds".
    noisy = [0.4, -0.35, 0.2, -0.3, 0.1, -0.05]
    assert decide(noisy, rule).outcome == INCONCLUSIVE
    # 0.89 +- 0.045 against chance (r = 1) with a margin 0.05: neither equal nor excluded.
    assert decide([-0.11 + d for d in (-0.1, 0.1, -0.05, 0.05, 0.0, 0.02)], Rule("r - 1", "equivalent",
                                                                              margin=0.05)).outcome != HOLDS


def test_rules_refuse_what_they_cannot_mean():
    with pytest.raises(ValueError, match="margin"):
        Rule("e", "equivalent")
    with pytest.raises(ValueError, match="direction"):
        Rule("e", "up")
    with pytest.raises(ValueError, match="minimal_effect"):
        Rule("e", "increase", minimal_effect=-0.1)
    with pytest.raises(ValueError, match="min_seeds must be at least 5"):
        Rule("e", "increase", min_seeds=2)  # two seeds can never say holds or fails


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1e-6, 1.0), min_size=1, max_size=8))
def test_holm_equals_statsmodels(p_values):
    from statsmodels.stats.multitest import multipletests

    assert holm(p_values) == pytest.approx(list(multipletests(p_values, method="holm")[1]))
    with_nan = holm([float("nan"), *p_values])
    assert math.isnan(with_nan[0]) and with_nan[1:] == pytest.approx(holm(p_values))


def test_holm_corrects_panels_together():
    one = [0.05, 0.11, 0.02, 0.09, 0.06, 0.08]  # p about 0.003 alone
    alone = decide(one, INCREASE)
    together = decide_panels({"a": one, "b": [0.0] * 5 + [0.001]}, INCREASE)
    assert together["a"].p_holds > alone.p_holds
    assert together["a"].p_holds == pytest.approx(min(1.0, 2 * alone.p_holds))


def test_flagged_seeds_that_flip_the_worst_case_make_the_panel_inconclusive():
    kept = {s: 0.1 + 0.01 * s for s in range(5)}
    worst = {**kept, 5: -1.0, 6: -1.0, 7: -1.0}  # three flagged seeds at their least favourable value
    decision = decide_panels({"p": kept}, INCREASE, worst={"p": worst}, flagged={"p": 3})["p"]
    assert decision.outcome == INCONCLUSIVE and "the 3 flagged seeds decide" in decision.reason
    assert decision.worst.outcome != HOLDS
    harmless = decide_panels({"p": kept}, INCREASE, worst={"p": {**kept, 5: 0.1}}, flagged={"p": 1})["p"]
    assert harmless.outcome == HOLDS and harmless.flagged == 1


def test_the_t_interval_covers_at_its_level():
    """Coverage of the 95% interval over 4000 Gaussian samples of n = 6: within 3 binomial SE of 0.95."""
    rng = np.random.default_rng(0)
    trials, covered = 4000, 0
    for _ in range(trials):
        effect = effect_interval(list(rng.normal(0.3, 1.0, size=6)))
        covered += effect.low <= 0.3 <= effect.high
    stderr = math.sqrt(0.95 * 0.05 / trials)
    assert abs(covered / trials - 0.95) < 3 * stderr
