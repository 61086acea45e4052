"""Supervised problems: losses against plain loops, splits from the seed, bundled data sets."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volumelab._rng import make_generator
from volumelab.errors import ProblemError
from volumelab.problems import load_problem
from volumelab.problems.supervised import SupervisedProblem, make_supervised


def _loop_losses(problem: SupervisedProblem, outputs: list[float]) -> dict[str, float]:
    """The losses written out with Python floats, one point at a time."""
    targets = problem.y_train.tolist() + problem.y_test.tolist()
    n = problem.num_train

    def point(f, y):
        return (f - y) ** 2 if problem.loss == "squared" else math.log1p(math.exp(-y * f))

    values = [point(f, y) for f, y in zip(outputs, targets)]
    result = {"train_loss": sum(values[:n]) / n, "gen_loss": sum(values[n:]) / (len(values) - n)}
    if problem.loss == "logistic":
        wrong = [float(y * f <= 0) for f, y in zip(outputs, targets)]
        result["train_error"] = sum(wrong[:n]) / n
        result["test_error"] = sum(wrong[n:]) / (len(wrong) - n)
    return result


@pytest.mark.parametrize("data,loss", [("teacher", "squared"), ("teacher", "logistic"), ("digits", None),
                                       ("breast_cancer", None), ("diabetes", "squared"), ("diabetes", "logistic")])
def test_batched_losses_equal_a_plain_loop(data, loss):
    problem = make_supervised(data, 40, seed=3, loss=loss, num_test=30)
    generator = torch.Generator().manual_seed(1)
    outputs = torch.randn(5, 70, generator=generator, dtype=torch.float64) * 2
    batched = problem.losses(outputs)
    for row in range(5):
        expected = _loop_losses(problem, outputs[row].tolist())
        assert set(batched) == set(expected)
        for key, value in expected.items():
            assert batched[key][row].item() == pytest.approx(value, rel=1e-12, abs=1e-15)


def test_split_depends_on_the_seed_only_and_is_standardized():
    first = make_supervised("breast_cancer", 100, seed=5)
    again = make_supervised("breast_cancer", 100, seed=5)
    other = make_supervised("breast_cancer", 100, seed=6)
    assert torch.equal(first.X_train, again.X_train) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.X_train, other.X_train)
    assert first.num_train == 100 and first.num_train + first.num_test == 569  # the whole data set
    torch.testing.assert_close(first.X_train.mean(0), torch.zeros(30, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(first.X_train.std(0, unbiased=False), torch.ones(30, dtype=torch.float64),
                               atol=1e-12, rtol=0)
    assert set(first.y_train.tolist()) == {-1.0, 1.0} and first.loss == "logistic"


def test_digits_keeps_two_classes():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    problem = make_supervised("digits", 50, seed=0, classes=(3, 8))
    assert problem.num_train + problem.num_test == int(np.isin(bunch.target, (3, 8)).sum())
    assert problem.num_features == 64 and set(problem.y_test.tolist()) == {-1.0, 1.0}


def test_teacher_labels_follow_the_teacher():
    """Noise-free labels are the sign of the teacher's output: a threshold on the regression targets."""
    regression = make_supervised("teacher", 200, seed=2, num_test=100, noise=0.0)
    labels = make_supervised("teacher", 200, seed=2, num_test=100, noise=0.0, loss="logistic")
    assert torch.equal(regression.X_train, labels.X_train)  # the same draws and split
    targets = torch.cat([regression.y_train, regression.y_test])
    signs = torch.cat([labels.y_train, labels.y_test])
    assert set(signs.tolist()) == {-1.0, 1.0}
    # Standardizing is increasing, so sign(raw) is one threshold on the standardized targets.
    assert targets[signs < 0].max() < targets[signs > 0].min()


@pytest.mark.parametrize("kwargs,match", [
    ({"data": "mnist"}, "unknown data set"),
    ({"data": "teacher", "loss": "hinge"}, "unknown loss"),
    ({"data": "breast_cancer", "num_train": 569}, "leaves none to test"),
    ({"data": "breast_cancer", "num_train": 0}, "positive integer"),
    ({"data": "teacher", "noise": -1.0}, "noise"),
    ({"data": "teacher", "num_features": 0}, "num_features must be a positive integer"),
    ({"data": "sparse_teacher", "num_features": 2.5}, "num_features must be a positive integer"),
    ({"data": "teacher", "teacher_width": 0}, "teacher_width must be a positive integer"),
])
def test_bad_arguments_are_clear_errors(kwargs, match):
    kwargs = {"num_train": 10, **kwargs}
    with pytest.raises(ProblemError, match=match):
        make_supervised(**kwargs)


def test_logistic_needs_plus_minus_one_labels():
    with pytest.raises(ProblemError, match="labels -1 and \\+1"):
        SupervisedProblem(np.zeros((2, 1)), np.array([0.0, 1.0]), np.zeros((1, 1)), np.array([1.0]), loss="logistic")


# ---------------------------------------------------------------- unlabeled inputs
def test_a_teachers_unlabeled_inputs_follow_its_standardized_input_distribution():
    """x = (z - mu) / sigma with z ~ N(0, I) raw inputs and (mu, sigma) the training standardization: mapped back
    by the unlabeled source, the training inputs are the raw draws again, standard Gaussian (mean and variance
    within 5 standard errors); a linear teacher's inputs are not standardized (mean 0, scale 1)."""
    from volumelab.problems import GaussianInputs

    problem = make_supervised("teacher", 4000, seed=1, num_features=3, num_test=10)
    source = problem.unlabeled
    assert isinstance(source, GaussianInputs) and problem.num_unlabeled is None
    raw = (problem.X_train - source.mean) / source.scale
    n = problem.num_train
    assert bool((raw.mean(0).abs() <= 5 / n ** 0.5).all())
    assert bool(((raw.var(0) - 1).abs() <= 5 * (2 / n) ** 0.5).all())
    drawn = problem.unlabeled_inputs(4000, make_generator(0, "unlabeled"))
    assert bool(((drawn.mean(0) - source.mean).abs() <= 5 * source.scale / 4000 ** 0.5).all())
    linear = make_supervised("sparse_teacher", 20, seed=0, num_features=4, num_test=10).unlabeled
    assert torch.equal(linear.mean, torch.zeros(4, dtype=torch.float64))
    assert torch.equal(linear.scale, torch.ones(4, dtype=torch.float64))


def test_a_bundled_data_sets_unlabeled_pool_is_the_points_neither_trained_nor_tested_on():
    problem = make_supervised("breast_cancer", 100, seed=2, num_test=200)
    pool = problem.unlabeled.inputs
    assert problem.num_unlabeled == 569 - 300 == len(pool)
    seen = torch.cat([problem.X_train, problem.X_test])
    # No pool point is a training or test point (breast_cancer has no duplicate rows).
    assert not bool((torch.cdist(pool, seen) < 1e-12).any())
    first = problem.unlabeled_inputs(50, make_generator(1, "unlabeled"))
    assert torch.equal(first, problem.unlabeled_inputs(50, make_generator(1, "unlabeled")))
    assert len({tuple(row) for row in first.tolist()}) == 50  # without replacement
    with pytest.raises(ProblemError, match="the held-out pool has 269"):
        problem.unlabeled_inputs(270, make_generator(1, "unlabeled"))
    assert make_supervised("breast_cancer", 100, seed=2).unlabeled is None


@pytest.mark.parametrize("data", ["teacher", "digits"])
def test_unlabeled_inputs_survive_save_and_load(tmp_path, data):
    problem = make_supervised(data, 30, seed=0, num_test=40)
    loaded = load_problem(problem.save(tmp_path / "p.npz"))
    generator = lambda: make_generator(0, "unlabeled")  # noqa: E731
    assert torch.equal(loaded.unlabeled_inputs(20, generator()), problem.unlabeled_inputs(20, generator()))
    bare = SupervisedProblem(problem.X_train, problem.y_train, problem.X_test, problem.y_test, loss=problem.loss)
    reloaded = load_problem(bare.save(tmp_path / "bare.npz"))
    assert reloaded.unlabeled is None
    with pytest.raises(ProblemError, match="no unlabeled inputs"):
        reloaded.unlabeled_inputs(1, generator())
