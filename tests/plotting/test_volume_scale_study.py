"""volume-scale (G&C by subset simulation against GD and SGD as n grows) on hand-made sweeps whose answer is known by
construction: Chiang et al.'s parity holds when G&C and SGD agree and fails when G&C trails by 0.2; Pakman et al.'s
shrinking advantage holds for a gap falling in log2 n and fails for a rising one; depth 3 above depth 2 holds; a
flagged seed or too few seeds is inconclusive; the endpoints against a plain numpy computation; the plot; the
packaged config; and a tiny run end to end (slow)."""

from __future__ import annotations

import dataclasses
import math
import re

import numpy as np
import pandas as pd
import pytest

from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, get_study, judge, panel_data
from volumelab.experiments import figure_config_path
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.optimizers import GuessCheck
from volumelab.studies import volume_scale
from volumelab.studies.volume_scale import PARITY_MARGIN, SMALL_N, advantage_trend, depth_gap, gap, small_n_parity

SIZES = (16, 32, 64)
SEEDS = 6


def frame(*, parity: float = 0.0, slope: float = 0.0, depth_effect: float = 0.02, seeds: int = SEEDS,
          flagged: tuple | None = None, data=("digits", "mnist1d"), wobble: float = 0.005) -> pd.DataFrame:
    """G&C, prior, GD and SGD runs: SGD's test error ``0.1 / log2(n)``, GD's ``SGD + 0.01``, G&C's
    ``SGD + parity + slope * log2(n / 16)`` at depth 2 and ``depth_effect`` more at depth 3 (times a small
    per-seed wobble). ``flagged = (data, depth, n, seed)``: that G&C run is ``not_mixed`` (numbers kept, as stored)."""
    generator = np.random.default_rng(7)
    rows = []
    for name in data:
        for seed in range(seeds):
            for depth in (2, 3):
                for n in SIZES:
                    common = {"x": n, "seed": seed, "data": name, "depth": depth, "train": n,
                              "gen_loss": np.nan, "train_loss": 0.0}
                    sgd = 0.1 / math.log2(n) + wobble * generator.standard_normal()
                    gnc = (sgd + parity + slope * math.log2(n / 16) + (depth_effect if depth == 3 else 0.0)
                           + wobble * generator.standard_normal())
                    status = "not_mixed" if flagged == (name, depth, n, seed) else "ok"
                    model = {"model": {"width": 16, "depth": depth}}
                    rows.append({**common, "method": "gnc", "method_type": "gnc", "status": status,
                                 "test_error": gnc, "log_volume": -0.4 * n, "log_volume_mean_log": -0.41 * n,
                                 "config": {**model, "method": {"method": "subset"}}})
                    rows.append({**common, "method": "prior", "method_type": "prior", "status": "ok",
                                 "test_error": 0.5, "config": {**model, "method": {}}})
                    rows.append({**common, "method": "gd", "method_type": "gd", "status": "completed",
                                 "test_error": sgd + 0.01, "config": {**model, "method": {"batch_size": None}}})
                    rows.append({**common, "method": "sgd", "method_type": "gd", "status": "completed",
                                 "test_error": sgd, "config": {**model, "method": {"batch_size": 8}}})
    return pd.DataFrame(rows)


def test_the_study_is_declared_with_its_rules():
    study = get_study("volume-scale")
    assert study is volume_scale.VOLUME_SCALE
    parity = study.endpoints["parity"].rule
    assert parity.direction == "equivalent" and parity.margin == PARITY_MARGIN == 0.05 and SMALL_N == 32
    assert study.secondary["advantage_trend"].rule.direction == "decrease"
    assert study.secondary["depth_hurts"].rule.direction == "increase"
    assert study.secondary["advantage_trend"].worst_effect == 0.0 == study.secondary["depth_hurts"].worst_effect
    assert "2606.31282" in study.paper and "2407.03848" in study.paper


def test_the_endpoints_are_a_plain_numpy_computation():
    data = frame(parity=0.1, slope=-0.03, depth_effect=0.04, wobble=0.02)
    panel = panel_data(data[data["data"] == "digits"], "digits, width 16")
    pick = lambda method, depth, n: (data[(data["data"] == "digits") & (data["method"] == method)  # noqa: E731
                                          & (data["depth"] == depth) & (data["train"] == n)]
                                     .set_index("seed")["test_error"])
    for seed in range(SEEDS):
        gaps = np.array([[pick("gnc", d, n)[seed] - pick("sgd", d, n)[seed] for n in SIZES] for d in (2, 3)])
        assert gap(panel, 32)[seed] == pytest.approx(gaps[:, 1].mean(), abs=1e-12)
        assert gap(panel, 32, trainer="gd")[seed] == pytest.approx(gaps[:, 1].mean() - 0.01, abs=1e-12)
        assert small_n_parity(panel)[seed] == pytest.approx(gaps[:, :2].mean(), abs=1e-12)
        assert advantage_trend(panel)[seed] == pytest.approx(np.polyfit(np.log2(SIZES), gaps.mean(axis=0), 1)[0],
                                                             abs=1e-12)
        depth = [pick("gnc", 3, n)[seed] - pick("gnc", 2, n)[seed] for n in SIZES]
        assert depth_gap(panel)[seed] == pytest.approx(np.mean(depth), abs=1e-12)


def test_parity_holds_when_gnc_matches_sgd_and_fails_when_it_trails():
    study = get_study("volume-scale")
    matched = judge(study, frame(parity=0.0, slope=-0.02, depth_effect=0.03))
    assert matched.outcome == HOLDS
    assert [p.panel for p in matched.panels] == ["digits, width 16", "mnist1d, width 16"]
    for panel in matched.panels:
        assert panel.secondary["advantage_trend"].outcome == HOLDS
        assert panel.secondary["depth_hurts"].outcome == HOLDS
    trailing = judge(study, frame(parity=0.2, slope=0.03, depth_effect=-0.03))
    assert trailing.outcome == FAILS
    for panel in trailing.panels:
        assert panel.decision.effect.low > PARITY_MARGIN
        # A gap growing with n and a shallower net doing worse: the other two claims fail too.
        assert panel.secondary["advantage_trend"].outcome == FAILS
        assert panel.secondary["depth_hurts"].outcome == FAILS


def test_a_flagged_run_or_too_few_seeds_is_inconclusive():
    study = get_study("volume-scale")
    # Five seeds: one flagged G&C run leaves four, too few for any verdict; in the worst case its seed is at
    # chance (parity) or at no effect (trend, depth).
    flagged = judge(study, frame(seeds=5, flagged=("digits", 3, 16, 0), slope=-0.02, depth_effect=0.03))
    digits = flagged.panels[0]
    assert digits.outcome == INCONCLUSIVE and digits.decision.flagged == 1
    assert "too few seeds" in digits.decision.reason
    assert digits.secondary["advantage_trend"].outcome == INCONCLUSIVE
    assert flagged.panels[1].outcome == HOLDS and flagged.outcome == INCONCLUSIVE
    # A flagged seed out of six: the worst case (G&C at chance, 0.5) moves the parity out of the margin.
    worst = judge(study, frame(flagged=("mnist1d", 2, 32, 1)))
    mnist = worst.panels[1]
    assert mnist.decision.outcome == INCONCLUSIVE and mnist.decision.worst is not None
    assert "decides" in mnist.decision.reason
    assert judge(study, frame(seeds=4)).outcome == INCONCLUSIVE


def test_the_plot_draws_one_column_per_data_set_and_depth(tmp_path):
    data = frame(parity=0.05, slope=-0.02)
    study = get_study("volume-scale")
    paths = study.plot(judge(study, data), data, tmp_path / "scale", "volume-scale")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_the_packaged_config_uses_the_subset_methods_defaults():
    config = load_sweep(figure_config_path("volume-scale"))
    assert config.claim == "volume-scale" and config.x == "problem.train" and config.seeds == 6
    assert config.verdict == {"parity": {"margin": 0.05}}
    assert config.study().digest() == get_study("volume-scale").digest()
    points = resolve_points(config, scale="quick")
    assert len(points) == 2 * 3 * 2
    assert {p.problem.data for p in points} == {"digits", "mnist1d"} and {p.model.depth for p in points} == {2, 3}
    assert max(p.problem.train + p.problem.test for p in points if p.problem.data == "digits") <= 357
    gnc = points[0].methods["gnc"]
    assert (gnc.method, gnc.accept, gnc.eps) == ("subset", "train_error", 0.0)
    # The sampler's own defaults (kernel, population, ladder, replicates): none is pinned.
    defaults = {field.name: field.default for field in dataclasses.fields(GuessCheck)}
    for name in ("kernel", "population", "level_fraction", "replicates", "moves"):
        assert getattr(gnc, name) == defaults[name]
    assert points[0].methods["sgd"].batch_size == 8 and points[0].methods["gd"].batch_size is None
    assert {p.methods["gnc"].samples for p in resolve_points(config, scale="paper")} == {2_000_000}


TINY = """\
    name: tiny-volume-scale
    claim: volume-scale
    x: problem.train
    x_log: true
    problem: {kind: supervised, data: digits, train: 8, test: 50}
    model: {kind: mlp, width: 4, depth: 2, activation: relu}
    methods:
      gnc: {method: subset, accept: train_error, eps: 0.0, samples: 20000, population: 100}
      gd: {lr: 0.5, steps: 20, init_scale: 1.0}
      sgd: {type: gd, lr: 0.1, steps: 20, batch_size: 4, init_scale: 1.0}
    grid:
      problem.train: [8, 16]
      model.depth: [2, 3]
    seeds: 2
    """


@pytest.mark.slow
def test_a_tiny_volume_scale_sweep_runs_end_to_end_and_two_seeds_never_decide(tmp_path):
    from tiny_sweep import write_config

    from volumelab.cli import main

    path = write_config(tmp_path, TINY)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert (tmp_path / "out" / "plots" / "tiny-volume-scale-claim.png").is_file()
    assert "**INCONCLUSIVE**" in report and re.search(r"too few seeds \(n = [0-2]|no seed has the effect", report)
    assert "HOLDS" not in report and "FAILS" not in report
