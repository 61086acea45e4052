"""NGD's population Fisher on MNIST-1D averages over the points held out of train and test (its InputPool)."""

from __future__ import annotations

import math

import pytest

import volumelab as vl
from volumelab.errors import ProblemError
from volumelab.models import MLPModel
from volumelab.problems import make_supervised


def test_population_ngd_runs_on_the_mnist1d_pool():
    problem = make_supervised("mnist1d", 30, seed=0, num_test=100)  # 2,000 - 130 held out
    model = MLPModel(problem.num_features, 8, 2)
    result = vl.NaturalGradientDescent(lr=0.1, init_scale=1.0, fisher="population", unlabeled=200,
                                       damping=1e-3).run(problem, model, 5, seed=0)
    assert problem.num_unlabeled == 1870 and result.status == "completed"
    assert math.isfinite(result.metrics["train_loss"]) and math.isfinite(result.metrics["test_error"])
    with pytest.raises(ProblemError, match="mnist1d: its 30 training and 1970 test points leave no unlabeled"):
        make_supervised("mnist1d", 30, seed=0).unlabeled_inputs(10, None)
