"""``method: subset`` in sweep configs: runs through the driver, stored with its own key, reported; flagged runs are
counted in the report and left out of its medians."""

from __future__ import annotations

import pandas as pd

from volumelab.cli import main
from volumelab.optimizers import subset as subset_module

from sweep_testing import write_config

CONFIG = """\
name: subset-tiny
claim: width
x: model.width
panel: model.activation
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 6}
model: {depth: 2}
methods:
  gnc: {eps: 0.05, samples: 20000}
  subset: {type: gnc, method: subset, eps: 0.05, samples: 30000, population: 200}
grid:
  model.activation: [tanh]
  model.width: [3, 6]
seeds: 2
"""


def test_subset_runs_in_a_sweep_next_to_rejection(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, CONFIG)), "--out", str(out)]) == 0
    frame = pd.read_csv(out / "results.csv")
    subset = frame[frame["method"] == "subset"]
    rejection = frame[frame["method"] == "gnc"]
    assert len(subset) == 4 and len(rejection) == 4
    assert subset["log_volume"].notna().all() and subset["ess"].notna().all() and subset["rhat"].notna().all()
    assert (subset["evaluations"] <= 30000 * 1.05).all()
    assert rejection["log_volume"].notna().all()
    # A rerun finds every run stored under its key: nothing to run.
    assert main(["run", str(tmp_path / "sweep.yaml"), "--out", str(out)]) == 0
    assert "subset" in (out / "report.md").read_text()


def test_flagged_runs_are_counted_and_left_out_of_the_medians(tmp_path, monkeypatch):
    monkeypatch.setattr(subset_module, "split_rhat", lambda chains: 1.5)
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, CONFIG)), "--out", str(out)]) == 0
    frame = pd.read_csv(out / "results.csv")
    assert (frame.loc[frame["method"] == "subset", "status"] == "not_mixed").all()
    assert frame.loc[frame["method"] == "subset", "gen_loss"].notna().all()  # stored, not thrown away
    report = (out / "report.md").read_text()
    assert "Flagged runs, left out of the medians, plots and verdict" in report
    assert "subset: 4" in report
