"""MLP parametrizations (standard, ntk, mup), biases and the abs activation, against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from volumelab._rng import make_generator
from volumelab.diagnostics.coordinates import coordinate_check, loglog_slope
from volumelab.errors import ModelError
from volumelab.models import FactorizationModel, MLPModel
from volumelab.optimizers import GradientDescent
from volumelab.optimizers.gradient import _ClosedFormObjective, _objective_for
from volumelab.optimizers.observers import FinalOutputs
from volumelab.problems import make_problem, make_supervised


def loop_forward(weights, x, sigma, multipliers, bias):
    """One input, one layer at a time, in NumPy float64: ``m_j (W_j h + b_j)``."""
    hidden = np.asarray(x, dtype=float)
    for j, (layer, multiplier) in enumerate(zip(weights, multipliers)):
        if j:
            hidden = sigma(hidden)
        if bias:
            hidden = layer[:, :-1] @ hidden + layer[:, -1]
        else:
            hidden = layer @ hidden
        hidden = multiplier * hidden
    return float(hidden[0])


SIGMAS = {"relu": lambda x: np.maximum(x, 0.0), "tanh": np.tanh,
          "abs": lambda x: 0.3 * x + 0.8 * np.abs(x)}


@pytest.mark.parametrize("parametrization", ["standard", "ntk", "mup"])
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("activation", ["relu", "tanh", "abs"])
def test_forward_equals_a_plain_loop_with_the_table_multipliers(parametrization, bias, activation):
    model = MLPModel(5, 7, 3, activation, parametrization=parametrization, bias=bias, abs_a=0.3, abs_b=0.8)
    # The table of the module docstring, written out here.
    fan_ins = (5, 7, 7)
    multipliers = {"standard": (1, 1, 1), "ntk": tuple(1 / math.sqrt(n) for n in fan_ins),
                   "mup": (1, 1, 1 / math.sqrt(7))}[parametrization]
    assert model.layer_multipliers == pytest.approx(multipliers, rel=1e-15)
    assert model.layer_shapes == ((7, 5 + bias), (7, 7 + bias), (1, 7 + bias))
    draws = model.sample_prior(4, make_generator(0, "test"), dtype=torch.float64)
    inputs = torch.randn(6, 5, generator=make_generator(1, "test"), dtype=torch.float64)
    batched = model.forward(draws, inputs)
    for s in range(4):
        layers = [layer[s].numpy() for layer in draws]
        expected = [loop_forward(layers, inputs[i].numpy(), SIGMAS[activation], multipliers, bias) for i in range(6)]
        np.testing.assert_allclose(batched[s].numpy(), expected, rtol=1e-12, atol=1e-12)


def test_standard_and_ntk_priors_give_the_same_function():
    """Same generator: ntk's raw N(0,1) weights times 1/sqrt(fan_in) are standard's weights."""
    inputs = torch.randn(9, 4, generator=make_generator(2, "test"), dtype=torch.float64)
    outputs = []
    for parametrization in ("standard", "ntk"):
        model = MLPModel(4, 16, 3, "tanh", parametrization=parametrization, bias=True)
        draws = model.sample_prior(5, make_generator(3, "test"), dtype=torch.float64)
        outputs.append(model.forward(draws, inputs))
    torch.testing.assert_close(outputs[0], outputs[1], rtol=1e-12, atol=1e-12)


def test_stored_prior_scales_follow_the_table():
    """Sample variances of the stored weights against the table (5 standard errors of a variance)."""
    expected = {"standard": (1 / 6, 1 / 40, 1 / 40), "ntk": (1.0, 1.0, 1.0), "mup": (1 / 6, 1 / 40, 1 / 40)}
    for parametrization, variances in expected.items():
        model = MLPModel(6, 40, 3, parametrization=parametrization)
        draws = model.sample_prior(300, make_generator(4, "test"), dtype=torch.float64)
        for layer, variance in zip(draws, variances):
            values = layer.flatten()
            assert abs(float(values.var()) - variance) < 5 * math.sqrt(2 / values.numel()) * variance


def test_standard_initialization_is_unchanged_by_the_new_fields():
    """The standard parametrization without bias draws GD's init exactly as the shared default (PyTorch's)."""
    model = MLPModel(6, 10, 3)
    mine = model.initialize(0.5, make_generator(5, "init"))
    generator = make_generator(5, "init")
    for layer, (out, inp) in zip(mine, model.layer_shapes):
        bound = 0.5 / math.sqrt(inp)
        expected = torch.rand((out, inp), generator=generator, dtype=torch.float64).mul_(2 * bound).sub_(bound)
        assert torch.equal(layer, expected)


def test_mup_gd_step_is_sgd_with_per_layer_rates():
    """One GD step under mup against theta - lr * rate_j * grad_j, the gradient from torch.func.grad."""
    problem = make_supervised("teacher", 10, seed=0, loss="squared", num_test=4, num_features=3)
    model = MLPModel(3, 8, 3, "relu", parametrization="mup", bias=True)
    assert model.learning_rate_multipliers == (8.0, 1.0, 1.0)
    lr = 0.03
    start = GradientDescent(lr=lr, init_scale=1.0).run(problem, model, 0, seed=4, observers=[FinalOutputs()])
    after = GradientDescent(lr=lr, init_scale=1.0).run(problem, model, 1, seed=4, observers=[FinalOutputs()])
    layers = tuple(torch.as_tensor(start.arrays[f"layer_{j + 1}"]) for j in range(3))
    inputs, targets = problem.inputs()[:10], problem.targets()[:10]

    def loss(*weights):
        return (model.forward(list(weights), inputs) - targets).square().mean()

    grads = torch.func.grad(loss, argnums=(0, 1, 2))(*layers)
    for j, (layer, grad, rate) in enumerate(zip(layers, grads, (8.0, 1.0, 1.0))):
        torch.testing.assert_close(torch.as_tensor(after.arrays[f"layer_{j + 1}"]), layer - lr * rate * grad,
                                   rtol=1e-12, atol=1e-14)


def test_abs_activation_backward_matches_autograd_in_the_hand_written_gradient():
    """A factorization with abs uses the hand-written gradient; it equals autograd's."""
    problem = make_problem("sensing", 4, 4, rank=1, num_measurements=8, seed=0)
    model = FactorizationModel(4, 4, 6, 3, "abs")
    objective = _objective_for(model, [problem], torch.device("cpu"), torch.float64)
    assert type(objective) is _ClosedFormObjective
    params = torch.randn(2, model.num_parameters, generator=make_generator(6, "test"), dtype=torch.float64)
    _, grad = objective.train_loss_and_gradient(params)
    tensors = problem.tensors("cpu", torch.float64)

    def train(flat):
        return tensors.losses(model.outputs(objective.layers(flat), tensors))[0].sum()

    torch.testing.assert_close(grad, torch.func.grad(train)(params.clone()), rtol=1e-12, atol=1e-12)


def test_bad_parametrization_bias_and_abs_coefficients_are_clear_errors():
    with pytest.raises(ModelError, match="unknown parametrization 'mu'"):
        MLPModel(3, 4, 2, parametrization="mu")
    with pytest.raises(ModelError, match="bias must be true or false"):
        MLPModel(3, 4, 2, bias=1)
    with pytest.raises(ModelError, match="abs needs finite coefficients"):
        MLPModel(3, 4, 2, "abs", abs_a=1.0, abs_b=0.0)
    with pytest.raises(ModelError, match="abs_a must be a number"):
        MLPModel(3, 4, 2, "abs", abs_a="1")


def test_loglog_slope_of_a_power_law():
    widths = [8, 32, 128]
    assert loglog_slope(widths, [3 * w ** 0.5 for w in widths]) == pytest.approx(0.5, abs=1e-12)
    assert math.isnan(loglog_slope(widths, [1.0, 0.0, 2.0]))


def test_coordinate_check_mup_is_flat_in_width_and_standard_is_not():
    """Yang & Hu's coordinate check: after 3 GD steps (lr 0.05, depth 3, ReLU, widths 64-2048), the
    change of every layer's pre-activations has a log-log slope in width within +-0.15 under mup
    (theory: 0), while under standard each slope is within 0.25 of its order in width, by
    counting (fixed lr; the backpropagated signal into a hidden unit is O(k^-1/2) per coordinate,
    activations O(1)): the first layer's change  lr (W_2^T delta) x^T x is O(k^-1/2); the second
    layer's  lr delta_2 |h_1|^2 is O(k^-1/2 k) = O(k^1/2); the readout's  lr |h_2|^2 is O(k)."""
    problem = make_supervised("teacher", 32, seed=0, loss="squared", num_test=8, num_features=8)
    widths = [64, 256, 1024, 2048]
    mup = coordinate_check(problem, MLPModel(8, 64, 3, "relu", parametrization="mup"), widths, lr=0.05)
    assert np.all(np.abs(mup["change_slope"]) < 0.15), mup["change_slope"]
    standard = coordinate_check(problem, MLPModel(8, 64, 3, "relu"), widths, lr=0.05)
    np.testing.assert_allclose(standard["change_slope"], [-0.5, 0.5, 1.0], atol=0.25)
