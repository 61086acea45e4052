"""The teacher's input distributions (issue 32 item 2, mlp-moments): Gaussian, sphere and Student-t inputs with
covariance I_d, one teacher per seed, and their unlabeled pools."""

import pytest
import torch
from click.testing import CliRunner

from volumelab._rng import make_generator
from volumelab.cli import cli
from volumelab.errors import ProblemError
from volumelab.experiments.keys import canonical
from volumelab.experiments.kinds import SupervisedProblemConfig
from volumelab.problems import RadialInputs, load_problem, make_supervised
from volumelab.problems.supervised import _teacher as _teacher_draw

KINDS = [("gaussian", None), ("sphere", None), ("student_t", 5.0)]


def _teacher(inputs, nu, seed=3, **kwargs):
    return make_supervised("teacher", 60, seed=seed, num_features=4, num_test=40, inputs=inputs, nu=nu, **kwargs)


@pytest.mark.parametrize("inputs,nu", KINDS)
def test_each_input_distribution_is_deterministic_per_seed(inputs, nu):
    first, again, other = _teacher(inputs, nu), _teacher(inputs, nu), _teacher(inputs, nu, seed=4)
    assert torch.equal(first.X_train, again.X_train) and torch.equal(first.y_test, again.y_test)
    assert not torch.equal(first.X_train, other.X_train)


def test_the_default_inputs_are_todays_gaussian_teacher():
    default = make_supervised("teacher", 60, seed=3, num_features=4, num_test=40)
    gaussian = _teacher("gaussian", None)
    assert torch.equal(default.X_train, gaussian.X_train) and torch.equal(default.y_train, gaussian.y_train)
    assert "inputs" not in default.metadata and "nu" not in default.metadata


def test_the_inputs_share_directions_teacher_and_split_only_the_radii_differ():
    """The same Gaussian draw z moved radially: each sphere / Student-t point is a positive multiple of its
    Gaussian twin (before the Gaussian's standardization, undone here), and the sphere's has norm sqrt(d)."""
    gaussian, sphere, student = (_teacher(i, nu, noise=0.0) for i, nu in KINDS)
    mean, std = gaussian.unlabeled.mean, gaussian.unlabeled.scale  # x_std = mean + scale * z
    raw = (gaussian.X_train - mean) / std
    for other in (sphere, student):
        cosine = torch.nn.functional.cosine_similarity(raw, other.X_train, dim=-1)
        torch.testing.assert_close(cosine, torch.ones_like(cosine), rtol=0, atol=1e-12)
    torch.testing.assert_close(sphere.X_train.norm(dim=-1), torch.full((60,), 2.0, dtype=torch.float64))
    assert student.metadata["inputs"] == "student_t" and student.metadata["nu"] == 5.0


@pytest.mark.parametrize("inputs,nu", KINDS)
def test_the_targets_are_the_same_teacher_on_the_new_inputs(inputs, nu):
    """One teacher g(x) = a^T tanh(B x / sqrt(d)) / sqrt(h) per seed, whichever inputs: (B, a) are the draws after
    z from the (seed, "data") stream, and the targets are g at the returned inputs (plus the noise draws)."""
    generator = make_generator(3, "data")
    torch.randn(50, 4, generator=generator, dtype=torch.float64)  # z
    first = torch.randn(6, 4, generator=generator, dtype=torch.float64)
    second = torch.randn(6, generator=generator, dtype=torch.float64)
    points, targets = _teacher_draw(50, 4, 6, 0.0, make_generator(3, "data"), inputs, nu, make_generator(3, "r"))
    points = torch.as_tensor(points)
    expected = torch.tanh(points @ first.T / 2.0) @ second / 6 ** 0.5
    torch.testing.assert_close(torch.as_tensor(targets), expected, rtol=0, atol=1e-12)


@pytest.mark.parametrize("inputs,nu", KINDS[1:])
def test_the_unlabeled_pool_draws_the_same_distribution_and_survives_save_and_load(tmp_path, inputs, nu):
    problem = _teacher(inputs, nu)
    assert isinstance(problem.unlabeled, RadialInputs) and problem.num_unlabeled is None
    assert (problem.unlabeled.inputs, problem.unlabeled.nu, problem.unlabeled.num_features) == (inputs, nu, 4)
    draw = problem.unlabeled_inputs(30, make_generator(0, "unlabeled"))
    assert torch.equal(draw, problem.unlabeled_inputs(30, make_generator(0, "unlabeled")))
    loaded = load_problem(problem.save(tmp_path / "p.npz"))
    assert torch.equal(loaded.unlabeled_inputs(30, make_generator(0, "unlabeled")), draw)


@pytest.mark.parametrize("kwargs,match", [
    ({"inputs": "student_t", "nu": 2.0}, r"^nu must be a finite number above 2 \(the Student-t has no covariance"),
    ({"inputs": "student_t", "nu": 1.5}, "above 2"),
    ({"inputs": "student_t", "nu": float("inf")}, "finite number above 2"),
    ({"inputs": "student_t", "nu": None}, "^inputs 'student_t' need nu"),
    ({"inputs": "sphere", "nu": 5.0}, "^nu \\(degrees of freedom\\) applies to inputs 'student_t' only, not 'sphere'"),
    ({"inputs": "gaussian", "nu": 5.0}, "applies to inputs 'student_t' only, not 'gaussian'"),
    ({"inputs": "cauchy", "nu": None}, "^unknown inputs 'cauchy'; expected one of gaussian, sphere, student_t$"),
])
def test_bad_inputs_are_one_line_errors(kwargs, match):
    with pytest.raises(ProblemError, match=match) as info:
        make_supervised("teacher", 10, **kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(ProblemError, match="apply to the teacher data set only, not digits"):
        make_supervised("digits", 10, inputs="sphere")


@pytest.mark.parametrize("raw,match", [
    ({"inputs": "student_t", "nu": 2}, "above 2"), ({"nu": 3}, "applies to inputs 'student_t' only"),
    ({"inputs": "student_t"}, "need nu"), ({"inputs": "cauchy"}, "gaussian', 'sphere' or 'student_t"),
    ({"data": "linear_teacher", "inputs": "sphere"}, "teacher data set only")])
def test_the_config_rejects_bad_inputs(raw, match):
    with pytest.raises(ValueError, match=match):
        SupervisedProblemConfig(**raw)


def test_the_default_inputs_leave_the_run_key_and_the_others_enter_it():
    plain = canonical("problem", "supervised", SupervisedProblemConfig().model_dump())
    assert "inputs" not in plain and "nu" not in plain
    student = canonical("problem", "supervised", SupervisedProblemConfig(inputs="student_t", nu=5).model_dump())
    assert (student["inputs"], student["nu"]) == ("student_t", 5.0)
    sphere = canonical("problem", "supervised", SupervisedProblemConfig(inputs="sphere").model_dump())
    assert sphere["inputs"] == "sphere" and "nu" not in sphere


@pytest.mark.parametrize("flags,hint", [
    (["--inputs", "student_t", "--nu", "2"], "--nu"), (["--nu", "3"], "--nu"), (["--inputs", "student_t"], "--nu"),
    (["--inputs", "cauchy"], "--inputs"), (["--data", "digits", "--inputs", "sphere"], "--inputs")])
def test_the_cli_rejects_bad_inputs_with_exit_2(flags, hint):
    result = CliRunner().invoke(cli, ["gd", "--model", "mlp", *flags, "--steps", "1", "--lr", "0.1"])
    assert result.exit_code == 2 and f"'{hint}'" in result.output


def test_the_cli_trains_on_student_t_inputs():
    result = CliRunner().invoke(cli, ["gd", "--model", "mlp", "--inputs", "student_t", "--nu", "5", "--train", "20",
                                      "--steps", "2", "--lr", "0.1", "--width", "8"])
    assert result.exit_code == 0, result.output
