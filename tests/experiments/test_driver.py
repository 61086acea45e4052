"""The generic driver: rows per run, resume after a kill, reruns, executors, any grid field."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time

import volumelab
from volumelab.experiments import load_sweep, plan_sweep, run_sweep

from sweep_testing import TINY, write_config


def _rows(out):
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        return {key: (row_id, finished, gen) for row_id, key, finished, gen in connection.execute(
            "SELECT id, run_key, finished_at, gen_loss FROM runs")}
    finally:
        connection.close()


def test_runs_every_point_seed_method_once(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    outcome = run_sweep(config, out_dir=tmp_path / "out")
    assert outcome.planned_rows == outcome.ran_rows == 4 * 3 * 3  # points x seeds x (gnc, prior, gd)
    frame = volumelab.load_results(tmp_path / "out")
    counts = frame.groupby(["method", "x", "activation"]).size()
    assert (counts == 3).all()
    assert sorted(frame["seed"].unique()) == [0, 1, 2]
    first = _rows(tmp_path / "out")
    again = run_sweep(config, out_dir=tmp_path / "out")
    assert again.ran_rows == 0 and again.stored_before == outcome.planned_rows
    assert _rows(tmp_path / "out") == first


def test_grid_over_a_field_no_figure_sweeps(tmp_path):
    text = TINY.replace("x: model.width\n", "x: problem.measurements\n").replace(
        "  model.width: [4, 8]\n", "  problem.measurements: [4, 8, 12]\n").replace(
        "model: {depth: 2}", "model: {depth: 2, width: 6}").replace("claim: width", "claim: none")
    config = load_sweep(write_config(tmp_path, text))
    run_sweep(config, out_dir=tmp_path / "out")
    frame = volumelab.load_results(tmp_path / "out")
    assert sorted(frame["x"].unique()) == [4, 8, 12]
    assert sorted(frame["measurements"].unique()) == [4, 8, 12]
    m12 = frame[(frame["measurements"] == 12)].iloc[0]["config"]
    assert m12["problem"]["measurements"] == 12 and m12["model"]["width"] == 6


def test_seed_determines_everything(tmp_path, tiny_config):
    """Same seeds give the same rows whatever the executor (in-process vs 2 processes)."""
    config = load_sweep(tiny_config)
    run_sweep(config, scale="quick", out_dir=tmp_path / "a")
    run_sweep(config, scale="quick", out_dir=tmp_path / "b", workers=2)
    a, b = _rows(tmp_path / "a"), _rows(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(a[k][2] == b[k][2] for k in a)


def test_resume_after_kill_loses_and_repeats_nothing(tmp_path):
    text = TINY.replace("samples: 3000", "samples: 60000").replace("seeds: 3", "seeds: 6")
    path = write_config(tmp_path, text)
    out = tmp_path / "out"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "volumelab.cli", "run", str(path), "--out", str(out),
                                "--no-report"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 120
    before = {}
    try:
        while time.time() < deadline and process.poll() is None:
            time.sleep(0.2)
            if (out / "results.sqlite").is_file():
                try:
                    before = _rows(out)
                except sqlite3.OperationalError:
                    continue
                if len(before) >= 6:
                    break
        assert process.poll() is None, f"the sweep ended before it could be killed: {process.stderr.read()!r}"
        os.kill(process.pid, signal.SIGKILL)
    finally:
        process.wait()
    before = _rows(out)  # everything committed before the kill
    plan = plan_sweep(load_sweep(path))
    assert 6 <= len(before) < len(plan.keys)
    outcome = run_sweep(load_sweep(path), out_dir=out)
    after = _rows(out)
    assert set(after) == set(plan.keys)  # complete
    assert len(after) == len(plan.keys)  # no duplicates (run_key is unique, and ids count rows)
    assert outcome.ran_rows == len(plan.keys) - len(before)  # nothing finished was rerun
    assert all(after[key] == before[key] for key in before)  # finished rows untouched (id, time, value)
