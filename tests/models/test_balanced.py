"""Balanced factorizations and the families' balanced starts: the same end-to-end function at every depth.

Float64 throughout; "equal" means within 1e-12 relative (a few dozen ulps: the SVD and the d-th roots
round), "bit-identical" means ``torch.equal``.
"""

from __future__ import annotations

import pytest
import torch

from volumelab._rng import make_generator
from volumelab.errors import ModelError
from volumelab.models import (
    CPModel,
    DiagonalNetwork,
    FactorizationModel,
    MLPModel,
    balanced_diagonal_factors,
    balanced_factors,
)

RTOL = 1e-12


def _product(layers: list[torch.Tensor]) -> torch.Tensor:
    product = layers[0]
    for layer in layers[1:]:
        product = layer @ product
    return product


def _relative(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.linalg.vector_norm(a - b) / torch.linalg.vector_norm(b))


@pytest.mark.parametrize("rows, cols, width", [(5, 5, 5), (5, 5, 9), (3, 7, 4), (7, 3, 3), (1, 6, 4), (6, 1, 2)])
@pytest.mark.parametrize("depth", [1, 2, 3, 5])
def test_balanced_factors_multiply_back_to_the_matrix_and_are_balanced(rows, cols, width, depth):
    matrix = torch.randn(rows, cols, generator=make_generator(rows * 100 + cols, "test"), dtype=torch.float64)
    layers = balanced_factors(matrix, depth, width)
    expected_shapes = [(rows, cols)] if depth == 1 else [(width, cols)] + [(width, width)] * (depth - 2) + [(rows, width)]
    assert [tuple(layer.shape) for layer in layers] == expected_shapes
    assert all(layer.dtype == torch.float64 for layer in layers)
    assert _relative(_product(layers), matrix) <= RTOL
    # W_{j+1}^T W_{j+1} = W_j W_j^T (the invariants of gradient flow are zero).
    for lower, upper in zip(layers, layers[1:]):
        gram = lower @ lower.T
        assert _relative(upper.T @ upper, gram) <= RTOL
    # Every factor has the singular values S^(1/d).
    singular = torch.linalg.svdvals(matrix)
    for layer in layers:
        torch.testing.assert_close(torch.linalg.svdvals(layer)[: singular.numel()], singular.pow(1.0 / depth),
                                   rtol=1e-12, atol=1e-14)


def test_depth_one_is_the_matrix_itself_and_batches_factor_each_matrix():
    matrix = torch.randn(2, 3, 4, 5, generator=make_generator(0, "test"), dtype=torch.float64)
    assert balanced_factors(matrix, 1, 7)[0] is matrix
    layers = balanced_factors(matrix, 3, 6)
    assert [tuple(layer.shape) for layer in layers] == [(2, 3, 6, 5), (2, 3, 6, 6), (2, 3, 4, 6)]
    assert _relative(layers[2] @ layers[1] @ layers[0], matrix) <= RTOL
    # float32 in, float32 out (the SVD is taken in float64).
    single = balanced_factors(matrix[0, 0].float(), 2, 4)
    assert all(layer.dtype == torch.float32 for layer in single)


def test_a_narrow_width_needs_a_low_rank_matrix():
    generator = make_generator(1, "test")
    full = torch.randn(5, 5, generator=generator, dtype=torch.float64)
    with pytest.raises(ModelError, match="through width 3 needs W\\(0\\) of rank at most 3.*rank 5: set width >= 5"):
        balanced_factors(full, 2, 3)
    low = torch.randn(5, 2, generator=generator, dtype=torch.float64) @ torch.randn(2, 5, generator=generator,
                                                                                    dtype=torch.float64)
    layers = balanced_factors(low, 3, 2)
    assert [tuple(layer.shape) for layer in layers] == [(2, 5), (2, 2), (5, 2)]
    assert _relative(_product(layers), low) <= RTOL


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
def test_balanced_diagonal_factors_multiply_back_with_equal_magnitudes(depth):
    w = torch.randn(9, generator=make_generator(depth, "test"), dtype=torch.float64)
    w[3] = 0.0  # a zero entry: every factor zero there
    factors = balanced_diagonal_factors(w, depth)
    assert len(factors) == depth
    torch.testing.assert_close(torch.stack(factors).prod(0), w, rtol=RTOL, atol=0)
    # Even depth included: the first factor carries the signs, the magnitudes agree (u_i^2 - u_j^2 = 0).
    for factor in factors:
        torch.testing.assert_close(factor.abs(), factors[0].abs(), rtol=0, atol=0)
    assert all(bool((factor >= 0).all()) for factor in factors[1:])


# ---------------------------------------------------------------------------------------- the families
@pytest.mark.parametrize("rows, cols, width", [(5, 5, 5), (4, 6, 10), (6, 3, 3)])
def test_every_depth_of_a_linear_factorization_starts_from_the_depth_one_matrix(rows, cols, width):
    reference = FactorizationModel(rows, cols, width=width, depth=1)
    random_start = reference.initialize(0.3, make_generator(7, "init"))
    balanced_start = reference.initialize_balanced(0.3, make_generator(7, "init"))
    assert len(balanced_start) == 1 and torch.equal(balanced_start[0], random_start[0])  # bit-identical
    for depth in (2, 3, 4):
        model = FactorizationModel(rows, cols, width=width, depth=depth)
        layers = model.initialize_balanced(0.3, make_generator(7, "init"))
        assert [tuple(layer.shape) for layer in layers] == list(model.layer_shapes)
        assert _relative(model.end_to_end(layers), random_start[0]) <= RTOL
    # Batched starts are the batched depth-1 draws.
    batched = FactorizationModel(rows, cols, width=width, depth=3).initialize_balanced(
        0.3, make_generator(7, "init"), batch_shape=(2,))
    depth_one = reference.initialize(0.3, make_generator(7, "init"), batch_shape=(2,))[0]
    assert _relative(_product(batched), depth_one) <= RTOL


def test_a_normalized_linear_factorization_has_a_balanced_start_too():
    model = FactorizationModel(4, 4, width=4, depth=3, normalize=True)
    start = FactorizationModel(4, 4, depth=1, normalize=True)
    assert _relative(model.end_to_end(model.initialize_balanced(0.1, make_generator(2, "init"))),
                     start.end_to_end(start.initialize(0.1, make_generator(2, "init")))) <= RTOL


@pytest.mark.parametrize("width", [1, 3, 8])
def test_a_deep_linear_network_starts_from_the_depth_one_predictor(width):
    reference = MLPModel(6, width, 1, "linear")
    start = reference.initialize(0.5, make_generator(3, "init"))
    assert torch.equal(reference.initialize_balanced(0.5, make_generator(3, "init"))[0], start[0])
    inputs = torch.randn(11, 6, generator=make_generator(4, "test"), dtype=torch.float64)
    for depth in (2, 3, 5):
        model = MLPModel(6, width, depth, "linear")
        layers = model.initialize_balanced(0.5, make_generator(3, "init"))
        assert [tuple(layer.shape) for layer in layers] == list(model.layer_shapes)
        assert _relative(model.linear_predictor(layers), start[0].squeeze(0)) <= RTOL
        assert _relative(model.forward(layers, inputs), reference.forward(start, inputs)) <= RTOL
        for lower, upper in zip(layers, layers[1:]):
            assert _relative(upper.T @ upper, lower @ lower.T) <= RTOL


@pytest.mark.parametrize("form", ["product", "difference"])
def test_a_diagonal_network_starts_from_the_depth_one_predictor(form):
    reference = DiagonalNetwork(5, 1, form)
    start = reference.initialize(0.2, make_generator(0, "init"))
    assert all(torch.equal(a, b) for a, b in zip(reference.initialize_balanced(0.2, make_generator(0, "init")),
                                                     start))
    for depth in (2, 3, 4):
        model = DiagonalNetwork(5, depth, form)
        layers = model.initialize_balanced(0.2, make_generator(0, "init"))
        assert [tuple(layer.shape) for layer in layers] == list(model.layer_shapes)
        torch.testing.assert_close(model.linear_predictor(layers), reference.linear_predictor(start), rtol=RTOL,
                                   atol=0)
        if form == "difference":  # u_+^L and u_-^L are the depth-1 model's u_+ and u_-
            for power, half in zip((layer.pow(depth) for layer in layers), start):
                torch.testing.assert_close(power, half, rtol=RTOL, atol=0)


@pytest.mark.parametrize("model, message", [
    (FactorizationModel(5, 5, width=5, depth=2, activation="tanh"), "needs a linear factorization.*tanh"),
    (FactorizationModel(5, 5, width=3, depth=2), "needs width >= min\\(rows, cols\\) = 5.*got width 3"),
    (MLPModel(4, 8, 2, "relu"), "needs a deep linear network.*relu"),
    (MLPModel(4, 8, 2, "linear", bias=True), "without biases"),
    (MLPModel(4, 8, 2, "linear", parametrization="ntk"), "standard parametrization.*not ntk"),
    (CPModel((3, 3, 3), width=2), "not for a cp model"),
])
def test_models_without_a_balanced_start_say_why(model, message):
    assert model.balanced_mismatch() is not None
    with pytest.raises(ModelError, match=message):
        model.initialize_balanced(0.1, make_generator(0, "init"))


def test_depth_one_has_a_balanced_start_whatever_the_activation():
    # At depth 1 the model is linear: the balanced start is the random one.
    for model in (FactorizationModel(3, 3, width=1, depth=1, activation="tanh"), MLPModel(4, 8, 1, "relu")):
        assert model.balanced_mismatch() is None
        assert torch.equal(model.initialize_balanced(0.1, make_generator(0, "init"))[0],
                           model.initialize(0.1, make_generator(0, "init"))[0])
