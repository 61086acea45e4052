"""The margin-broken error counts of a classification task (the subset ladder's score for ``accept="train_error"``)
against a plain loop over the points, and the property the ladder relies on: the score is below ``(K + 1) / m``
exactly when at most ``K`` of the ``m`` points are errors."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from volumelab.errors import OptimizerError, ProblemError
from volumelab.optimizers.subset import error_score_threshold
from volumelab.problems import make_supervised
from volumelab.problems.supervised import SupervisedTensors


def _loop_score(margins) -> float:
    """``(k + V / (V + S)) / m`` point by point in Python floats."""
    errors = sum(1 for m in margins if m <= 0)
    violation = sum(-m for m in margins if m <= 0)
    total = sum(abs(m) for m in margins)
    ratio = violation / (violation + total) if violation > 0 else 0.0
    return (errors + ratio) / len(margins)


def _tensors(num_train=12, num_test=9):
    return make_supervised("digits", num_train, seed=0, classes=(3, 8), num_test=num_test).tensors("cpu")


def test_error_scores_match_a_plain_loop():
    tensors = _tensors()
    generator = torch.Generator().manual_seed(0)
    outputs = torch.randn(50, tensors.targets.shape[0], generator=generator, dtype=torch.float64)
    outputs[3] = 0.0  # every margin 0: every point an error, no violation
    outputs[4] = tensors.targets  # every point right: score 0
    scores = tensors.error_scores(outputs)
    n = tensors.num_train
    for row in range(outputs.shape[0]):
        margins = (tensors.targets * outputs[row]).tolist()
        assert scores["train_error_score"][row].item() == pytest.approx(_loop_score(margins[:n]), rel=1e-13)
        assert scores["test_error_score"][row].item() == pytest.approx(_loop_score(margins[n:]), rel=1e-13)
    assert scores["train_error_score"][3].item() == 1.0 and scores["train_error_score"][4].item() == 0.0
    # The count is the score's integer part, as the task's error rates have it.
    errors = tensors.extra_metrics(outputs)
    assert torch.equal(torch.floor(scores["train_error_score"] * n), errors["train_error"] * n)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.one_of(st.just(0.0), st.floats(1e-50, 1e6), st.floats(-1e6, -1e-50)), min_size=1, max_size=40),
       st.floats(1e-100, 1e100))
def test_the_score_orders_the_counts_and_ignores_the_scale(margins, scale):
    """Below ``(K + 1) / m`` exactly for at most ``K`` errors, for every ``K``; the same under a positive scale."""
    m = len(margins)
    outputs = torch.tensor(margins, dtype=torch.float64)
    targets = torch.ones(m, dtype=torch.float64)
    tensors = SupervisedTensors(targets[:, None], targets, m, "logistic")
    score = tensors.error_scores(outputs)["train_error_score"].item()
    errors = sum(1 for value in margins if value <= 0)
    for allowed in range(m + 1):
        assert (score < (allowed + 1) / m) == (errors <= allowed)
    scaled = tensors.error_scores(outputs * scale)["train_error_score"].item()
    assert scaled == pytest.approx(score, rel=1e-12)


@pytest.mark.parametrize("eps, num_train, allowed", [(0.0625, 16, 0), (0.01, 16, 0), (0.07, 16, 1),
                                                     (0.3, 10, 2), (0.30000000000000004, 10, 3), (1.5, 4, 4)])
def test_the_score_threshold_keeps_the_same_errors_as_eps(eps, num_train, allowed):
    """``train_error < eps`` (the error ``k / n`` in float64) for ``k <= allowed``: the score threshold is
    ``(allowed + 1) / n``. (0.3 * 10 is 3.0000000000000004 in floats, so a ceiling of ``eps * n`` would admit
    3 errors at eps 0.3; the count of fractions below eps does not.)"""
    threshold = error_score_threshold(eps, num_train)
    assert threshold == (allowed + 1) / num_train
    assert all((k / num_train < eps) == (k <= allowed) for k in range(num_train + 1))


def test_bad_inputs_are_refused():
    with pytest.raises(OptimizerError, match="no error is below it"):
        error_score_threshold(0.0, 10)
    squared = make_supervised("teacher", 8, seed=0, num_test=4).tensors("cpu")
    with pytest.raises(ProblemError, match="logistic loss"):
        squared.error_scores(torch.zeros(12, dtype=torch.float64))
