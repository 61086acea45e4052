"""mlp-implicit-reg (arXiv 2205.13507: GD's implicit regularization in wide MLPs) on hand-made sweeps whose answer
is known by construction (a falling distance holds, a flat one is inconclusive, a rising one fails, a flagged run
decides in the worst case), its reported endpoints, its plot, and its packaged config."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge
from volumelab.experiments import figure_config_path, resolve_figure_names
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.studies import mlp_implicit
from volumelab.studies.mlp_implicit import RATIO_MARGIN, kernel_distance_slope, loss_gap_slope

SEEDS = 6
WIDTHS = (64, 128, 256, 512, 1024)


def frame(exponent: float, *, seeds: int = SEEDS, depths=(2, 3), gap_exponent: float = -0.5, ratio: float = 1.0,
          wobble: float = 0.03, alternate: float = 0.0) -> pd.DataFrame:
    """GD runs whose ``kernel_distance`` is ``0.1 (width / 64) ** exponent`` (times a small per-run wobble, and
    ``(width / 64) ** (+-alternate)`` for even / odd seeds), whose test loss differs from the kernel's by
    ``0.02 (width / 64) ** gap_exponent``, and whose weight change is ``ratio`` times the minimum-norm distance."""
    generator = np.random.default_rng(7)
    rows = []
    for seed in range(seeds):
        sign = 1 if seed % 2 == 0 else -1
        for depth in depths:
            for width in WIDTHS:
                scale = width / 64
                noise = math.exp(wobble * generator.standard_normal())
                kernel_loss = 0.3 + 0.01 * generator.standard_normal()
                bound = 6.0 + 0.5 * generator.standard_normal()
                rows.append({"method": "gd", "method_type": "gd", "x": width, "seed": seed, "status": "completed",
                             "width": width, "depth": depth, "train_loss": 1e-12,
                             "kernel_distance": 0.1 * scale ** (exponent + sign * alternate) * noise,
                             "kernel_gen_loss": kernel_loss,
                             "gen_loss": kernel_loss + 0.02 * scale ** gap_exponent * noise,
                             "min_norm_distance": bound, "param_distance": ratio * bound * noise,
                             "distance_ratio": ratio * noise})
    return pd.DataFrame(rows)


def test_the_study_is_declared_with_its_rule():
    study = get_study("mlp-implicit-reg")
    assert study is mlp_implicit.IMPLICIT_REG and study.paper == "arXiv 2205.13507"
    assert "implicit regularization" in study.claim and "kernel predictor" in study.claim
    rule = study.endpoints["kernel_distance"].rule
    assert rule.direction == "decrease" and rule.minimal_effect == 0.0
    assert study.endpoints["kernel_distance"].worst_effect == 0.0
    assert set(study.secondary) == {"loss_gap", "distance_ratio"}
    assert study.secondary["distance_ratio"].rule.margin == RATIO_MARGIN
    assert len(study.digest()) == 12 and "log-log slope" in study.rule_text


def test_a_falling_distance_holds_with_its_slope():
    verdict = judge(get_study("mlp-implicit-reg"), frame(-0.5), "depth")
    assert verdict.outcome == HOLDS and [p.panel for p in verdict.panels] == ["depth 2", "depth 3"]
    panel = verdict.panels[0]
    assert panel.decision.effect.estimate == pytest.approx(-0.5, abs=0.03)
    assert panel.secondary["loss_gap"].outcome == HOLDS
    assert panel.secondary["loss_gap"].effect.estimate == pytest.approx(-0.5, abs=0.03)
    assert panel.secondary["distance_ratio"].outcome == HOLDS
    assert abs(panel.secondary["distance_ratio"].effect.estimate) < 0.03


def test_a_flat_distance_is_inconclusive_and_a_rising_one_fails():
    study = get_study("mlp-implicit-reg")
    # Seeds on both sides of 0: the interval of the slopes contains 0 and small effects of either sign.
    flat = judge(study, frame(0.0, alternate=0.05), "depth")
    assert flat.outcome == INCONCLUSIVE and all("includes both" in p.decision.reason for p in flat.panels)
    rising = judge(study, frame(0.3), "depth")
    assert rising.outcome == FAILS and all(p.outcome == FAILS for p in rising.panels)
    # The reported endpoints never decide: a loss gap that grows and a ratio of 2 leave a falling distance holding.
    other = judge(study, frame(-0.5, gap_exponent=0.4, ratio=2.0), "depth")
    assert other.outcome == HOLDS
    assert other.panels[0].secondary["loss_gap"].outcome == FAILS
    assert other.panels[0].secondary["distance_ratio"].outcome == FAILS


def test_too_few_seeds_and_a_flagged_run_decide_nothing_on_their_own():
    study = get_study("mlp-implicit-reg")
    few = judge(study, frame(-0.5, seeds=3), "depth")
    assert few.outcome == INCONCLUSIVE and "too few seeds (n = 3" in few.panels[0].decision.reason
    # A slope barely below 0 in 5 seeds, and a diverged run: in the worst case its seed shows no fall (slope 0).
    weak = frame(-0.02, wobble=0.005, depths=(2,))
    last = (weak["x"] == 1024) & (weak["seed"] == 0)
    weak.loc[last, "status"] = "diverged"
    weak.loc[last, ["kernel_distance", "gen_loss", "train_loss", "param_distance", "distance_ratio"]] = np.nan
    decision = judge(study, weak, "depth").panels[0].decision
    assert decision.flagged == 1 and decision.effect.n == SEEDS - 1 and decision.worst is not None
    assert decision.worst.effect.estimate > decision.effect.estimate


def test_the_effects_against_a_plain_fit():
    data = frame(-0.7, depths=(2,))
    from volumelab.evidence.study import split_panels

    panel = split_panels(data, ["depth 2"] * len(data))["depth 2"]
    slopes = kernel_distance_slope(panel)
    gaps = loss_gap_slope(panel)
    for seed in range(SEEDS):
        rows = data[data["seed"] == seed].sort_values("x")
        expected = np.polyfit(np.log(rows["x"]), np.log(rows["kernel_distance"]), 1)[0]
        assert slopes[seed] == pytest.approx(expected, rel=1e-10)
        gap = np.abs(rows["gen_loss"] - rows["kernel_gen_loss"])
        assert gaps[seed] == pytest.approx(np.polyfit(np.log(rows["x"]), np.log(gap), 1)[0], rel=1e-10)


def test_the_study_draws_its_plot_without_warnings(tmp_path, recwarn):
    study = get_study("mlp-implicit-reg")
    data = frame(-0.5, depths=(2, 3, 4))
    data.loc[(data["x"] == 512) & (data["seed"] == 1), "status"] = "diverged"
    verdict = judge(study, data, "depth")
    blanked = data.copy()
    blanked.loc[blanked["status"] == "diverged", ["kernel_distance", "gen_loss", "param_distance",
                                                  "distance_ratio"]] = np.nan
    paths = study.plot(verdict, blanked, tmp_path / "plots" / "mlp-implicit-reg", "mlp-implicit-reg")
    assert {p.suffix for p in paths} == {".png", ".pdf"} and all(p.stat().st_size > 0 for p in paths)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]
    assert study.plot(verdict, blanked.iloc[:0], tmp_path / "empty", "mlp-implicit-reg") == []


def test_the_packaged_config_loads_and_plans_at_both_scales():
    assert resolve_figure_names("mlp-implicit-reg") == ["mlp-implicit-reg"]
    config = load_sweep(figure_config_path("mlp-implicit-reg"))
    assert config.claim == "mlp-implicit-reg" and get_study(config.claim) is not None
    assert config.seeds >= 6
    assert sorted(config.grid["model.depth"]) == [2, 3, 4] and len(config.grid["model.width"]) >= 4
    quick = resolve_points(config, "quick")
    assert len(quick) == 15
    assert all(p.methods["gd"].kernel_metrics and p.model.parametrization == "ntk" for p in quick)
    assert {p.problem.loss for p in quick} == {"squared"}
    paper = resolve_points(config, "paper")
    assert {p.problem.train for p in paper} == {64} and {p.methods["gd"].steps for p in paper} == {800}


TINY = """\
    name: tiny-implicit
    claim: mlp-implicit-reg
    x: model.width
    panel: model.depth
    problem: {kind: supervised, data: digits, train: 8, loss: squared}
    model: {kind: mlp, width: 8, depth: 2, parametrization: ntk}
    methods:
      gd: {lr: 1.0, steps: 30, init_scale: 1.7320508075688772, kernel_metrics: true}
    grid:
      model.depth: [2]
      model.width: [8, 32]
    seeds: 2
    """


def test_a_tiny_study_runs_end_to_end_and_two_seeds_never_decide(tmp_path):
    """From the CLI: the runs record the kernel metrics, the store keeps them as columns, the report judges them
    (2 seeds: inconclusive) and draws the plot."""
    from tiny_sweep import write_config

    from volumelab.cli import main

    path = write_config(tmp_path, TINY)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "results.csv")
    for column in ("kernel_distance", "kernel_gen_loss", "param_distance", "min_norm_distance", "distance_ratio"):
        assert table[column].notna().all() and (table[column] > 0).all(), column
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "plots" / "tiny-implicit-claim.png").is_file()
    assert "**INCONCLUSIVE**" in report and "too few seeds (n = 2" in report
    assert "HOLDS" not in report and "FAILS" not in report and "arXiv 2205.13507" in report
