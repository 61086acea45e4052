"""``volumelab gnc --accept``: the library's result, echoed in the JSON; one-line usage errors."""

import json

import pytest

import volumelab as vl
from volumelab.cli import main
from volumelab.models import MLPModel
from volumelab.problems import make_supervised

MLP = ["gnc", "--model", "mlp", "--data", "digits", "--train", 8, "--width", 16, "--depth", 2, "--samples", 1500,
       "--seed", 2]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_accept_train_error_json_equals_the_library(capsys):
    code, out, _ = run(capsys, *MLP, "--eps", 0.125, "--accept", "train_error", "--json")
    assert code == 0
    payload = json.loads(out)
    problem = make_supervised("digits", 8, seed=2)
    expected = vl.GuessCheck(eps=0.125, accept="train_error").run(problem, MLPModel(problem.num_features, 16, 2),
                                                                  1500, seed=2)
    assert payload["accept"] == "train_error" and payload["accepted"] == expected.metrics["accepted"] > 0
    assert payload["gen_loss"] == expected.metrics["gen_loss"] and payload["train_error"] == 0.0


def test_accept_defaults_to_train_loss_and_keeps_the_keys(capsys):
    _, default, _ = run(capsys, *MLP, "--eps", 0.6, "--json")
    _, explicit, _ = run(capsys, *MLP, "--eps", 0.6, "--accept", "train_loss", "--json")
    first, second = json.loads(default), json.loads(explicit)
    first["diagnostics"].pop("seconds"), second["diagnostics"].pop("seconds")
    first["diagnostics"].pop("draws_per_second"), second["diagnostics"].pop("draws_per_second")
    assert first == second and first["accept"] == "train_loss"


@pytest.mark.parametrize("args, message", [
    (["--accept", "train_accuracy"], "Invalid value for '--accept'"),
    (["--task", "sensing"], "--accept train_error needs a classification task"),
    (["--model", "mlp", "--data", "teacher"], "--accept train_error needs a classification task"),
    (["--model", "mlp", "--data", "digits", "--loss", "squared"], "--accept train_error needs a classification task"),
])
def test_bad_accept_is_a_one_line_usage_error(capsys, args, message):
    accept = [] if "--accept" in args else ["--accept", "train_error"]
    code, out, err = run(capsys, "gnc", "--width", 4, "--eps", 0.1, "--samples", 100, *accept, *args)
    assert code == 2 and out == ""
    assert message in err and len(err.strip().splitlines()) == 1
