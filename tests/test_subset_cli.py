"""``volumelab gnc --method subset``: the library's result as JSON, the keys scripts read, one-line errors."""

import json
import math

import pytest

import volumelab as vl
from volumelab.cli import main
from volumelab.models import FactorizationModel, MLPModel
from volumelab.problems import make_supervised
from volumelab.problems.core import make_sensing

SENSING = ["gnc", "--task", "sensing", "--rows", 4, "--cols", 4, "--measurements", 6, "--width", 3, "--depth", 2,
           "--seed", 1]


def run(capsys, *args):
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, out, err


def test_subset_json_equals_the_library_and_has_the_promised_keys(capsys):
    code, out, _ = run(capsys, *SENSING, "--eps", 0.02, "--samples", 40_000, "--method", "subset", "--population",
                       200, "--json")
    assert code == 0
    payload = json.loads(out)
    expected = vl.GuessCheck(eps=0.02, method="subset", population=200).run(
        make_sensing(4, 4, 1, 6, seed=1), FactorizationModel(4, 4, 3, 2), 40_000, seed=1)
    for key in ("gen_loss", "gen_loss_stderr", "prior_gen_loss", "prior_gen_loss_stderr", "train_loss",
                "log_volume", "log_volume_stderr", "ess", "rhat", "evaluations", "min_eps_reached"):
        assert key in payload, key
    assert payload["gen_loss"] == expected.metrics["gen_loss"]
    assert payload["log_volume"] == expected.metrics["log_volume"]
    assert payload["log_volume_stderr"] == expected.standard_errors["log_volume"]
    assert payload["ess"] == expected.metrics["ess"] > 0
    assert payload["method"] == "gnc" and payload["diagnostics"]["method"] == "subset"
    assert len(payload["diagnostics"]["levels"]) == len(payload["diagnostics"]["ladder"])


def test_rejection_prints_log_volume_and_null_without_acceptance(capsys):
    _, out, _ = run(capsys, *SENSING, "--eps", 0.05, "--samples", 20_000, "--json")
    payload = json.loads(out)
    assert payload["accepted"] > 0
    assert payload["log_volume"] == pytest.approx(math.log(payload["acceptance_rate"]))
    assert payload["ess"] == payload["accepted"]
    _, out, _ = run(capsys, *SENSING, "--eps", 1e-9, "--samples", 2_000, "--json")
    payload = json.loads(out)
    assert payload["accepted"] == 0 and payload["log_volume"] is None and payload["log_volume_stderr"] is None


def test_subset_on_an_mlp_classifier_runs_through_the_cli(capsys):
    """Any model family of the core: an MLP's layers are the latent Gaussian's image."""
    args = ["gnc", "--model", "mlp", "--data", "digits", "--train", 8, "--width", 8, "--depth", 2, "--seed", 2,
            "--eps", 0.6, "--samples", 30_000, "--method", "subset", "--population", 200, "--json"]
    code, out, _ = run(capsys, *args)
    assert code == 0
    payload = json.loads(out)
    problem = make_supervised("digits", 8, seed=2)
    expected = vl.GuessCheck(eps=0.6, method="subset", population=200).run(
        problem, MLPModel(problem.num_features, 8, 2), 30_000, seed=2)
    assert payload["gen_loss"] == expected.metrics["gen_loss"]
    assert payload["test_error"] == expected.metrics["test_error"]


@pytest.mark.parametrize("extra,message", [
    (["--method", "subset", "--replicates", 1], "--replicates"),
    (["--method", "subset", "--level-fraction", 1.5], "--level-fraction"),
    (["--method", "mcmc"], "--method"),
    (["--method", "subset", "--keep-samples", 3, "--save", "x.npz"], "--keep-samples works with --method rejection"),
])
def test_bad_subset_options_exit_2_with_one_line(capsys, extra, message):
    code, _, err = run(capsys, *SENSING, "--eps", 0.02, "--samples", 1000, *extra)
    assert code == 2
    assert message in err


def test_independent_ladders_through_the_cli_equal_the_library_and_say_so(capsys):
    """``--independent-ladders``: the JSON equals the library's result, and the text names the ladders."""
    args = [*SENSING, "--eps", 0.02, "--samples", 60_000, "--method", "subset", "--population", 100,
            "--independent-ladders"]
    code, out, _ = run(capsys, *args, "--json")
    assert code == 0
    payload = json.loads(out)
    expected = vl.GuessCheck(eps=0.02, method="subset", population=100, independent_ladders=True).run(
        make_sensing(4, 4, 1, 6, seed=1), FactorizationModel(4, 4, 3, 2), 60_000, seed=1)
    assert payload["status"] == expected.status == "ok"
    assert payload["log_volume"] == expected.metrics["log_volume"]
    assert payload["log_volume_stderr"] == expected.standard_errors["log_volume"]
    assert payload["diagnostics"]["independent_ladders"] is True and len(payload["diagnostics"]["ladder"]) == 8
    code, out, _ = run(capsys, *args)
    assert code == 0 and "over 8 independent ladders of" in out
