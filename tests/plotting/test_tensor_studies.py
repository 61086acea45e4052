"""The tensor studies (volumelab.studies.tensor): verdicts on hand-made inputs, the chance-level check against
rebuilt problems, and a tiny sweep end to end with tensor and matrix panels in one report."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from volumelab.cli import main
from volumelab.experiments.kinds import build_model, build_problem, validate_model, validate_problem
from volumelab.studies import judge_study
from volumelab.studies.tensor import chance_level_check

SEEDS = range(4)
PROBLEMS = {"5x5": {"kind": "tensor-sensing", "dims": [5, 5], "rank": 1, "measurements": 15, "norm": 1.0},
            "4x4x4": {"kind": "tensor-sensing", "dims": [4, 4, 4], "rank": 1, "measurements": 16, "norm": 1.0}}


def _closed_form(dims: str, width: int, seed: int) -> float:
    settings = validate_problem(PROBLEMS[dims])
    model = build_model(validate_model({"kind": "cp", "width": width}), tuple(settings.dims))
    return model.chance_gen_loss(build_problem(settings, seed))


def _frame(ratios: dict[str, tuple[float, float]], chance_offset: float = 0.0, trainer: float = 0.01,
           xs: tuple[int, ...] = (1, 64)):
    """G&C, prior and GD rows per dims panel at ``xs`` (the CP model's width, or depth in the depth test);
    G&C/prior linear in the index of x from ratios[dims][0] to [1].

    The prior rows carry the closed-form chance level (plus ``chance_offset``) and an SE of 0.001, with the
    settings a stored run has (``config``), so the study's check can rebuild each problem.
    """
    rows = []
    for dims, (first, last) in ratios.items():
        for i, x in enumerate(xs):
            ratio = first + (last - first) * i / (len(xs) - 1)
            generator = np.random.default_rng(x)
            for seed in SEEDS:
                prior = _closed_form(dims, x, seed) + chance_offset
                config = {"problem": PROBLEMS[dims], "model": {"kind": "cp", "width": x, "depth": 1}, "method": {}}
                jitter = 1 + 0.01 * generator.standard_normal()
                for method, loss in (("gnc", ratio * prior * jitter), ("prior", prior), ("gd", trainer * prior)):
                    rows.append({"dims": dims, "rank": 1, "method": method, "method_type": method, "x": x,
                                 "seed": seed, "gen_loss": loss, "gen_loss_stderr": 0.001, "status": "ok",
                                 "config": config})
    return pd.DataFrame(rows)


def test_tensor_width_judges_tensor_panels_and_sets_them_against_the_matrix(tmp_path):
    verdict, paths = judge_study("tensor-width", _frame({"5x5": (0.3, 0.97), "4x4x4": (0.2, 0.98)}), tmp_path,
                                 ["dims", "rank", "width"], stem=tmp_path / "plot", title="t")
    outcomes = {p.panel: p.outcome for p in verdict.panels}
    assert outcomes == {"5x5 matrix, rank 1 (reference)": "holds", "4x4x4 order-3 tensor, rank 1": "holds"}
    assert verdict.outcome == "holds"
    tensor = next(p for p in verdict.panels if p.panel.startswith("4x4x4"))
    assert "against the 5x5 matrix at rank 1" in tensor.detail and "agrees" in tensor.detail
    # 0.2 against 0.3 at R = 1 (SEs about 0.01): the difference is listed; 0.98 against 0.97 is not.
    assert "differs from the matrix's beyond 2 SE at R = 1 (0.20 vs 0.30" in tensor.detail
    assert "agrees within 2 SE at R = 64" in tensor.detail
    assert [p.suffix for p in paths] == [".png", ".pdf"] and all(p.is_file() for p in paths)
    # G&C far from chance at the largest R for the tensor: the claim fails even though the matrix holds.
    verdict, _ = judge_study("tensor-width", _frame({"5x5": (0.3, 0.97), "4x4x4": (0.2, 0.6)}), tmp_path,
                             ["dims", "rank", "width"])
    assert verdict.outcome == "fails"


def test_a_chance_level_off_its_closed_form_fails_the_panel(tmp_path):
    # Off by 0.01 with run SEs 0.001 (pooled over 8 runs: 0.00035): about 28 SE.
    verdict, _ = judge_study("tensor-width", _frame({"4x4x4": (0.2, 0.98)}, chance_offset=0.01), tmp_path,
                             ["dims", "rank", "width"])
    assert verdict.outcome == "fails" and "DISAGREES" in verdict.panels[0].detail
    rows = _frame({"4x4x4": (0.2, 0.98)}, chance_offset=0.01)
    mean, se, worst, n = chance_level_check(rows[rows["method"] == "prior"])
    assert n == 8 and mean == pytest.approx(0.01) and se == pytest.approx(0.001 * np.sqrt(8) / 8)
    assert worst == pytest.approx(10.0)


@pytest.mark.parametrize("last, outcome", [(0.3, "holds"), (0.95, "fails")])
def test_tensor_depth_uses_the_papers_depth_rule(tmp_path, last, outcome):
    frame = _frame({"5x5": (0.8, 0.3), "4x4x4": (0.6, last)}, xs=(1, 3, 5))  # x: depths 1, 3, 5
    collapse = [{"dims": dims, "rank": 1, "method": "collapse", "method_type": "collapse", "x": x, "seed": seed,
                 "gen_loss": None, "status": "ok", "top_share": share, "top_share_stderr": 0.002,
                 "sigma2_over_sigma1": 1 - share, "sigma2_over_sigma1_stderr": 0.002}
                for dims in ("5x5", "4x4x4") for x, share in ((1, 0.6), (3, 0.8), (5, 0.9)) for seed in SEEDS]
    frame = pd.concat([frame, pd.DataFrame(collapse)], ignore_index=True)
    verdict, paths = judge_study("tensor-depth", frame, tmp_path, ["dims", "rank", "depth"],
                                 stem=tmp_path / "depth", title="t")
    assert verdict.outcome == outcome
    assert all("top share 0.600 ± 0.001 -> 0.900 ± 0.001" in p.detail for p in verdict.panels)
    assert all(p.is_file() for p in paths)
    assert {p.outcome for p in verdict.panels if "reference" in p.panel} == {"holds"}


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
    assert "dims=4x4, rank=1" in report and "dims=3x3x3, rank=1" in report
    assert "3x3x3 order-3 tensor, rank 1" in report and "4x4 matrix, rank 1 (reference)" in report
    csv = pd.read_csv(tmp_path / "out" / "results.csv")
    assert set(csv["dims"]) == {"4x4", "3x3x3"}
