"""mlp-moments (arXiv 2205.13507: generalization bounds depending on the inputs' moments up to an order growing with
depth) on hand-made sweeps whose answer is known by construction: a tail penalty growing with depth holds, a flat
one is inconclusive, a shrinking one fails, a flagged run counts at no trend; the width ``k*`` against its closed
form under an exact power law; the plot and the packaged config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge, panel_data
from volumelab.experiments import figure_config_path
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.studies import mlp_moments
from volumelab.studies.mlp_moments import CV_LEVEL, concentration_width, tail_gap_slope

SEEDS = 6
DEPTHS = (2, 3, 4, 5)
WIDTHS = (32, 256)
LAWS = ("gaussian", "sphere", "student_t")


def frame(penalty: float, *, seeds: int = SEEDS, light: float = -0.05, alternate: float = 0.0,
          cv_exponent: float = -0.5, wobble: float = 0.02, statuses=None) -> pd.DataFrame:
    """GD and ntk runs. GD's gap at depth ``L`` is ``0.1 * exp(penalty * (L - 2))`` for the Student-t (times
    ``exp(+-alternate (L - 2))`` for even / odd seeds), ``0.1 * exp(light * (L - 2))`` for the sphere and 0.1 for
    the Gaussian, each times a per-run wobble; the ntk runs' ``cv`` is ``C_law * L / 10 * (width / 32) **
    cv_exponent``. ``statuses[(law, depth, seed)]`` marks GD runs."""
    generator = np.random.default_rng(11)
    scales = {"gaussian": 1.0, "sphere": 0.8, "student_t": 1.5}
    rows = []
    for seed in range(seeds):
        sign = 1 if seed % 2 == 0 else -1
        for law in LAWS:
            for depth in DEPTHS:
                exponent = {"gaussian": 0.0, "sphere": light, "student_t": penalty + sign * alternate}[law]
                for width in WIDTHS:
                    gap = 0.1 * math.exp(exponent * (depth - 2) + wobble * generator.standard_normal())
                    status = (statuses or {}).get((law, depth, seed), "completed")
                    common = {"x": depth, "seed": seed, "inputs": law, "width": width, "depth": depth}
                    rows.append({**common, "method": "gd", "method_type": "gd", "status": status,
                                 "train_loss": 1e-4, "gen_loss": 1e-4 + gap,
                                 "loss_rate": 0.01 * math.exp(-exponent * (depth - 2))})
                    mean = 0.05
                    cv = scales[law] * depth / 10 * (width / 32) ** cv_exponent
                    rows.append({**common, "method": "ntk", "method_type": "ntk", "status": "ok",
                                 "lambda_min": mean, "lambda_min_std": cv * mean})
    return pd.DataFrame(rows)


def test_the_study_is_declared_with_its_rule():
    study = get_study("mlp-moments")
    assert study is mlp_moments.MOMENTS and study.paper == "arXiv 2205.13507"
    rule = study.endpoints["tail_gap"].rule
    assert rule.direction == "increase" and rule.minimal_effect == 0.0 and "student_t" in rule.endpoint
    assert study.endpoints["tail_gap"].worst_effect == 0.0
    assert set(study.secondary) == {"light_tail_gap", "tail_gap_shallowest", "tail_gap_deepest", "tail_width",
                                    "tail_rate"}


def test_a_tail_penalty_growing_with_depth_holds_with_its_slope():
    verdict = judge(get_study("mlp-moments"), frame(0.2))
    assert verdict.outcome == HOLDS
    panel = verdict.panels[0]
    assert panel.decision.effect.estimate == pytest.approx(0.2, abs=0.02)
    assert panel.secondary["light_tail_gap"].outcome == HOLDS
    assert panel.secondary["light_tail_gap"].effect.estimate == pytest.approx(-0.05, abs=0.02)
    # The rate falls as the gap grows, by construction: ln(rate_t / rate_g) = -0.2 (L - 2).
    assert panel.secondary["tail_rate"].effect.estimate == pytest.approx(-0.2, abs=1e-9)
    assert panel.secondary["tail_gap_deepest"].effect.estimate == pytest.approx(0.6, abs=0.03)
    # k* ratio does not depend on depth here (C_law * L / 10 scales both laws alike): slope 0.
    assert panel.secondary["tail_width"].effect.estimate == pytest.approx(0.0, abs=1e-9)


def test_a_flat_penalty_is_inconclusive_and_a_shrinking_one_fails():
    study = get_study("mlp-moments")
    flat = judge(study, frame(0.0, alternate=0.1))
    assert flat.outcome == INCONCLUSIVE
    assert judge(study, frame(-0.2)).outcome == FAILS


def test_a_flagged_run_counts_as_no_trend_in_the_worst_case():
    statuses = {("student_t", 5, s): "diverged" for s in range(4)}
    verdict = judge(get_study("mlp-moments"), frame(0.2, seeds=8, statuses=statuses))
    decision = verdict.panels[0].decision
    assert decision.effect.n == 4 and decision.flagged == 4
    assert verdict.outcome == INCONCLUSIVE


def test_concentration_width_solves_an_exact_power_law_in_closed_form():
    # cv = C k^-1/2 with C = scale * L / 10 * 32^(1/2): cv = 0.1 at k* = (C / 0.1)^2.
    panel = panel_data(frame(0.2), "")
    for law, scale in (("gaussian", 1.0), ("student_t", 1.5)):
        arm = panel.where("inputs", law)
        for depth in DEPTHS:
            expected = (scale * depth / 10 * math.sqrt(32) / CV_LEVEL) ** 2
            widths = concentration_width(arm, depth)
            assert set(widths) == set(range(SEEDS))
            assert widths[0] == pytest.approx(expected, rel=1e-10)
    # A cv that does not fall with width has no k*.
    assert concentration_width(panel_data(frame(0.2, cv_exponent=0.1), "").where("inputs", "gaussian"), 2) == {}


def test_tail_gap_slope_is_a_plain_polyfit_of_the_log_ratio_per_seed():
    data = frame(0.15, wobble=0.3)
    slopes = tail_gap_slope(panel_data(data, ""))
    wide = data[(data["method"] == "gd") & (data["width"] == 256)]
    for seed in range(SEEDS):
        own = wide[wide["seed"] == seed]
        gap = {law: own[own["inputs"] == law].sort_values("depth").eval("gen_loss - train_loss").to_numpy()
               for law in ("gaussian", "student_t")}
        expected = np.polyfit(DEPTHS, np.log(gap["student_t"] / gap["gaussian"]), 1)[0]
        assert slopes[seed] == pytest.approx(expected, rel=1e-10)


def test_the_plot_draws_three_axes(tmp_path):
    verdict = judge(get_study("mlp-moments"), frame(0.2))
    paths = get_study("mlp-moments").plot(verdict, frame(0.2), tmp_path / "moments", "mlp-moments")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_the_packaged_config_plans_the_sweep_with_paired_laws():
    config = load_sweep(figure_config_path("mlp-moments"))
    assert config.claim == "mlp-moments" and config.x == "model.depth" and config.seeds == 8
    points = resolve_points(config, scale="quick")
    assert len(points) == 3 * 2 * 4
    nus = {p.problem.inputs: p.problem.nu for p in points}
    assert nus == {"gaussian": None, "sphere": None, "student_t": 5.0}
    # nu = 5: order 2L exists at depth 2 only (the prediction's break), by the analytic rule.
    from volumelab.problems import moment_order_exists

    assert [moment_order_exists("student_t", 2 * depth, 5.0) for depth in (2, 3, 4, 5)] == [True, False, False, False]
