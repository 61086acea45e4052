"""Sweeps through submitit job arrays: every job writes its own shard store, the driver merges them (issue 30).

``--executor submitit-local`` runs the same jobs as ``--executor slurm`` as local processes; these tests run it.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import pytest

from sweep_testing import TINY, write_config
from volumelab.cli import main
from volumelab.errors import VolumelabError
from volumelab.experiments import driver, load_sweep, plan_sweep, run_sweep
from volumelab.experiments.executors import _balanced
from volumelab.experiments.shards import merge_shards, run_shard, shard_paths
from volumelab.experiments.store import ResultsStore

pytest.importorskip("submitit")

HERE = Path(__file__).parent


def _rows(out: Path) -> dict:
    """What each stored run computed (not when or where): key -> (status, metrics, standard errors, losses)."""
    connection = sqlite3.connect(str(out / "results.sqlite"))
    try:
        return {key: rest for key, *rest in connection.execute(
            "SELECT run_key, method, status, metrics, standard_errors, gen_loss, train_loss, config FROM runs")}
    finally:
        connection.close()


@pytest.fixture
def jobs_import_tests(monkeypatch):
    """The jobs' processes import this folder's modules (the shard helpers) like the tests do."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(HERE), os.environ.get("PYTHONPATH", "")]))


def test_submitit_local_gives_the_local_rows_and_merging_again_adds_nothing(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    local = run_sweep(config, scale="quick", out_dir=tmp_path / "local")
    jobs = run_sweep(config, scale="quick", out_dir=tmp_path / "jobs", executor="submitit-local", workers=2)
    assert jobs.ran_rows == local.ran_rows == 36
    assert _rows(tmp_path / "jobs") == _rows(tmp_path / "local")
    shards = shard_paths(tmp_path / "jobs")
    assert len(shards) == 2  # one store per job, each written by its job alone
    with ResultsStore(shards[0]) as one, ResultsStore(shards[1]) as two:
        assert one.count() + two.count() == 36 and one.count() > 0 and two.count() > 0
    with ResultsStore(tmp_path / "jobs") as store:
        again = merge_shards(store, tmp_path / "jobs")
        assert [m.added for m in again] == [0, 0] and sum(m.present for m in again) == 36
        assert store.count() == 36
    assert main(["store", "merge", str(tmp_path / "jobs")]) == 0
    assert _rows(tmp_path / "jobs") == _rows(tmp_path / "local")
    rerun = run_sweep(config, scale="quick", out_dir=tmp_path / "jobs", executor="submitit-local", workers=2)
    assert rerun.ran_rows == 0 and rerun.stored_before == 36


def _shards_by_hand(config, out: Path, keep: int) -> list:
    """Run the first ``keep`` tasks of the plan into two shard stores here, as two jobs would; returns the tasks."""
    tasks = plan_sweep(config, "quick").tasks
    run_shard(driver.execute_task, tasks[:keep:2], str(out / "shards" / "a.sqlite"), 1)
    run_shard(driver.execute_task, tasks[1:keep:2], str(out / "shards" / "b.sqlite"), 1)
    return tasks


def test_a_run_merges_the_shards_of_jobs_that_outlived_their_driver(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    tasks = _shards_by_hand(config, tmp_path / "out", keep=6)
    in_shards = sum(task.num_rows for task in tasks[:6])
    outcome = run_sweep(config, scale="quick", out_dir=tmp_path / "out")
    assert outcome.stored_before == in_shards and outcome.ran_rows == 36 - in_shards
    run_sweep(config, scale="quick", out_dir=tmp_path / "whole")
    assert _rows(tmp_path / "out") == _rows(tmp_path / "whole")


def test_a_damaged_shard_row_is_not_merged_and_runs_again(tmp_path, tiny_config):
    config = load_sweep(tiny_config)
    _shards_by_hand(config, tmp_path / "out", keep=4)
    shard = tmp_path / "out" / "shards" / "a.sqlite"
    connection = sqlite3.connect(str(shard))
    with connection:  # one value changed behind the store's back, as a flipped bit would
        key, loss = connection.execute("SELECT run_key, gen_loss FROM runs WHERE gen_loss IS NOT NULL").fetchone()
        connection.execute("UPDATE runs SET gen_loss = ? WHERE run_key = ?", (loss / 2, key))
    connection.close()
    with ResultsStore(tmp_path / "out") as store:
        merged = {m.source.name: m for m in merge_shards(store, tmp_path / "out")}
        assert list(merged["a.sqlite"].damaged) == [key]
        assert key not in store.existing_keys()
        stored = store.count()
    outcome = run_sweep(config, scale="quick", out_dir=tmp_path / "out")
    assert outcome.stored_before == stored and outcome.ran_rows == 36 - stored
    run_sweep(config, scale="quick", out_dir=tmp_path / "whole")
    assert _rows(tmp_path / "out") == _rows(tmp_path / "whole")  # the damaged value never reached the store


def test_a_failed_job_is_named_with_its_log_and_the_others_runs_are_kept(tmp_path, tiny_config, monkeypatch,
                                                                        jobs_import_tests):
    import shard_helpers

    config = load_sweep(tiny_config)
    monkeypatch.setattr(driver, "execute_task", shard_helpers.fail_on_one_point)
    with pytest.raises(VolumelabError, match=r"jobs failed.*point 1 is broken on purpose.*its log: .*submitit"):
        run_sweep(config, scale="quick", out_dir=tmp_path / "out", executor="submitit-local", workers=4)
    with ResultsStore(tmp_path / "out") as store:
        kept = store.fetch()
    assert kept and all(row["point"] != shard_helpers.BROKEN_POINT for row in kept)
    monkeypatch.undo()
    outcome = run_sweep(config, scale="quick", out_dir=tmp_path / "out")
    assert outcome.stored_before == len(kept) and outcome.ran_rows == 36 - len(kept)


def test_tasks_are_split_into_jobs_of_about_equal_cost():
    class Task:
        def __init__(self, cost):
            self.cost = cost

    tasks = [Task(c) for c in (9, 1, 7, 3, 3, 2, 8, 1, 5, 4)]
    groups = _balanced(tasks, 3)
    assert sorted(id(t) for g in groups for t in g) == sorted(id(t) for t in tasks)  # each task once
    loads = [sum(t.cost for t in g) for g in groups]
    # Longest-processing-time first is within the largest task of the ideal (the mean load).
    assert max(loads) <= sum(t.cost for t in tasks) / 3 + max(t.cost for t in tasks)
    assert len(_balanced(tasks[:2], 5)) == 2  # never an empty job


def test_command_line_errors(tmp_path, tiny_config, capsys):
    assert main(["store", "merge", str(tmp_path)]) == 2
    assert "no shard stores" in capsys.readouterr().err
    out = str(tmp_path / "x")
    assert main(["run", str(tiny_config), "--scale", "quick", "--out", out, "--job-param", "timeout_min=3"]) == 2
    assert "--job-param only applies to --executor slurm or submitit-local" in capsys.readouterr().err
    assert main(["run", str(tiny_config), "--scale", "quick", "--out", out, "--executor", "submitit-local",
                 "--job-param", "bogus=3"]) == 2
    assert "submitit refused the job parameters ['bogus']" in capsys.readouterr().err
    assert main(["run", str(tiny_config), "--scale", "quick", "--out", out, "--job-param", "novalue"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err
    if __import__("shutil").which("sbatch") is None:
        assert main(["run", str(tiny_config), "--scale", "quick", "--out", out, "--executor", "slurm"]) == 2
        assert "needs SLURM's sbatch" in capsys.readouterr().err
