"""Deep diagonal and deep linear classifiers, linear teachers, and the linear predictor's metrics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.models import DiagonalNetwork, MLPModel
from volumelab.problems import make_supervised


@pytest.mark.parametrize("form, depth", [("product", 1), ("product", 3), ("difference", 2), ("difference", 3)])
def test_the_predictor_and_outputs_equal_a_plain_loop(form, depth):
    model = DiagonalNetwork(6, depth, form)
    draws = model.sample_prior(4, make_generator(0, "test"), dtype=torch.float64)
    inputs = torch.randn(7, 6, generator=make_generator(1, "test"), dtype=torch.float64)
    w = model.linear_predictor(draws)
    for s in range(4):
        factors = [layer[s, 0].tolist() for layer in draws]
        if form == "product":
            expected = [math.prod(f[i] for f in factors) for i in range(6)]
        else:
            expected = [factors[0][i] ** depth - factors[1][i] ** depth for i in range(6)]
        np.testing.assert_allclose(w[s].numpy(), expected, rtol=1e-12, atol=1e-15)

    class Tensors:  # the model reads only the task's inputs
        pass

    tensors = Tensors()
    tensors.inputs = inputs
    np.testing.assert_allclose(model.outputs(draws, tensors).numpy(), (w @ inputs.T).numpy(), rtol=1e-12, atol=1e-14)


def test_product_prior_gives_w_entries_of_variance_one_over_d():
    """Var(prod of L independent N(0, s^2)) = s^(2L) = 1/d with s = d^(-1/(2L)). 5 standard errors:
    the fourth moment of a product of L Gaussians is 3^L s^(4L), so SE(var) = sqrt((3^L - 1)/n) / d."""
    d, depth, n = 16, 3, 20000
    model = DiagonalNetwork(d, depth)
    w = model.linear_predictor(model.sample_prior(n, make_generator(2, "test"), dtype=torch.float64)).flatten()
    stderr = math.sqrt((3**depth - 1) / w.numel()) / d
    assert abs(float(w.square().mean()) - 1 / d) < 5 * stderr


def test_gd_init_is_small_balanced_and_the_difference_form_starts_at_zero():
    layers = DiagonalNetwork(5, 3, "difference").initialize(0.1, make_generator(0, "init"))
    assert all(bool((layer == 0.1).all()) for layer in layers)
    assert float(DiagonalNetwork(5, 3, "difference").linear_predictor(layers).abs().max()) == 0.0


def test_deep_linear_mlp_predictor_is_the_product_of_its_layers():
    model = MLPModel(5, 4, 3, "linear")
    layers = model.sample_prior(2, make_generator(3, "test"), dtype=torch.float64)
    expected = (layers[2] @ layers[1] @ layers[0]).squeeze(-2)
    torch.testing.assert_close(model.linear_predictor(layers), expected, rtol=1e-12, atol=1e-15)
    assert MLPModel(5, 4, 3, "tanh").linear_predictor(layers) is None


def test_sparse_teacher_labels_are_the_sign_of_the_teacher():
    problem = make_supervised("sparse_teacher", 50, seed=4, num_features=20, teacher_nonzero=3, num_test=500)
    teacher = torch.tensor(problem.metadata["teacher"], dtype=torch.float64)
    assert int((teacher != 0).sum()) == 3 and float(teacher.norm()) == pytest.approx(1.0)
    for x, y in ((problem.X_train, problem.y_train), (problem.X_test, problem.y_test)):
        assert torch.equal(torch.where(x @ teacher > 0, 1.0, -1.0).to(torch.float64), y)
    dense = make_supervised("linear_teacher", 50, seed=4, num_features=20, num_test=500)
    assert int((torch.tensor(dense.metadata["teacher"]) != 0).sum()) == 20 and dense.loss == "logistic"
    with pytest.raises(vl.ProblemError, match="teacher_nonzero must be between 1 and num_features"):
        make_supervised("sparse_teacher", 10, num_features=5, teacher_nonzero=6)


def test_linear_predictor_metrics_equal_a_plain_loop():
    problem = make_supervised("sparse_teacher", 30, seed=5, num_features=8, num_test=100)
    tensors = problem.tensors()
    w = torch.randn(3, 8, generator=make_generator(6, "test"), dtype=torch.float64)
    metrics = tensors.linear_predictor_metrics(w)
    for s in range(3):
        ws = w[s].tolist()
        l1, l2 = sum(abs(v) for v in ws), math.sqrt(sum(v * v for v in ws))
        margins = [float(y) * sum(a * b for a, b in zip(x.tolist(), ws)) for x, y in zip(problem.X_train, problem.y_train)]
        assert float(metrics["sparsity"][s]) == pytest.approx(l1 * l1 / (l2 * l2), rel=1e-12)
        assert float(metrics["margin_l2"][s]) == pytest.approx(min(margins) / l2, rel=1e-12)
        assert float(metrics["margin_l1"][s]) == pytest.approx(min(margins) / l1, rel=1e-12)


@pytest.mark.parametrize("num_train, interpolates", [(6, True), (30, False)])
def test_the_limit_directions_observer_reads_each_runs_w_against_its_own_training_sets_references(
        num_train, interpolates):
    """LimitDirections on a batch of two runs with their own data sets: each run's cos_l2_margin / cos_l1_margin /
    cos_min_norm equal the cosines of its final w (from its kept layers) with the references solved here directly
    (hard-margin SVM, l1 LP, X^+ y); the interpolant is None for n > d; a model that is not a linear predictor
    reads None."""
    from volumelab.diagnostics.max_margin import LimitDirections, l1_max_margin, l2_max_margin
    from volumelab.optimizers.observers import FinalOutputs

    problems = [make_supervised("sparse_teacher", num_train, seed=seed, num_features=8, num_test=50)
                for seed in (5, 6)]
    model = DiagonalNetwork(8, 2, "difference")
    results = vl.GradientDescent(lr=0.2, init_scale=0.3).run_batch(
        problems, model, 200, [5, 6], observers=[LimitDirections(), FinalOutputs()])
    for problem, result in zip(problems, results):
        assert result.status == "completed"
        layers = [torch.as_tensor(result.arrays[f"layer_{k + 1}"]) for k in range(len(model.layer_shapes))]
        w = model.linear_predictor(layers).numpy()
        X, y = problem.X_train.numpy(), problem.y_train.numpy()

        def cos(reference):
            return float(w @ reference / (np.linalg.norm(w) * np.linalg.norm(reference)))

        assert result.metrics["cos_l2_margin"] == pytest.approx(cos(l2_max_margin(X, y).weights), abs=1e-12)
        assert result.metrics["cos_l1_margin"] == pytest.approx(cos(l1_max_margin(X, y).weights), abs=1e-12)
        if interpolates:
            assert result.metrics["cos_min_norm"] == pytest.approx(cos(np.linalg.pinv(X) @ y), abs=1e-12)
        else:
            assert result.metrics["cos_min_norm"] is None
    tanh = vl.GradientDescent(lr=0.1, init_scale=0.3).run(problems[0], MLPModel(8, 4, 2, "tanh"), 5, seed=0,
                                                          observers=[LimitDirections()])
    assert tanh.metrics["cos_l2_margin"] is None and tanh.metrics["cos_min_norm"] is None


def test_optimizers_report_the_predictor_metrics_and_none_where_they_do_not_exist():
    problem = make_supervised("sparse_teacher", 40, seed=0, num_features=12, num_test=1000)
    model = DiagonalNetwork(12, 2, "difference")
    trained = vl.GradientDescent(lr=0.1, init_scale=0.1).run(problem, model, 300, seed=0)
    assert trained.status == "completed" and 1.0 <= trained.metrics["sparsity"] <= 12.0
    assert "margin_l2" in trained.metrics and "test_error" in trained.metrics
    untrained = vl.GradientDescent(lr=0.1, init_scale=0.1).run(problem, model, 0, seed=0)  # w = 0
    assert untrained.metrics["sparsity"] is None and untrained.metrics["margin_l2"] is None
    sampled = vl.GuessCheck(eps=0.6).run(problem, DiagonalNetwork(12, 2), 20_000, seed=0)
    assert sampled.metrics["accepted"] > 0
    assert sampled.metrics["test_error"] < sampled.metrics["prior_test_error"]
