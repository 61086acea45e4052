"""Replicate streams (``volumelab run --stream K``): K > 0 redraws every random stream of a
sweep (problems, data splits, G&C draws, GD inits); K = 0 is the sweep as it always was."""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from volumelab._rng import derive_seed, stream_seed
from volumelab.cli import main
from volumelab.experiments import load_results, load_sweep, plan_sweep, run_sweep
from volumelab.experiments import driver
from volumelab.experiments.config import run_key
from volumelab.experiments.kinds import build_model, build_problem, problem_shape, validate_model, validate_problem
from volumelab.experiments.methods import get_method
from volumelab.experiments.store import ResultsStore

from sweep_testing import TINY, write_config

#: The tiny sweep cut to one activation: 2 widths x 2 seeds x (gnc, prior, gd) = 12 rows.
SMALL = (TINY.replace("model.activation: [linear, tanh]", "model.activation: [linear]")
         .replace("seeds: 3", "seeds: 2"))

#: A supervised sweep: the problem is a data split made from the seed.
SUPERVISED = """\
name: tiny-split
problem: {kind: supervised, data: breast_cancer, train: 20}
model: {kind: mlp, depth: 2, width: 4, activation: relu}
methods:
  gd: {lr: 0.1, steps: 5, init_scale: 1.0}
seeds: 2
"""

_NUMBERS = ("status", "gen_loss", "train_loss", "gen_loss_stderr", "metrics", "standard_errors", "config")


def _rows(out, plan) -> dict[str, dict]:
    """``{run_key: row}`` of ``plan``'s rows stored in ``out``."""
    with ResultsStore(out) as store:
        return {row["run_key"]: row for row in store.fetch(keys=plan.keys)}


def _numbers(rows: dict[str, dict]) -> dict[str, tuple]:
    return {key: tuple(repr(row[name]) for name in _NUMBERS) for key, row in rows.items()}


def _by_run(rows: dict[str, dict]) -> dict[tuple, dict]:
    """Rows by ``(method, point, seed)``: the same run in two streams."""
    return {(row["method"], row["point"], row["seed"]): row for row in rows.values()}


def test_stream_seed_is_the_identity_for_stream_zero_and_rejects_bad_streams():
    assert stream_seed(7, 0) == 7
    assert stream_seed(7, 1) == derive_seed(7, "stream", 1) != 7
    assert len({stream_seed(seed, stream) for seed in range(4) for stream in range(4)}) == 16
    for bad in (-1, 1.5, True, "1"):
        with pytest.raises(ValueError, match="stream must be a non-negative integer"):
            stream_seed(0, bad)


def test_stream_zero_keeps_the_keys_rows_and_numbers(tmp_path):
    config = load_sweep(write_config(tmp_path, SMALL))
    plain = plan_sweep(config)
    zero = plan_sweep(config, stream=0)
    in_config = plan_sweep(load_sweep(write_config(tmp_path, SMALL + "stream: 0\n", "zero.yaml")))
    assert plain.keys == zero.keys == in_config.keys
    # The key of stream 0 is the key without a stream; stream 1 changes every key.
    point = plain.points[0]
    assert run_key(point, "gd", 0, stream=0) == run_key(point, "gd", 0)
    assert run_key(point, "gd", 0, stream=1) != run_key(point, "gd", 0)

    first = run_sweep(config, out_dir=tmp_path / "plain", progress=False)
    second = run_sweep(config, out_dir=tmp_path / "zero", progress=False, stream=0)
    assert first.ran_rows == second.ran_rows == first.planned_rows == 12
    plain_rows = _rows(tmp_path / "plain", first.plan)
    assert _numbers(plain_rows) == _numbers(_rows(tmp_path / "zero", second.plan))
    # A stream-0 row's config is the one of before streams: no stream fields.
    assert all({"stream", "run_seed", "problem_seed"}.isdisjoint(row["config"]) for row in plain_rows.values())
    # A folder of rows stored without a stream is complete for stream 0.
    again = run_sweep(config, out_dir=tmp_path / "plain", progress=False, stream=0)
    assert again.ran_rows == 0 and again.stored_before == again.planned_rows


def test_stream_one_changes_the_problem_the_draws_and_the_key(tmp_path):
    config = load_sweep(write_config(tmp_path, SMALL))
    out = tmp_path / "out"
    zero = run_sweep(config, out_dir=out, progress=False)
    one = run_sweep(config, out_dir=out, progress=False, stream=1)
    assert one.ran_rows == one.planned_rows == zero.planned_rows  # nothing of stream 0 is reused
    assert set(zero.plan.keys).isdisjoint(one.plan.keys)
    rows_zero, rows_one = _by_run(_rows(out, zero.plan)), _by_run(_rows(out, one.plan))
    assert rows_zero.keys() == rows_one.keys()
    for run, row in rows_one.items():
        assert row["config"]["stream"] == 1
        assert row["config"]["run_seed"] == row["config"]["problem_seed"] == stream_seed(row["seed"], 1)
        assert row["gen_loss"] != rows_zero[run]["gen_loss"], run

    # The sensing problem of stream 1 (rebuilt from its row) has other measurements ...
    row = rows_one[("gnc", 0, 0)]
    settings = validate_problem(row["config"]["problem"])
    problem_one = build_problem(settings, row["config"]["problem_seed"])
    problem_zero = build_problem(settings, 0)
    assert not torch.equal(problem_one.b_train, problem_zero.b_train)
    # ... and the stored G&C result is that of the runner given the stream's seed and problem.
    spec = get_method("gnc")
    gnc_settings = config.methods["gnc"]
    model = build_model(validate_model(row["config"]["model"]), problem_shape(settings))
    result = spec.runner.run([problem_one], model, gnc_settings, [row["config"]["run_seed"]])[0]
    assert result.metrics["gen_loss"] == row["gen_loss"]
    assert result.metrics["gen_loss"] != rows_zero[("gnc", 0, 0)]["gen_loss"]


def test_the_same_stream_twice_gives_identical_numbers(tmp_path):
    config = load_sweep(write_config(tmp_path, SMALL))
    first = run_sweep(config, out_dir=tmp_path / "a", progress=False, stream=2)
    second = run_sweep(config, out_dir=tmp_path / "b", progress=False, stream=2)
    assert first.plan.keys == second.plan.keys
    assert _numbers(_rows(tmp_path / "a", first.plan)) == _numbers(_rows(tmp_path / "b", second.plan))


def test_problem_seed_and_data_splits_follow_the_stream(tmp_path, monkeypatch):
    built = []
    real_build = driver.build_problem
    monkeypatch.setattr(driver, "build_problem",
                        lambda settings, seed: built.append(seed) or real_build(settings, seed))
    shared = load_sweep(write_config(tmp_path, SMALL + "problem_seed: 5\n", "shared.yaml"))
    run_sweep(shared, out_dir=tmp_path / "shared0", progress=False)
    assert set(built) == {5}
    built.clear()
    one = run_sweep(shared, out_dir=tmp_path / "shared1", progress=False, stream=1)
    assert set(built) == {stream_seed(5, 1)}
    assert {row["config"]["problem_seed"] for row in _rows(tmp_path / "shared1", one.plan).values()} == {
        stream_seed(5, 1)}

    # A supervised problem's split comes from the stream's seed: other training points, other losses.
    config = load_sweep(write_config(tmp_path, SUPERVISED, "split.yaml"))
    zero = run_sweep(config, out_dir=tmp_path / "split", progress=False)
    one = run_sweep(config, out_dir=tmp_path / "split", progress=False, stream=1)
    rows_zero, rows_one = _by_run(_rows(tmp_path / "split", zero.plan)), _by_run(_rows(tmp_path / "split", one.plan))
    for run, row in rows_one.items():
        settings = validate_problem(row["config"]["problem"])
        split_one = build_problem(settings, row["config"]["problem_seed"])
        split_zero = build_problem(settings, row["seed"])
        assert not torch.equal(split_one.X_train, split_zero.X_train)
        assert row["train_loss"] != rows_zero[run]["train_loss"]


def test_a_config_stream_is_overridden_by_the_argument(tmp_path):
    base = load_sweep(write_config(tmp_path, SMALL))
    streamed = load_sweep(write_config(tmp_path, SMALL + "stream: 3\n", "three.yaml"))
    assert plan_sweep(streamed).stream == 3
    assert plan_sweep(streamed).keys == plan_sweep(base, stream=3).keys
    assert plan_sweep(streamed, stream=0).keys == plan_sweep(base).keys
    assert plan_sweep(base, stream=3).config.stream == 3


@pytest.mark.parametrize("value", ["-1", "1.5", "one"])
@pytest.mark.parametrize("command", ["run", "reproduce"])
def test_a_bad_stream_is_a_one_line_error(tmp_path, capsys, command, value):
    target = str(write_config(tmp_path, SMALL)) if command == "run" else "figure1"
    assert main([command, target, "--stream", value, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--stream" in err
    assert not (tmp_path / "out").exists()


def test_a_bad_stream_in_a_config_is_a_one_line_error(tmp_path, capsys):
    path = write_config(tmp_path, SMALL + "stream: -1\n", "bad.yaml")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.yaml" in err and "stream" in err


def test_one_folder_reports_each_stream_separately(tmp_path, capsys):
    config, out = str(write_config(tmp_path, SMALL)), tmp_path / "out"
    assert main(["run", config, "--out", str(out)]) == 0
    report_zero = pd.read_csv(out / "results.csv")
    assert len(report_zero) == 12 and set(report_zero["stream"]) == {0}
    assert main(["run", config, "--out", str(out), "--stream", "1"]) == 0
    assert "stream 1" in capsys.readouterr().out
    report_one = pd.read_csv(out / "results.csv")
    assert len(report_one) == 12 and set(report_one["stream"]) == {1}
    assert set(report_zero["run_key"]).isdisjoint(report_one["run_key"])
    # The folder holds both streams; rerunning stream 0 runs nothing and reports its own rows again.
    assert sorted(load_results(out)["stream"].value_counts().items()) == [(0, 12), (1, 12)]
    assert main(["run", config, "--out", str(out), "--stream", "0"]) == 0
    assert "nothing to run" in capsys.readouterr().out
    again = pd.read_csv(out / "results.csv")
    columns = ["run_key", "method", "seed", "gen_loss", "stream"]
    pd.testing.assert_frame_equal(again[columns], report_zero[columns])
