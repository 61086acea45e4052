"""The study mechanism on hand-made sweeps with known answers: the figure claims, flagged runs, too few seeds,
two-point sweeps, NaN, the combination rule, and a new study added by one declaration."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from volumelab.evidence import (
    FAILS, HOLDS, INCONCLUSIVE, Endpoint, Rule, Study, combine, get_study, judge, register_study,
)


def _frame(sampler, chance=0.1, *, seeds=6, panel="tanh", statuses=None):
    """A depth or width sweep: ``sampler(x, seed)`` is G&C's loss, ``chance`` the prior's; ``statuses[(x, seed)]``."""
    rows = []
    for x in (2, 4, 6, 8):
        for seed in range(seeds):
            status = (statuses or {}).get((x, seed), "ok")
            value = sampler(x, seed)
            rows.append(dict(activation=panel, method="gnc", method_type="gnc", x=x, seed=seed, status=status,
                             gen_loss=value if status == "ok" or value is None else value))
            rows.append(dict(activation=panel, method="prior", method_type="prior", x=x, seed=seed,
                             status="ok", gen_loss=chance))
    return pd.DataFrame(rows)


def _falling(x, seed):
    return 0.08 / x + 0.001 * seed


def test_depth_claim_holds_fails_and_is_inconclusive_on_known_frames():
    depth = get_study("depth")
    assert judge(depth, _frame(_falling), "activation").outcome == HOLDS
    rising = judge(depth, _frame(lambda x, s: 0.01 * x + 0.001 * s), "activation")
    assert rising.outcome == FAILS
    flat_noise = judge(depth, _frame(lambda x, s: 0.05 + 0.01 * ((s * 7 + x) % 3 - 1)), "activation")
    assert flat_noise.outcome == INCONCLUSIVE


def test_two_seeds_never_hold_or_fail():
    for sampler in (_falling, lambda x, s: 0.01 * x):
        verdict = judge(get_study("depth"), _frame(sampler, seeds=2), "activation")
        assert verdict.outcome == INCONCLUSIVE
        assert "too few seeds (n = 2" in verdict.panels[0].decision.reason


def test_a_two_point_sweep_is_judged():
    frame = _frame(_falling)
    two = frame[frame["x"].isin([2, 8])]
    assert judge(get_study("depth"), two, "activation").outcome == HOLDS


def test_nan_never_fails():
    frame = _frame(lambda x, s: 0.01 * x)  # would fail
    frame.loc[frame["method"] == "prior", "gen_loss"] = math.nan  # no chance level: no ratio at all
    verdict = judge(get_study("depth"), frame, "activation")
    assert verdict.outcome == INCONCLUSIVE and "no seed has the effect" in verdict.panels[0].decision.reason


def test_flagged_runs_are_left_out_and_their_worst_case_can_decide():
    # Seeds 0-5 fall clearly; seeds 6-9 are not mixed at the largest depth. At chance there, their fall is
    # r(2) - 1 < 0 for each, which pulls the interval across zero: the panel is inconclusive and says why.
    statuses = {(8, s): "not_mixed" for s in range(6, 10)}
    frame = _frame(_falling, seeds=10, statuses=statuses)
    verdict = judge(get_study("depth"), frame, "activation")
    decision = verdict.panels[0].decision
    assert decision.effect.n == 6 and decision.flagged == 4
    assert decision.outcome == INCONCLUSIVE and "flagged seeds decide" in decision.reason
    # One flagged seed does not move the decision: it holds, and says one seed was left out.
    one = judge(get_study("depth"), _frame(_falling, seeds=10, statuses={(8, 9): "not_mixed"}), "activation")
    assert one.outcome == HOLDS and one.panels[0].decision.flagged == 1


def test_flagged_runs_leave_every_metric_out():
    frame = _frame(_falling, statuses={(8, 0): "diverged"})
    frame["acceptance_rate"] = 0.5
    seen = {}

    def effect(panel):
        seen.update(panel.values("gnc", 8, "acceptance_rate"))
        return {s: 1.0 for s in range(6)}

    study = Study("flag-probe", "arXiv 0000.00000", "probe", {"e": Endpoint(Rule("e", "increase"), effect)})
    judge(study, frame, "activation")
    assert 0 not in seen and set(seen) == {1, 2, 3, 4, 5}


def test_width_claim_reads_the_rise_of_gnc_against_chance():
    width = get_study("width")
    approaches = _frame(lambda x, s: 0.1 * (1 - 1 / x) - 0.001 * s)
    verdict = judge(width, approaches, "activation")
    assert verdict.outcome == HOLDS
    assert set(verdict.panels[0].secondary) == {"at_chance", "trainer_low"}
    assert judge(width, _frame(lambda x, s: 0.1 / x + 0.001 * s), "activation").outcome == FAILS


def test_panels_are_combined_by_one_rule():
    assert combine([HOLDS, HOLDS]) == HOLDS
    assert combine([HOLDS, FAILS]) == FAILS
    assert combine([HOLDS, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([INCONCLUSIVE, INCONCLUSIVE]) == INCONCLUSIVE  # never "partly holds"
    assert combine([]) == INCONCLUSIVE
    assert combine([HOLDS, FAILS], "some") == HOLDS and combine([FAILS, FAILS], "some") == FAILS
    frame = pd.concat([_frame(_falling, panel="tanh"), _frame(lambda x, s: 0.01 * x + 0.001 * s, panel="relu")])
    verdict = judge(get_study("depth"), frame, "activation")
    assert [p.outcome for p in verdict.panels] == [HOLDS, FAILS] and verdict.outcome == FAILS


def test_extension_panels_are_judged_but_do_not_decide_the_claim():
    frame = pd.concat([_frame(_falling, panel="tanh"), _frame(lambda x, s: 0.01 * x + 0.001 * s, panel="relu")])
    base = get_study("depth")
    study = Study("depth-inside", base.paper, base.claim, base.endpoints, about=lambda panel: panel == "tanh")
    verdict = judge(study, frame, "activation")
    assert verdict.outcome == HOLDS
    relu = [p for p in verdict.panels if p.panel == "relu"][0]
    assert not relu.about and relu.outcome == FAILS


def test_a_new_study_is_one_declaration():
    """A claim about the prior's loss (chance) being flat in depth: an equivalence rule, registered and judged."""

    def chance_change(panel):
        prior = panel.method("chance")
        first, last = panel.xs(prior)[0], panel.xs(prior)[-1]
        a, b = panel.values(prior, first), panel.values(prior, last)
        return {s: b[s] - a[s] for s in a if s in b}

    study = register_study(Study(
        name="chance-flat", paper="arXiv 2506.03931", claim="the prior's loss does not change with depth",
        endpoints={"change": Endpoint(Rule("change of chance", "equivalent", margin=0.01), chance_change)},
    ))
    assert get_study("chance-flat") is study
    assert judge(study, _frame(_falling), "activation").outcome == HOLDS
    assert len(study.digest()) == 12


def test_the_digest_follows_the_rule():
    base = get_study("depth")
    moved = Study(base.name, base.paper, base.claim,
                  {"fall": Endpoint(Rule(base.endpoints["fall"].rule.endpoint, "increase", minimal_effect=0.1),
                                    base.endpoints["fall"].effect)})
    assert moved.digest() != base.digest()
    assert Study(base.name, base.paper, base.claim, base.endpoints).digest() == \
        Study(base.name, base.paper, base.claim, dict(base.endpoints)).digest()


def test_the_digest_covers_the_values_an_endpoint_closes_over():
    from volumelab.studies.figures import at_last

    base = get_study("depth")

    def with_offset(offset):
        return Study(base.name, base.paper, base.claim, base.endpoints,
                     secondary={"below": Endpoint(Rule("r - offset", "decrease"), at_last("sampler", offset))})

    assert with_offset(1.0).digest() == with_offset(1.0).digest()
    assert with_offset(1.0).digest() != with_offset(0.9).digest()


def test_a_study_must_name_its_paper():
    with pytest.raises(ValueError, match="paper"):
        Study("x", "", "claim", {"e": Endpoint(Rule("e", "increase"), lambda panel: {})})


def test_where_keeps_one_arm_of_a_grid_field_with_its_flagged_runs():
    from volumelab.evidence import panel_data

    frame = pd.concat([_frame(_falling, panel=law, statuses={(8, 1): "diverged"} if law == "student_t" else None)
                       for law in ("gaussian", "student_t")], ignore_index=True).rename(columns={"activation": "inputs"})
    frame["width"] = 256.0
    panel = panel_data(frame, "all")
    heavy = panel.where("inputs", "student_t")
    assert set(heavy.raw["inputs"]) == {"student_t"} and len(heavy.raw) == len(frame) // 2
    assert heavy.flagged == frozenset({("gnc", 8, 1)}) and panel.where("inputs", "gaussian").flagged == frozenset()
    # The flagged run's numbers stay out of the arm's frame, as in the panel's.
    assert 1 not in heavy.values("gnc", 8) and heavy.values("gnc", 8, raw=True)[1] == pytest.approx(_falling(8, 1))
    # Numbers compare as numbers (a grid column read back as float or int).
    assert len(panel.where("width", 256).raw) == len(frame) and len(panel.where("width", 32).raw) == 0
    with pytest.raises(KeyError, match="no column 'depth'"):
        panel.where("depth", 2)


def test_where_keeps_values_a_worst_case_set_on_the_panels_frame():
    """An arm is the panel's own rows: a value a worst case wrote into the panel's frame (here the flagged run's
    loss set to 0.75) is in the arm's frame, and the other rows' values are the panel's."""
    from volumelab.evidence import PanelData, panel_data

    frame = pd.concat([_frame(_falling, panel=law, statuses={(8, 1): "diverged"} if law == "student_t" else None)
                       for law in ("gaussian", "student_t")], ignore_index=True).rename(columns={"activation": "inputs"})
    panel = panel_data(frame, "all")
    worst = panel.frame.copy()
    hit = (worst["inputs"] == "student_t") & (worst["method"] == "gnc") & (worst["x"] == 8) & (worst["seed"] == 1)
    assert hit.sum() == 1
    worst.loc[hit, "gen_loss"] = 0.75
    arm = PanelData(panel.name, worst, panel.raw, panel.flagged).where("inputs", "student_t")
    assert arm.values("gnc", 8)[1] == 0.75
    assert arm.flagged == frozenset({("gnc", 8, 1)})
    plain = panel.where("inputs", "student_t")
    assert 1 not in plain.values("gnc", 8)
    assert {s: v for s, v in arm.values("gnc", 8).items() if s != 1} == plain.values("gnc", 8)


def test_row_settings_read_the_grid_column_else_the_stored_config():
    from volumelab.evidence import row_settings

    frame = pd.DataFrame({"depth": [2.0, math.nan, None],
                          "config": [{"model": {"depth": 9}}, {"model": {"depth": 3}}, {"problem": {}}]})
    assert row_settings(frame, "depth", "model", "depth") == [2.0, 3, None]
    assert row_settings(frame.drop(columns="depth"), "depth", "model", "depth") == [9, 3, None]
