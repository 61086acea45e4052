"""The generic driver: rows per run, resume after a kill, reruns, executors, any grid field."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
import torch

import volumelab
from volumelab.experiments import ConfigError, execute_task, executors, load_sweep, plan_sweep, run_sweep
from volumelab.experiments.executors import InProcessExecutor
from volumelab.experiments.results import load_frame

from sweep_testing import TINY, record_task, write_config


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
    counts = frame.groupby(["method", "model.width", "model.activation"]).size()
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
    assert sorted(frame["problem.measurements"].unique()) == [4, 8, 12]
    # The table has the grid field once (no x); the width, the same on every row, is in the stored config.
    assert "x" not in frame and "model.width" not in frame
    stored = load_frame(tmp_path / "out")
    m12 = stored[(stored["measurements"] == 12)].iloc[0]["config"]
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


def test_gd_tasks_in_helper_processes_equal_one_by_one(tmp_path, tiny_config, monkeypatch):
    """In-process, GD tasks run in helper processes (one per core); their rows equal those of
    running each task alone in this process."""
    monkeypatch.setattr(executors, "HELPER_MIN_COST", 0.0)  # the tiny sweep is below the real threshold
    config = load_sweep(tiny_config)
    plan = plan_sweep(config, "quick")
    gd_tasks = [task for task in plan.tasks if task.method == "gd"]
    assert len(gd_tasks) == 4 and all(task.single_threaded for task in gd_tasks)
    assert not any(task.single_threaded for task in plan.tasks if task.method == "gnc")
    run_sweep(config, scale="quick", out_dir=tmp_path / "out")
    stored = _rows(tmp_path / "out")
    assert len(stored) == len(plan.keys)
    threads = torch.get_num_threads()
    for task in gd_tasks:
        for row in execute_task(task):  # alone, in this process
            assert row.metrics["gen_loss"] is not None
            assert stored[row.run_key][2] == row.metrics["gen_loss"]
    assert torch.get_num_threads() == threads


def test_in_process_executor_runs_single_threaded_tasks_concurrently(tmp_path):
    """Multi-threaded tasks run here first, in order; single-threaded ones overlap in helper
    processes with one torch thread each (each waits until two have started)."""
    tasks = [SimpleNamespace(name=name, single_threaded=single, cost=1.0, folder=str(tmp_path))
             for name, single in [("a", True), ("b", False), ("c", True), ("d", False)]]
    executor = InProcessExecutor(helpers=2, min_helper_cost=0.0)
    done = list(executor.map_unordered(record_task, tasks))
    names = [name for name, _pid, _threads in done]
    assert names[:2] == ["b", "d"] and sorted(names[2:]) == ["a", "c"]
    where = {name: (pid, threads) for name, pid, threads in done}
    assert where["b"] == where["d"] == (os.getpid(), torch.get_num_threads())
    assert {where["a"][0], where["c"][0]}.isdisjoint({os.getpid()}) and where["a"][0] != where["c"][0]
    assert where["a"][1] == where["c"][1] == 1
    # Little single-threaded work: no helpers, everything here.
    cheap = list(InProcessExecutor(helpers=2, min_helper_cost=10.0).map_unordered(
        record_task, [SimpleNamespace(**{**t.__dict__, "folder": ""}) for t in tasks]))
    assert {pid for _name, pid, _threads in cheap} == {os.getpid()}


def test_helpers_run_alongside_tasks_on_an_accelerator(tmp_path):
    """When the in-process tasks compute on a GPU the cores are free: the single-threaded
    tasks start in the helpers at once instead of after them (each accelerator task waits
    until both helper tasks have started)."""
    tasks = [SimpleNamespace(name=name, single_threaded=single, device=device, cost=1.0, folder=str(tmp_path))
             for name, single, device in [("a", True, "cpu"), ("b", False, "cuda"), ("c", True, "cpu"),
                                          ("d", False, "cuda")]]
    done = list(InProcessExecutor(helpers=2, min_helper_cost=0.0).map_unordered(record_task, tasks))
    assert sorted(name for name, _pid, _threads in done) == ["a", "b", "c", "d"]
    where = {name: pid for name, pid, _threads in done}
    assert where["b"] == where["d"] == os.getpid() and os.getpid() not in (where["a"], where["c"])


BALANCED = """\
name: balanced
x: model.depth
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {width: 4, activation: linear}
methods:
  ngd: {lr: 0.01, steps: 10, init_scale: 0.3, damping: 1.0e-6, initialization: balanced, trajectory_every: 5}
grid:
  model.depth: [1, 2, 3]
seeds: 2
"""


def test_a_sweep_with_the_balanced_initialization_starts_every_depth_from_one_matrix(tmp_path):
    out = tmp_path / "out"
    run_sweep(load_sweep(write_config(tmp_path, BALANCED)), out_dir=out, progress=False)
    frame = volumelab.load_results(out)
    arrays = volumelab.load_arrays(out)
    starts = {(int(depth), int(seed)): arrays[key]["trajectory"][0]
              for depth, seed, key in zip(frame["model.depth"], frame["seed"], frame["run_key"])}
    assert len(starts) == 6
    for seed in (0, 1):
        for depth in (2, 3):
            torch.testing.assert_close(torch.as_tensor(starts[depth, seed]), torch.as_tensor(starts[1, seed]),
                                       rtol=1e-12, atol=1e-15)
    assert not torch.allclose(torch.as_tensor(starts[1, 0]), torch.as_tensor(starts[1, 1]))  # seeds differ


def test_a_sweep_asking_for_a_balanced_start_a_model_has_not_is_a_config_error(tmp_path):
    config = load_sweep(write_config(tmp_path, BALANCED.replace("activation: linear", "activation: tanh")))
    with pytest.raises(ConfigError, match="at grid point model.depth=2 .*methods.ngd: the balanced initialization "
                                          "needs a linear factorization"):
        plan_sweep(config)


def test_progress_reports_the_estimators_share_and_time_left(tmp_path, tiny_config):
    """After each finished task: runs done, the share of the predicted compute done, the elapsed seconds and (to
    a callback that takes it) the estimator's wall seconds left; the last report leaves nothing."""
    reports = []
    run_sweep(load_sweep(tiny_config), out_dir=tmp_path / "new",
              progress=lambda *args, seconds_left: reports.append((*args, seconds_left)))
    tasks = len(plan_sweep(load_sweep(tiny_config)).tasks)
    assert len(reports) == tasks
    for done, total, share, seconds, left in reports:
        assert total == 36 and 0 < done <= total and 0.0 <= share <= 1.0 and seconds > 0 and left >= 0.0
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)
    assert reports[-1][0] == 36 and reports[-1][2] == 1.0 and reports[-1][4] == 0.0
    # A callback written for the four arguments alone is still called with them.
    plain = []
    run_sweep(load_sweep(tiny_config), out_dir=tmp_path / "plain", progress=lambda *args: plain.append(args))
    assert len(plain) == tasks and all(len(args) == 4 for args in plain)
