"""The kernel predictor of the NTK at initialization against independent computations in float64: the kernel
from a plain ``jacrev`` loop over the inputs, scikit-learn's kernel ridge regression at a tiny ridge, the
minimum-norm solution of the linearized system by a pseudo-inverse; and the observer's metrics of a tiny GD run
against the same plain computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from sklearn.kernel_ridge import KernelRidge

import volumelab as vl
from volumelab.diagnostics.kernel_regression import (
    KERNEL_METRICS, KernelRegression, SingularKernelError, kernel_predictor, ntk_on_task_inputs,
)
from volumelab.diagnostics.ntk import empirical_ntk
from volumelab.errors import ProblemError
from volumelab.models import DiagonalNetwork
from volumelab.optimizers.observers import FinalOutputs


def jacrev_rows(model, layers: list[torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
    """``J (N, P)``: row ``i`` is ``d f(x_i) / d theta``, one input at a time by ``torch.func.jacrev`` of the model's
    outputs on that input alone, flattened layer by layer."""
    tensors = vl.make_supervised("teacher", 1, seed=0, num_test=1, num_features=inputs.shape[1]).tensors(
        "cpu", torch.float64)
    rows = []
    for x in inputs:
        def output(*free: torch.Tensor, x=x) -> torch.Tensor:
            return model.outputs([layer.unsqueeze(0) for layer in free], tensors.on_inputs(x.unsqueeze(0)))[0, 0]

        gradients = torch.func.jacrev(output, argnums=tuple(range(len(layers))))(*layers)
        rows.append(torch.cat([g.reshape(-1) for g in gradients]))
    return torch.stack(rows)


def draw(model, seed: int = 0) -> list[torch.Tensor]:
    return [layer[0] for layer in model.initialize(1.0, torch.Generator().manual_seed(seed), batch_shape=(1,))]


@pytest.fixture(scope="module")
def regression():
    return vl.make_supervised("teacher", 12, seed=2, num_test=15, num_features=4)


@pytest.mark.parametrize("parametrization", ["ntk", "standard"])
def test_the_ntk_on_every_input_is_the_plain_jacobian_gram(regression, parametrization):
    model = vl.MLPModel(4, 7, 3, activation="tanh", parametrization=parametrization, bias=True)
    layers = draw(model)
    jacobian = jacrev_rows(model, layers, regression.inputs().double())
    gram = ntk_on_task_inputs(model, layers, regression)
    assert gram.shape == (27, 27) and gram.dtype == torch.float64
    torch.testing.assert_close(gram, jacobian @ jacobian.T, rtol=1e-12, atol=1e-12)
    # Its training block is the NTK module's Gram.
    torch.testing.assert_close(gram[:12, :12], empirical_ntk(model, layers, regression), rtol=1e-12, atol=1e-12)


def test_a_model_without_outer_product_gradients_goes_through_the_empirical_ntk(regression):
    model = DiagonalNetwork(4, depth=3)
    layers = draw(model)
    jacobian = jacrev_rows(model, layers, regression.inputs().double())
    torch.testing.assert_close(ntk_on_task_inputs(model, layers, regression), jacobian @ jacobian.T, rtol=1e-10,
                               atol=1e-12)


def test_the_kernel_predictor_is_kernel_ridge_regression_at_a_tiny_ridge(regression):
    """``f_0 + K(x, X) K^{-1} (y - f_0)`` against scikit-learn's ``KernelRidge`` (precomputed kernel, ridge 1e-11
    against a smallest eigenvalue above 1e-3) fitted to the residual ``y - f_0`` on the training inputs, with
    the kernel and ``f_0`` computed independently (jacrev rows, the plain forward pass)."""
    model = vl.MLPModel(4, 16, 2, parametrization="ntk")
    layers = draw(model, seed=3)
    inputs = regression.inputs().double()
    n = regression.num_train
    jacobian = jacrev_rows(model, layers, inputs)
    kernel = (jacobian @ jacobian.T).numpy()
    initial = model.forward(layers, inputs).detach().numpy()
    targets = regression.y_train.double().numpy()
    ridge = KernelRidge(alpha=1e-11, kernel="precomputed").fit(kernel[:n, :n], targets - initial[:n])
    expected = initial[n:] + ridge.predict(kernel[n:, :n])
    prediction = kernel_predictor(model, layers, regression)
    assert prediction.lambda_min > 1e-3  # the ridge moves the answer by about 1e-11 / lambda_min, relatively
    np.testing.assert_allclose(prediction.outputs[n:].numpy(), expected, rtol=1e-8, atol=1e-9)
    np.testing.assert_allclose(prediction.initial_outputs.numpy(), initial, rtol=1e-12, atol=1e-13)
    # It interpolates the training targets.
    np.testing.assert_allclose(prediction.outputs[:n].numpy(), targets, rtol=0, atol=1e-9)


def test_the_min_norm_distance_is_the_pseudo_inverse_solution_of_the_linearized_system(regression):
    """``delta = pinv(J) (y - f_0)`` is the smallest ``||theta - theta_0||`` with ``J delta = y - f_0``: its norm is
    the bound ``sqrt((y - f_0)^T K^{-1} (y - f_0))``, and ``J^T`` of the predictor's coefficients is ``delta``."""
    model = vl.MLPModel(4, 10, 3, activation="relu", parametrization="ntk")
    layers = draw(model, seed=1)
    n = regression.num_train
    jacobian = jacrev_rows(model, layers, regression.inputs().double()[:n])
    residual = regression.y_train.double() - model.forward(layers, regression.X_train.double()).detach()
    delta = torch.linalg.pinv(jacobian) @ residual
    torch.testing.assert_close(jacobian @ delta, residual, rtol=0, atol=1e-10)
    prediction = kernel_predictor(model, layers, regression)
    assert prediction.min_norm_distance == pytest.approx(float(torch.linalg.vector_norm(delta)), rel=1e-9)
    torch.testing.assert_close(jacobian.T @ prediction.coefficients, delta, rtol=1e-8, atol=1e-10)
    # Any other solution (delta plus a null-space direction of J) is longer.
    null = torch.linalg.svd(jacobian).Vh[-1]
    assert float(torch.linalg.vector_norm(delta + 0.1 * null)) > prediction.min_norm_distance


def test_a_singular_kernel_is_an_error_not_a_made_up_prediction():
    problem = vl.make_supervised("teacher", 6, seed=0, num_test=4, num_features=3)
    x_train = problem.X_train.clone()
    x_train[1] = x_train[0]  # two equal training inputs: two equal rows of J
    repeated = vl.SupervisedProblem(x_train, problem.y_train, problem.X_test, problem.y_test)
    model = vl.MLPModel(3, 8, 2, parametrization="ntk")
    with pytest.raises(SingularKernelError, match="singular relative to its scale"):
        kernel_predictor(model, draw(model), repeated)


def test_the_observer_metrics_of_a_tiny_run_against_a_plain_computation(regression):
    model = vl.MLPModel(4, 12, 2, activation="tanh", parametrization="ntk")
    optimizer = vl.GradientDescent(lr=2.0, init_scale=1.0)
    start = optimizer.run(regression, model, 0, seed=4, observers=[FinalOutputs()])
    result = optimizer.run(regression, model, 300, seed=4, observers=[FinalOutputs(), KernelRegression()])
    assert result.status == "completed" and result.metrics["train_loss"] < 1e-3
    before = [torch.as_tensor(start.arrays[f"layer_{j}"]) for j in (1, 2)]
    after = [torch.as_tensor(result.arrays[f"layer_{j}"]) for j in (1, 2)]
    inputs = regression.inputs().double()
    n = regression.num_train
    jacobian = jacrev_rows(model, before, inputs)
    kernel = jacobian @ jacobian.T
    initial = model.forward(before, inputs).detach()
    residual = regression.y_train.double() - initial[:n]
    coefficients = torch.linalg.solve(kernel[:n, :n], residual)
    predictor = initial + kernel[:, :n] @ coefficients
    trained = torch.as_tensor(result.arrays["outputs"])
    test = slice(n, None)
    metrics = result.metrics
    assert metrics["kernel_gen_loss"] == pytest.approx(
        float(((predictor[test] - regression.y_test.double()) ** 2).mean()), rel=1e-9)
    assert metrics["kernel_distance"] == pytest.approx(
        float(torch.linalg.norm(trained[test] - predictor[test]) / torch.linalg.norm(predictor[test] - initial[test])),
        rel=1e-8)
    theta0, theta = (torch.cat([layer.reshape(-1) for layer in ls]) for ls in (before, after))
    assert metrics["param_distance"] == pytest.approx(float(torch.linalg.norm(theta - theta0)), rel=1e-12)
    bound = math.sqrt(float(residual @ coefficients))
    assert metrics["min_norm_distance"] == pytest.approx(bound, rel=1e-9)
    assert metrics["distance_ratio"] == pytest.approx(metrics["param_distance"] / bound, rel=1e-9)


def test_the_observer_refuses_another_loss_and_a_diverged_run_has_only_its_start():
    classification = vl.make_supervised("teacher", 8, seed=0, num_test=5, num_features=3, loss="logistic")
    model = vl.MLPModel(3, 6, 2, parametrization="ntk")
    with pytest.raises(ProblemError, match="squared loss"):
        vl.GradientDescent(lr=0.1, init_scale=1.0).run(classification, model, 2, observers=[KernelRegression()])
    regression = vl.make_supervised("teacher", 8, seed=0, num_test=5, num_features=3)
    diverged = vl.GradientDescent(lr=1e4, init_scale=1.0).run(regression, model, 50, seed=0,
                                                               observers=[KernelRegression()])
    assert diverged.status == "diverged"
    assert diverged.metrics["kernel_gen_loss"] > 0 and diverged.metrics["min_norm_distance"] > 0
    assert all(diverged.metrics[key] is None for key in ("kernel_distance", "param_distance", "distance_ratio"))
    assert set(KERNEL_METRICS) <= set(diverged.metrics)
