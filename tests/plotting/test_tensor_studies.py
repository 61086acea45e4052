"""The tensor studies (volumelab.studies.tensor) on hand-made sweeps with known answers: holds / fails /
inconclusive per tensor panel, the matrix panels as the reference, the chance level against its closed form,
flagged runs, too few seeds, the tensor-against-matrix comparison, the plot, the packaged configs, and a tiny
sweep end to end."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volumelab.cli import main
from volumelab.evidence import FAILS, HOLDS, INCONCLUSIVE, PanelData, flagged_rows, get_study, judge
from volumelab.experiments.config import load_sweep
from volumelab.experiments.kinds import build_model, build_problem, validate_model, validate_problem
from volumelab.experiments.paper import figure_config_path
from volumelab.experiments.results import coordinate_label, short_names
from volumelab.plotting.report.builder import combined_panels
from volumelab.studies.tensor import (
    CALIBRATION_MARGIN, TENSOR_DEPTH, TENSOR_WIDTH, chance_closed_form, chance_z_scores, panel_order,
    tensor_matrix_comparisons, tensor_panels,
)

PROBLEMS = {"5x5": {"kind": "tensor-sensing", "dims": [5, 5], "rank": 1, "measurements": 15, "norm": 1.0},
            "4x4x4": {"kind": "tensor-sensing", "dims": [4, 4, 4], "rank": 1, "measurements": 16, "norm": 1.0}}
STDERR = 0.001
TENSOR, MATRIX = "dims=4x4x4, rank=1", "dims=5x5, rank=1"


def _closed_form(dims: str, width: int, seed: int) -> float:
    settings = validate_problem(PROBLEMS[dims])
    model = build_model(validate_model({"kind": "cp", "width": width}), tuple(settings.dims))
    return model.chance_gen_loss(build_problem(settings, seed))


def _frame(ratios: dict[str, tuple[float, float]], *, seeds: int = 6, xs: tuple[int, ...] = (1, 16),
           noise: float = 0.01, chance_z: float = 0.0, trainer: float = 0.01, statuses: dict | None = None):
    """G&C, prior and GD rows per dims panel (rank 1) at ``xs`` (R, or the depth in the depth tests).

    G&C/prior on seed s is linear in the index of x from ``ratios[dims][0]`` to ``[1]``, plus ``noise`` times
    ``c_s`` times the index's fraction, with ``c_s = (-1)^s (1 + s mod 3) / 2`` (0.5, -1, 1.5, -0.5, 1, -1.5:
    over 6 seeds the mean change is exactly ``last - first`` and its spread ``noise``). The prior rows are the
    closed-form chance level plus ``chance_z`` run SEs (SE ``STDERR``) plus a per-(x, seed) wobble of at most
    0.3 SE, with the settings a stored run has (``config``), so the calibration endpoint can rebuild each
    problem. ``statuses[(dims, x, seed)]`` flags a G&C run.
    """
    rows = []
    for dims, (first, last) in ratios.items():
        for i, x in enumerate(xs):
            ratio = first + (last - first) * i / (len(xs) - 1)
            for seed in range(seeds):
                z = chance_z + 0.3 * np.sin(7 * seed + 3 * i)
                prior = _closed_form(dims, x, seed) + z * STDERR
                config = {"problem": PROBLEMS[dims], "model": {"kind": "cp", "width": x, "depth": 1},
                          "method": {"name": "gnc"}, "seed": seed}
                status = (statuses or {}).get((dims, x, seed), "ok")
                spread = (-1) ** seed * (1 + seed % 3) / 2
                sampler = (ratio + noise * spread * i / (len(xs) - 1)) * prior
                for method, loss, run_status in (("gnc", sampler, status), ("prior", prior, "ok"),
                                                 ("gd", trainer * prior, "ok")):
                    rows.append({"dims": dims, "rank": 1, "method": method, "method_type": method, "x": x,
                                 "seed": seed, "gen_loss": loss, "gen_loss_stderr": STDERR, "status": run_status,
                                 "config": config})
    return pd.DataFrame(rows)


def _collapse(frame: pd.DataFrame, shares: tuple[float, ...]) -> pd.DataFrame:
    """``frame`` with collapse rows whose top share is ``shares[i]`` (+ 0.01 seed / 6) at the i-th x."""
    xs = sorted(set(frame["x"]))
    rows = [{"dims": dims, "rank": 1, "method": "collapse", "method_type": "collapse", "x": x, "seed": seed,
             "gen_loss": np.nan, "status": "ok", "top_share": share + 0.01 * seed / 6}
            for dims in dict.fromkeys(frame["dims"]) for x, share in zip(xs, shares)
            for seed in sorted(set(frame["seed"]))]
    return pd.concat([frame, pd.DataFrame(rows)], ignore_index=True)


def _panel_data(name: str, frame: pd.DataFrame) -> PanelData:
    """``frame`` as an endpoint reads one panel: every metric of a flagged run blank."""
    flags = flagged_rows(frame)
    blank = frame.copy()
    blank.loc[flags, ["gen_loss", "gen_loss_stderr"]] = np.nan
    flagged = frozenset(zip(frame.loc[flags, "method"], frame.loc[flags, "x"], frame.loc[flags, "seed"]))
    return PanelData(name, blank, frame, flagged)


def _panel(verdict, name):
    return next(p for p in verdict.panels if p.panel == name)


def test_tensor_width_holds_on_the_tensor_panels_with_the_matrix_as_reference():
    verdict = judge(TENSOR_WIDTH, _frame({"5x5": (0.3, 0.97), "4x4x4": (0.2, 0.98)}))
    assert verdict.outcome == HOLDS
    assert [p.panel for p in verdict.panels] == [MATRIX, TENSOR]
    tensor, matrix = _panel(verdict, TENSOR), _panel(verdict, MATRIX)
    assert tensor.about and not matrix.about and matrix.outcome == HOLDS
    assert tensor.decision.effect.n == 6 and tensor.decision.effect.estimate == pytest.approx(0.78, abs=0.02)
    assert {k: d.outcome for k, d in tensor.secondary.items()} == {
        "at_chance": HOLDS, "trainer_low": HOLDS, "chance_calibration": HOLDS}


@pytest.mark.parametrize("ratios, outcome", [
    ({"4x4x4": (0.9, 0.3)}, FAILS),  # G&C moves away from chance with R
    ({"4x4x4": (0.5, 0.5)}, INCONCLUSIVE),  # flat, noisy: neither a rise nor its exclusion
])
def test_tensor_width_fails_or_is_inconclusive(ratios, outcome):
    frame = _frame({"5x5": (0.3, 0.97), **ratios}, noise=0.1 if outcome == INCONCLUSIVE else 0.01)
    verdict = judge(TENSOR_WIDTH, frame)
    assert _panel(verdict, TENSOR).outcome == outcome and verdict.outcome == outcome
    assert _panel(verdict, MATRIX).outcome == HOLDS  # the reference does not decide the claim


def test_the_matrix_reference_alone_decides_nothing():
    verdict = judge(TENSOR_WIDTH, _frame({"5x5": (0.3, 0.97)}))
    assert verdict.outcome == INCONCLUSIVE and verdict.panels[0].outcome == HOLDS and not verdict.panels[0].about


def test_the_chance_level_is_checked_against_its_closed_form_without_deciding():
    frame = _frame({"4x4x4": (0.2, 0.98)}, chance_z=10.0)
    scores = chance_z_scores(_panel_data("", frame))
    assert set(scores) == set(range(6)) and all(abs(z - 10.0) < 0.31 for z in scores.values())
    verdict = judge(TENSOR_WIDTH, frame)
    calibration = verdict.panels[0].secondary["chance_calibration"]
    assert calibration.outcome == FAILS and calibration.rule.margin == CALIBRATION_MARGIN
    assert verdict.outcome == HOLDS  # a secondary endpoint is reported, never deciding
    near = judge(TENSOR_WIDTH, _frame({"4x4x4": (0.2, 0.98)}, chance_z=1.0))
    assert near.panels[0].secondary["chance_calibration"].outcome == INCONCLUSIVE


def test_the_closed_form_is_rebuilt_from_a_stored_runs_settings():
    config = {"problem": PROBLEMS["4x4x4"], "model": {"kind": "cp", "width": 4}, "method": {}}
    assert chance_closed_form(config, 3) == pytest.approx(_closed_form("4x4x4", 4, 3))
    # Another stream records the problem's seed: the problem is rebuilt from it, not from the run's seed.
    assert chance_closed_form({**config, "problem_seed": 3}, 99) == pytest.approx(_closed_form("4x4x4", 4, 3))
    normalized = {**config, "method": {"model": {"normalize": True}}}
    assert chance_closed_form(normalized, 3) is None
    assert chance_closed_form({**config, "model": {"kind": "factorization"}}, 3) is None


def test_flagged_gnc_runs_are_left_out_and_counted():
    statuses = {("4x4x4", 16, seed): "not_mixed" for seed in (6, 7)}
    verdict = judge(TENSOR_WIDTH, _frame({"4x4x4": (0.2, 0.98)}, seeds=8, statuses=statuses))
    decision = verdict.panels[0].decision
    assert decision.effect.n == 6 and decision.flagged == 2 and decision.outcome == HOLDS
    assert decision.worst.effect.values[6] == 0 and decision.worst.effect.values[7] == 0


def test_a_flagged_run_of_another_method_leaves_the_gnc_rise_alone():
    frame = _frame({"4x4x4": (0.2, 0.98)})
    frame.loc[frame["method"] == "gd", "status"] = "diverged"
    panel = judge(TENSOR_WIDTH, frame).panels[0]
    assert panel.decision.outcome == HOLDS and panel.decision.flagged == 0 and panel.decision.worst is None
    # GD's own endpoint reads the diverged runs: at chance in the worst case, it cannot hold.
    assert panel.secondary["trainer_low"].outcome == INCONCLUSIVE


def test_flagged_seeds_at_chance_can_make_the_depth_fall_inconclusive():
    # A small fall on 6 seeds; 4 more seeds flagged at the largest depth: at chance there (r = 1) their fall
    # is 0.45 - 1 < 0, which pulls the interval across zero.
    statuses = {("4x4x4", 5, seed): "not_mixed" for seed in range(6, 10)}
    verdict = judge(TENSOR_DEPTH, _frame({"4x4x4": (0.45, 0.35)}, seeds=10, xs=(1, 3, 5), statuses=statuses))
    decision = verdict.panels[0].decision
    assert decision.effect.n == 6 and decision.flagged == 4
    assert decision.outcome == INCONCLUSIVE and "flagged seeds decide" in decision.reason


def test_two_seeds_never_hold_or_fail():
    for ratios in ({"4x4x4": (0.2, 0.98)}, {"4x4x4": (0.9, 0.3)}):
        verdict = judge(TENSOR_WIDTH, _frame(ratios, seeds=2))
        assert verdict.outcome == INCONCLUSIVE and "too few seeds (n = 2" in verdict.panels[0].decision.reason


@pytest.mark.parametrize("last, outcome", [(0.3, HOLDS), (0.95, FAILS)])
def test_tensor_depth_reads_the_fall_of_gnc_against_chance(last, outcome):
    frame = _collapse(_frame({"5x5": (0.8, 0.3), "4x4x4": (0.6, last)}, xs=(1, 3, 5)), (0.6, 0.8, 0.9))
    verdict = judge(TENSOR_DEPTH, frame)
    assert verdict.outcome == outcome and _panel(verdict, MATRIX).outcome == HOLDS
    collapse = _panel(verdict, TENSOR).secondary["collapse"]
    assert collapse.outcome == HOLDS and collapse.effect.estimate == pytest.approx(0.3)
    assert set(_panel(verdict, TENSOR).secondary) == {"below_chance", "collapse"}


def test_without_collapse_runs_the_collapse_endpoint_has_no_effect():
    verdict = judge(TENSOR_DEPTH, _frame({"4x4x4": (0.6, 0.3)}, xs=(1, 3, 5)))
    collapse = verdict.panels[0].secondary["collapse"]
    assert collapse.outcome == INCONCLUSIVE and collapse.effect.n == 0 and verdict.outcome == HOLDS


def test_the_tensor_is_set_against_the_matrix_of_its_rank():
    same = tensor_matrix_comparisons(TENSOR_WIDTH, _frame({"5x5": (0.2, 0.97), "4x4x4": (0.2, 0.98)}))
    assert list(same) == [f"{TENSOR} vs {MATRIX}"] and same[f"{TENSOR} vs {MATRIX}"].outcome == HOLDS
    apart = tensor_matrix_comparisons(TENSOR_WIDTH, _frame({"5x5": (0.6, 0.97), "4x4x4": (0.1, 0.98)}))
    decision = apart[f"{TENSOR} vs {MATRIX}"]
    assert decision.outcome == FAILS and decision.effect.estimate == pytest.approx(0.5, abs=0.02)
    assert tensor_matrix_comparisons(TENSOR_WIDTH, _frame({"4x4x4": (0.2, 0.98)})) == {}


@pytest.mark.parametrize("study", [TENSOR_WIDTH, TENSOR_DEPTH])
def test_the_study_plot_is_written(tmp_path, study):
    frame = _collapse(_frame({"5x5": (0.3, 0.97), "4x4x4": (0.2, 0.98)}, xs=(1, 3, 5)), (0.6, 0.8, 0.9))
    verdict = judge(study, frame)
    paths = study.plot(verdict, frame, tmp_path / "claim", "t")
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.stat().st_size > 0 for p in paths)


def test_panel_labels_are_the_reports_and_tensors_are_order_three_or_more():
    assert panel_order("dims=4x4x4, rank=2") == 3 and panel_order("dims=5x5, rank=1") == 2
    assert panel_order("rank=1") is None
    assert TENSOR_WIDTH.is_about("dims=3x3x3x3, rank=1") and not TENSOR_WIDTH.is_about("dims=5x5, rank=1")
    # Without dims/rank columns the labels come from the rows' stored problems.
    frame = _frame({"4x4x4": (0.2, 0.98)}).drop(columns=["dims", "rank"])
    assert set(tensor_panels(frame)) == {TENSOR}


@pytest.mark.parametrize("name", ["tensor-width", "tensor-depth"])
def test_the_packaged_configs_load_and_are_judged_by_their_declaration(name):
    config = load_sweep(figure_config_path(name))
    assert config.claim == name and get_study(name) is (TENSOR_WIDTH if name == "tensor-width" else TENSOR_DEPTH)
    assert config.seeds >= 6 and get_study(name).paper == "arXiv 2506.03931"
    # The study's panels are named as the report names the grid's combinations (and so in its order).
    names = short_names(config.grid)
    columns = [names[p] for p in config.panel]
    grid = pd.DataFrame([{"dims": coordinate_label(d), "rank": r} for d in config.grid["problem.dims"]
                         for r in config.grid["problem.rank"]])
    _, _, order = combined_panels(grid, columns, [[coordinate_label(v) for v in config.grid[p]]
                                                  for p in config.panel])
    assert tensor_panels(grid) == order


def test_a_tiny_tensor_sweep_reports_tensor_and_matrix_panels(tmp_path):
    config = tmp_path / "tiny-tensor.yaml"
    config.write_text("""
name: tiny-tensor
claim: tensor-width
x: model.width
panel: [problem.dims, problem.rank]
problem: {kind: tensor-sensing, dims: [3, 3, 3], rank: 1, measurements: 8}
model: {kind: cp}
methods:
  gnc: {eps: 0.03, samples: 4000}
  gd: {step_rule: group_rmsprop, lr: 1.0e-2, steps: 300, init_scale: 1.0e-2}
grid:
  problem.dims: [[4, 4], [3, 3, 3]]
  problem.rank: [1]
  model.width: [1, 8]
rules:
  - when: {problem.dims: [[4, 4]]}
    set: {problem.measurements: 9}
seeds: 2
""", encoding="utf-8")
    assert main(["run", str(config), "--out", str(tmp_path / "out")]) == 0
    report = (tmp_path / "out" / "report.md").read_text(encoding="utf-8")
    assert "dims=3x3x3, rank=1" in report and "dims=4x4, rank=1" in report
    assert "too few seeds (n = 2" in report and "HOLDS" not in report and "FAILS" not in report
    assert "chance level minus its closed form" in report
    assert (tmp_path / "out" / "plots" / "tiny-tensor-claim.png").is_file()
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(csv["problem.dims"]) == {"4x4", "3x3x3"}
