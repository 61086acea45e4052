"""Activations: one object per activation, its value, in-place fast form and backward."""

import pytest
import torch

import volumelab as vl
from volumelab.errors import ModelError
from volumelab.models import activation_for


def test_cpu_tanh_of_the_samplers_is_tanh_to_float32_accuracy():
    # The samplers compute tanh on CPU as 2 sigmoid(2x) - 1 (faster kernel); it must agree with
    # float64 tanh to a few float32 ulps (4e-7 absolute; tanh's values lie in [-1, 1]) over the
    # whole range, saturated tails included, and keep tanh's odd symmetry to the same accuracy.
    model = vl.FactorizationModel(5, 5, 8, 2, activation="tanh")
    in_place = model.activation_function.in_place
    x = torch.cat([torch.linspace(-60.0, 60.0, 200_001), torch.randn(100_000, generator=torch.Generator().manual_seed(0))])
    got = in_place(x.clone())
    exact = torch.tanh(x.double())
    assert (got.double() - exact).abs().max().item() < 4e-7
    assert got.abs().max().item() <= 1.0
    assert (got + in_place(-x)).abs().max().item() < 4e-7


@pytest.mark.parametrize("name", ["linear", "leaky_relu", "relu"])
def test_in_place_form_equals_the_value_and_writes_its_input(name):
    activation = activation_for(name, 0.3)
    x = torch.randn(1000, dtype=torch.float32, generator=torch.Generator().manual_seed(1))
    x[:3] = torch.tensor([0.0, -0.0, 1e-30])
    expected = activation(x)
    buffer = x.clone()
    got = activation.in_place(buffer)
    assert got.data_ptr() == buffer.data_ptr()
    assert torch.equal(got, expected)


@pytest.mark.parametrize("name", ["linear", "tanh", "leaky_relu", "relu"])
def test_backward_is_autograds_derivative_to_the_bit(name):
    activation = activation_for(name, 0.2)
    pre = torch.randn(4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    pre[0, 0, :3] = torch.tensor([0.0, -0.0, 1e-300])  # ReLU and leaky ReLU at 0 included
    upstream = torch.randn(4, 6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    leaf = pre.clone().requires_grad_(True)
    (expected,) = torch.autograd.grad(activation(leaf), leaf, upstream)
    post = activation(pre)
    assert torch.equal(activation.backward(upstream, pre, post), expected)
    out = torch.empty_like(pre)
    assert activation.backward(upstream, pre, post, out=out) is out and torch.equal(out, expected)


def test_model_activation_is_the_shared_object():
    model = vl.FactorizationModel(2, 2, 2, 2, "leaky_relu", negative_slope=0.5)
    assert model.activation_function == activation_for("leaky_relu", 0.5)
    assert model.activation_name == "leaky_relu"
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    assert torch.equal(model.sigma(x), model.activation_function(x))


def test_a_callable_has_no_backward_and_keeps_its_name():
    def bump(x):
        return x + 1

    activation = activation_for(bump)
    assert activation.name == "bump" and not activation.has_backward
    x = torch.zeros(3)
    assert torch.equal(activation(x), torch.ones(3)) and torch.equal(activation.in_place(x), torch.ones(3))
    with pytest.raises(ModelError, match="no hand-written derivative"):
        activation.backward(x, x, x)
    with pytest.raises(ModelError, match="unknown activation 'swish'"):
        activation_for("swish")
