"""mlp-width-needed (how the width the NTK regime needs grows with the training set) on hand-made sweeps whose answer
is known by construction: a width needed growing like n^e is judged by e - 2 (holds below 2, fails above, a seed
without k* counts at 2); the RMS deviation against a plain loop over draws; k* against its closed form; k_GD on a
known grid; the plot and the packaged config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge, panel_data
from volumelab.experiments import figure_config_path
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.studies import mlp_width
from volumelab.studies.mlp_width import gd_width_needed, rms_deviation, width_needed

SEEDS = 6
SIZES = (16, 32, 64, 128, 256)
WIDTHS = (16, 64, 256, 1024, 4096)


def frame(exponent: float, *, seeds: int = SEEDS, wobble: float = 0.05, data=("digits", "teacher"),
          flat_seed: int | None = None) -> pd.DataFrame:
    """ntk runs whose RMS deviation is ``c_s n^(exponent/2) width^-1/2`` (c_s per seed, times a wobble), so that
    ``k*(n) = (c_s / 0.1)^2 n^exponent``; draws with no spread (``std = 0``). GD runs reach the NTK's rate from
    the width ``16 * 4^(index of n // 2)`` on. ``flat_seed``: that seed's deviation does not fall with width."""
    generator = np.random.default_rng(3)
    rows = []
    for name in data:
        for seed in range(seeds):
            c = 0.02 * (1 + 0.1 * seed)
            for i, n in enumerate(SIZES):
                for width in WIDTHS:
                    power = 0.0 if seed == flat_seed else -0.5
                    deviation = c * n ** (exponent / 2) * width ** power * math.exp(wobble * generator.standard_normal())
                    common = {"x": n, "seed": seed, "data": name, "width": width, "train": n}
                    rows.append({**common, "method": "ntk", "method_type": "ntk", "status": "ok", "draws": 8,
                                 "lambda_min": 0.5 * (1 + deviation), "lambda_min_std": 0.0,
                                 "lambda_min_limit": 0.5})
                    reached = width >= 16 * 4 ** (i // 2)
                    rows.append({**common, "method": "gd", "method_type": "gd", "status": "completed",
                                 "loss_rate": 0.02 if reached else 0.005, "predicted_rate": 0.01,
                                 "gen_loss": 0.1, "train_loss": 1e-3})
    return pd.DataFrame(rows)


def test_the_study_is_declared_with_its_rule():
    study = get_study("mlp-width-needed")
    assert study is mlp_width.WIDTH_NEEDED and study.paper == "arXiv 2205.13507"
    rule = study.endpoints["exponent"].rule
    assert rule.direction == "decrease" and rule.minimal_effect == 0.0 and "minus 2" in rule.endpoint
    assert study.endpoints["exponent"].worst_effect == 0.0
    assert set(study.secondary) == {"grows", "gd_width"}


def test_rms_deviation_is_a_plain_loop_over_draws():
    generator = np.random.default_rng(0)
    draws = generator.normal(0.3, 0.05, size=8)
    limit = 0.32
    expected = math.sqrt(np.mean((draws / limit - 1) ** 2))
    got = rms_deviation(float(draws.mean()), float(draws.std(ddof=1)), 8, limit)
    assert got == pytest.approx(expected, rel=1e-12)
    assert rms_deviation(0.3, None, 1, 0.3) == 0.0 and rms_deviation(0.3, 0.1, 8, 0.0) is None


def test_width_needed_solves_the_power_law_in_closed_form():
    panel = panel_data(frame(1.5, wobble=0.0), "").where("data", "digits")
    for n in SIZES:
        widths = width_needed(panel, n)
        for seed, value in widths.items():
            c = 0.02 * (1 + 0.1 * seed)
            assert value == pytest.approx((c / 0.1) ** 2 * n ** 1.5, rel=1e-9)
    # A seed whose deviation does not fall with width has no k*.
    flat = panel_data(frame(1.5, wobble=0.0, flat_seed=2), "").where("data", "digits")
    assert 2 not in width_needed(flat, 64) and 1 in width_needed(flat, 64)


def test_gd_width_needed_is_the_first_grid_width_from_which_on_gd_reaches_the_rate():
    panel = panel_data(frame(1.0), "").where("data", "teacher")
    assert [gd_width_needed(panel, n)[0] for n in SIZES] == [16, 16, 64, 64, 256]


def test_an_exponent_below_two_holds_above_fails_and_a_missing_seed_counts_at_two():
    study = get_study("mlp-width-needed")
    below = judge(study, frame(1.0))
    assert below.outcome == HOLDS and [p.panel for p in below.panels] == ["digits", "teacher"]
    decision = below.panels[0].decision
    assert decision.effect.estimate == pytest.approx(-1.0, abs=0.05)
    assert below.panels[0].secondary["grows"].outcome == HOLDS
    assert below.panels[0].secondary["gd_width"].effect.estimate == pytest.approx(
        np.polyfit(np.log2(SIZES), np.log2([16, 16, 64, 64, 256]), 1)[0], rel=1e-9)
    assert judge(study, frame(3.0)).outcome == FAILS
    # A seed whose deviation does not fall with width has no k*, hence no exponent: it is left out, not made up.
    missing = judge(study, frame(1.0, flat_seed=0))
    assert missing.panels[0].decision.effect.n == SEEDS - 1 and missing.outcome == HOLDS
    # Too few seeds with an exponent: inconclusive whatever the estimate.
    assert judge(study, frame(1.0, seeds=4)).outcome == INCONCLUSIVE


def test_the_plot_draws_one_axis_per_data_set(tmp_path):
    data = frame(1.0)
    verdict = judge(get_study("mlp-width-needed"), data)
    paths = get_study("mlp-width-needed").plot(verdict, data, tmp_path / "width", "mlp-width-needed")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_the_packaged_config_plans_three_data_sets():
    config = load_sweep(figure_config_path("mlp-width-needed"))
    assert config.claim == "mlp-width-needed" and config.x == "problem.train" and config.seeds == 6
    points = resolve_points(config, scale="quick")
    assert len(points) == 3 * 5 * 4
    assert {p.problem.data for p in points} == {"digits", "mnist1d", "teacher"}
    assert {p.model.depth for p in points} == {2} and max(p.model.width for p in points) == 4096
