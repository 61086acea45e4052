"""G&C with ``accept="train_error"`` and ``eps = 0``: the draws with no training errors, the same draws as any
``eps`` in ``(0, 1/n]``."""

from __future__ import annotations

import pytest

import volumelab as vl
from volumelab.errors import OptimizerError
from volumelab.models import MLPModel
from volumelab.problems import make_supervised


def _without_timing(result):
    """The metrics but the last level's threshold (``min_eps_reached``): seconds live in the diagnostics."""
    return {name: value for name, value in result.metrics.items() if name != "min_eps_reached"}


@pytest.mark.parametrize("method, budget, options", [
    ("rejection", 4000, {}),
    ("subset", 10_000, {"population": 100, "replicates": 2}),
    ("subset", 10_000, {"population": 100, "replicates": 2, "tie_break": "none"}),
])
def test_eps_zero_accepts_exactly_the_draws_with_no_training_errors(method, budget, options):
    """The same numbers as eps = 1/n (10 training points). For subset simulation on the error count alone the
    ladder too, but its last level, 1 / (2 n) instead of 1 / n (the same set of draws); with the margin
    tie-break (the default) both ladders are on the score and end at its threshold 1 / n, so everything is
    the same."""
    problem = make_supervised("digits", 10, seed=0, classes=(1, 7), num_test=50)
    model = MLPModel(problem.num_features, 8, 2)
    zero = vl.GuessCheck(eps=0, accept="train_error", method=method, **options).run(problem, model, budget, seed=0)
    one_over_n = vl.GuessCheck(eps=1 / 10, accept="train_error", method=method, **options).run(problem, model,
                                                                                               budget, seed=0)
    assert zero.status == "ok" and zero.metrics["accepted"] > 0 and zero.metrics["train_error"] == 0.0
    assert zero.metrics["eps"] == 0
    same = {name: value for name, value in _without_timing(one_over_n).items() if name != "eps"}
    assert {name: value for name, value in _without_timing(zero).items() if name != "eps"} == same
    if method == "subset" and options.get("tie_break") == "none":
        assert zero.metrics["min_eps_reached"] == 1 / 20 and zero.diagnostics["ladder"][:-1] == \
            one_over_n.diagnostics["ladder"][:-1]
    elif method == "subset":
        assert zero.metrics["min_eps_reached"] == one_over_n.metrics["min_eps_reached"] == 1 / 10
        assert zero.diagnostics["ladder"] == one_over_n.diagnostics["ladder"]


def test_eps_zero_needs_the_training_error():
    with pytest.raises(OptimizerError, match="0 only with accept='train_error'"):
        vl.GuessCheck(eps=0)
    with pytest.raises(OptimizerError, match="positive finite number"):
        vl.GuessCheck(eps=-0.1, accept="train_error")
