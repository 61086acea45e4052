"""The theory studies' verdicts (volumelab.studies.theory) against hand-made inputs."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volumelab.plotting.report.verdicts import WIDTH_GAP_MAX
from volumelab.studies import judge_study
from volumelab.studies.theory import LAW_STATISTICS, ZERO_STANDARD_ERRORS

SEEDS = range(4)


def _loss_rows(rows, panel: dict, x, ratio, prior=0.25, trainer=0.01, noise=0.01, seed_offset=0):
    """G&C, prior and GD rows at one point: G&C's loss is ``ratio`` times the prior's (small noise)."""
    generator = np.random.default_rng(int(x) + seed_offset)
    for seed in SEEDS:
        jitter = 1 + noise * generator.standard_normal()
        for method, loss in (("gnc", ratio * prior * jitter), ("prior", prior), ("gd", trainer)):
            rows.append({**panel, "method": method, "method_type": method, "x": x, "seed": seed, "gen_loss": loss,
                         "gen_loss_stderr": 0.001, "status": "ok"})


def width_frame(last_values: dict[str, dict[str, float]], ratios=(0.5, 0.95)) -> pd.DataFrame:
    """Law rows at widths 5 and 1280 per activation: every statistic 0.2 at width 5 and ``last_values`` at 1280
    (default 0), each run with SE 0.004; G&C/prior from ratios[0] to ratios[1]."""
    rows = []
    for activation in ("linear", "relu"):
        panel = {"activation": activation, "weight_mean": 0.0}
        for x, values in ((5, {}), (1280, last_values.get(activation, {}))):
            for seed in SEEDS:
                row = {**panel, "method": "law", "method_type": "prior_law", "x": x, "seed": seed, "gen_loss": None,
                       "status": "ok", "entry_variance": 0.2, "entry_variance_stderr": 0.001}
                for key in LAW_STATISTICS:
                    row[key] = values.get(key, 0.0) if x == 1280 else 0.2
                    row[f"{key}_stderr"] = 0.004
                rows.append(row)
            _loss_rows(rows, panel, x, ratios[0] if x == 5 else ratios[1])
    return pd.DataFrame(rows)


def test_theory_width_judges_inside_panels_and_reports_the_others(tmp_path):
    # ReLU keeps correlated losses (0.14, 70 pooled SE): its panel fails, but it is outside Theorem 1.
    verdict, _ = judge_study("theory-width", width_frame({"relu": {"loss_correlation": 0.14}}), tmp_path,
                             ["activation", "weight_mean", "width"])
    outcomes = {p.panel: p.outcome for p in verdict.panels}
    assert outcomes == {"linear": "holds", "relu (outside Theorem 1's assumptions)": "fails"}
    assert verdict.outcome == "holds"
    # A linear kurtosis left at width 1280 beyond the band (pooled SE 0.002): the claim fails.
    kurtosis = 2 * ZERO_STANDARD_ERRORS * 0.002
    verdict, _ = judge_study("theory-width", width_frame({"linear": {"excess_kurtosis": kurtosis}}), tmp_path,
                             ["activation", "weight_mean", "width"])
    assert verdict.outcome == "fails"
    # Within the band it is zero: 0.5 x the band passes.
    verdict, _ = judge_study("theory-width", width_frame({"linear": {"excess_kurtosis": kurtosis / 4}}), tmp_path,
                             ["activation", "weight_mean", "width"])
    assert verdict.outcome == "holds"
    # G&C far from chance at the largest width: fails.
    verdict, _ = judge_study("theory-width", width_frame({}, ratios=(0.5, 0.6)), tmp_path,
                             ["activation", "weight_mean", "width"])
    assert verdict.outcome == "fails"


def depth_frame(gap_offset: float) -> pd.DataFrame:
    rows = []
    for activation in ("linear", "tanh"):
        for x, ratio, share in ((2, 0.58, 0.69), (10, 0.2, 0.94), (30, 0.04, 0.99)):
            for seed in SEEDS:
                row = {"activation": activation, "method": "collapse", "method_type": "collapse", "x": x,
                       "seed": seed, "gen_loss": None, "status": "ok", "draws": 1000, "zero_draws": 0,
                       "sigma2_over_sigma1": ratio, "sigma2_over_sigma1_stderr": 0.002, "top_share": share,
                       "top_share_stderr": 0.002, "effective_rank": 1 + ratio}
                if activation == "linear":
                    row.update(gap=0.1402 + gap_offset, gap_stderr=0.002, gap_closed_form=0.1402,
                               log_sigma1_over_sigma2_per_layer=0.17)
                rows.append(row)
    return pd.DataFrame(rows)


def test_theory_depth_holds_at_the_closed_form_and_fails_off_it(tmp_path):
    verdict, _ = judge_study("theory-depth", depth_frame(0.0), tmp_path, ["activation", "depth"])
    assert verdict.outcome == "holds" and [p.outcome for p in verdict.panels] == ["holds", "holds"]
    # Pooled SE of 4 seeds at 0.002 each: 0.001; an offset of 5 SE fails the exponent check.
    verdict, _ = judge_study("theory-depth", depth_frame(0.005), tmp_path, ["activation", "depth"])
    assert verdict.outcome == "fails" and verdict.panels[0].outcome == "fails"
    assert verdict.panels[1].outcome == "holds"  # tanh has no closed form to miss


def relu_frame(ratios: dict[int, float]) -> pd.DataFrame:
    rows = []
    for x, ratio in ratios.items():
        _loss_rows(rows, {"activation": "relu"}, x, ratio, noise=0.005)
    return pd.DataFrame(rows)


@pytest.mark.parametrize("ratios, outcome", [
    ({5: 0.4, 80: 0.7, 1280: 1 - WIDTH_GAP_MAX / 2}, "holds"),       # reaches chance
    ({5: 0.4, 80: 0.6, 1280: 0.6}, "fails"),                         # a floor below chance
    ({5: 0.4, 80: 0.5, 1280: 0.7}, "inconclusive"),                  # still rising, not at chance
])
def test_theory_relu_width_tells_chance_from_a_floor(tmp_path, ratios, outcome):
    verdict, _ = judge_study("theory-relu-width", relu_frame(ratios), tmp_path, ["activation", "width"])
    assert verdict.outcome == outcome, verdict.panels[0].detail


def test_theory_rank_depth_judges_normalized_panels_by_the_depth_rule(tmp_path):
    rows = []
    for rank in (1, 2):
        for normalize in (True, False):
            for depth, ratio in ((2, 0.6), (6, 0.4), (10, 0.2)):
                falls = normalize and rank == 1
                _loss_rows(rows, {"rank": rank, "normalize": normalize}, depth, ratio if falls else 0.6, noise=0.01,
                           seed_offset=rank)
    verdict, _ = judge_study("theory-rank-depth", pd.DataFrame(rows), tmp_path, ["rank", "normalize", "depth"])
    outcomes = {p.panel: p.outcome for p in verdict.panels}
    assert outcomes["rank 1, normalized"] == "holds"
    assert outcomes["rank 2, normalized"] == "fails"
    assert verdict.outcome == "fails"  # depth does not help at rank 2 in this frame


def test_a_sweep_of_the_shifted_prior_alone_is_judged_as_outside_the_theorem(tmp_path):
    """theory-width-mean sets weight_mean in its model (not its grid): the judge reads it from each run's config."""
    frame = width_frame({"relu": {"loss_correlation": 0.14}}).drop(columns=["weight_mean"])
    frame["config"] = [{"model": {"weight_mean": 0.5}}] * len(frame)
    verdict, _ = judge_study("theory-width", frame, tmp_path, ["activation", "width"])
    assert [p.panel for p in verdict.panels] == ["linear, prior mean 0.5 (outside Theorem 1's assumptions)",
                                                 "relu, prior mean 0.5 (outside Theorem 1's assumptions)"]
    assert verdict.outcome == "partly holds" and "outside Theorem 1's assumptions" in verdict.sentence
