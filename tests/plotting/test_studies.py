"""The natural-gradient studies' verdicts against hand-made inputs, and their packaged configs."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from volumelab.experiments import figure_config_path, resolve_figure_names
from volumelab.experiments.config import load_sweep, resolve_points
from volumelab.experiments.paper import STUDIES
from volumelab.studies.ngd import FLAT_BAND, judge_study, trajectory_distances


def test_trajectory_distances_against_a_plain_loop():
    generator = np.random.default_rng(0)
    steps = np.arange(0, 50, 10)
    ref = {"trajectory": generator.standard_normal((5, 25)), "trajectory_train": generator.standard_normal((5, 7)),
           "trajectory_steps": steps}
    run = {"trajectory": generator.standard_normal((5, 25)), "trajectory_train": generator.standard_normal((5, 7)),
           "trajectory_steps": steps}
    got = trajectory_distances(run, ref)
    for name, key in (("whole", "trajectory"), ("train", "trajectory_train")):
        largest = max(math.sqrt(sum(v * v for v in row)) for row in ref[key])
        worst = max(math.sqrt(sum((a - b) ** 2 for a, b in zip(r, q))) for r, q in zip(run[key], ref[key]))
        assert got[name] == pytest.approx(worst / largest, rel=1e-12)
    final = math.sqrt(sum((a - b) ** 2 for a, b in zip(run["trajectory"][-1], ref["trajectory"][-1])))
    assert got["final"] == pytest.approx(final / math.sqrt(sum(v * v for v in ref["trajectory"][-1])), rel=1e-12)
    with pytest.raises(ValueError, match="different checkpoints"):
        trajectory_distances({**run, "trajectory_steps": steps + 1}, ref)


def completion_frame(ngd_factor) -> pd.DataFrame:
    """GD falls tenfold from depth 1 to 4; NGD's loss is multiplied by ngd_factor(depth). 6 seeds, small noise."""
    rows = []
    generator = np.random.default_rng(1)
    for seed in range(6):
        base = 0.0025 * (1 + 0.05 * generator.standard_normal())
        for depth in (1, 2, 3, 4):
            noise = 1 + 0.02 * generator.standard_normal()
            rows.append({"method": "gd", "x": depth, "seed": seed, "gen_loss": base * 10 ** (-(depth - 1) / 3) * noise,
                         "effective_rank": 10 / depth})
            rows.append({"method": "ngd", "x": depth, "seed": seed, "gen_loss": base * ngd_factor(depth) * noise,
                         "effective_rank": 10.0})
    return pd.DataFrame(rows)


def test_completion_verdict_holds_when_ngd_is_flat_and_fails_when_it_falls(tmp_path):
    flat, _ = judge_study("ngd-completion", completion_frame(lambda d: 1.0), tmp_path, ["depth"])
    assert flat.outcome == "holds", [p.detail for p in flat.panels]
    falling, _ = judge_study("ngd-completion", completion_frame(lambda d: 0.5 ** (d - 1)), tmp_path, ["depth"])
    assert falling.outcome == "fails"
    assert [p.outcome for p in falling.panels] == ["holds", "fails"]
    # Just inside the band is still flat: the rule's bound, not a tuned value.
    edge, _ = judge_study("ngd-completion", completion_frame(lambda d: 1.0 if d == 1 else FLAT_BAND * 0.97),
                          tmp_path, ["depth"])
    assert edge.panels[1].outcome == "holds"


def sparse_frame(ngd_diagonal_sparsity) -> pd.DataFrame:
    rows = []
    for seed in range(6):
        for n in (10, 40):
            for architecture, gd_sparsity, ngd_sparsity in (("diagonal", 5.0 + seed * 0.1, ngd_diagonal_sparsity),
                                                            ("fully_connected", 30.0 + seed * 0.1, 30.0)):
                rows.append({"method": "gd", "x": n, "seed": seed, "architecture": architecture,
                             "sparsity": gd_sparsity, "test_error": 0.1 if architecture == "diagonal" else 0.3})
                rows.append({"method": "ngd", "x": n, "seed": seed, "architecture": architecture,
                             "sparsity": ngd_sparsity + seed * 0.1, "test_error": 0.3})
    return pd.DataFrame(rows)


def test_sparse_verdict(tmp_path):
    same, _ = judge_study("ngd-sparse", sparse_frame(30.0), tmp_path, ["architecture", "train"])
    assert same.outcome == "holds", [p.detail for p in same.panels]
    differs, _ = judge_study("ngd-sparse", sparse_frame(10.0), tmp_path, ["architecture", "train"])
    assert differs.outcome == "fails" and [p.outcome for p in differs.panels] == ["holds", "fails"]


@pytest.mark.parametrize("name", STUDIES)
def test_packaged_studies_resolve_and_reproduce_accepts_their_names(name):
    assert resolve_figure_names(name) == [name]
    assert name in resolve_figure_names("all")
    config = load_sweep(figure_config_path(name))
    assert name.startswith(config.claim)  # ngd-sparse-depth is judged by the ngd-sparse rule
    for scale in config.scale_names():
        assert resolve_points(config, scale)


def test_an_invariance_sweep_reads_its_trajectories_back_from_the_store(tmp_path):
    """End to end: runs record trajectories, the store keeps them, the report judges from them."""
    from tiny_sweep import write_config

    from volumelab.cli import main

    path = write_config(tmp_path, """\
        name: tiny-invariance
        claim: ngd-invariance
        x: model.depth
        problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
        model: {width: 4, depth: 1}
        methods:
          ngd: {lr: 0.01, steps: 40, damping: 1.0e-6, init_scale: 0.01, trajectory_every: 10}
          gd: {lr: 0.05, steps: 40, init_scale: 0.01, trajectory_every: 10}
        grid:
          model.depth: [1, 2]
        overrides:
          model.depth:
            2: {methods.ngd.init_scale: 0.15, methods.gd.init_scale: 0.15}
        seeds: 2
        """)
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "NGD, training outputs" in report and "GD, whole W" in report
    assert "plots/tiny-invariance-claim.png" in report and (tmp_path / "out" / "plots" / "tiny-invariance-claim.png").is_file()


def test_max_margin_against_closed_forms():
    """Orthogonal points x_i = a_i e_i are all support vectors: w_i = y_i / a_i, margin 1 / sqrt(sum 1/a_i^2).
    With a redundant point ((2, 0) behind (1, 0)) the answer is w = (1, -1), margin 1/sqrt(2)."""
    from volumelab.studies.ngd import max_margin_l2

    scales = np.array([1.0, 2.0, 0.5, 3.0])
    inputs = np.diag(scales)
    labels = np.array([1.0, -1.0, -1.0, 1.0])
    assert max_margin_l2(inputs, labels) == pytest.approx(1 / math.sqrt(np.sum(1 / scales ** 2)), rel=1e-7)
    assert max_margin_l2(np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]]), np.array([1.0, 1.0, -1.0])) == \
        pytest.approx(1 / math.sqrt(2), rel=1e-7)
    # Not separable: the same point with both labels.
    assert math.isnan(max_margin_l2(np.array([[1.0, 0.0], [1.0, 0.0]]), np.array([1.0, -1.0])))
