"""`volumelab ngd`: the `gd` keys, its own options, failures as a status with a reason, sweeps."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

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


def test_init_balanced_starts_every_depth_from_one_matrix(capsys, tmp_path):
    """`--init balanced` (also `--initialization`): depths 1 and 3 start from the same W(0); `--init random` is the
    default, the same run as without the flag."""
    common = ["--width", 5, "--init-scale", 0.2, "--lr", 1e-3, "--steps", 0, "--json", "--damping", 1e-6]
    starts = {}
    for depth in (1, 3):
        code, out, err = run(capsys, "ngd", *common, "--depth", depth, "--init", "balanced",
                             "--save", tmp_path / f"d{depth}.npz")
        assert code == 0, err
        starts[depth] = json.loads(out)
    assert starts[1]["train_loss"] == pytest.approx(starts[3]["train_loss"], rel=1e-12)
    assert starts[1]["gen_loss"] == pytest.approx(starts[3]["gen_loss"], rel=1e-12)
    one, three = (np.load(tmp_path / f"d{depth}.npz")["W"] for depth in (1, 3))
    np.testing.assert_allclose(three, one, rtol=1e-12, atol=1e-15)
    assert starts[3]["diagnostics"]["initialization"] == "balanced"
    default = json.loads(run(capsys, "gd", "--depth", 3, *common[:-2])[1])
    named = json.loads(run(capsys, "gd", "--depth", 3, *common[:-2], "--initialization", "random")[1])
    assert default["train_loss"] == named["train_loss"] != pytest.approx(starts[3]["train_loss"], rel=1e-6)


@pytest.mark.parametrize("command", ["gd", "ngd"])
@pytest.mark.parametrize("flags, message", [
    (["--width", 3, "--depth", 2], "needs width >= min(rows, cols) = 5"),
    (["--width", 5, "--depth", 2, "--activation", "tanh"], "needs a linear factorization"),
    (["--model", "mlp", "--data", "teacher", "--depth", 2], "needs a deep linear network"),
    (["--model", "cp", "--task", "tensor-sensing", "--dims", "3,3,3"], "not for a cp model"),
])
def test_init_balanced_on_a_model_without_one_is_a_one_line_error(capsys, command, flags, message):
    code, out, err = run(capsys, command, *flags, "--lr", 0.1, "--steps", 5, "--init", "balanced")
    assert code == 2 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("volumelab: error: ") and message in err


def test_fishers_by_what_they_average_over(capsys):
    """--fisher population|train|output [--unlabeled M]: the JSON keys stay; population is output's other name on a
    factorization (the same numbers); bad combinations are one line and exit code 2."""
    mlp = ["--model", "mlp", "--data", "teacher", "--train", 20, "--width", 4, "--init-scale", 0.5, "--lr", 0.1,
           "--steps", 3, "--json"]
    for fisher, unlabeled in (("population", 64), ("train", 16), ("train", None)):
        extra = ["--fisher", fisher] + (["--unlabeled", unlabeled] if unlabeled else [])
        code, out, err = run(capsys, "ngd", *mlp, *extra)
        assert code == 0, err
        payload = json.loads(out)
        assert {"gen_loss", "train_loss", "steps", "status"} <= set(payload) and payload["status"] == "completed"
        assert payload["diagnostics"]["fisher"] == fisher and payload["diagnostics"]["unlabeled"] == (unlabeled or 0)
    factorization = ["--width", 4, "--init-scale", 0.3, "--lr", 0.1, "--steps", 5, "--json"]
    population = json.loads(run(capsys, "ngd", *factorization, "--fisher", "population")[1])
    output = json.loads(run(capsys, "ngd", *factorization, "--fisher", "output")[1])
    for key in ("gen_loss", "train_loss", "steps", "status"):
        assert population[key] == output[key]
    for args, words in (
            ([*factorization, "--fisher", "population", "--unlabeled", 8], "unlabeled=8 needs supervised data"),
            ([*mlp, "--fisher", "output"], "fisher='output' needs a model"),
            ([*mlp, "--fisher", "output", "--unlabeled", 3], "does not apply to fisher='output'"),
            ([*mlp, "--fisher", "population", "--unlabeled", 0], "at least 1"),
            (["--model", "mlp", "--data", "digits", "--lr", 0.1, "--steps", 2, "--fisher", "population"],
             "hold some out")):
        code, out, err = run(capsys, "ngd", *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err


def test_ngd_flow_from_the_command_line(capsys):
    """`volumelab ngd ... --flow`: the flow up to lr x steps, with the JSON keys of a step run."""
    common = ["--task", "completion", "--rows", 5, "--cols", 5, "--measurements", 15, "--width", 5, "--depth", 3,
              "--fisher", "population", "--init", "balanced", "--init-scale", 0.3, "--lr", 0.01, "--steps", 100,
              "--json"]
    code, out, err = run(capsys, "ngd", *common, "--flow")
    assert code == 0, err
    flowed = json.loads(out)
    assert {"gen_loss", "train_loss", "steps", "status"} <= set(flowed) and flowed["status"] == "completed"
    assert flowed["steps"] == 100 and flowed["flow_steps"] > 0
    stepped = json.loads(run(capsys, "ngd", *common)[1])
    assert stepped["gen_loss"] == pytest.approx(flowed["gen_loss"], rel=0.05)
    code, out, err = run(capsys, "ngd", *common, "--flow", "--momentum", 0.5)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "momentum" in err


def test_unobserved_entries_and_curvature_damping_from_the_command_line(capsys):
    """--unobserved M on a completion task (the family between the training and the population Fisher) and
    --damping-scale curvature on a logistic task: the JSON keys stay and the diagnostics say what ran; M = 0 is the
    training Fisher's run exactly; bad combinations are one line and exit code 2."""
    completion = ["--task", "completion", "--rows", 5, "--cols", 5, "--measurements", 12, "--width", 5, "--depth", 2,
                  "--init-scale", 0.3, "--lr", 0.1, "--steps", 5, "--json"]
    runs = {}
    for extra in ((), ("--unobserved", 0), ("--unobserved", 6)):
        code, out, err = run(capsys, "ngd", *completion, *extra)
        assert code == 0, err
        runs[extra] = json.loads(out)
        assert {"gen_loss", "train_loss", "steps", "status"} <= set(runs[extra])
    assert runs[("--unobserved", 6)]["diagnostics"]["unobserved"] == 6
    assert runs[("--unobserved", 0)]["gen_loss"] == runs[()]["gen_loss"]
    assert runs[("--unobserved", 6)]["gen_loss"] != runs[()]["gen_loss"]
    logistic = ["--model", "diagonal", "--data", "sparse_teacher", "--train", 10, "--loss", "logistic",
                "--init-scale", 0.1, "--lr", 0.2, "--steps", 5, "--fisher", "population", "--unlabeled", 64, "--json"]
    code, out, err = run(capsys, "ngd", *logistic, "--damping-scale", "curvature")
    assert code == 0, err
    assert json.loads(out)["diagnostics"]["damping_scale"] == "curvature"
    for args, words in (
            ([*completion, "--fisher", "population", "--unobserved", 3], "adds entries to fisher='train'"),
            ([*completion, "--unobserved", 20], "more than the task's 13 unobserved entries"),
            (["--width", 4, "--lr", 0.1, "--steps", 2, "--unobserved", 2], "needs a completion task"),
            ([*logistic, "--damping-scale", "trace"], "trace")):
        code, out, err = run(capsys, "ngd", *args)
        assert code == 2 and words in err and len(err.strip().splitlines()) == 1, err
