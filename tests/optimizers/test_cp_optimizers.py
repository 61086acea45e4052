"""G&C, GD and NGD on the CP model: at order 2 and depth 1 they give the matrix factorization's results.

The order-2 tensor problem is the matrix problem (tests/problems/test_tensor_problems.py) and the CP model of
``R`` components is the depth-2 matrix factorization of width ``R`` layer for layer (tests/models/test_cp.py).
G&C then draws and scores the same numbers: its results are equal, not close. GD's matrix path uses the
hand-written gradient while the CP model goes through autograd; against the matrix model on the autograd path
they are equal, and against the hand-written gradient equal to rounding.
"""

import pytest
import torch

from volumelab.models import CPModel, FactorizationModel
from volumelab.optimizers import GradientDescent, GuessCheck, NaturalGradientDescent
from volumelab.optimizers import gradient as gradient_module
from volumelab.problems import make_sensing, make_tensor_problem


def _pair(width, seed=3, task="sensing", measurements=15):
    tensor = make_tensor_problem(f"tensor-{task}", (5, 5), 1, measurements, seed=seed)
    matrix = make_sensing(5, 5, 1, measurements, seed=seed) if task == "sensing" else None
    if matrix is None:
        from volumelab.problems import make_completion

        matrix = make_completion(5, 5, 1, measurements, seed=seed)
    return (tensor, CPModel((5, 5), width)), (matrix, FactorizationModel(5, 5, width, 2))


@pytest.mark.parametrize("width, dtype, task", [(1, "float32", "sensing"), (1, "float64", "sensing"),
                                                (4, "float32", "sensing"), (3, "float32", "completion")])
def test_rejection_gnc_at_order_two_equals_the_matrix_results(width, dtype, task):
    (tensor, cp), (matrix, factorization) = _pair(width, task=task)
    gnc = GuessCheck(eps=0.05, sampler="direct", dtype=dtype)
    a, b = gnc.run(tensor, cp, 60_000, seed=1), gnc.run(matrix, factorization, 60_000, seed=1)
    assert a.metrics["accepted"] > 50
    assert a.metrics == b.metrics and a.standard_errors == b.standard_errors


def test_subset_gnc_at_order_two_equals_the_matrix_results():
    (tensor, cp), (matrix, factorization) = _pair(1)
    gnc = GuessCheck(eps=0.02, method="subset", population=200, replicates=3)
    a, b = gnc.run(tensor, cp, 30_000, seed=2), gnc.run(matrix, factorization, 30_000, seed=2)
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics and a.standard_errors == b.standard_errors


@pytest.mark.parametrize("width", [1, 4])
def test_gd_at_order_two_equals_the_matrix_results(width, monkeypatch):
    (tensor, cp), (matrix, factorization) = _pair(width)
    gd = GradientDescent(lr=1e-3, init_scale=1e-3, step_rule="group_rmsprop")
    a = gd.run(tensor, cp, 2000, seed=1)
    closed_form = gd.run(matrix, factorization, 2000, seed=1)
    assert a.metrics["train_loss"] < 1e-3
    # Equal to rounding at this step size. At lr 1e-2 the adaptive step's late oscillation amplifies the
    # paths' ~1e-16 differences to ~30% of a 1e-6 loss, so the exact comparison is the autograd one below.
    for key in ("train_loss", "gen_loss"):
        assert a.metrics[key] == pytest.approx(closed_form.metrics[key], rel=1e-9)
    # The matrix model through autograd, the path the CP model takes: equal.
    monkeypatch.setattr(gradient_module, "_ClosedFormObjective", gradient_module._AutogradObjective)
    autograd = gd.run(matrix, factorization, 2000, seed=1)
    assert a.metrics["train_loss"] == autograd.metrics["train_loss"]
    assert a.metrics["gen_loss"] == autograd.metrics["gen_loss"]


def test_ngd_at_order_two_equals_the_matrix_results():
    (tensor, cp), (matrix, factorization) = _pair(3)
    ngd = NaturalGradientDescent(lr=0.2, init_scale=0.1, damping=1e-3)
    a, b = ngd.run(tensor, cp, 60, seed=0), ngd.run(matrix, factorization, 60, seed=0)
    assert a.status == b.status == "completed"
    for key in ("train_loss", "gen_loss"):
        assert a.metrics[key] == pytest.approx(b.metrics[key], rel=1e-9, abs=1e-15)


def test_order_three_runs_through_every_optimizer():
    problem = make_tensor_problem("tensor-sensing", (3, 3, 3), 1, 8, seed=0)
    model = CPModel((3, 3, 3), 4)
    gnc = GuessCheck(eps=0.02).run(problem, model, 20_000, seed=0)
    assert gnc.metrics["accepted"] > 0 and gnc.metrics["gen_loss"] < gnc.metrics["prior_gen_loss"]
    gd = GradientDescent(lr=1e-2, init_scale=1e-2, step_rule="group_rmsprop").run(problem, model, 2000, seed=0)
    assert gd.metrics["train_loss"] < 1e-4
    # GD generalizes: below half the chance level, the bound of the paper's width rule for GD.
    assert gd.metrics["gen_loss"] < 0.5 * gnc.metrics["prior_gen_loss"]
    ngd = NaturalGradientDescent(lr=0.5, init_scale=0.1, fisher="output").run(problem, CPModel((3, 3, 3), 2, 2),
                                                                            20, seed=0)
    assert ngd.status == "completed" and torch.isfinite(torch.tensor(ngd.metrics["gen_loss"]))
