"""The MLP family from the CLI (`--model mlp`) and from a sweep (`kind: mlp`, `kind: supervised`)."""

from __future__ import annotations

import csv
import json
import math
import re

import pytest

from volumelab.cli import main
from volumelab.experiments.kinds import BUNDLED_FEATURES, build_problem, problem_shape, validate_problem
from volumelab.problems import make_supervised

from tiny_sweep import write_config


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_gnc_and_gd_print_the_same_keys_for_both_families_plus_test_error(capsys):
    matrix_gnc = json.loads(run(capsys, "gnc", "--width", 4, "--eps", 0.2, "--samples", 3000, "--json")[1])
    mlp_gnc = json.loads(run(capsys, "gnc", "--model", "mlp", "--data", "breast_cancer", "--train", 40,
                             "--width", 8, "--eps", 0.5, "--samples", 5000, "--json")[1])
    assert set(matrix_gnc) <= set(mlp_gnc)
    assert {"test_error", "test_error_stderr", "prior_test_error", "prior_test_error_stderr"} <= set(mlp_gnc)
    assert mlp_gnc["model"]["family"] == "mlp" and mlp_gnc["model"]["in_features"] == 30
    assert mlp_gnc["problem"]["data"] == "breast_cancer" and mlp_gnc["problem"]["train"] == 40

    matrix_gd = json.loads(run(capsys, "gd", "--width", 4, "--lr", 0.1, "--steps", 20, "--json")[1])
    mlp_gd = json.loads(run(capsys, "gd", "--model", "mlp", "--data", "digits", "--train", 50, "--width", 8,
                            "--lr", 0.1, "--init-scale", 1, "--steps", 50, "--json")[1])
    # effective_rank is the factorization's own (the rank of its W); every other key is shared.
    assert "effective_rank" in matrix_gd and "effective_rank" not in mlp_gd
    assert set(matrix_gd) - {"effective_rank"} <= set(mlp_gd) and "test_error" in mlp_gd
    assert "test_error" not in matrix_gd
    regression = json.loads(run(capsys, "gd", "--model", "mlp", "--width", 8, "--lr", 0.05, "--init-scale", 1,
                                "--steps", 20, "--json")[1])
    assert regression["problem"]["data"] == "teacher" and regression["problem"]["loss"] == "squared"
    assert set(matrix_gd) - {"effective_rank"} == set(regression)


def test_an_mlp_problem_file_runs_and_the_text_report_names_the_test_loss(capsys, tmp_path):
    path = make_supervised("digits", 40, seed=3).save(tmp_path / "digits.npz")
    code, out, err = run(capsys, "gnc", "--model", "mlp", "--problem", path, "--width", 8, "--eps", 0.6,
                         "--samples", 4000)
    assert code == 0, err
    assert "G&C test loss:" in out and "G&C test error:" in out and "prior test error:" in out


@pytest.mark.parametrize(
    "args, message",
    [
        (["gd", "--model", "mlp", "--rows", 4, "--width", 3, "--lr", 1, "--steps", 2], "--rows need(s) --model factorization"),
        (["gnc", "--data", "digits", "--width", 3, "--eps", 0.1, "--samples", 10], "--data need(s) --model diagonal or mlp"),
        (["gnc", "--model", "mlp", "--normalize", "--width", 3, "--eps", 0.1, "--samples", 10],
         "--normalize need(s) --model factorization or cp"),
        (["gnc", "--model", "mlp", "--scaling", "paper", "--width", 3, "--eps", 0.1, "--samples", 10],
         "unknown scaling 'paper' for a mlp model; expected one of fan_in"),
        (["gd", "--model", "mlp", "--data", "iris", "--width", 3, "--lr", 1, "--steps", 2], "Invalid value for '--data'"),
        (["gd", "--model", "mlp", "--train", 10000, "--data", "digits", "--width", 3, "--lr", 1, "--steps", 2],
         "leaves none to test on"),
    ],
)
def test_bad_mlp_flags_are_one_line_errors(capsys, args, message):
    code, out, err = run(capsys, *args)
    assert code == 2 and out == ""
    assert err.startswith("volumelab: error:") and message in err and len(err.strip().splitlines()) == 1


def test_a_matrix_problem_file_with_model_mlp_is_a_usage_error(capsys, tmp_path):
    from volumelab import make_sensing

    path = make_sensing(4, 4, 1, 8, seed=0).save(tmp_path / "p.npz")
    code, _out, err = run(capsys, "gnc", "--model", "mlp", "--problem", path, "--width", 3, "--eps", 1,
                          "--samples", 10)
    assert code == 2 and "needs a supervised problem" in err
    supervised = make_supervised("teacher", 10, seed=0).save(tmp_path / "s.npz")
    code, _out, err = run(capsys, "gnc", "--problem", supervised, "--width", 3, "--eps", 1, "--samples", 10)
    assert code == 2 and "use --model mlp" in err


@pytest.mark.parametrize("data", sorted(BUNDLED_FEATURES))
def test_the_supervised_kind_states_the_shape_of_the_problem_it_builds(data):
    settings = validate_problem({"kind": "supervised", "data": data, "train": 20})
    assert problem_shape(settings) == (1, build_problem(settings, 0).num_features)


MLP_SWEEP = """\
name: tiny-mlp
claim: width
x: model.width
problem: {kind: supervised, data: breast_cancer, train: 30}
model: {kind: mlp, depth: 2, activation: relu}
methods:
  gnc: {eps: 0.5, samples: 3000}
  gd: {lr: 0.1, steps: 30, init_scale: 1.0}
grid:
  model.width: [4, 8]
seeds: 2
"""


def test_an_mlp_sweep_runs_and_stores_test_errors(capsys, tmp_path):
    config = write_config(tmp_path, MLP_SWEEP)
    code, out, err = run(capsys, "run", config, "--out", tmp_path / "out")
    assert code == 0, err
    rows = list(csv.DictReader((tmp_path / "out" / "results.csv").open()))
    assert {row["method"] for row in rows} == {"gnc", "gd", "prior"} and len(rows) == 2 * 2 * 3
    for row in rows:
        assert 0.0 <= float(row["test_error"]) <= 1.0
    # The same sweep again: every run is found in the store.
    code, out, err = run(capsys, "run", config, "--out", tmp_path / "out")
    assert code == 0, err
    assert "all 12 runs already stored" in out, out


def test_problem_show_describes_a_supervised_file(capsys, tmp_path):
    path = make_supervised("digits", 30, seed=0).save(tmp_path / "d.npz")
    code, out, err = run(capsys, "problem", "show", path, "--json")
    assert code == 0, err
    info = json.loads(out)
    assert info["task"] == "supervised" and info["train"] == 30 and info["features"] == 64
    assert info["loss"] == "logistic" and info["classes"] == [3, 8]


def test_ntk_command_prints_the_eigenvalues_of_an_autograd_loop_gram(capsys):
    """`volumelab ntk` against J J^T of one prior draw, J from a plain autograd loop over examples."""
    import torch

    from volumelab._rng import make_generator
    from volumelab.diagnostics import training_outputs_function
    from volumelab.models import MLPModel

    code, out, _ = run(capsys, "ntk", "--data", "digits", "--train", 12, "--width", 16, "--depth", 3,
                       "--activation", "tanh", "--parametrization", "ntk", "--seed", 5, "--json")
    assert code == 0
    got = json.loads(out)
    problem = make_supervised("digits", 12, seed=5)
    model = MLPModel(64, 16, 3, "tanh", parametrization="ntk")
    layers = [layer[0].clone().requires_grad_() for layer in
              model.sample_prior(1, make_generator(5, "ntk", 0), dtype=torch.float64)]
    outputs = training_outputs_function(model, problem)(layers)
    jacobian = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(outputs[i], layers,
                                                                                 retain_graph=True)])
                            for i in range(12)])
    eigenvalues = torch.linalg.eigvalsh(jacobian @ jacobian.T)
    assert got["num_train"] == 12 and got["draws"] == 1
    assert got["lambda_min"] == pytest.approx(float(eigenvalues[0]), rel=1e-9)
    assert got["lambda_max"] == pytest.approx(float(eigenvalues[-1]), rel=1e-9)
    assert got["lambda_min_limit"] is None  # closed form for ReLU only
    # Plain text; several draws give a mean with its standard error and the spread over draws.
    code, out, _ = run(capsys, "ntk", "--data", "breast_cancer", "--train", 10, "--width", 32, "--draws", 4)
    assert code == 0 and "num_train:          10" in out
    assert re.search(r"lambda_min: +[0-9.e-]+ ± [0-9.e-]+ \(spread over draws [0-9.e-]+\)", out)
    several = json.loads(run(capsys, "ntk", "--data", "teacher", "--train", 8, "--width", 32, "--draws", 4,
                             "--parametrization", "ntk", "--json")[1])
    singles = []
    wide, teacher = MLPModel(10, 32, 2, "relu", parametrization="ntk"), make_supervised("teacher", 8, seed=0)
    for draw in range(4):
        layers = wide.sample_prior(1, make_generator(0, "ntk", draw), dtype=torch.float64)
        params = [layer[0].clone().requires_grad_() for layer in layers]
        outs = training_outputs_function(wide, teacher)(params)
        rows = torch.stack([torch.cat([g.reshape(-1) for g in torch.autograd.grad(outs[i], params, retain_graph=True)])
                            for i in range(8)])
        singles.append(float(torch.linalg.eigvalsh(rows @ rows.T)[0]))
    mean = sum(singles) / 4
    std = math.sqrt(sum((v - mean) ** 2 for v in singles) / 3)
    assert several["lambda_min"] == pytest.approx(mean, rel=1e-9)
    assert several["lambda_min_std"] == pytest.approx(std, rel=1e-7)
    assert several["lambda_min_stderr"] == pytest.approx(std / 2, rel=1e-7)
    from volumelab.diagnostics import arccos_ntk

    limit = torch.linalg.eigvalsh(arccos_ntk(teacher.inputs()[:8], 2))
    assert several["lambda_min_limit"] == pytest.approx(float(limit[0]), rel=1e-12)
    assert several["lambda_max_limit"] == pytest.approx(float(limit[-1]), rel=1e-12)
    # The arc-cosine limit is that of unit-variance weights: none for the uniform prior.
    uniform = json.loads(run(capsys, "ntk", "--data", "teacher", "--train", 8, "--width", 32, "--prior", "uniform",
                             "--parametrization", "ntk", "--json")[1])
    assert uniform["lambda_min_limit"] is None and uniform["lambda_min_std"] is None  # one draw: no spread


def test_ntk_at_init_ends_diverged_on_a_non_finite_gram(monkeypatch):
    import torch

    from volumelab.diagnostics import spectrum
    from volumelab.models import MLPModel

    monkeypatch.setattr(spectrum, "empirical_ntk", lambda *a, **k: torch.full((6, 6), float("nan")))
    result = spectrum.NTKAtInit().run(make_supervised("teacher", 6, seed=0), MLPModel(10, 8, 2), 3, seed=0)
    assert result.status == "diverged" and result.diagnostics["non_finite_draw"] == 0
    assert "lambda_min" not in result.metrics


@pytest.mark.parametrize("args, message", [
    (["--width", 8, "--train", 0], "--train"),
    (["--width", 8, "--abs-b", 2.0], "--abs-a and --abs-b need --activation abs"),
    (["--width", 8, "--data", "mnist"], "--data"),
    (["--width", 8, "--parametrization", "yang"], "--parametrization"),
])
def test_ntk_command_rejects_bad_input_with_exit_code_2(capsys, args, message):
    code, _, err = run(capsys, "ntk", *args)
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1


def test_mlp_options_reach_the_model_and_are_refused_for_a_factorization(capsys):
    got = json.loads(run(capsys, "gd", "--model", "mlp", "--data", "digits", "--train", 20, "--width", 8,
                         "--parametrization", "mup", "--bias", "--activation", "abs", "--abs-a", 0.5, "--abs-b", 0.5,
                         "--lr", 0.05, "--init-scale", 1, "--steps", 5, "--json")[1])
    assert got["model"]["parametrization"] == "mup" and got["model"]["bias"] is True
    assert got["model"]["abs_coefficients"] == [0.5, 0.5]
    code, _, err = run(capsys, "gd", "--width", 4, "--parametrization", "ntk", "--lr", 0.1, "--steps", 5)
    assert code == 2 and "--parametrization need(s) --model mlp" in err
