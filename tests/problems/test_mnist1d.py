"""MNIST-1D as a supervised data set: generated with fixed arguments, split and standardized from the seed.

The data set is made once per test process (a few seconds, :func:`mnist1d_arrays` caches it); the
``mnist1d`` package comes with the ``test`` extra, so these tests run in CI.
"""

from __future__ import annotations

import random
import sys

import numpy as np
import pytest
import torch

from volumelab._rng import make_generator
from volumelab.errors import ProblemError
from volumelab.problems import InputPool, make_supervised
from volumelab.problems import supervised
from volumelab.problems.supervised import MNIST1D_ARGS, mnist1d_arrays


def test_the_generated_set_is_the_fixed_one_with_1000_signals_per_digit():
    """10,000 signals of 40 samples, exactly 1,000 per digit; a few values pinned, so a change of the package's
    generator (or of the arguments) shows here before it changes any result."""
    inputs, digits = mnist1d_arrays()
    assert inputs.shape == (10_000, 40) and inputs.dtype == np.float64 and digits.shape == (10_000,)
    assert MNIST1D_ARGS["num_samples"] == 10_000 and MNIST1D_ARGS["final_seq_length"] == 40
    np.testing.assert_array_equal(np.bincount(digits, minlength=10), np.full(10, 1000))
    np.testing.assert_allclose(inputs[0, :4], [-0.086692796241, -0.408284851051, -1.583093376527, -1.462888694463],
                               rtol=1e-9)
    np.testing.assert_allclose(inputs[-1, -3:], [-0.831720905, -0.636661477846, -0.494987542147], rtol=1e-9)
    np.testing.assert_array_equal(digits[:12], [4, 2, 4, 4, 2, 1, 3, 9, 4, 6, 7, 6])
    assert not inputs.flags.writeable and mnist1d_arrays()[0] is inputs  # cached, read-only


def test_generating_leaves_the_global_random_generators_as_they_were(monkeypatch):
    """The package seeds NumPy's and Python's global generators; generating the data must not move either."""
    monkeypatch.setattr(supervised, "mnist1d_arrays", mnist1d_arrays.__wrapped__)  # really generate, uncached
    np.random.seed(1234)
    random.seed(1234)
    expected_numpy, expected_python = np.random.random(3), random.random()
    np.random.seed(1234)
    random.seed(1234)
    problem = make_supervised("mnist1d", 50, seed=0)
    assert problem.num_train == 50
    np.testing.assert_array_equal(np.random.random(3), expected_numpy)
    assert random.random() == expected_python


def test_a_pair_is_balanced_and_labelled_minus_one_then_plus_one():
    """classes (A, B): 2,000 points, 1,000 of A labelled -1 and 1,000 of B labelled +1; default (0, 1). The
    training points are the pair's points (in the data set's order) permuted by the ``(seed, "data")`` stream,
    standardized with their own mean and standard deviation."""
    inputs, digits = mnist1d_arrays()
    problem = make_supervised("mnist1d", 300, seed=0, classes=(7, 2))
    labels = torch.cat([problem.y_train, problem.y_test])
    assert problem.num_train + problem.num_test == 2000 and problem.num_features == 40
    assert int((labels == -1).sum()) == int((labels == 1).sum()) == 1000
    assert problem.loss == "logistic" and problem.metadata["classes"] == [7, 2]
    keep = np.isin(digits, (7, 2))
    order = torch.randperm(int(keep.sum()), generator=make_generator(0, "data")).numpy()[:300]
    train, train_digits = inputs[keep][order], digits[keep][order]
    np.testing.assert_allclose(problem.X_train.numpy(), (train - train.mean(0)) / train.std(0), rtol=0, atol=1e-12)
    np.testing.assert_array_equal(problem.y_train.numpy(), np.where(train_digits == 7, -1.0, 1.0))
    assert make_supervised("mnist1d", 30, seed=0).metadata["classes"] == [0, 1]


def test_the_split_is_deterministic_per_seed_and_standardized_by_the_training_points():
    first = make_supervised("mnist1d", 200, seed=5)
    again = make_supervised("mnist1d", 200, seed=5)
    other = make_supervised("mnist1d", 200, seed=6)
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert torch.equal(getattr(first, name), getattr(again, name))
    assert not torch.equal(first.X_train, other.X_train) and not torch.equal(first.y_train, other.y_train)
    assert first.num_train + first.num_test == 2000
    torch.testing.assert_close(first.X_train.mean(0), torch.zeros(40, dtype=torch.float64), atol=1e-12, rtol=0)
    torch.testing.assert_close(first.X_train.std(0, unbiased=False), torch.ones(40, dtype=torch.float64),
                               atol=1e-12, rtol=0)


def test_the_training_class_counts_are_hypergeometric():
    """The split draws uniformly, not by class: over seeds the count of +1 training labels has the
    hypergeometric mean n/2 and variance n (N - n) / (4 (N - 1)) (N = 2000): the mean within 4 standard errors."""
    n, total, seeds = 400, 2000, 40
    counts = np.array([int((make_supervised("mnist1d", n, seed=s).y_train > 0).sum()) for s in range(seeds)])
    variance = n * (total - n) / (4 * (total - 1))
    assert abs(counts.mean() - n / 2) <= 4 * (variance / seeds) ** 0.5
    assert 0.3 < counts.var(ddof=1) / variance < 2.5


def test_the_points_left_out_are_an_unlabeled_pool_disjoint_from_train_and_test():
    problem = make_supervised("mnist1d", 500, seed=2, num_test=600)
    assert isinstance(problem.unlabeled, InputPool) and problem.num_unlabeled == 2000 - 500 - 600
    rows = lambda tensor: {tuple(np.round(row, 12)) for row in tensor.numpy()}  # noqa: E731
    train, test, pool = rows(problem.X_train), rows(problem.X_test), rows(problem.unlabeled.inputs)
    assert len(pool) == 900 and not (pool & train) and not (pool & test) and not (train & test)
    # In the problem's coordinates: standardized with the training points' statistics, not the pool's own.
    assert problem.unlabeled.inputs.mean(0).abs().max() < 0.5
    assert make_supervised("mnist1d", 500, seed=2).num_unlabeled == 0  # all the rest is the test set


def test_digits_classes_change_the_data():
    default = make_supervised("digits", 60, seed=0)
    named = make_supervised("digits", 60, seed=0, classes=(3, 8))
    other = make_supervised("digits", 60, seed=0, classes=(1, 7))
    assert torch.equal(default.X_train, named.X_train) and default.metadata["classes"] == [3, 8]
    assert not torch.equal(default.X_train, other.X_train) and other.metadata["classes"] == [1, 7]
    swapped = make_supervised("digits", 60, seed=0, classes=(8, 3))
    assert torch.equal(swapped.X_train, default.X_train) and torch.equal(swapped.y_train, -default.y_train)


@pytest.mark.parametrize("kwargs, match", [
    ({"data": "mnist1d", "classes": (1, 1)}, "two different classes, got 1 twice"),
    ({"data": "digits", "classes": (3, 10)}, "digits from 0 to 9 .digits has 10., got 10"),
    ({"data": "mnist1d", "classes": (-1, 2)}, "got -1"),
    ({"data": "mnist1d", "classes": (0, 1, 2)}, "two class labels"),
    ({"data": "digits", "classes": (0.5, 1)}, "two class labels"),
    ({"data": "breast_cancer", "classes": (0, 1)}, "breast_cancer has none"),
    ({"data": "teacher", "classes": (0, 1)}, "teacher has none"),
    ({"data": "mnist1d", "num_train": 2000}, "mnist1d has 2000 points"),
])
def test_bad_classes_are_one_line_errors(kwargs, match):
    with pytest.raises(ProblemError, match=match) as caught:
        make_supervised(**{"num_train": 10, **kwargs})
    assert "\n" not in str(caught.value)


def test_without_the_package_the_error_names_the_extra(monkeypatch):
    monkeypatch.setattr(supervised, "mnist1d_arrays", mnist1d_arrays.__wrapped__)  # not the cached arrays
    monkeypatch.setitem(sys.modules, "mnist1d", None)
    monkeypatch.setitem(sys.modules, "mnist1d.data", None)
    with pytest.raises(ProblemError, match=r"needs the mnist1d package: pip install 'volumelab\[mnist1d\]'$"):
        make_supervised("mnist1d", 10, seed=0)
