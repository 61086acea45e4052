"""The tensor command forms: --task tensor-sensing|tensor-completion --dims 4,4,4 on problem make, gnc, gd and
ngd, --model cp, and their one-line errors (exit code 2)."""

import json

import numpy as np
import pytest

from volumelab.cli import main
from volumelab.problems import load_problem, make_tensor_problem


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_problem_make_writes_the_tensor_problem_of_the_seed(capsys, tmp_path):
    path = tmp_path / "T.npz"
    code, out, _ = run(capsys, "problem", "make", "--task", "tensor-completion", "--dims", "3,4,2", "--rank", 2,
                       "--measurements", 10, "--seed", 5, "--out", path)
    assert code == 0 and "shape=(3, 4, 2)" in out
    loaded, made = load_problem(path), make_tensor_problem("tensor-completion", (3, 4, 2), 2, 10, seed=5)
    assert loaded.task == "tensor-completion" and loaded.shape == (3, 4, 2)
    assert np.array_equal(loaded.A_train.numpy(), made.A_train.numpy())
    assert np.array_equal(loaded.W_star.numpy(), made.W_star.numpy())


@pytest.mark.parametrize("command, extra", [
    ("gnc", ["--eps", 0.02, "--samples", 20000]),
    ("gd", ["--lr", 1e-2, "--steps", 300, "--init-scale", 1e-2, "--optimizer", "group_rmsprop"]),
    ("ngd", ["--lr", 0.3, "--steps", 20, "--init-scale", 0.1]),
])
def test_trainers_and_gnc_take_the_tensor_flags(capsys, command, extra):
    code, out, _ = run(capsys, command, "--model", "cp", "--task", "tensor-sensing", "--dims", "3,3,3",
                       "--measurements", 8, "--width", 3, "--json", *extra)
    assert code == 0
    payload = json.loads(out)
    assert payload["problem"]["task"] == "tensor-sensing" and payload["problem"]["shape"] == [3, 3, 3]
    assert payload["model"]["family"] == "cp" and payload["model"]["dims"] == [3, 3, 3]
    assert payload["model"]["depth"] == 1  # the CP model's default depth
    assert payload["gen_loss"] is not None


def test_model_cp_alone_makes_the_default_tensor_problem(capsys):
    code, out, _ = run(capsys, "gnc", "--model", "cp", "--width", 2, "--eps", 0.05, "--samples", 5000, "--json")
    assert code == 0
    problem = json.loads(out)["problem"]
    assert problem["shape"] == [4, 4, 4] and problem["measurements"] == 16


def test_cp_on_a_problem_file_and_at_order_two_equals_the_matrix_model(capsys, tmp_path):
    path = tmp_path / "M.npz"
    assert run(capsys, "problem", "make", "--task", "sensing", "--rows", 5, "--cols", 5, "--rank", 1,
               "--measurements", 15, "--out", path)[0] == 0
    common = ["--problem", path, "--width", 3, "--eps", 0.05, "--samples", 20000, "--sampler", "direct", "--json"]
    cp = json.loads(run(capsys, "gnc", "--model", "cp", *common)[1])
    matrix = json.loads(run(capsys, "gnc", *common)[1])
    assert cp["accepted"] > 0
    for key in ("gen_loss", "gen_loss_stderr", "prior_gen_loss", "accepted"):
        assert cp[key] == matrix[key]


@pytest.mark.parametrize("args, fragment", [
    (["gnc", "--task", "tensor-sensing", "--dims", "4,4,4"], "--task tensor-sensing needs --model cp"),
    (["gnc", "--model", "cp", "--dims", "4"], "at least two positive sizes"),
    (["gnc", "--model", "cp", "--dims", "4,x,4"], "comma-separated list"),
    (["gnc", "--model", "cp", "--task", "tensor-sensing", "--rows", 3], "--rows describe a matrix"),
    (["gnc", "--dims", "4,4,4"], "--dims needs --task"),
    (["gnc", "--model", "cp", "--dims", "2,2", "--task", "tensor-sensing", "--measurements", 4],
     "must be below the tensor's 4 entries"),
    (["gnc", "--model", "mlp", "--dims", "4,4,4"], "--dims need(s) --model factorization or cp"),
])
def test_bad_tensor_flags_are_one_line_exit_2(capsys, args, fragment):
    code, _, err = run(capsys, *args, "--width", 2, "--eps", 0.1, "--samples", 10)
    assert code == 2
    assert fragment in err and len(err.strip().splitlines()) == 1, err


def test_a_tensor_problem_file_needs_the_cp_model(capsys, tmp_path):
    path = tmp_path / "T.npz"
    assert run(capsys, "problem", "make", "--task", "tensor-sensing", "--dims", "3,3,3", "--rank", 1,
               "--measurements", 6, "--out", path)[0] == 0
    code, _, err = run(capsys, "gd", "--problem", path, "--width", 2, "--lr", 0.1, "--steps", 5)
    assert code == 2 and "order-3 tensor: use --model cp" in err
    code, _, err = run(capsys, "problem", "make", "--task", "tensor-sensing", "--rank", 1, "--measurements", 6,
                       "--out", path)
    assert code == 2 and "needs --dims" in err
