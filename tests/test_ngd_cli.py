"""`volumelab ngd`: the `gd` keys, its own options, failures as a status with a reason, sweeps."""

from __future__ import annotations

import csv
import json

from volumelab.cli import main

from tiny_sweep import write_config


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_ngd_prints_the_keys_gd_prints(capsys):
    common = ["--width", 5, "--depth", 2, "--init-scale", 0.3, "--lr", 0.1, "--steps", 20, "--json"]
    gd = json.loads(run(capsys, "gd", *common)[1])
    ngd = json.loads(run(capsys, "ngd", *common, "--damping", 1e-3, "--solve", "dual")[1])
    assert set(gd) == set(ngd) and ngd["method"] == "ngd" and ngd["status"] == "completed"
    assert ngd["train_loss"] < gd["train_loss"]  # same steps: the preconditioned ones fit faster here


def test_a_singular_undamped_system_is_a_status_with_a_reason(capsys):
    code, out, err = run(capsys, "ngd", "--width", 5, "--lr", 0.1, "--init-scale", 0.3, "--steps", 5,
                         "--damping", 0, "--solve", "dense")
    assert code == 0
    assert "solve_failed" in out and "singular" in out and "set damping > 0" in out
    code, out, err = run(capsys, "ngd", "--width", 5, "--lr", 0.1, "--steps", 5, "--damping", -1)
    assert code == 2 and "--damping" in err and len(err.strip().splitlines()) == 1


NGD_SWEEP = """\
name: tiny-ngd
x: model.depth
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {width: 4}
methods:
  gd: {lr: 0.05, steps: 20, init_scale: 0.3}
  ngd: {lr: 0.05, steps: 20, init_scale: 0.3, damping: 1.0e-3}
grid:
  model.depth: [1, 2]
seeds: 2
"""


def test_ngd_runs_in_a_sweep(capsys, tmp_path):
    code, out, err = run(capsys, "run", write_config(tmp_path, NGD_SWEEP), "--out", tmp_path / "out")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    ngd = [row for row in rows if row["method"] == "ngd"]
    assert len(ngd) == 4 and all(row["status"] == "completed" and row["method.damping"] == "0.001" for row in ngd)
