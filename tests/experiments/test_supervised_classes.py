"""``problem: {kind: supervised, classes: [A, B]}``: checked with the data set, built, and keyed without moving
the keys of runs stored before the field existed."""

from __future__ import annotations

import pytest

from volumelab.experiments import ConfigError, load_sweep
from volumelab.experiments.kinds import build_problem, problem_key, problem_shape, validate_problem

from sweep_testing import write_config


def _settings(**values):
    return validate_problem({"kind": "supervised", **values})


def test_classes_default_to_the_data_sets_pair_and_reach_the_problem():
    assert _settings(data="digits").classes == (3, 8)
    assert _settings(data="mnist1d").classes == (0, 1)
    assert _settings(data="teacher").classes is None
    problem = build_problem(_settings(data="digits", train=20, classes=[1, 7]), seed=0)
    assert problem.metadata["classes"] == [1, 7]
    assert problem_shape(_settings(data="mnist1d")) == (1, 40)


def test_the_default_digits_pair_keeps_the_key_it_had_before_classes():
    """A digits problem keyed before the field existed (3 vs 8) keeps its key, written or left out; another pair,
    and every mnist1d problem, enters the key with its classes; data sets without classes never do."""
    before = {"kind": "supervised", "data": "digits", "train": 100, "test": None, "loss": None, "features": 10,
              "teacher_width": 4, "noise": 0.0}
    assert problem_key(_settings(data="digits")) == before
    assert problem_key(_settings(data="digits", classes=[3, 8])) == before
    assert problem_key(_settings(data="digits", classes=[1, 7]))["classes"] == (1, 7)
    assert problem_key(_settings(data="digits", classes=[8, 3]))["classes"] == (8, 3)  # the labels flip
    assert problem_key(_settings(data="mnist1d"))["classes"] == (0, 1)
    assert "classes" not in problem_key(_settings(data="breast_cancer"))


@pytest.mark.parametrize("classes, data, match", [
    ([3, 3], "digits", "two different classes, got 3 twice"),
    ([0, 10], "mnist1d", "digits from 0 to 9"),
    ([0, 1], "teacher", "teacher has none"),
    ([0, 1, 2], "digits", "two class labels"),
])
def test_bad_classes_in_a_sweep_file_name_the_problem(tmp_path, classes, data, match):
    text = f"""
name: classes
problem: {{kind: supervised, data: {data}, train: 8, classes: {classes}}}
model: {{kind: mlp, width: 4, depth: 2}}
methods:
  gd: {{lr: 0.1, steps: 2}}
seeds: 1
"""
    with pytest.raises(ConfigError, match=match):
        load_sweep(write_config(tmp_path, text))
