"""``--data mnist1d`` and ``--classes`` on the command line: issue 32's command forms at tiny sizes, and the
one-line errors (exit 2) for bad classes and a missing package."""

from __future__ import annotations

import json
import sys

import pytest

from volumelab.cli import main
from volumelab.problems import supervised
from volumelab.problems.supervised import mnist1d_arrays


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_gd_on_mnist1d_trains_on_the_pair(capsys):
    code, out, err = run(capsys, "gd", "--model", "mlp", "--data", "mnist1d", "--classes", "0,1", "--train", 40,
                         "--width", 16, "--depth", 3, "--init-scale", 1, "--lr", 0.1, "--steps", 30, "--seed", 1,
                         "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["problem"]["data"] == "mnist1d" and payload["problem"]["classes"] == [0, 1]
    assert payload["problem"]["train"] == 40 and payload["problem"]["test"] == 1960
    assert payload["problem"]["features"] == 40 and 0 <= payload["test_error"] <= 1


def test_ntk_on_mnist1d(capsys):
    code, out, err = run(capsys, "ntk", "--data", "mnist1d", "--classes", "0,1", "--train", 12, "--width", 16,
                         "--depth", 3, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["problem"]["classes"] == [0, 1] and payload["lambda_min"] > 0


@pytest.mark.parametrize("data, classes", [("digits", "1,7"), ("mnist1d", "2,5")])
def test_gnc_subset_with_no_training_errors(capsys, data, classes):
    """``gnc --accept train_error --eps 0 --method subset``: the draws with no training errors."""
    code, out, err = run(capsys, "gnc", "--model", "mlp", "--data", data, "--classes", classes, "--train", 6,
                         "--width", 8, "--accept", "train_error", "--eps", 0, "--method", "subset",
                         "--samples", 6000, "--population", 100, "--replicates", 2, "--json")
    assert code == 0, err
    payload = json.loads(out)
    assert payload["eps"] == 0 and payload["accept"] == "train_error" and payload["problem"]["classes"] == [
        int(c) for c in classes.split(",")]
    assert payload["status"] == "ok", payload.get("diagnostics", {}).get("reason")
    # The ladder is on the margin-broken error score, whose threshold for no errors is 1 / n.
    assert payload["train_error"] == 0.0 and payload["diagnostics"]["ladder"][-1] == 1 / 6


def test_classes_change_the_digits_data(capsys):
    base = ["gd", "--model", "mlp", "--data", "digits", "--train", 20, "--width", 4, "--lr", 0.1, "--steps", 1,
            "--json"]
    outputs = {}
    for classes in (None, "3,8", "1,7"):
        code, out, err = run(capsys, *base, *(["--classes", classes] if classes else []))
        assert code == 0, err
        outputs[classes] = json.loads(out)
    assert outputs[None]["problem"]["classes"] == outputs["3,8"]["problem"]["classes"] == [3, 8]
    assert outputs[None]["train_loss"] == outputs["3,8"]["train_loss"]
    assert outputs["1,7"]["problem"]["classes"] == [1, 7]
    assert outputs["1,7"]["problem"]["test"] != outputs[None]["problem"]["test"]  # 1s and 7s: another set


@pytest.mark.parametrize("args, fragment", [
    (["--data", "mnist1d", "--classes", "0,0"], "--classes': classes must be two different classes, got 0 twice"),
    (["--data", "mnist1d", "--classes", "0,10"], "--classes': classes must be digits from 0 to 9"),
    (["--data", "digits", "--classes", "3"], "--classes': '3' must give exactly two classes"),
    (["--data", "digits", "--classes", "a,b"], "not two comma-separated class labels"),
    (["--data", "breast_cancer", "--classes", "0,1"], "breast_cancer has none"),
    (["--classes", "0,1"], "teacher has none"),
])
def test_bad_classes_are_one_line_usage_errors(capsys, args, fragment):
    code, out, err = run(capsys, "gd", "--model", "mlp", "--train", 10, "--lr", 0.1, "--steps", 1, *args)
    assert code == 2 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("volumelab: error:") and fragment in lines[0], err


def test_classes_need_a_model_on_supervised_data(capsys):
    code, out, err = run(capsys, "gd", "--classes", "0,1", "--lr", 0.1, "--steps", 1)
    assert code == 2 and "--classes need(s) --model" in err and len(err.strip().splitlines()) == 1


def test_eps_zero_needs_the_training_error(capsys):
    code, out, err = run(capsys, "gnc", "--model", "mlp", "--data", "digits", "--train", 6, "--eps", 0,
                         "--samples", 100)
    assert code == 2 and out == "" and "'--eps': 0 needs --accept train_error" in err
    assert len(err.strip().splitlines()) == 1


def test_without_the_package_the_error_names_the_extra(capsys, monkeypatch):
    monkeypatch.setattr(supervised, "mnist1d_arrays", mnist1d_arrays.__wrapped__)  # not the cached arrays
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    code, out, err = run(capsys, "ntk", "--data", "mnist1d", "--train", 10)
    assert code == 2 and out == ""
    assert err.strip() == ("volumelab: error: the mnist1d data set needs the mnist1d package: "
                           "pip install 'volumelab[mnist1d]'")
