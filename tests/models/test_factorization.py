"""Factorization models: structure, one forward for single and batched use, priors."""

import math

import pytest
import torch

import volumelab as vl
from volumelab.errors import ModelError


def test_layer_shapes_and_paper_scales():
    model = vl.FactorizationModel(rows=4, cols=6, width=7, depth=4)
    assert model.layer_shapes == ((7, 6), (7, 7), (7, 7), (4, 7))
    assert model.layer_scales == pytest.approx((1 / math.sqrt(7),) * 3 + (1 / math.sqrt(4),))
    fan_in = vl.FactorizationModel(rows=4, cols=6, width=7, depth=4, scaling="fan_in")
    assert fan_in.layer_scales == pytest.approx((1 / math.sqrt(6),) + (1 / math.sqrt(7),) * 3)
    single = vl.FactorizationModel(rows=4, cols=6, width=7, depth=1)
    assert single.layer_shapes == ((4, 6),) and single.layer_scales == pytest.approx((0.5,))


def _callable_activation(x):
    return torch.sin(x) + 0.1 * x


@pytest.mark.parametrize("activation", ["linear", "tanh", "leaky_relu", "relu", _callable_activation])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
@pytest.mark.parametrize("normalize", [False, True])
def test_batched_forward_equals_single_forward(activation, depth, normalize):
    model = vl.FactorizationModel(3, 5, 4, depth, activation, normalize=normalize)
    layers = model.sample_prior(6, torch.Generator().manual_seed(depth), dtype=torch.float64)
    batched = model.end_to_end(layers)
    assert batched.shape == (6, 3, 5)
    for i in range(6):
        single = model.end_to_end([layer[i] for layer in layers])
        torch.testing.assert_close(batched[i], single, rtol=1e-12, atol=1e-14)
    # An explicit loop over the layers, written out from the definition.
    first = [layer[0] for layer in layers]
    expected = first[0]
    for layer in first[1:]:
        act = model.sigma(expected)
        expected = layer @ act
    if normalize:
        expected = expected / (expected.norm() + 1e-6)
    torch.testing.assert_close(batched[0], expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("activation", ["linear", "tanh", "relu", _callable_activation])
def test_forward_reports_the_pre_and_post_activations_of_the_one_forward_pass(activation):
    model = vl.FactorizationModel(3, 5, 4, 4, activation, normalize=True)
    layers = model.sample_prior(6, torch.Generator().manual_seed(0), dtype=torch.float64)
    pre, post = [], []
    product = model.forward(layers, pre=pre, post=post)
    assert len(pre) == 4 and len(post) == 3 and pre[0] is layers[0] and pre[-1] is product
    for j in range(3):
        assert torch.equal(post[j], model.sigma(pre[j]))
        assert torch.equal(pre[j + 1], layers[j + 1] @ post[j])
    assert torch.equal(model.end_to_end(layers), model.normalize_output(product))


def test_normalization_in_place_over_any_axes():
    model = vl.FactorizationModel(3, 5, 4, 2, normalize=True)
    batch_first = torch.randn(7, 3, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    expected = model.normalize_output(batch_first)
    batch_last = batch_first.permute(1, 2, 0).contiguous()
    got = model.normalize_output(batch_last, (0, 1), in_place=True)
    assert got.data_ptr() == batch_last.data_ptr()
    torch.testing.assert_close(got.permute(2, 0, 1), expected, rtol=1e-15, atol=0)
    plain = vl.FactorizationModel(3, 5, 4, 2)
    assert plain.normalize_output(batch_first) is batch_first


def test_activations_are_the_named_functions():
    x = torch.linspace(-2, 2, 9, dtype=torch.float64)
    leaky = vl.FactorizationModel(2, 2, 2, 2, "leaky_relu")
    torch.testing.assert_close(leaky.sigma(x), torch.where(x > 0, x, 0.2 * x))
    steep = vl.FactorizationModel(2, 2, 2, 2, "leaky_relu", negative_slope=0.5)
    torch.testing.assert_close(steep.sigma(x), torch.where(x > 0, x, 0.5 * x))
    torch.testing.assert_close(vl.FactorizationModel(2, 2, 2, 2, "relu").sigma(x), x.clamp(min=0))
    torch.testing.assert_close(vl.FactorizationModel(2, 2, 2, 2, "tanh").sigma(x), torch.tanh(x))


def test_normalized_output_has_unit_norm():
    model = vl.FactorizationModel(5, 5, 5, 6, normalize=True)
    weights = model.end_to_end(model.sample_prior(100, torch.Generator().manual_seed(0), dtype=torch.float64))
    norms = torch.linalg.matrix_norm(weights)
    assert ((norms - 1).abs() < 1e-5).all()


def test_uniform_prior_support_and_variance():
    model = vl.FactorizationModel(5, 5, 50, 2, prior="uniform")
    first, last = model.sample_prior(400, torch.Generator().manual_seed(1), dtype=torch.float64)
    assert first.abs().max() <= 1 / math.sqrt(50) and last.abs().max() <= 1 / math.sqrt(5)
    # Var U[-1,1] = 1/3; 400*50*5 = 1e5 entries, relative stderr of a variance ~ sqrt(0.8/1e5) < 0.3%.
    variance = (first * math.sqrt(50)).var().item()
    assert abs(variance - 1 / 3) < 4 * (1 / 3) * math.sqrt(0.8 / first.numel())


def test_gaussian_prior_layer_variance():
    model = vl.FactorizationModel(5, 5, 50, 2)
    first, last = model.sample_prior(400, torch.Generator().manual_seed(2), dtype=torch.float64)
    # Var of a sample variance of N normals is 2 s^4 / N.
    for layer, scale in ((first, 1 / 50), (last, 1 / 5)):
        assert abs(layer.var().item() - scale) < 4 * scale * math.sqrt(2 / layer.numel())


def test_initialization_is_scaled_default_linear_init():
    model = vl.FactorizationModel(5, 5, 40, 3)
    layers = model.initialize(1e-3, torch.Generator().manual_seed(0), batch_shape=(2,))
    for layer, (out, inp) in zip(layers, model.layer_shapes):
        assert layer.shape == (2, out, inp)
        bound = 1e-3 / math.sqrt(inp)
        assert layer.abs().max() <= bound
        assert layer.abs().max() > 0.9 * bound  # fills its range, not a smaller one


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"width": 0}, "width must be a positive integer"),
        ({"depth": 0}, "depth must be a positive integer"),
        ({"rows": 2.5}, "rows must be a positive integer"),
        ({"activation": "gelu"}, "unknown activation 'gelu'"),
        ({"activation": 3}, "activation must be a name or a callable"),
        ({"prior": "laplace"}, "unknown prior 'laplace'"),
        ({"scaling": "xavier"}, "unknown scaling 'xavier'"),
    ],
)
def test_bad_model_arguments(kwargs, message):
    params = {"rows": 5, "cols": 5, "width": 5, "depth": 2, **kwargs}
    with pytest.raises(ModelError, match=message):
        vl.FactorizationModel(**params)


def test_wrong_number_of_layers_and_bad_init_scale():
    model = vl.FactorizationModel(5, 5, 5, 3)
    with pytest.raises(ModelError, match="expected 3 weight matrices, got 2"):
        model.end_to_end([torch.zeros(5, 5), torch.zeros(5, 5)])
    with pytest.raises(ModelError, match="init_scale must be a positive"):
        model.initialize(0.0, torch.Generator())
