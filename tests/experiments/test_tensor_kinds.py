"""The tensor problem kinds and the cp model kind in sweep configs: validation, building, list-valued grid
coordinates (``problem.dims``) in rules, and the run keys they give."""

from __future__ import annotations

import pytest

from volumelab.experiments import ConfigError, load_sweep, plan_sweep, resolve_points
from volumelab.experiments.kinds import build_model, build_problem, problem_shape, validate_model, validate_problem
from volumelab.experiments.paper import figure_config_path
from volumelab.models import CPModel
from volumelab.problems import make_tensor_problem

from sweep_testing import write_config

TENSOR = """\
name: tensor
claim: none
x: model.width
problem: {kind: tensor-sensing, dims: [3, 3, 3], rank: 1, measurements: 8}
model: {kind: cp, depth: 1}
methods:
  gnc: {eps: 0.05, samples: 1000}
grid:
  problem.dims: [[4, 4], [3, 3, 3]]
  model.width: [2, 4]
rules:
  - when: {problem.dims: [[4, 4]]}
    set: {problem.measurements: 9}
seeds: 2
"""


def test_tensor_kinds_build_the_generated_problem_and_the_cp_model():
    settings = validate_problem({"kind": "tensor-completion", "dims": [3, 4, 2], "rank": 2, "measurements": 7})
    assert problem_shape(settings) == (3, 4, 2)
    problem = build_problem(settings, 3)
    made = make_tensor_problem("tensor-completion", (3, 4, 2), 2, 7, seed=3)
    assert problem.task == "tensor-completion" and bool((problem.A_train == made.A_train).all())
    model = build_model(validate_model({"kind": "cp", "width": 5, "depth": 2, "normalize": True}), (3, 4, 2))
    assert model == CPModel((3, 4, 2), 5, 2, normalize=True)


@pytest.mark.parametrize("raw, message", [
    ({"kind": "tensor-sensing", "dims": [4]}, "at least two positive sizes"),
    ({"kind": "tensor-sensing", "dims": [2, 2, 2], "measurements": 8}, "below the tensor's 8 entries"),
    ({"kind": "tensor-sensing", "dims": [2, 3], "rank": 3, "measurements": 3}, "rank 3 exceeds"),
])
def test_bad_tensor_problems_name_the_field(raw, message):
    with pytest.raises(Exception, match=message):
        validate_problem(raw)


def test_list_valued_grid_coordinates_drive_rules_and_keys(tmp_path):
    points = resolve_points(load_sweep(write_config(tmp_path, TENSOR)))
    measurements = {(tuple(p.problem.dims), p.model.width): p.problem.measurements for p in points}
    assert measurements == {((4, 4), 2): 9, ((4, 4), 4): 9, ((3, 3, 3), 2): 8, ((3, 3, 3), 4): 8}
    keys = plan_sweep(load_sweep(write_config(tmp_path, TENSOR))).keys
    assert len(set(keys)) == len(keys) == 2 * 2 * 2 * 2  # points x seeds x (G&C, prior)


def test_a_rule_keyed_by_a_dims_value_outside_the_grid_is_an_error(tmp_path):
    text = TENSOR.replace("when: {problem.dims: [[4, 4]]}", "when: {problem.dims: [[5, 5]]}")
    with pytest.raises(ConfigError, match=r"problem.dims = \[5, 5\], which is not one of the grid's values"):
        resolve_points(load_sweep(write_config(tmp_path, text)))


def test_a_matrix_model_on_a_tensor_problem_is_refused_at_load(tmp_path):
    text = TENSOR.replace("model: {kind: cp, depth: 1}", "model: {depth: 2}")
    with pytest.raises(ConfigError, match="order-3 tensor .* use model kind 'cp'"):
        resolve_points(load_sweep(write_config(tmp_path, text)))


@pytest.mark.parametrize("name", ["tensor-width", "tensor-depth"])
@pytest.mark.parametrize("scale", ["quick", "paper"])
def test_the_packaged_tensor_studies_resolve(name, scale):
    config = load_sweep(figure_config_path(name))
    points = resolve_points(config, scale)
    assert len(points) == 20
    assert {p.model.kind for p in points} == {"cp"}
    assert {tuple(p.problem.dims) for p in points} == {(5, 5), (4, 4, 4)}
