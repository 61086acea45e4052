"""The MLP family: forward pass, prior, GD gradient and G&C scoring against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.errors import ModelError
from volumelab.models import MLPModel
from volumelab.optimizers.gradient import _AutogradObjective, _objective_for
from volumelab.problems import SupervisedProblem, load_problem, make_supervised

ACTIVATION_FUNCTIONS = {
    "linear": lambda x: x,
    "tanh": np.tanh,
    "relu": lambda x: np.maximum(x, 0.0),
    "leaky_relu": lambda x: np.where(x > 0, x, 0.2 * x),
}


def loop_forward(weights: list[np.ndarray], x: np.ndarray, activation: str) -> float:
    """``W_d s(... s(W_1 x))`` for one input, one layer at a time in NumPy float64."""
    sigma = ACTIVATION_FUNCTIONS[activation]
    hidden = weights[0] @ x
    for layer in weights[1:]:
        hidden = layer @ sigma(hidden)
    return float(hidden[0])


@pytest.mark.parametrize("activation", ["linear", "tanh", "relu", "leaky_relu"])
@pytest.mark.parametrize("depth", [1, 2, 4])
def test_batched_forward_equals_a_loop_over_draws_and_inputs(activation, depth):
    model = MLPModel(in_features=6, width=5, depth=depth, activation=activation)
    draws = model.sample_prior(7, make_generator(0, "test"), dtype=torch.float64)
    inputs = torch.randn(9, 6, generator=make_generator(1, "test"), dtype=torch.float64)
    batched = model.forward(draws, inputs)
    assert batched.shape == (7, 9)
    for s in range(7):
        single = model.forward([layer[s] for layer in draws], inputs)
        assert single.shape == (9,)
        torch.testing.assert_close(single, batched[s], rtol=1e-12, atol=1e-12)
        layers = [layer[s].numpy() for layer in draws]
        expected = [loop_forward(layers, inputs[i].numpy(), activation) for i in range(9)]
        np.testing.assert_allclose(batched[s].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_prior_has_the_standard_fan_in_scale():
    """Every entry of W_j has variance 1/fan_in_j (Gaussian) or 1/(3 fan_in_j) (uniform on [-1, 1])."""
    for prior, variance in (("gaussian", 1.0), ("uniform", 1.0 / 3.0)):
        model = MLPModel(in_features=8, width=16, depth=3, prior=prior)
        draws = model.sample_prior(4000, make_generator(2, "test"), dtype=torch.float64)
        for layer, (_out, fan_in) in zip(draws, model.layer_shapes):
            values = layer.flatten()
            expected = variance / fan_in
            # The sample variance of n values has standard error about sqrt(2/n) * sigma^2 (Gaussian;
            # smaller for the uniform): 5 of those.
            tolerance = 5 * math.sqrt(2 / values.numel()) * expected
            assert abs(float(values.var()) - expected) < tolerance


@pytest.mark.parametrize("loss", ["squared", "logistic"])
def test_gd_gradient_matches_autograd_of_an_independent_loss(loss):
    """GD's objective on an MLP against torch.func.grad of the loss written out here, per run."""
    problems = [make_supervised("teacher", 12, seed=s, loss=loss, num_test=5, num_features=4) for s in range(3)]
    model = MLPModel(in_features=4, width=6, depth=3, activation="tanh")
    objective = _objective_for(model, problems, torch.device("cpu"), torch.float64)
    assert isinstance(objective, _AutogradObjective)
    params = torch.randn(3, model.num_parameters, generator=make_generator(3, "test"), dtype=torch.float64)
    train, grad = objective.train_loss_and_gradient(params)

    def run_loss(flat: torch.Tensor, problem: SupervisedProblem) -> torch.Tensor:
        layers, offset = [], 0
        for out, inp in model.layer_shapes:
            layers.append(flat[offset : offset + out * inp].reshape(out, inp))
            offset += out * inp
        hidden = layers[0] @ problem.X_train.T
        for layer in layers[1:]:
            hidden = layer @ torch.tanh(hidden)
        margin = hidden[0]
        if loss == "squared":
            return (margin - problem.y_train).square().mean()
        return torch.log1p(torch.exp(-problem.y_train * margin)).mean()

    for s, problem in enumerate(problems):
        expected_loss = run_loss(params[s], problem)
        expected_grad = torch.func.grad(run_loss)(params[s], problem)
        torch.testing.assert_close(train[s], expected_loss, rtol=1e-12, atol=1e-14)
        torch.testing.assert_close(grad[s], expected_grad, rtol=1e-10, atol=1e-13)


def test_gd_fits_a_teacher_and_reports_test_error_for_classification():
    problem = make_supervised("breast_cancer", 60, seed=0)
    model = MLPModel(problem.num_features, 16, 2, "relu")
    result = vl.GradientDescent(lr=0.1, init_scale=1.0).run(problem, model, 400, seed=0)
    assert result.status == "completed"
    # The final metrics are the task's, recomputed here from the model's outputs at the final loss.
    assert result.metrics["train_loss"] < 0.05 and result.metrics["train_error"] == 0.0
    assert 0.0 <= result.metrics["test_error"] < 0.2
    regression = vl.GradientDescent(lr=0.05, init_scale=1.0).run(make_supervised("teacher", 30, seed=0), 
                                                                 MLPModel(10, 16, 2, "tanh"), 50, seed=0)
    assert "test_error" not in regression.metrics


def test_gnc_on_an_mlp_scores_in_float64_where_it_can_accept():
    """Float32 draws: accepted counts and means equal those of scoring the same draws fully in float64."""
    from volumelab.optimizers.conditioning import OutputScorer

    problem = make_supervised("digits", 40, seed=1)
    model = MLPModel(problem.num_features, 8, 2, "relu")
    draws = model.sample_prior(4096, make_generator(4, "test"), dtype=torch.float32)
    eps = 0.55
    scorer = OutputScorer(model, problem, torch.device("cpu"), eps)
    fast = scorer(draws)
    exact = scorer._scores([layer.double() for layer in draws], scorer.exact)
    accepted_fast, accepted_exact = fast[0] < eps, exact[0] < eps
    assert bool(accepted_exact.any()) and torch.equal(accepted_fast, accepted_exact)
    torch.testing.assert_close(fast[:, accepted_fast], exact[:, accepted_exact], rtol=0, atol=0)
    # Rows: train, gen, train_error, test_error; the rest agree to float32 accuracy.
    assert fast.shape == (4, 4096)
    torch.testing.assert_close(fast[:2], exact[:2], rtol=1e-5, atol=1e-6)


def test_gnc_on_an_mlp_beats_chance_on_breast_cancer():
    problem = make_supervised("breast_cancer", 40, seed=0)
    model = MLPModel(problem.num_features, 8, 2, "relu")
    result = vl.GuessCheck(eps=0.5).run(problem, model, 20_000, seed=0)
    metrics, errors = result.metrics, result.standard_errors
    assert result.status == "ok" and metrics["accepted"] > 30
    # The accepted draws fit the training set; their test error is measured against the prior's (~0.5).
    assert abs(metrics["prior_test_error"] - 0.5) < 5 * errors["prior_test_error"] + 0.05
    assert metrics["test_error"] + 5 * errors["test_error"] < metrics["prior_test_error"]
    again = vl.GuessCheck(eps=0.5, batch_size=128, workers=1).run(problem, model, 20_000, seed=0)
    assert again.metrics == metrics


def test_supervised_problem_round_trips_through_load_problem(tmp_path):
    problem = make_supervised("digits", 30, seed=2)
    loaded = load_problem(problem.save(tmp_path / "digits.npz"))
    assert isinstance(loaded, SupervisedProblem) and loaded.loss == "logistic"
    for name in ("X_train", "y_train", "X_test", "y_test"):
        assert torch.equal(getattr(loaded, name), getattr(problem, name))
    assert {k: v for k, v in loaded.metadata.items() if k != "source"} == problem.metadata


def test_model_and_problem_mismatches_are_clear_errors():
    supervised = make_supervised("teacher", 10, seed=0)
    matrix = vl.make_sensing(5, 5, 1, 15, seed=0)
    with pytest.raises(vl.OptimizerError, match="needs a supervised problem"):
        vl.GradientDescent(lr=0.1).run(matrix, MLPModel(10, 4, 2), 5)
    with pytest.raises(vl.OptimizerError, match="needs a matrix problem"):
        vl.GuessCheck(eps=0.1).run(supervised, vl.FactorizationModel(5, 5, 4, 2), 100)
    with pytest.raises(vl.OptimizerError, match="takes 7 input features but the problem has 10"):
        vl.GuessCheck(eps=0.1).run(supervised, MLPModel(7, 4, 2), 100)
    with pytest.raises(ModelError, match="unknown scaling .paper. for a mlp model"):
        MLPModel(3, 4, 2, scaling="paper")
    with pytest.raises(vl.ModelError, match="not exact"):
        vl.GuessCheck(eps=0.1, sampler="bartlett").run(supervised, MLPModel(10, 4, 2, "linear"), 100)


@pytest.mark.parametrize("parametrization", ["standard", "ntk", "mup"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("depth, activation", [(1, "linear"), (2, "tanh"), (3, "relu"), (3, "linear"),
                                               (4, "leaky_relu"), (2, "abs"), (3, "softplus")])
@pytest.mark.parametrize("per_run_inputs", [False, True])
def test_gradient_factors_are_each_inputs_gradient_as_outer_products(parametrization, bias, depth, activation,
                                                                     per_run_inputs):
    """g_ji (m_j a_ji)^T equals d f(x_i) / d W_j from jacrev of the forward pass on one run's weights, for every
    run and input, to rounding (float64); the outputs are the forward pass's. ``softplus``: a callable activation
    (no hand-written derivative)."""
    chosen = torch.nn.functional.softplus if activation == "softplus" else activation
    model = MLPModel(in_features=5, width=4, depth=depth, activation=chosen, parametrization=parametrization,
                     bias=bias, abs_a=0.3, abs_b=0.8)
    size, count = 3, 7
    weights = model.sample_prior(size, make_generator(3, "test"), dtype=torch.float64)
    shape = (size, count, 5) if per_run_inputs else (count, 5)
    inputs = torch.randn(shape, generator=make_generator(4, "test"), dtype=torch.float64)
    outputs, factors = model.gradient_factors(weights, inputs)
    torch.testing.assert_close(outputs, model.forward(weights, inputs), rtol=1e-14, atol=0)
    assert len(factors) == depth
    for run in range(size):
        points = inputs[run] if per_run_inputs else inputs
        jacobian = torch.func.jacrev(lambda *layers: model.forward(list(layers), points),
                                     argnums=tuple(range(depth)))(*[layer[run] for layer in weights])
        for (gradient, layer_inputs), expected in zip(factors, jacobian):  # expected (N, out, in)
            layer_inputs = layer_inputs[run] if layer_inputs.ndim == 3 else layer_inputs
            products = gradient[run].unsqueeze(-1) * layer_inputs.unsqueeze(-2)
            scale = float(expected.abs().max())
            torch.testing.assert_close(products, expected, rtol=1e-12, atol=1e-14 * scale)


@pytest.mark.parametrize("depth", [1, 2, 3])
@pytest.mark.parametrize("parametrization, bias", [("standard", False), ("ntk", True), ("mup", False),
                                                   ("standard", True)])
def test_last_layer_features_times_the_readout_are_the_outputs(depth, parametrization, bias):
    """``W_d @ last_layer_features`` equals :meth:`forward` on a batch of 5 draws (float64, to rounding), and the
    features do not depend on ``W_d``."""
    model = MLPModel(3, 4, depth, activation="tanh", parametrization=parametrization, bias=bias)
    generator = torch.Generator().manual_seed(0)
    weights = [torch.randn((5, out, inp), generator=generator, dtype=torch.float64) for out, inp in model.layer_shapes]
    inputs = torch.randn(7, 3, generator=generator, dtype=torch.float64)
    features = model.last_layer_features(weights, inputs)
    assert features.shape == (5, model.layer_shapes[-1][1], 7)
    outputs = torch.matmul(weights[-1], features).squeeze(-2)
    assert torch.allclose(outputs, model.forward(weights, inputs), rtol=1e-12, atol=1e-12)
    other = weights[:-1] + [torch.randn_like(weights[-1])]
    assert torch.equal(model.last_layer_features(other, inputs), features)
