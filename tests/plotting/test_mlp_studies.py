"""The wide-MLP studies (arXiv 2205.13507) and the volume hypothesis on real data, declared on the study
mechanism: each verdict on hand-made sweeps whose answer is known by construction (holds, fails,
inconclusive, too few seeds, flagged seeds that flip the worst case), the helpers against closed forms,
the plots, and the packaged configs."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge
from volumelab.experiments import figure_config_path
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.studies import mlp
from volumelab.studies.mlp import LIMIT_MARGIN, PARITY_BAND, TRANSFER_MARGIN, log_log_slope, optimal_log2_lr

CLAIMS = ("mlp-ntk", "mlp-convergence", "mlp-lazy", "mlp-lr-transfer", "mlp-volume", "mlp-volume-train")
SEEDS = 6


def row(method: str, method_type: str, x, seed: int, status: str = "ok", **values) -> dict:
    return {"method": method, "method_type": method_type, "x": x, "seed": seed, "status": status,
            "gen_loss": np.nan, "train_loss": np.nan, **values}


def outcomes(verdict) -> dict[str, str]:
    return {p.panel: p.outcome for p in verdict.panels}


# ------------------------------------------------------------------ declarations
def test_every_mlp_claim_is_a_declared_study_and_no_longer_routed_to_a_legacy_judge():
    for claim in CLAIMS:
        study = get_study(claim)
        assert study is mlp.STUDIES[claim] and study.paper.strip() and study.claim
        assert len(study.rule_text) > 50 and len(study.digest()) == 12
    for legacy in ("STUDY_CLAIMS", "judge_study", "study_rule", "_RULES", "_STATEMENTS", "_JUDGES"):
        assert not hasattr(mlp, legacy)
    assert get_study("mlp-ntk").paper == "arXiv 2205.13507"
    assert "2407.03848" in get_study("mlp-volume").paper and "ICLR 2023" in get_study("mlp-volume-train").paper


def test_the_module_imports_no_private_name_of_another_study_module_and_no_report_code():
    source = (mlp.__file__ and open(mlp.__file__, encoding="utf-8").read())
    assert not re.search(r"from \.(ngd|theory|tensor|figures) import", source)
    assert "plotting.report" not in source and "matplotlib.use" not in source and "pyplot" not in source


# ------------------------------------------------------------------ mlp-ntk
WIDTHS_NTK = (16, 64, 256)


def ntk_frame(deviations=(0.4, 0.2, 0.0), noise: float = 0.01, spread_last: float = 0.05, seeds: int = SEEDS,
              parametrizations=("ntk", "standard"), depths=(2,), standard_spread_last: float | None = None
              ) -> pd.DataFrame:
    """lambda_min at each width is ``1 - deviation`` times the closed form (ntk; each seed its own limit), with
    relative noise ``noise`` per seed; the spread over draws moves geometrically from 0.4 to ``spread_last``
    (``standard_spread_last`` for the standard parametrization, default the same)."""
    generator = np.random.default_rng(3)
    rows = []
    for parametrization in parametrizations:
        for depth in depths:
            for seed in range(seeds):
                limit = 0.1 * (1 + 0.2 * seed)  # each seed its own training set, its own limit
                for i, width in enumerate(WIDTHS_NTK):
                    fraction = i / (len(WIDTHS_NTK) - 1)
                    last = spread_last if parametrization == "ntk" or standard_spread_last is None \
                        else standard_spread_last
                    spread = 0.4 * (last / 0.4) ** fraction * (1 + 0.02 * generator.standard_normal())
                    value = limit * (1 - deviations[i]) * (1 + noise * generator.standard_normal())
                    if parametrization == "standard":
                        value *= width
                    rows.append(row("ntk", "ntk", width, seed, width=width, depth=depth,
                                    parametrization=parametrization, lambda_min=value, lambda_min_std=spread * value,
                                    lambda_min_limit=limit if parametrization == "ntk" else np.nan))
    return pd.DataFrame(rows)


def test_ntk_holds_when_lambda_min_approaches_its_limit_and_the_standard_parametrization_is_an_extension():
    verdict = judge(get_study("mlp-ntk"), ntk_frame(), "depth")
    assert verdict.outcome == HOLDS, [p.decision.line for p in verdict.panels]
    assert [(p.panel, p.about) for p in verdict.panels] == [("ntk, depth 2", True), ("standard, depth 2", False)]
    ntk, standard = verdict.panels
    # The deviation 0.4 -> 0.2 -> 0 over log2 widths 4, 6, 8: -0.1 per doubling.
    assert ntk.decision.rule.direction == "decrease" and ntk.decision.rule.minimal_effect == 0
    assert ntk.decision.effect.estimate == pytest.approx(-0.1, abs=0.01)
    # The spread 0.4 -> 0.05 over a factor 16 in width: the power law's exponent -3/4.
    assert standard.outcome == HOLDS and standard.decision.effect.estimate == pytest.approx(-0.75, abs=0.03)
    # Reported on the claim's panel, never deciding: the concentration slope and the limit equivalence.
    assert ntk.secondary["concentration"].outcome == HOLDS
    assert ntk.secondary["limit"].outcome == HOLDS and ntk.secondary["limit"].rule.margin == LIMIT_MARGIN
    # An extension that fails does not decide the claim.
    spreading = judge(get_study("mlp-ntk"), ntk_frame(standard_spread_last=0.8), "depth")
    assert spreading.outcome == HOLDS and outcomes(spreading)["standard, depth 2"] == FAILS


def test_ntk_fails_when_lambda_min_recedes_from_its_limit_and_a_flat_or_few_seeds_trend_is_inconclusive():
    receding = judge(get_study("mlp-ntk"), ntk_frame(deviations=(0.0, 0.2, 0.4)), "depth")
    assert receding.outcome == FAILS and receding.panels[0].secondary["limit"].outcome == FAILS
    # At a fixed distance from the limit, seeds on both sides of no trend: neither.
    flat = judge(get_study("mlp-ntk"), ntk_frame(deviations=(0.2, 0.2, 0.2), noise=0.05), "depth")
    assert flat.outcome == INCONCLUSIVE and "includes both" in flat.panels[0].decision.reason
    few = judge(get_study("mlp-ntk"), ntk_frame(seeds=3), "depth")
    assert few.outcome == INCONCLUSIVE and "too few seeds (n = 3" in few.panels[0].decision.reason


def test_ntk_the_approach_is_read_through_the_limit_not_a_one_sided_rise():
    """Overshooting the limit is a deviation too: 0.4 below, then 0.4 above, is no approach."""
    frame = ntk_frame(deviations=(0.4, 0.0, -0.4), parametrizations=("ntk",))
    decision = judge(get_study("mlp-ntk"), frame, "depth").panels[0].decision
    assert decision.effect.estimate == pytest.approx(0.0, abs=0.01) and decision.outcome == INCONCLUSIVE


def test_ntk_a_flagged_draw_at_one_width_leaves_its_seed_at_no_trend_in_the_worst_case():
    frame = ntk_frame(parametrizations=("ntk",))
    bad = (frame["seed"] == 0) & (frame["x"] == 64)
    frame.loc[bad, "status"] = "solve_failed"
    decision = judge(get_study("mlp-ntk"), frame, "depth").panels[0].decision
    assert decision.flagged == 1 and decision.effect.n == SEEDS - 1 and decision.worst.effect.values[0] == 0.0
    assert decision.outcome == decision.worst.outcome == HOLDS


def test_ntk_panels_are_read_from_the_stored_config_when_the_grid_does_not_sweep_them():
    frame = ntk_frame(parametrizations=("ntk",), depths=(3,))
    frame["config"] = [{"model": {"parametrization": "ntk", "depth": 3}}] * len(frame)
    frame = frame.drop(columns=["parametrization", "depth"])
    verdict = judge(get_study("mlp-ntk"), frame)
    assert [p.panel for p in verdict.panels] == ["ntk, depth 3"] and verdict.outcome == HOLDS


def test_ntk_a_non_positive_closed_form_gives_no_effect_not_a_failure():
    frame = ntk_frame(parametrizations=("ntk",))
    frame["lambda_min_limit"] = 0.0
    verdict = judge(get_study("mlp-ntk"), frame, "depth")
    assert verdict.outcome == INCONCLUSIVE and "no seed has the effect" in verdict.panels[0].decision.reason


# ------------------------------------------------------------------ mlp-convergence and mlp-lazy
def gd_frame(margin_last, *, margin_first=0.02, noise=0.002, change_exponent=-0.5, rate_exponent=lambda s: 0.05,
             rate_noise=0.01, seeds=SEEDS, depths=(2, 3)) -> pd.DataFrame:
    """GD runs whose NTK-guaranteed rate is ``0.04 (width / 64) ** rate_exponent(seed)`` (relative noise
    ``rate_noise``) and whose measured rate exceeds it by ``margin_last(seed)`` at the largest width
    (``margin_first`` elsewhere); relative weight and NTK changes ``~ width ** change_exponent``."""
    generator = np.random.default_rng(4)
    widths = (64, 256, 1024)
    rows = []
    for seed in range(seeds):
        for depth in depths:
            for width in widths:
                guaranteed = (0.04 * (1 + 0.05 * seed) * (width / 64) ** rate_exponent(seed)
                              * (1 + rate_noise * generator.standard_normal()))
                margin = margin_last(seed) if width == widths[-1] else margin_first
                wobble = 1 + 0.02 * generator.standard_normal()
                rows.append(row("gd", "gd", width, seed, width=width, depth=depth, predicted_rate=guaranteed,
                                loss_rate=guaranteed + margin + noise * generator.standard_normal(),
                                param_change=0.1 * (width / 64) ** change_exponent * wobble,
                                ntk_change=0.2 * (width / 64) ** change_exponent * wobble,
                                gen_loss=0.5, train_loss=1e-10))
    return pd.DataFrame(rows)


def test_convergence_holds_when_the_guaranteed_rate_rises_with_width_and_fails_when_it_falls():
    study = get_study("mlp-convergence")
    rising = judge(study, gd_frame(lambda s: 0.02), "depth")
    assert rising.outcome == HOLDS and [p.panel for p in rising.panels] == ["depth 2", "depth 3"]
    decision = rising.panels[0].decision
    assert decision.rule.direction == "increase" and decision.rule.minimal_effect == 0
    assert decision.effect.estimate == pytest.approx(0.05, abs=0.01)  # the power law's exponent
    falling = judge(study, gd_frame(lambda s: 0.02, rate_exponent=lambda s: -0.05), "depth")
    assert falling.outcome == FAILS
    # Seeds on both sides of no trend: not "not falling, so holds".
    flat = judge(study, gd_frame(lambda s: 0.02, rate_exponent=lambda s: 0.02 * (-1) ** s), "depth")
    assert flat.outcome == INCONCLUSIVE and all("includes both" in p.decision.reason for p in flat.panels)


def test_convergence_reports_the_measured_rate_its_gap_and_the_bound_without_deciding():
    study = get_study("mlp-convergence")
    above = judge(study, gd_frame(lambda s: 0.02, noise=0.0002), "depth").panels[0].secondary
    # The measured rate is the guarantee plus a constant 0.02: it rises, and its relative gap falls.
    assert above["measured_slope"].outcome == HOLDS and above["gap_slope"].outcome == HOLDS
    assert above["bound"].outcome == HOLDS and above["bound_smallest"].outcome == HOLDS
    assert "rate_kept" not in above  # the rule of 2026-12-05's 0.8x floor is dropped (rule_history.json)
    # Below the guarantee at the largest width: the bound's secondary fails; the deciding slope still holds.
    below = judge(study, gd_frame(lambda s: -0.01), "depth")
    assert below.outcome == HOLDS and below.panels[0].secondary["bound"].outcome == FAILS


def test_convergence_a_diverged_run_leaves_its_seed_at_no_trend_in_the_worst_case():
    # Seeds 1-5 rise just resolvably (exact exponents, no noise); seed 0 diverges at the largest width.
    exponents = [0.05, 0.01, 0.05, 0.002, 0.06, 0.04]
    frame = gd_frame(lambda s: 0.02, rate_exponent=lambda s: exponents[s], rate_noise=0.0, depths=(2,))
    last = (frame["x"] == 1024) & (frame["seed"] == 0)
    frame.loc[last, "status"] = "diverged"
    frame.loc[last, ["loss_rate", "predicted_rate", "train_loss", "gen_loss"]] = np.nan
    decision = judge(get_study("mlp-convergence"), frame, "depth").panels[0].decision
    # Fitted on its two other widths seed 0 would have a slope: it has none, and counts at 0.
    assert decision.flagged == 1 and decision.effect.n == 5 and 0 not in decision.effect.values
    assert decision.worst.effect.values[0] == 0.0 and decision.worst.outcome != HOLDS
    assert decision.outcome == INCONCLUSIVE and "flagged seed" in decision.reason


def test_lazy_follows_the_per_seed_slope_of_the_weight_change():
    study = get_study("mlp-lazy")
    lazy = judge(study, gd_frame(lambda s: 0.02), "depth")
    assert lazy.outcome == HOLDS
    assert lazy.panels[0].decision.effect.estimate == pytest.approx(-0.5, abs=0.03)
    assert lazy.panels[0].secondary["ntk_change"].outcome == HOLDS
    active = judge(study, gd_frame(lambda s: 0.02, change_exponent=0.2), "depth")
    assert active.outcome == FAILS
    flat = gd_frame(lambda s: 0.02, change_exponent=0.0)
    flat["param_change"] *= (flat["x"] / 64.0) ** (0.05 * np.where(flat["seed"] % 2 == 0, 1, -1))
    assert judge(study, flat, "depth").outcome == INCONCLUSIVE


def test_log_log_slope_against_numpy_polyfit():
    generator = np.random.default_rng(0)
    xs = np.repeat([64.0, 256.0, 1024.0, 4096.0], 4)
    ys = 3.0 * xs ** -0.5 * np.exp(0.1 * generator.standard_normal(xs.size))
    slope, stderr, n = log_log_slope(xs, ys)
    assert slope == pytest.approx(np.polyfit(np.log(xs), np.log(ys), 1)[0], rel=1e-12)
    fitted = np.polyval(np.polyfit(np.log(xs), np.log(ys), 1), np.log(xs))
    residual = np.sum((np.log(ys) - fitted) ** 2) / (xs.size - 2)
    assert stderr == pytest.approx(math.sqrt(residual / np.sum((np.log(xs) - np.log(xs).mean()) ** 2)), rel=1e-9)
    assert n == 16 and math.isnan(log_log_slope([1, 2], [1, 2])[0])


# ------------------------------------------------------------------ mlp-lr-transfer
def test_optimal_log2_lr_is_the_vertex_of_a_parabola_in_log_loss():
    grid = [2.0 ** e for e in range(-4, 5)]
    for centre in (-1.3, 0.0, 0.45, 2.5):
        losses = {lr: math.exp((math.log2(lr) - centre) ** 2) for lr in grid}
        assert optimal_log2_lr(losses) == pytest.approx(centre, abs=1e-9)
    # Unequal spacings: still the exact vertex.
    uneven = [0.25, 0.5, 2.0, 2.0 ** 3.5, 32.0]
    assert optimal_log2_lr({lr: math.exp((math.log2(lr) - 1.7) ** 2) for lr in uneven}) == pytest.approx(1.7)
    # At the grid's edge there is no optimum inside it.
    assert math.isnan(optimal_log2_lr({lr: math.exp((math.log2(lr) - 6) ** 2) for lr in grid}))
    assert math.isnan(optimal_log2_lr({lr: math.inf for lr in grid}))
    # A diverged neighbour (infinite loss) leaves the argmin unrefined; one further up does not matter.
    losses = {lr: math.exp((math.log2(lr) - 0.4) ** 2) for lr in grid}
    assert optimal_log2_lr({**losses, 2.0: math.inf}) == 0.0
    assert optimal_log2_lr({**losses, 16.0: math.nan}) == pytest.approx(0.4)


def transfer_frame(standard_step: float = -1.5, ntk_step: float = 0.0, seeds: int = SEEDS, noise: float = 0.15,
                   diverge_above: float | None = None, test_offset: float = 0.0) -> pd.DataFrame:
    """Per seed, the log2 optimum moves by ``*_step`` for each 4x in width (mup never moves); losses are
    ``0.01 exp((log2 lr - optimum)^2 / 2)``; runs above ``optimum + diverge_above`` diverge."""
    generator = np.random.default_rng(6)
    lrs = [2.0 ** e for e in range(-8, 7)]
    rows = []
    for parametrization in ("standard", "ntk", "mup"):
        base = {"standard": -3.0, "ntk": 3.0, "mup": -1.0}[parametrization]
        step = {"standard": standard_step, "ntk": ntk_step, "mup": 0.0}[parametrization]
        for seed in range(seeds):
            for j, width in enumerate((64, 256, 1024)):
                optimum = base + step * j + noise * generator.standard_normal()
                for lr in lrs:
                    distance = math.log2(lr) - optimum
                    diverged = diverge_above is not None and distance > diverge_above
                    rows.append(row("gd", "gd", lr, seed, status="diverged" if diverged else "ok", lr=lr,
                                    width=width, parametrization=parametrization,
                                    train_loss=np.nan if diverged else 0.01 * math.exp(distance ** 2 / 2),
                                    gen_loss=np.nan if diverged else 0.3 * math.exp((distance - test_offset) ** 2 / 8)))
    return pd.DataFrame(rows)


def test_lr_transfer_holds_when_ntk_and_mup_stay_and_standard_drifts():
    study = get_study("mlp-lr-transfer")
    verdict = judge(study, transfer_frame(), "parametrization", ["standard", "ntk", "mup"])
    assert verdict.outcome == HOLDS, [p.decision.line for p in verdict.panels]
    assert outcomes(verdict) == {"standard": HOLDS, "ntk": HOLDS, "mup": HOLDS}
    standard = verdict.panels[0].decision
    assert standard.rule.direction == "decrease" and standard.rule.minimal_effect == TRANSFER_MARGIN
    assert standard.effect.estimate == pytest.approx(-3.0, abs=0.2) and standard.effect.n == SEEDS
    assert verdict.panels[1].decision.rule.margin == TRANSFER_MARGIN
    assert verdict.panels[1].secondary["test_loss"].outcome == HOLDS


def test_lr_transfer_fails_when_standard_stays_or_ntk_moves():
    study = get_study("mlp-lr-transfer")
    still = judge(study, transfer_frame(standard_step=0.0), "parametrization", ["standard", "ntk", "mup"])
    assert still.outcome == FAILS and outcomes(still) == {"standard": FAILS, "ntk": HOLDS, "mup": HOLDS}
    moved = judge(study, transfer_frame(ntk_step=-1.5), "parametrization", ["standard", "ntk", "mup"])
    assert moved.outcome == FAILS and outcomes(moved)["ntk"] == FAILS


def test_lr_transfer_needs_five_seeds_and_an_interior_optimum():
    study = get_study("mlp-lr-transfer")
    two = judge(study, transfer_frame(seeds=2), "parametrization")
    assert two.outcome == INCONCLUSIVE and all("too few seeds (n = 2" in p.decision.reason for p in two.panels)
    # ntk's optimum beyond the grid's top at every width: no seed has an optimum, never a verdict.
    beyond = judge(study, transfer_frame(ntk_step=0.0).assign(
        train_loss=lambda f: np.where(f["parametrization"] == "ntk", 1.0 / f["lr"], f["train_loss"])),
        "parametrization")
    assert outcomes(beyond)["ntk"] == INCONCLUSIVE and beyond.outcome == INCONCLUSIVE


def test_lr_transfer_diverged_runs_count_as_infinite_losses_not_as_missing_seeds():
    study = get_study("mlp-lr-transfer")
    # Every learning rate more than 1.5 steps above a seed's optimum diverges: the optima are unchanged.
    verdict = judge(study, transfer_frame(diverge_above=1.5), "parametrization")
    assert verdict.outcome == HOLDS and all(p.decision.effect.n == SEEDS for p in verdict.panels)
    # A diverged rate just above the optimum leaves it unrefined (a whole grid step), still a value.
    close = judge(study, transfer_frame(diverge_above=0.6, noise=0.0), "parametrization")
    assert all(p.decision.effect.n == SEEDS for p in close.panels)


# ------------------------------------------------------------------ mlp-volume
def volume_frame(growth: float, *, noise: float = 0.003, seeds: int = SEEDS, no_acceptance=()) -> pd.DataFrame:
    """G&C's test error exceeds GD's by 0.05 + growth * (width index); ``no_acceptance``: (seed, width) pairs
    where the Gaussian prior's G&C accepted nothing."""
    generator = np.random.default_rng(5)
    rows = []
    for seed in range(seeds):
        for depth in (2, 3):
            for i, width in enumerate((4, 16, 64)):
                gd = 0.2 - 0.01 * i + 0.01 * generator.standard_normal()
                for method, method_type, error in (
                        ("gnc", "gnc", gd + 0.05 + growth * i), ("gnc_uniform", "gnc", gd + 0.05 + growth * i),
                        ("gd", "gd", gd), ("prior", "prior", 0.5), ("gnc_uniform_prior", "prior", 0.5)):
                    none = method == "gnc" and (seed, width) in no_acceptance
                    rows.append(row(method, method_type, width, seed, status="no_acceptance" if none else "ok",
                                    width=width, depth=depth,
                                    test_error=np.nan if none else error + noise * generator.standard_normal(),
                                    acceptance_rate=1e-3 if method_type == "gnc" else np.nan))
    return pd.DataFrame(rows)


def test_volume_holds_fails_and_is_inconclusive_by_the_paired_change():
    study = get_study("mlp-volume")
    behind = judge(study, volume_frame(0.05), "depth")
    assert behind.outcome == HOLDS and [p.panel for p in behind.panels] == ["depth 2", "depth 3"]
    assert behind.panels[0].decision.effect.estimate == pytest.approx(0.1, abs=0.01)
    assert behind.panels[0].secondary["second_prior"].outcome == HOLDS
    assert behind.panels[0].secondary["trainer"].outcome == HOLDS  # GD's error falls by 0.02 with width
    assert judge(study, volume_frame(-0.03), "depth").outcome == FAILS
    assert judge(study, volume_frame(0.0, noise=0.03), "depth").outcome == INCONCLUSIVE


def test_volume_a_seed_without_acceptance_sits_at_no_change_in_the_worst_case():
    frame = volume_frame(0.05, seeds=7, no_acceptance={(0, 64), (1, 64)})
    verdict = judge(get_study("mlp-volume"), frame, "depth")
    decision = verdict.panels[0].decision
    assert decision.flagged == 2 and decision.effect.n == 5 and 0 not in decision.effect.values
    assert decision.worst.effect.n == 7 and decision.worst.effect.values[0] == 0.0
    assert decision.worst.effect.values[1] == 0.0 and decision.outcome == decision.worst.outcome == HOLDS
    # Where the change is small against its spread, the two seeds at no change may decide: then inconclusive.
    small = volume_frame(0.01, noise=0.004, seeds=7, no_acceptance={(0, 64), (1, 64)})
    decision = judge(get_study("mlp-volume"), small, "depth").panels[0].decision
    if decision.worst.outcome != decision.outcome:
        assert decision.outcome == INCONCLUSIVE and "flagged seeds decide" in decision.reason


# ------------------------------------------------------------------ mlp-volume-train
def volume_train_frame(gap: float, *, noise: float = 0.005, accepted_at_16: bool = True,
                       seeds: int = SEEDS) -> pd.DataFrame:
    generator = np.random.default_rng(7)
    rows = []
    for seed in range(seeds):
        for n in (2, 4, 8, 16):
            gd = 0.3 - 0.01 * n + 0.01 * generator.standard_normal()
            none = n == 16 and seed == 0 and not accepted_at_16
            rows += [row("gnc", "gnc", n, seed, status="no_acceptance" if none else "ok", train=n,
                         test_error=np.nan if none else gd + gap + noise * generator.standard_normal(),
                         acceptance_rate=0.0 if none else 0.01 / n),
                     row("gd", "gd", n, seed, train=n, test_error=gd),
                     row("prior", "prior", n, seed, train=n, test_error=0.5)]
    return pd.DataFrame(rows)


def test_volume_train_is_an_equivalence_within_the_parity_band():
    study = get_study("mlp-volume-train")
    parity = judge(study, volume_train_frame(0.01))
    assert parity.outcome == HOLDS and [p.panel for p in parity.panels] == [
        "2 training points", "4 training points", "8 training points", "16 training points"]
    assert parity.panels[0].decision.rule.margin == PARITY_BAND
    assert parity.panels[0].secondary["below_chance"].outcome == HOLDS
    behind = judge(study, volume_train_frame(PARITY_BAND + 0.1))
    assert behind.outcome == FAILS and all(p.outcome == FAILS for p in behind.panels)
    # G&C better than GD by more than the band is not "about as well" either.
    assert judge(study, volume_train_frame(-0.15)).outcome == FAILS
    edge = judge(study, volume_train_frame(PARITY_BAND, noise=0.03))
    assert edge.outcome == INCONCLUSIVE


def test_volume_train_no_acceptance_sits_at_chance_in_the_worst_case():
    verdict = judge(get_study("mlp-volume-train"), volume_train_frame(0.0, accepted_at_16=False))
    last = verdict.panels[-1].decision
    assert last.flagged == 1 and last.outcome == INCONCLUSIVE and last.worst.outcome != HOLDS
    assert all(p.outcome == HOLDS for p in verdict.panels[:-1]) and verdict.outcome == INCONCLUSIVE


def test_gd_runs_that_completed_or_converged_are_data_not_flagged():
    """GD's own statuses (its steps ran, or it reached its threshold) are sound runs (evidence.SOUND_STATUSES)."""
    frame = gd_frame(lambda s: 0.02, depths=(2,))
    frame["status"] = np.where(frame["seed"] % 2 == 0, "completed", "converged")
    verdict = judge(get_study("mlp-convergence"), frame, "depth")
    assert verdict.outcome == HOLDS and verdict.panels[0].decision.flagged == 0
    lr = transfer_frame(diverge_above=1.5)
    lr.loc[lr["status"] == "ok", "status"] = "completed"
    assert judge(get_study("mlp-lr-transfer"), lr, "parametrization").outcome == HOLDS


# ------------------------------------------------------------------ plots
@pytest.mark.parametrize("claim, frame, panel", [
    ("mlp-ntk", lambda: ntk_frame(), "depth"),
    ("mlp-convergence", lambda: gd_frame(lambda s: 0.02), "depth"),
    ("mlp-lazy", lambda: gd_frame(lambda s: 0.02), "depth"),
    ("mlp-lr-transfer", lambda: transfer_frame(diverge_above=1.5), "parametrization"),
    # Past the stability edge a run can end with a finite test loss of 1e276 (measured in stream 1): the log
    # axis overflowed before such losses were drawn at the plot's cap.
    ("mlp-lr-transfer", lambda: transfer_frame(diverge_above=1.5).assign(
        gen_loss=lambda f: f["gen_loss"].where(f["lr"] < 16, 1e276)), "parametrization"),
    ("mlp-volume", lambda: volume_frame(0.05, no_acceptance={(0, 64)}), "depth"),
    ("mlp-volume-train", lambda: volume_train_frame(0.01, accepted_at_16=False), None),
])
def test_each_study_draws_its_plot_without_warnings(tmp_path, recwarn, claim, frame, panel):
    study = get_study(claim)
    data = frame()
    verdict = judge(study, data, panel)
    blanked = data.copy()
    blanked.loc[blanked["status"] != "ok", [c for c in blanked.columns if blanked[c].dtype.kind == "f"
                                            and c != "x"]] = np.nan
    paths = study.plot(verdict, blanked, tmp_path / "plots" / claim, claim)
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert study.plot(verdict, blanked.iloc[:0], tmp_path / "empty", claim) == []


# ------------------------------------------------------------------ packaged configs
@pytest.mark.parametrize("claim", CLAIMS)
def test_packaged_configs_load_with_enough_seeds(claim):
    config = load_sweep(figure_config_path(claim))
    assert config.claim == claim and get_study(config.claim) is not None
    assert len(resolve_points(config, "quick")) > 0
    seeds = config.seeds if isinstance(config.seeds, int) else len(config.seeds)
    assert seeds >= 6


def test_lr_transfer_grid_is_geometric_and_wide_enough_on_both_sides():
    """Factor-2 spacing (the margin is one step); from 2^-9, below half the smallest linear stability edge
    n / lambda_max of the NTK (standard, width 1024: about 2^-8.2), to 2^6, beyond four times the ntk
    parametrization's (about 2^2.8): the catapult range where GD still converges ends there."""
    config = load_sweep(figure_config_path("mlp-lr-transfer"))
    lrs = sorted(config.grid["methods.gd.lr"])
    exponents = [math.log2(lr) for lr in lrs]
    assert exponents == list(range(-9, 7))
    assert sorted(config.grid["model.parametrization"]) == ["mup", "ntk", "standard"]


TINY_STUDIES = {
    "mlp-ntk": """\
        name: tiny-ntk
        claim: mlp-ntk
        x: model.width
        panel: model.parametrization
        problem: {kind: supervised, data: digits, train: 8, loss: squared}
        model: {kind: mlp, width: 8, depth: 2, parametrization: ntk}
        methods:
          ntk: {draws: 3}
        grid:
          model.parametrization: [ntk, standard]
          model.width: [8, 32]
        seeds: 2
        """,
    "mlp-lr-transfer": """\
        name: tiny-lr
        claim: mlp-lr-transfer
        x: methods.gd.lr
        panel: model.parametrization
        problem: {kind: supervised, data: digits, train: 8, loss: squared}
        model: {kind: mlp, width: 8, depth: 2}
        methods:
          gd: {lr: 0.1, steps: 10, init_scale: 1.0}
        grid:
          model.parametrization: [standard, ntk]
          model.width: [8, 16]
          methods.gd.lr: [0.1, 0.4, 1.6]
        seeds: 2
        """,
}


@pytest.mark.parametrize("claim", sorted(TINY_STUDIES))
def test_a_tiny_study_runs_end_to_end_and_two_seeds_never_decide(tmp_path, claim):
    """From the CLI: the runs, the store, the report's verdict and plots; 2 seeds: inconclusive."""
    from tiny_sweep import write_config

    from volumelab.cli import main

    path = write_config(tmp_path, TINY_STUDIES[claim])
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    name = path.read_text(encoding="utf-8").split("name: ")[1].split()[0]
    assert (tmp_path / "out" / "plots" / f"{name}-claim.png").is_file()
    # Two seeds never decide (where GD's runs are flagged, no seed has an effect at all: still no verdict).
    assert "**INCONCLUSIVE**" in report and re.search(r"too few seeds \(n = 2|no seed has the effect", report)
    assert "HOLDS" not in report and "FAILS" not in report
    assert get_study(claim).paper in report
