"""mlp-lr-transfer-sgd and -adam: the fitted per-seed optimum and the slope rule, on synthetic sweeps with a known
answer (losses ``0.01 exp((log2 lr - optimum)^2 / 2)``: ln loss is exactly a parabola in log2 lr)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge
from volumelab.studies.mlp_transfer import TRANSFER_SLOPE_MARGIN, WORST_DRIFT, seed_optima, transfer_panels

LRS = [2.0 ** e for e in range(-10, 5)]
WIDTHS = (32, 64, 128)


def _frame(slopes: dict[str, float], *, seeds: int = 6, noise: float = 0.1, diverge_above: float | None = None,
           depths=(2, 3)) -> pd.DataFrame:
    """Per seed the optimum (log2 lr) moves by ``slopes[parametrization]`` per doubling of width, plus noise."""
    generator = np.random.default_rng(11)
    base = {"standard": -4.0, "ntk": 0.0, "mup": -2.0}
    rows = []
    for parametrization, slope in slopes.items():
        for depth in depths:
            for seed in range(seeds):
                for width in WIDTHS:
                    optimum = base[parametrization] + slope * math.log2(width / WIDTHS[0]) + noise * generator.standard_normal()
                    for lr in LRS:
                        distance = math.log2(lr) - optimum
                        diverged = diverge_above is not None and distance > diverge_above
                        rows.append({"method": "gd", "method_type": "gd", "x": lr, "seed": seed,
                                     "status": "diverged" if diverged else "completed", "width": width,
                                     "depth": depth, "parametrization": parametrization,
                                     "train_loss": np.nan if diverged else 0.01 * math.exp(distance ** 2 / 2),
                                     "gen_loss": np.nan if diverged else 0.3 * math.exp(distance ** 2 / 8)})
    return pd.DataFrame(rows)


def _outcomes(verdict) -> dict[str, str]:
    return {p.panel: p.outcome for p in verdict.panels}


def test_the_seed_optimum_is_the_parabolas_vertex_and_none_at_the_edge():
    for centre in (-3.3, 0.0, 1.4):
        losses = {lr: 0.01 * math.exp((math.log2(lr) - centre) ** 2 / 2) for lr in LRS}
        assert seed_optima(losses, LRS) == pytest.approx(centre, abs=1e-9)
    assert math.isnan(seed_optima({lr: 0.01 * math.exp((math.log2(lr) - 9) ** 2) for lr in LRS}, LRS))
    assert math.isnan(seed_optima({lr: 1.0 for lr in LRS[:-1]}, LRS))  # a learning rate not stored


def test_a_diverged_run_counts_at_the_least_trained_runs_loss():
    """Runs past the optimum diverge (inf) or end above the smallest learning rate's loss: both count at that
    loss, and the vertex still falls between the grid points around the smallest loss."""
    losses = {lr: 0.01 * math.exp((math.log2(lr) + 1.0) ** 2 / 2) for lr in LRS}
    losses.update({2.0: math.inf, 4.0: 1e276, 16.0: math.inf})
    vertex = seed_optima(losses, LRS)
    assert -2.0 < vertex < 0.0


def test_sgd_holds_when_mup_and_ntk_stay_and_standard_drifts():
    study = get_study("mlp-lr-transfer-sgd")
    frame = _frame({"standard": -1.0, "ntk": 0.0, "mup": 0.0})
    verdict = judge(study, frame, None, sorted(set(transfer_panels(frame))))
    assert verdict.outcome == HOLDS, [p.decision.line for p in verdict.panels]
    standard = next(p for p in verdict.panels if p.panel == "standard, depth 2").decision
    assert standard.rule.direction == "decrease" and standard.rule.minimal_effect == TRANSFER_SLOPE_MARGIN
    assert standard.effect.estimate == pytest.approx(-1.0, abs=4 * standard.effect.stderr + 1e-9)
    assert standard.effect.n == 6


def test_sgd_fails_when_standard_stays_or_mup_drifts():
    study = get_study("mlp-lr-transfer-sgd")
    still = judge(study, _frame({"standard": 0.0, "ntk": 0.0, "mup": 0.0}))
    assert still.outcome == FAILS and all(o == FAILS for p, o in _outcomes(still).items() if p.startswith("standard"))
    moved = judge(study, _frame({"standard": -1.0, "ntk": 0.0, "mup": -1.0}))
    assert moved.outcome == FAILS and all(o == FAILS for p, o in _outcomes(moved).items() if p.startswith("mup"))


def test_adam_judges_ntk_as_a_drifting_extension():
    study = get_study("mlp-lr-transfer-adam")
    verdict = judge(study, _frame({"standard": -1.0, "ntk": -0.5, "mup": 0.0}))
    assert verdict.outcome == HOLDS
    ntk = [p for p in verdict.panels if p.panel.startswith("ntk,")]
    assert ntk and all(not p.about and p.outcome == HOLDS and p.decision.rule.direction == "decrease" for p in ntk)
    # ntk staying put fails its extension panels without touching the claim's verdict.
    flat = judge(study, _frame({"standard": -1.0, "ntk": 0.0, "mup": 0.0}))
    assert flat.outcome == HOLDS and all(p.outcome == FAILS for p in flat.panels if p.panel.startswith("ntk,"))


def test_too_few_seeds_or_optima_beyond_the_grid_are_inconclusive():
    study = get_study("mlp-lr-transfer-sgd")
    assert judge(study, _frame({"standard": -1.0, "ntk": 0.0, "mup": 0.0}, seeds=3)).outcome == INCONCLUSIVE
    beyond = _frame({"standard": -1.0, "ntk": 0.0, "mup": 0.0}).assign(
        train_loss=lambda f: np.where(f["parametrization"] == "ntk", 1.0 / f["x"], f["train_loss"]))
    verdict = judge(study, beyond)
    assert verdict.outcome == INCONCLUSIVE
    assert all(o == INCONCLUSIVE for p, o in _outcomes(verdict).items() if p.startswith("ntk"))


def test_diverged_runs_past_the_optimum_leave_every_seed_its_optimum():
    study = get_study("mlp-lr-transfer-sgd")
    verdict = judge(study, _frame({"standard": -1.0, "ntk": 0.0, "mup": 0.0}, diverge_above=1.5))
    assert verdict.outcome == HOLDS
    assert all(p.decision.effect.n == 6 for p in verdict.panels)
    assert WORST_DRIFT < -TRANSFER_SLOPE_MARGIN  # the worst case of a missing seed lies outside the transfer margin
