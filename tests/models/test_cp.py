"""The CP tensor factorization: its forward pass against plain loops, its order-2 identity with the matrix
factorization, and its prior's closed forms (entry variance, chance level) against Monte Carlo."""

import math

import pytest
import torch

from volumelab.errors import ModelError
from volumelab.models import CPModel, FactorizationModel
from volumelab.problems import make_sensing, make_supervised, make_tensor_problem


def _plain_tensor(model: CPModel, weights) -> torch.Tensor:
    """T of one draw by plain loops: each factor matrix layer by layer, then a sum of outer products."""
    d = model.depth
    modes = list(range(1, model.order)) + [0]
    factors = {}
    for i, mode in enumerate(modes):
        layers = weights[i * d:(i + 1) * d]
        product = layers[0]
        for layer in layers[1:]:
            product = layer @ model.sigma(product)
        factors[mode] = product if mode == 0 else product.T  # every factor as (dims[n], R)
    total = torch.zeros(model.dims, dtype=weights[0].dtype)
    for r in range(model.width):
        term = factors[0][:, r]
        for mode in range(1, model.order):
            term = torch.tensordot(term, factors[mode][:, r], dims=0)  # outer product
        total += term
    return total


@pytest.mark.parametrize("dims, width, depth, activation", [
    ((3, 4), 2, 1, "linear"), ((3, 4, 5), 3, 1, "linear"), ((2, 3, 2, 3), 4, 1, "linear"),
    ((3, 4, 5), 2, 3, "tanh"), ((2, 3, 4), 3, 2, "leaky_relu"),
])
def test_forward_matches_plain_loops(dims, width, depth, activation):
    model = CPModel(dims, width, depth, activation)
    weights = model.sample_prior(3, torch.Generator().manual_seed(1), dtype=torch.float64)
    batched = model.end_to_end(weights)
    assert batched.shape == (3, *dims)
    for n in range(3):
        plain = _plain_tensor(model, [w[n] for w in weights])
        torch.testing.assert_close(batched[n], plain, rtol=1e-12, atol=1e-14)
    assert model.outputs(weights).shape == (3, math.prod(dims))
    torch.testing.assert_close(model.outputs(weights)[1], batched[1].flatten())


def test_layer_layout_and_scales():
    model = CPModel((3, 4, 5), 6, depth=2)
    assert model.layer_shapes == ((6, 4), (6, 6), (6, 5), (6, 6), (6, 6), (3, 6))
    last = 1 / math.sqrt(6) ** 0.5  # R^(-1/(2(N-1))) with N = 3
    assert model.layer_scales == pytest.approx((1 / math.sqrt(6), last, 1 / math.sqrt(6), last,
                                                1 / math.sqrt(6), 1 / math.sqrt(3)))
    fan_in = CPModel((3, 4, 5), 6, depth=2, scaling="fan_in")
    assert fan_in.layer_scales == pytest.approx(tuple(1 / math.sqrt(i) for _o, i in fan_in.layer_shapes))


@pytest.mark.parametrize("width", [1, 2, 3, 7, 40])
def test_order_two_depth_one_is_the_depth_two_matrix_factorization_bit_for_bit(width):
    cp = CPModel((4, 5), width)
    matrix = FactorizationModel(4, 5, width, 2)
    assert cp.layer_shapes == matrix.layer_shapes and cp.layer_scales == matrix.layer_scales
    for dtype in (torch.float32, torch.float64):
        a = cp.sample_prior(9, torch.Generator().manual_seed(3), dtype=dtype)
        b = matrix.sample_prior(9, torch.Generator().manual_seed(3), dtype=dtype)
        assert all(torch.equal(x, y) for x, y in zip(a, b))
        assert torch.equal(cp.end_to_end(a), matrix.end_to_end(b))
    init_cp = cp.initialize(1e-3, torch.Generator().manual_seed(5), batch_shape=(2,))
    init_matrix = matrix.initialize(1e-3, torch.Generator().manual_seed(5), batch_shape=(2,))
    assert all(torch.equal(x, y) for x, y in zip(init_cp, init_matrix))


@pytest.mark.parametrize("depth", [2, 3])
def test_linear_order_two_depth_d_is_the_linear_matrix_factorization_of_depth_2d(depth):
    cp = CPModel((4, 5), 3, depth, normalize=True)
    matrix = FactorizationModel(4, 5, 3, 2 * depth, normalize=True)
    assert cp.layer_shapes == matrix.layer_shapes and cp.layer_scales == matrix.layer_scales
    weights = cp.sample_prior(6, torch.Generator().manual_seed(2), dtype=torch.float64)
    # Same layers; the products associate differently (F_0 G_1 against W_2d (... W_1)): equal to rounding.
    torch.testing.assert_close(cp.end_to_end(weights), matrix.end_to_end(weights), rtol=1e-12, atol=1e-15)


def test_normalized_tensor_is_divided_by_its_norm_plus_1e_6():
    model = CPModel((3, 3, 3), 4, depth=2, activation="tanh", normalize=True)
    weights = model.sample_prior(50, torch.Generator().manual_seed(0), dtype=torch.float64)
    raw = model.forward(weights).flatten(1).norm(dim=1)
    norms = model.end_to_end(weights).flatten(1).norm(dim=1)
    torch.testing.assert_close(norms, raw / (raw + 1e-6), rtol=1e-12, atol=0)


@pytest.mark.parametrize("dims, width, depth, prior, scaling", [
    ((4, 4, 4), 1, 1, "gaussian", "paper"), ((4, 4, 4), 16, 1, "gaussian", "paper"),
    ((3, 4, 5), 5, 2, "gaussian", "paper"), ((3, 4, 5), 3, 1, "uniform", "paper"),
    ((2, 3, 2, 3), 6, 1, "gaussian", "fan_in"), ((3, 4, 5), 4, 2, "uniform", "fan_in"),
])
def test_entry_variance_and_uncorrelated_entries_against_monte_carlo(dims, width, depth, prior, scaling):
    """E[T_i T_j] = v delta_ij with v = entry_variance() (the closed form in docs/design.md, "Tensors").

    The second moments of 4e4 draws: their diagonal's mean within 4 SE of v, and every off-diagonal mean
    within 5.5 of its own SEs of 0 (a Bonferroni bound: P(|z| > 5.5) is about 4e-8 per pair, and there are at
    most 2016 pairs).
    """
    model = CPModel(dims, width, depth, prior=prior, scaling=scaling)
    flat = model.outputs(model.sample_prior(40_000, torch.Generator().manual_seed(11), dtype=torch.float64))
    n = flat.shape[0]
    squares = flat.square()
    per_draw_mean = squares.mean(1)  # the mean of the diagonal, one value per draw
    mean, se = per_draw_mean.mean().item(), per_draw_mean.std().item() / math.sqrt(n)
    v = model.entry_variance()
    assert abs(mean - v) < 4 * se, (mean, v, se)
    products = flat.T @ flat / n
    index = torch.triu_indices(flat.shape[1], flat.shape[1], offset=1)
    off = products[index[0], index[1]]
    off_se = torch.sqrt(((flat[:, index[0]] * flat[:, index[1]]).square().mean(0) - off.square()) / n)
    assert bool((off.abs() < 5.5 * off_se).all()), float((off.abs() / off_se).max())
    if scaling == "paper":
        assert v == pytest.approx((1.0 if prior == "gaussian" else 3.0 ** -(model.order * depth)) / dims[0])
    else:
        assert v == pytest.approx((1.0 if prior == "gaussian" else 3.0 ** -(model.order * depth))
                                  / math.prod(dims[1:]))


@pytest.mark.parametrize("task, prior, depth", [("tensor-sensing", "gaussian", 1), ("tensor-completion", "uniform", 2),
                                                ("tensor-sensing", "uniform", 1)])
def test_chance_level_matches_its_closed_form(task, prior, depth):
    """The prior's mean L_gen over 10^5 draws within 4 SE of Var(T_i) + mean_B <B, T*>^2."""
    problem = make_tensor_problem(task, (4, 3, 4), 2, 14, seed=4)
    model = CPModel((4, 3, 4), 6, depth, prior=prior)
    draws = model.end_to_end(model.sample_prior(100_000, torch.Generator().manual_seed(8), dtype=torch.float64))
    _, gen = problem.losses(draws)
    mean, se = gen.mean().item(), gen.std().item() / math.sqrt(gen.numel())
    closed = model.chance_gen_loss(problem)
    assert abs(mean - closed) < 4 * se, (mean, closed, se)
    # Far from the loss of T = 0 alone: the closed form's variance term is measured, not negligible.
    assert closed - problem.mean_squared_target() > 20 * se


def test_closed_forms_refuse_outside_their_assumptions():
    with pytest.raises(ModelError, match="linear, unnormalized"):
        CPModel((3, 3, 3), 2, 2, "tanh").entry_variance()
    with pytest.raises(ModelError, match="linear, unnormalized"):
        CPModel((3, 3, 3), 2, normalize=True).chance_gen_loss(make_tensor_problem("tensor-sensing", (3, 3, 3), 1, 5))


@pytest.mark.parametrize("kwargs, message", [
    (dict(dims=(4,), width=2), "at least two sizes"),
    (dict(dims=(4, 0, 2), width=2), "positive integer"),
    (dict(dims="444", width=2), "sequence of positive integers"),
    (dict(dims=(4, 4), width=0), "width must be a positive integer"),
    (dict(dims=(4, 4), width=2, depth=0), "depth must be a positive integer"),
    (dict(dims=(4, 4), width=2, scaling="ntk"), "unknown scaling"),
    (dict(dims=(4, 4), width=2, prior="laplace"), "unknown prior"),
])
def test_bad_settings_are_clear_errors(kwargs, message):
    with pytest.raises(ModelError, match=message):
        CPModel(**kwargs)


def test_problem_mismatch_names_the_shapes():
    model = CPModel((4, 4, 4), 3)
    assert model.problem_mismatch(make_tensor_problem("tensor-sensing", (4, 4, 4), 1, 10)) is None
    assert "4x4x4 but the problem is 5x5" in model.problem_mismatch(make_sensing(5, 5, 1, 10))
    assert "--model mlp" in model.problem_mismatch(make_supervised("teacher", 20, seed=0))
    assert CPModel((5, 5), 3).problem_mismatch(make_sensing(5, 5, 1, 10)) is None
