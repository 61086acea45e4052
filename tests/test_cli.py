"""The volumelab command: exact forms from the core issue, JSON keys, one-line errors."""

import json
import subprocess
import sys

import pytest

from volumelab.cli import main

GNC_KEYS = {"gen_loss", "gen_loss_stderr", "prior_gen_loss", "prior_gen_loss_stderr", "accepted", "samples",
            "acceptance_rate"}
GD_KEYS = {"gen_loss", "train_loss", "steps", "status"}


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def problem_file(tmp_path, capsys):
    path = tmp_path / "P.npz"
    code, out, _ = run(capsys, "problem", "make", "--task", "sensing", "--rows", 5, "--cols", 5, "--rank", 1,
                       "--measurements", 15, "--seed", 0, "--out", path)
    assert code == 0 and path.is_file() and "wrote" in out
    return path


def test_gnc_json(capsys, problem_file):
    code, out, _ = run(capsys, "gnc", "--problem", problem_file, "--width", 10, "--depth", 2, "--activation",
                       "tanh", "--prior", "gaussian", "--eps", 0.1, "--samples", 20000, "--seed", 3, "--json")
    assert code == 0
    payload = json.loads(out)
    assert GNC_KEYS <= set(payload)
    assert payload["samples"] == 20000 and payload["accepted"] > 0
    assert payload["acceptance_rate"] == payload["accepted"] / 20000


def test_gnc_with_generation_flags_equals_problem_file(capsys, problem_file):
    common = ["--width", 5, "--eps", 0.1, "--samples", 5000, "--seed", 0, "--json", "--normalize"]
    _, from_file, _ = run(capsys, "gnc", "--problem", problem_file, *common)
    _, generated, _ = run(capsys, "gnc", "--task", "sensing", "--rows", 5, "--cols", 5, "--rank", 1,
                          "--measurements", 15, *common)
    first, second = json.loads(from_file), json.loads(generated)
    assert first["gen_loss"] == second["gen_loss"] and first["prior_gen_loss"] == second["prior_gen_loss"]


@pytest.mark.parametrize("optimizer", ["gd", "group_rmsprop", "momentum"])
def test_gd_json(capsys, problem_file, optimizer):
    code, out, _ = run(capsys, "gd", "--problem", problem_file, "--width", 10, "--depth", 2, "--activation",
                       "linear", "--init-scale", 1e-3, "--lr", 1e-2, "--steps", 50, "--optimizer", optimizer,
                       "--seed", 0, "--json")
    assert code == 0
    payload = json.loads(out)
    assert GD_KEYS <= set(payload) and payload["steps"] == 50 and payload["status"] == "completed"


def test_human_output_and_no_acceptance(capsys):
    code, out, _ = run(capsys, "gnc", "--width", 5, "--eps", 1e-6, "--samples", 2000)
    assert code == 0
    assert "G&C generalization loss:   undefined" in out and "no draw was accepted" in out
    code, out, _ = run(capsys, "gnc", "--width", 5, "--eps", 1e-6, "--samples", 2000, "--json")
    payload = json.loads(out)
    assert payload["status"] == "no_acceptance" and payload["gen_loss"] is None


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["gnc", "--width", 5, "--eps", 0, "--samples", 10], "--eps"),
        (["gnc", "--width", 5, "--eps", 0.1, "--samples", 10, "--activation", "gelu"], "--activation"),
        (["gnc", "--width", 5, "--eps", 0.1, "--samples", "1.5e3.5"], "--samples"),
        (["gnc", "--width", 5, "--eps", 0.1, "--samples", 10, "--bogus"], "--bogus"),
        (["gnc", "--problem", "/no/such/file.npz", "--width", 5, "--eps", 0.1, "--samples", 10], "does not exist"),
        (["gnc", "--width", 5, "--eps", 0.1, "--samples", 10, "--measurements", 25], "measurements = 25"),
        (["gnc", "--width", 5, "--eps", 0.1, "--samples", 10, "--rank", 9], "rank 9 exceeds"),
        (["gd", "--width", 5, "--lr", 0.1, "--steps", 10, "--optimizer", "nadam"], "--optimizer"),
        (["gd", "--width", 5, "--lr", 0.1, "--steps", 10, "--optimizer", "adam", "--momentum", 0.5],
         "momentum 0.5 does not apply to step_rule adam"),
        (["gd", "--width", 5, "--lr", 0.1, "--steps", 10, "--batch-size", 4], "batch_size 4 needs supervised data"),
        (["gd", "--data", "digits", "--model", "mlp", "--train", 16, "--lr", 0.1, "--steps", 10, "--batch-size", 17],
         "batch_size 17 is more than the 16 training points"),
        (["ngd", "--data", "digits", "--model", "mlp", "--train", 16, "--lr", 0.1, "--steps", 10, "--batch-size", 4],
         "batch_size 4 does not apply to NGD"),
        (["gd", "--width", 5, "--lr", -1, "--steps", 10], "--lr"),
        (["problem", "make", "--task", "sensing", "--rows", 5, "--cols", 5, "--rank", 1, "--measurements", 15],
         "--out"),
        (["frobnicate"], "frobnicate"),
    ],
)
def test_bad_input_is_one_line_exit_2(capsys, args, fragment):
    code, out, err = run(capsys, *args)
    assert code == 2
    assert out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("volumelab: error:") and fragment in lines[0]


def test_problem_conflicting_with_generation_flags(capsys, problem_file):
    code, _, err = run(capsys, "gnc", "--problem", problem_file, "--rows", 4, "--width", 5, "--eps", 0.1,
                       "--samples", 10)
    assert code == 2 and "--problem cannot be combined with --rows" in err


def test_bad_problem_file_is_one_line(capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"garbage")
    code, _, err = run(capsys, "gd", "--problem", bad, "--width", 5, "--lr", 0.1, "--steps", 1)
    assert code == 2 and len(err.strip().splitlines()) == 1 and "is not a volumelab problem file" in err


def test_problem_show(capsys, problem_file):
    code, out, _ = run(capsys, "problem", "show", problem_file, "--json")
    assert code == 0 and json.loads(out)["measurements"] == 15


def test_demo_small(capsys):
    code, out, _ = run(capsys, "demo", "--samples", 20000)
    assert code == 0
    assert "G&C generalization loss" in out and "GD generalization loss" in out


def test_console_script_entry_point():
    completed = subprocess.run([sys.executable, "-m", "volumelab.cli", "--version"], capture_output=True, text=True)
    assert completed.returncode == 0 and "volumelab" in completed.stdout


@pytest.mark.slow
def test_gd_beats_gnc_at_width_40_from_the_cli(capsys, problem_file):
    """Core issue, "Done when": 5x5 rank-1 sensing, 15 measurements, width 40, eps 0.02."""
    _, out, _ = run(capsys, "gnc", "--problem", problem_file, "--width", 40, "--depth", 2, "--activation", "linear",
                    "--prior", "gaussian", "--eps", 0.02, "--samples", 3_000_000, "--seed", 0, "--json")
    gnc = json.loads(out)
    _, out, _ = run(capsys, "gd", "--problem", problem_file, "--width", 40, "--depth", 2, "--activation", "linear",
                    "--init-scale", 1e-3, "--lr", 1e-2, "--steps", 5000, "--optimizer", "group_rmsprop", "--seed", 0,
                    "--json")
    gd = json.loads(out)
    assert gnc["accepted"] >= 10
    assert gd["status"] == "completed"
    # "Well below": GD's loss is under G&C's by more than 4 of G&C's standard errors and by 10x.
    assert gd["gen_loss"] < gnc["gen_loss"] - 4 * gnc["gen_loss_stderr"]
    assert gd["gen_loss"] < 0.1 * gnc["gen_loss"]
