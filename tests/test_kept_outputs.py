"""Optional outputs: G&C's kept accepted draws and GD's final layers, from Python, the CLI and a sweep."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.cli import main
from volumelab.optimizers.guess_check import block_size_for
from volumelab.optimizers.observers import FinalOutputs, Trajectory
from volumelab.samplers import select_sampler

from tiny_sweep import write_config

KEEP = [FinalOutputs()]


def test_kept_draws_are_the_first_accepted_draws_in_draw_order():
    """Reproduce the blocks with the sampler and generators G&C uses, and filter them by a plain loop."""
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    model = vl.FactorizationModel(5, 5, 40, 2)
    eps, budget, keep = 0.08, 3 * 2**16, 40
    result = vl.GuessCheck(eps=eps, keep_samples=keep, dtype="float64", device="cpu").run(problem, model, budget, 7)
    sampler = select_sampler(model)
    block = block_size_for(model, sampler, "cpu")
    expected = []
    for index in range(-(-budget // block)):
        size = min(block, budget - index * block)
        draws = sampler.sample(model, size, make_generator(7, "gnc", index), dtype=torch.float64)
        train, _gen = problem.losses(draws)
        expected.extend(draws[i].clone() for i in range(size) if float(train[i]) < eps)
        if len(expected) >= keep:
            break
    assert result.metrics["accepted"] >= keep and result.diagnostics["kept_samples"] == keep
    np.testing.assert_array_equal(result.arrays["W"], torch.stack(expected[:keep]).numpy())
    train, gen = problem.losses(torch.from_numpy(result.arrays["W"]))
    np.testing.assert_allclose(result.arrays["train_loss"], train.numpy(), rtol=1e-12)
    np.testing.assert_allclose(result.arrays["gen_loss"], gen.numpy(), rtol=1e-12)
    assert bool((train < eps).all())


def test_keeping_draws_changes_no_statistic_and_keeps_fewer_when_fewer_were_accepted():
    problem = vl.make_sensing(5, 5, 1, 15, seed=1)
    model = vl.FactorizationModel(5, 5, 6, 2, "tanh")
    plain = vl.GuessCheck(eps=0.03).run(problem, model, 50_000, seed=2)
    kept = vl.GuessCheck(eps=0.03, keep_samples=10**6).run(problem, model, 50_000, seed=2)
    assert kept.metrics == plain.metrics and kept.standard_errors == plain.standard_errors
    assert kept.arrays["W"].shape == (plain.metrics["accepted"], 5, 5) and not plain.arrays
    with pytest.raises(vl.OptimizerError, match="keep_samples must be a non-negative integer"):
        vl.GuessCheck(eps=0.1, keep_samples=-1)


def test_gd_keeps_final_layers_whose_losses_are_the_reported_ones():
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    model = vl.FactorizationModel(5, 5, 8, 3, "tanh")
    result = vl.GradientDescent(lr=0.1, init_scale=0.3).run(problem, model, 100, seed=0, observers=KEEP)
    layers = [torch.from_numpy(result.arrays[f"layer_{j}"]) for j in (1, 2, 3)]
    W = model.end_to_end(layers)
    # The batched product of the run and this single one may differ in the last bits (GEMM kernels).
    np.testing.assert_allclose(result.arrays["W"], W.numpy(), rtol=1e-12, atol=1e-15)
    train, gen = problem.losses(W)
    assert float(train) == pytest.approx(result.metrics["train_loss"], rel=1e-12)
    assert float(gen) == pytest.approx(result.metrics["gen_loss"], rel=1e-12)
    # A diverged run keeps nothing (its weights are not a result).
    diverged = vl.GradientDescent(lr=50.0, init_scale=1.0).run(
        problem, vl.FactorizationModel(5, 5, 8, 2), 200, seed=0, observers=KEEP)
    assert diverged.status == "diverged" and not diverged.arrays


def test_cli_saves_kept_arrays(tmp_path, capsys):
    path = tmp_path / "kept.npz"
    assert main(["gnc", "--width", "20", "--eps", "0.05", "--samples", "50000", "--keep-samples", "3",
                 "--save", str(path)]) == 0
    with np.load(path) as data:
        assert data["W"].shape == (3, 5, 5) and bool((data["train_loss"] < 0.05).all())
    assert main(["gd", "--model", "mlp", "--width", "4", "--lr", "0.05", "--init-scale", "1", "--steps", "5",
                 "--save", str(tmp_path / "gd")]) == 0
    with np.load(tmp_path / "gd.npz") as data:
        assert data["layer_1"].shape == (4, 10) and data["outputs"].shape == (1100,)
    capsys.readouterr()
    assert main(["gnc", "--width", "4", "--eps", "0.05", "--samples", "100", "--save", str(path)]) == 2
    assert "--keep-samples K and --save PATH.npz go together" in capsys.readouterr().err


KEEPING_SWEEP = """\
name: keeping
problem: {task: sensing, rows: 4, cols: 4, rank: 1, measurements: 8}
model: {depth: 2, width: 6}
methods:
  gnc: {eps: 0.2, samples: 4000, keep_samples: 3}
  gd: {lr: 1.0e-2, steps: 20, init_scale: 1.0e-3, keep_outputs: true}
seeds: 2
"""


def test_a_sweep_stores_kept_arrays_loadable_by_run_key(tmp_path):
    config = write_config(tmp_path, KEEPING_SWEEP)
    assert main(["run", str(config), "--out", str(tmp_path / "out"), "--no-report"]) == 0
    frame = vl.load_results(tmp_path / "out")
    every = vl.load_arrays(tmp_path / "out")
    for row in frame.itertuples():
        if row.method == "prior":
            assert row.run_key not in every
            continue
        arrays = vl.load_arrays(tmp_path / "out", row.run_key)
        if row.method == "gnc":
            assert arrays["W"].shape == (min(3, int(row.accepted)), 4, 4)
        else:
            assert set(arrays) == {"layer_1", "layer_2", "outputs", "W"}
            problem = vl.make_sensing(4, 4, 1, 8, seed=int(row.seed))  # each seed makes its own problem
            _train, gen = problem.losses(torch.from_numpy(arrays["W"]))
            assert float(gen) == pytest.approx(row.gen_loss, rel=1e-12)
    with pytest.raises(KeyError, match="kept no arrays"):
        vl.load_arrays(tmp_path / "out", "no-such-run")


@pytest.mark.parametrize("method", ["gd", "ngd"])
def test_a_recorded_trajectory_is_the_outputs_of_runs_stopped_at_each_checkpoint(method):
    """trajectory[k] equals the final outputs of the same run given trajectory_steps[k] steps; trajectory_train
    is <A_i, W> of it; a batch that stops early repeats its final outputs up to the budget."""
    optimizer_class = vl.GradientDescent if method == "gd" else vl.NaturalGradientDescent
    problem = vl.make_sensing(4, 4, 1, 10, seed=2)
    model = vl.FactorizationModel(4, 4, 3, 2)
    recorded = optimizer_class(lr=0.05, init_scale=0.3).run(problem, model, 30, seed=1, observers=[Trajectory(7)])
    steps = recorded.arrays["trajectory_steps"].tolist()
    assert steps == [0, 7, 14, 21, 28, 30]
    A = problem.A_train.reshape(problem.num_measurements, -1).numpy()
    for k, step in enumerate(steps):
        alone = optimizer_class(lr=0.05, init_scale=0.3).run(problem, model, step, seed=1, observers=KEEP)
        assert np.array_equal(recorded.arrays["trajectory"][k], alone.arrays["outputs"])
        assert np.allclose(recorded.arrays["trajectory_train"][k], A @ alone.arrays["outputs"], rtol=1e-12)
    stopped = optimizer_class(lr=0.05, init_scale=0.3, train_loss_threshold=1.0).run(
        problem, model, 30, seed=1, observers=[Trajectory(7)])
    assert stopped.status == "converged" and stopped.arrays["trajectory_steps"].tolist() == steps
    assert all(np.array_equal(row, stopped.arrays["trajectory"][0]) for row in stopped.arrays["trajectory"])
