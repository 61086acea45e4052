"""Every built-in procedure returns what its result schema declares, and the G&C estimators are separate
objects with their own settings behind the one ``GuessCheck`` entry point."""

from __future__ import annotations

import dataclasses

import pytest

import volumelab as vl
from volumelab.errors import OptimizerError
from volumelab.experiments.methods import get_method
from volumelab.optimizers import (
    GradientDescent,
    GuessCheck,
    NaturalGradientDescent,
    RejectionGuessCheck,
    SubsetGuessCheck,
    estimators,
)
from volumelab.optimizers.conditioning import ConditionalEstimator
from volumelab.settings import setting_fields
from volumelab.optimizers.observers import FinalOutputs
from volumelab.diagnostics.ntk import NTKLaziness


@pytest.fixture(scope="module")
def classification():
    return vl.make_supervised("digits", 20, seed=0, loss="logistic", num_test=40)


def _matrix(problem):
    return vl.FactorizationModel(problem.rows, problem.cols, 4, 2)


def _mlp(problem):
    return vl.MLPModel(problem.num_features, 8, 2)


@pytest.mark.parametrize("accept", ["train_loss", "train_error"])
def test_the_gnc_estimators_return_only_declared_metrics(sensing_problem, classification, accept):
    cases = [(classification, _mlp(classification), 0.6)]
    if accept == "train_loss":
        cases.append((sensing_problem, _matrix(sensing_problem), 0.3))
    for problem, model, eps in cases:
        for estimator, budget in ((RejectionGuessCheck(eps=eps, accept=accept, keep_samples=2), 4096),
                                  (SubsetGuessCheck(eps=eps / 3, accept=accept, population=50, replicates=2), 4000),
                                  (SubsetGuessCheck(eps=1e-9, accept="train_loss", population=20, replicates=2),
                                   300),
                                  (RejectionGuessCheck(eps=1e-12), 64)):
            result = estimator.run(problem, model, budget, seed=1)
            assert estimator.schema.undeclared(result) == [], (type(estimator).__name__, result.status)
            assert estimator.schema.lines(result, "test loss")  # its text reads every status it returns


def test_the_trainers_return_only_declared_metrics(sensing_problem, classification):
    for optimizer in (GradientDescent(lr=0.1, init_scale=1.0), NaturalGradientDescent(lr=0.1, init_scale=1.0),
                      GradientDescent(lr=1e9, init_scale=1.0)):
        for problem, model in ((sensing_problem, _matrix(sensing_problem)), (classification, _mlp(classification))):
            result = optimizer.run(problem, model, 5, seed=0, observers=[NTKLaziness(), FinalOutputs()])
            assert optimizer.schema.undeclared(result) == [], (optimizer, result.status)
            assert optimizer.schema.lines(result)
    linear = vl.make_supervised("teacher", 10, seed=0, loss="logistic", num_features=4)
    from volumelab.models import DiagonalNetwork

    diagonal = DiagonalNetwork(4, depth=2)
    result = GradientDescent(lr=0.1, init_scale=1.0).run(linear, diagonal, 5)
    assert {"sparsity", "margin_l2"} <= set(result.metrics) and not GradientDescent.schema.undeclared(result)


def test_a_schema_names_what_it_does_not_declare():
    result = vl.RunResult("gnc", "odd", {"gen_loss": 1.0, "mystery": 2}, {"riddle": 0.1})
    assert RejectionGuessCheck.schema.undeclared(result) == ["mystery", "riddle (standard error)", "status 'odd'"]
    with pytest.raises(KeyError, match="'mystery' is not a declared metric"):
        RejectionGuessCheck.schema.meaning("mystery")


def test_every_metric_column_of_a_sweep_has_a_declared_meaning():
    """results.csv's metric columns of G&C, GD and NGD are declared (with their meaning) by the procedures'
    schemas, so the table's documentation is the schemas."""
    declared = {name for estimator in estimators().values() for name in estimator.schema.names()}
    columns = [column.key or column.name for column in get_method("gnc").columns if column.source == "metric"]
    assert columns and set(columns) <= declared
    for method in ("gd", "ngd"):
        columns = [column.key or column.name for column in get_method(method).columns if column.source == "metric"]
        assert columns and set(columns) <= set(GradientDescent.schema.names()), method


def test_each_estimator_has_only_its_own_settings():
    rejection, subset = set(setting_fields(RejectionGuessCheck)), set(setting_fields(SubsetGuessCheck))
    assert rejection & subset == {"accept"}  # the conditioning every estimator shares
    assert {"sampler", "batch_size", "keep_samples"} <= rejection and not rejection & {"population", "kernel"}
    assert {"population", "level_fraction", "replicates", "kernel", "moves"} <= subset
    # The shared part is the base class; the entry point holds the union of the built-ins' fields, no more.
    union = {item.name for cls in (RejectionGuessCheck, SubsetGuessCheck) for item in dataclasses.fields(cls)}
    assert {item.name for item in dataclasses.fields(GuessCheck)} == union | {"method"}
    assert issubclass(RejectionGuessCheck, ConditionalEstimator) and issubclass(SubsetGuessCheck,
                                                                                 ConditionalEstimator)


def test_guess_check_runs_the_estimator_its_method_names_with_its_settings(sensing_problem):
    model = _matrix(sensing_problem)
    entry = GuessCheck(eps=0.1, method="subset", population=60, replicates=3, kernel="slice", sampler="direct")
    assert entry.estimator() == SubsetGuessCheck(eps=0.1, population=60, replicates=3, kernel="slice")
    assert entry.run(sensing_problem, model, 3000, seed=2).metrics == \
        SubsetGuessCheck(eps=0.1, population=60, replicates=3, kernel="slice").run(
            sensing_problem, model, 3000, seed=2).metrics
    plain = GuessCheck(eps=0.3, batch_size=256)
    assert plain.estimator() == RejectionGuessCheck(eps=0.3, batch_size=256)
    # Every setting is checked whichever method runs, as before the split.
    with pytest.raises(OptimizerError, match="population must be an integer >= 10"):
        GuessCheck(eps=0.1, population=5)
    with pytest.raises(OptimizerError, match="dtype must be one of"):
        GuessCheck(eps=0.1, method="subset", dtype="float16")
    with pytest.raises(OptimizerError, match="keep_samples is only available with method='rejection'"):
        GuessCheck(eps=0.1, method="subset", keep_samples=3)
    with pytest.raises(OptimizerError, match="method must be one of rejection, subset"):
        GuessCheck(eps=0.1, method="importance")
