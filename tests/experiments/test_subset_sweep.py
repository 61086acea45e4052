"""``method: subset`` in sweep configs: runs through the driver, stored with its own key, reported; flagged runs are
counted in the report and left out of its medians."""

from __future__ import annotations

import pandas as pd

from volumelab.cli import main
from volumelab.optimizers import subset as subset_module

from sweep_testing import TINY, write_config

#: The tiny sweep with a subset-simulation G&C in place of GD, next to rejection.
CONFIG = TINY.replace("name: tiny", "name: subset-tiny").replace(
    "  gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3}\n",
    "  subset: {type: gnc, method: subset, eps: 0.1, samples: 30000, population: 200}\n")


def test_subset_runs_in_a_sweep_next_to_rejection(tmp_path):
    out = tmp_path / "out"
    assert main(["run", str(write_config(tmp_path, CONFIG)), "--out", str(out)]) == 0
    frame = pd.read_csv(out / "results.csv")
    subset = frame[frame["method"] == "subset"]
    rejection = frame[frame["method"] == "gnc"]
    assert len(subset) == 12 and len(rejection) == 12  # 2 activations x 2 widths x 3 seeds
    assert subset["log_volume"].notna().all() and subset["ess"].notna().all() and subset["rhat"].notna().all()
    assert (subset["evaluations"] <= 30000 * 1.05).all()
    assert rejection["log_volume"].notna().all()
    # Subset simulation's second estimator of the volume, the mean of the replicates' logs, with its SE.
    assert subset["log_volume_mean_log"].notna().all() and (subset["log_volume_mean_log_stderr"] > 0).all()
    assert rejection["log_volume_mean_log"].isna().all()
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
    assert "Flagged runs (status not ok" in report and "left out of every metric, median, plot and verdict" in report
    assert "subset: 12" in report
