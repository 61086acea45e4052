"""The empirical NTK against independent Jacobians and finite differences, and the ReLU NTK's closed form.

Everything runs in float64 on the CPU. Exact identities (two ways of computing the same
``J J^T``) are asserted to rounding: a relative tolerance of 1e-12 of ``max |K|`` (each
entry is a sum of ``P <= 3,000`` products, whose rounding is below ``P * eps ~ 7e-13``
relative). Statistical comparisons state their tolerance in standard errors.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re

import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.diagnostics import (
    DEFAULT_MEMORY_BYTES,
    NTK_METHODS,
    arccos_ntk,
    empirical_ntk,
    ntk_eigenvalues,
    ntk_summary,
    sample_layers,
    training_outputs_function,
)
from volumelab.errors import ModelError, ProblemError, VolumelabError
from volumelab.models import DiagonalNetwork, FactorizationModel, MLPModel
from volumelab.problems import SupervisedProblem, make_supervised

#: Relative rounding tolerance of two exact computations of the same Gram (module docstring).
EXACT = 1e-12


def teacher(num_train: int, num_features: int, seed: int = 0):
    return make_supervised("teacher", num_train, num_features=num_features, num_test=3, seed=seed)


def cases():
    """``(name, model, problem)``: every family, activation and MLP parametrization the NTK must see."""
    return [
        ("mlp tanh d3", MLPModel(5, 6, 3, "tanh"), teacher(12, 5)),
        ("mlp relu d2 ntk + bias", MLPModel(5, 8, 2, "relu", parametrization="ntk", bias=True), teacher(12, 5)),
        ("mlp leaky_relu d3 mup", MLPModel(5, 6, 3, "leaky_relu", parametrization="mup"), teacher(12, 5)),
        ("factorization tanh d3 4x6", FactorizationModel(4, 6, 5, 3, "tanh"), vl.make_sensing(4, 6, 2, 10, seed=1)),
        ("factorization linear d2 normalized", FactorizationModel(5, 5, 4, 2, normalize=True),
         vl.make_sensing(5, 5, 1, 15, seed=0)),
        ("diagonal difference", DiagonalNetwork(5, 3, form="difference"), teacher(12, 5)),
    ]


def loop_jacobian(model, layers, problem) -> torch.Tensor:
    """``J`` (m x P): one ``torch.autograd.grad`` per training output, then flattened and stacked."""
    function = training_outputs_function(model, problem)
    parameters = [layer.clone().requires_grad_() for layer in layers]
    outputs = function(parameters)
    rows = []
    for i in range(outputs.shape[0]):
        gradients = torch.autograd.grad(outputs[i], parameters, retain_graph=True)
        rows.append(torch.cat([g.reshape(-1) for g in gradients]))
    return torch.stack(rows)


def finite_difference_jacobian(model, layers, problem, step: float = 1e-5) -> torch.Tensor:
    """``J`` (m x P) by central differences ``(F(theta + h e_p) - F(theta - h e_p)) / 2h``."""
    function = training_outputs_function(model, problem)
    flat = torch.cat([layer.reshape(-1) for layer in layers])
    sizes = [layer.numel() for layer in layers]

    def at(theta):
        return function([piece.reshape(layer.shape) for piece, layer in zip(theta.split(sizes), layers)])

    columns = []
    for p in range(flat.numel()):
        shift = torch.zeros_like(flat)
        shift[p] = step
        columns.append((at(flat + shift) - at(flat - shift)) / (2 * step))
    return torch.stack(columns, dim=1)


def assert_gram_close(actual: torch.Tensor, expected: torch.Tensor, relative: float) -> None:
    scale = float(expected.abs().max())
    error = float((actual - expected).abs().max())
    assert error <= relative * scale, f"max |difference| {error:.3g} > {relative:g} * max |K| = {relative * scale:.3g}"


# --------------------------------------------------------------------------- F
def test_training_outputs_are_the_model_outputs_the_loss_sees():
    mlp, supervised = MLPModel(5, 6, 3, "tanh"), teacher(12, 5)
    layers = sample_layers(mlp, 0)
    expected = mlp.forward(list(layers), supervised.X_train)
    torch.testing.assert_close(training_outputs_function(mlp, supervised)(layers), expected, rtol=1e-14, atol=1e-14)

    factorization, sensing = FactorizationModel(4, 6, 5, 3, "tanh"), vl.make_sensing(4, 6, 2, 10, seed=1)
    layers = sample_layers(factorization, 0)
    matrix = factorization.end_to_end(list(layers))
    expected = torch.einsum("mij,ij->m", sensing.A_train, matrix)  # <A_i, W>
    torch.testing.assert_close(training_outputs_function(factorization, sensing)(layers), expected,
                               rtol=1e-13, atol=1e-13)


def test_sample_layers_is_one_prior_draw_of_the_ntk_stream():
    model = MLPModel(5, 6, 3)
    layers = sample_layers(model, 7, draw=2)
    draws = model.sample_prior(1, make_generator(7, "ntk", 2), dtype=torch.float64)
    assert [tuple(layer.shape) for layer in layers] == list(model.layer_shapes)
    for layer, draw in zip(layers, draws):
        assert layer.dtype == torch.float64
        assert torch.equal(layer, draw[0])
    first = model.sample_prior(1, make_generator(7, "ntk", 0), dtype=torch.float64)[0][0]
    assert torch.equal(sample_layers(model, 7)[0], first)
    assert not torch.equal(sample_layers(model, 8, draw=2)[0], layers[0])
    assert not torch.equal(sample_layers(model, 7, draw=3)[0], layers[0])


# ------------------------------------------------------- against other Jacobians
@pytest.mark.parametrize("method", NTK_METHODS)
@pytest.mark.parametrize("name, model, problem", cases(), ids=[case[0] for case in cases()])
def test_gram_equals_the_product_of_an_autograd_loop_jacobian(name, model, problem, method):
    layers = sample_layers(model, 1)
    if method == "factors" and not _has_factors(model, problem):
        with pytest.raises(VolumelabError, match="'factors' needs a model whose per-input gradients are outer"):
            empirical_ntk(model, layers, problem, method=method)
        return
    jacobian = loop_jacobian(model, layers, problem)
    gram = empirical_ntk(model, layers, problem, method=method)
    assert gram.shape == (problem.num_train, problem.num_train) and gram.dtype == torch.float64
    assert torch.equal(gram, gram.T)
    assert_gram_close(gram, jacobian @ jacobian.T, EXACT)


@pytest.mark.parametrize("name, model, problem", [
    ("mlp tanh d2", MLPModel(3, 4, 2, "tanh"), teacher(6, 3)),
    ("factorization tanh d2 3x4", FactorizationModel(3, 4, 3, 2, "tanh"), vl.make_sensing(3, 4, 1, 6, seed=2)),
], ids=lambda value: value if isinstance(value, str) else "")
def test_gram_equals_the_product_of_a_finite_difference_jacobian(name, model, problem):
    """Central differences with h = 1e-5 on smooth (tanh) nets: truncation ``h^2 |F'''| / 6 ~ 1e-11`` and
    rounding ``eps |F| / h ~ 1e-11`` per entry of ``J``, so ``K``'s entries (sums of at most 28
    products of entries of size <= ~3) are off by about 1e-9; the tolerance is 1e-7 of ``max |K|``."""
    layers = sample_layers(model, 2)
    jacobian = finite_difference_jacobian(model, layers, problem)
    for method in NTK_METHODS:
        if method == "factors" and not _has_factors(model, problem):
            continue
        assert_gram_close(empirical_ntk(model, layers, problem, method=method), jacobian @ jacobian.T, 1e-7)


def _has_factors(model, problem) -> bool:
    """Whether the ``factors`` method applies: an MLP (outer-product gradients) on a supervised task."""
    return model.capabilities.outer_product_gradients and isinstance(problem, SupervisedProblem)


def _logged_counts(caplog, pattern: str) -> tuple[int, ...]:
    messages = [record.getMessage() for record in caplog.records if record.name == "volumelab.diagnostics.ntk"]
    found = [re.search(pattern, message) for message in messages]
    matches = [match for match in found if match]
    assert len(matches) == 1, messages
    return tuple(int(group) for group in matches[0].groups())


@pytest.mark.parametrize("name, model, problem", [
    ("mlp, pointwise rows", MLPModel(5, 16, 3, "tanh"), teacher(30, 5)),
    ("factorization, full-batch rows", FactorizationModel(5, 5, 12, 3, "tanh"), vl.make_sensing(5, 5, 1, 15, seed=0)),
], ids=lambda value: value if isinstance(value, str) else "")
def test_both_methods_agree_and_a_small_budget_only_adds_chunks(name, model, problem, caplog):
    layers = sample_layers(model, 3)
    m = problem.num_train
    reference = empirical_ntk(model, layers, problem)
    assert_gram_close(empirical_ntk(model, layers, problem, method="vp"), reference, EXACT)
    for method, pattern in (("jacobian", r"(\d+) parameter slice\(s\), (\d+) row\(s\) per chunk"),
                            ("vp", r"(\d+) column\(s\) per chunk")):
        # The smallest budget 8 m^2 * 1.25^i that is enough (within 1.25x of the least): many chunks.
        budget = 8 * m * m
        while True:
            caplog.clear()
            try:
                with caplog.at_level(logging.DEBUG, logger="volumelab.diagnostics.ntk"):
                    small = empirical_ntk(model, layers, problem, method=method, memory_bytes=budget)
                break
            except VolumelabError as error:
                assert "too small" in str(error)
                budget = int(budget * 1.25)
        counts = _logged_counts(caplog, pattern)
        if method == "jacobian":
            assert counts[0] >= 2 and counts[1] < m, counts  # parameter slices, rows per chunk
        else:
            assert counts[0] < m / 2, counts  # columns per chunk
        assert_gram_close(small, reference, EXACT)


@dataclasses.dataclass(frozen=True)
class CenteredLinear:
    """A duck-typed family whose outputs couple the points: ``f(x_i) = w.x_i - mean_j w.x_j``."""

    in_features: int

    @property
    def layer_shapes(self):
        return ((1, self.in_features),)

    def outputs(self, layers, tensors):
        raw = torch.matmul(layers[0], tensors.inputs.transpose(-1, -2)).squeeze(-2)
        return raw - raw.mean(-1, keepdim=True)


def test_a_model_that_couples_points_falls_back_to_the_full_forward_pass():
    """One point at a time, this model's outputs are all zero: a pointwise Jacobian would be zero."""
    model, problem = CenteredLinear(4), teacher(9, 4)
    layers = (torch.randn(1, 4, generator=make_generator(0, "test"), dtype=torch.float64),)
    jacobian = loop_jacobian(model, layers, problem)
    assert float(jacobian.abs().max()) > 0.1
    for method in ("jacobian", "vp"):
        assert_gram_close(empirical_ntk(model, layers, problem, method=method), jacobian @ jacobian.T, EXACT)
    # The outer-product factors need a layered model whose layers act on one input at a time.
    with pytest.raises(VolumelabError, match="'factors' needs a model whose per-input gradients are outer products"):
        empirical_ntk(model, layers, problem, method="factors")


def test_a_wide_mlp_gram_is_planned_within_the_default_budget():
    """The planner alone (no Gram is computed): 1,000 points, width 4,096, 64 features, 1 GiB."""
    from volumelab.diagnostics.ntk import _plan_jacobian, _plan_product

    sizes, m = [4096 * 64, 4096], 1000
    # The bytes autograd saves for one point (about two width-sized vectors) and for all points.
    plan = _plan_jacobian(sizes, m, 0, 2 * 3 * 4096 * 8, 8, DEFAULT_MEMORY_BYTES)
    assert plan.estimated_bytes <= DEFAULT_MEMORY_BYTES
    assert plan.slices[0][0] == 0 and plan.slices[-1][1] == sum(sizes)
    assert all(stop == next_start for (_, stop), (next_start, _) in zip(plan.slices, plan.slices[1:]))
    assert len(plan.slices) == 4
    product = _plan_product(sum(sizes), m, 2 * 4096 * m * 8, 8, DEFAULT_MEMORY_BYTES)
    assert product.estimated_bytes <= DEFAULT_MEMORY_BYTES and product.columns_per_chunk >= 1


# ---------------------------------------------------------------------- spectrum
def test_eigenvalues_and_summary():
    basis = torch.linalg.qr(torch.randn(4, 4, generator=make_generator(0, "test"), dtype=torch.float64))[0]
    values = torch.tensor([0.5, 1.0, 2.0, 8.0], dtype=torch.float64)
    gram = basis @ torch.diag(values) @ basis.T
    torch.testing.assert_close(ntk_eigenvalues(gram.float()), values, rtol=1e-6, atol=1e-6)
    assert ntk_eigenvalues(gram.float()).dtype == torch.float64
    summary = ntk_summary(gram)
    assert summary.num_train == 4
    assert summary.lambda_min == pytest.approx(0.5, rel=1e-13) and summary.lambda_max == pytest.approx(8.0, rel=1e-13)
    assert summary.as_dict() == {"lambda_min": summary.lambda_min, "lambda_max": summary.lambda_max, "num_train": 4}


def test_a_gram_with_more_points_than_parameters_is_singular():
    model, problem = MLPModel(3, 2, 2, "tanh"), teacher(20, 3)  # P = 8 < m = 20
    eigenvalues = ntk_eigenvalues(empirical_ntk(model, sample_layers(model, 0), problem))
    assert int((eigenvalues > 1e-10 * float(eigenvalues[-1])).sum()) == model.num_parameters


# ------------------------------------------------------------- closed form, ReLU
def test_arccos_ntk_depth_one_and_the_diagonal_are_exact():
    """``Theta^1 = x.x'/d``; on the diagonal theta = 0, so ``Sigma^l(x,x) = |x|^2 / (d 2^(l-1))``,
    ``dSigma = 1/2`` and ``Theta^L(x,x) = L |x|^2 / (d 2^(L-1))``."""
    inputs = torch.randn(7, 3, generator=make_generator(1, "test"), dtype=torch.float64)
    torch.testing.assert_close(arccos_ntk(inputs, 1), inputs @ inputs.T / 3, rtol=0, atol=0)
    squared = inputs.square().sum(1)
    for depth in range(1, 6):
        kernel = arccos_ntk(inputs, depth)
        torch.testing.assert_close(kernel.diagonal(), depth * squared / (3 * 2 ** (depth - 1)), rtol=1e-14, atol=0)
        torch.testing.assert_close(kernel, kernel.T, rtol=0, atol=0)
        if depth > 1:  # positive definite for inputs that are not parallel (Jacot et al. 2018, Prop. 2)
            assert float(torch.linalg.eigvalsh(kernel)[0]) > 1e-3 * float(kernel.diagonal().max())
    # Positive homogeneity of degree 2 in the inputs.
    torch.testing.assert_close(arccos_ntk(3 * inputs, 3), 9 * arccos_ntk(inputs, 3), rtol=1e-13, atol=0)


@pytest.mark.parametrize("cosine", [0.9, 0.3, -0.4, -0.95])
def test_arccos_ntk_layer_terms_equal_monte_carlo_expectations(cosine):
    """Depth 2: the term of ``W_2`` is ``Sigma^2 = E[relu(u) relu(v)]`` and that of ``W_1`` is
    ``Sigma^1 E[relu'(u) relu'(v)]`` with ``(u, v)`` the pre-activations ``w.x/sqrt(d)``,
    ``w ~ N(0, I)``. 400,000 draws; each is asserted within 5 standard errors (the sample
    standard deviation over sqrt(draws)) plus 1e-12."""
    norms = torch.tensor([1.3, 0.7], dtype=torch.float64)
    inputs = torch.zeros(2, 2, dtype=torch.float64)
    inputs[0, 0] = 1.0
    inputs[1] = torch.tensor([cosine, math.sqrt(1 - cosine ** 2)], dtype=torch.float64)
    inputs = inputs * norms.unsqueeze(1)
    terms = arccos_ntk(inputs, 2, per_layer=True)
    weights = torch.randn(400_000, 2, generator=make_generator(2, "test"), dtype=torch.float64)
    pre = weights @ inputs.T / math.sqrt(2)  # (draws, 2): u = pre[:, 0], v = pre[:, 1]
    sigma1 = float(inputs[0] @ inputs[1]) / 2
    for estimate, exact in ((torch.relu(pre).prod(1), terms[1, 0, 1]),
                            ((pre > 0).all(1).double() * sigma1, terms[0, 0, 1])):
        error = float(estimate.std() / math.sqrt(len(estimate)))
        assert abs(float(estimate.mean()) - float(exact)) <= 5 * error + 1e-12, (float(estimate.mean()), float(exact))
    torch.testing.assert_close(terms.sum(0), arccos_ntk(inputs, 2), rtol=0, atol=0)


def empirical_mean_and_error(model, problem, draws: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean over ``draws`` independent prior draws of the empirical NTK, and its entrywise standard error."""
    grams = torch.stack([empirical_ntk(model, sample_layers(model, 0, draw=draw), problem) for draw in range(draws)])
    return grams.mean(0), grams.std(0) / math.sqrt(draws)


def test_wide_relu_mlp_ntk_parametrization_matches_arccos_ntk():
    """Depth 2, NTK parametrization. The empirical NTK is an average over the ``k`` hidden units
    of i.i.d. terms whose mean is ``Theta^2`` exactly (no finite-width bias at depth 2), so the
    mean over 32 draws at width 512 must be within 5 standard errors (from the spread over
    the draws; 31 degrees of freedom) of the closed form, plus 1e-12 for rounding. A kernel
    whose ``W_1`` term is doubled (the derivative ``(pi - theta) / pi``) must fail by more."""
    model, problem = MLPModel(4, 512, 2, "relu", parametrization="ntk"), teacher(8, 4)
    mean, error = empirical_mean_and_error(model, problem, 32)
    terms = arccos_ntk(problem.X_train, 2, per_layer=True)
    exact = terms.sum(0)
    assert float(((mean - exact).abs() - 5 * error).max()) <= 1e-12
    assert float(error.max()) < 0.02 * float(exact.abs().max())  # the test has power: ~1% standard errors
    wrong = exact + terms[0]
    assert float(((mean - wrong).abs() / error).max()) > 5


def test_wide_relu_mlp_standard_parametrization_has_the_rescaled_layer_terms():
    """Under ``standard`` the stored ``W_l`` is the NTK parametrization's divided by ``sqrt(n_l)``, so
    ``J``'s columns of layer ``l`` are ``sqrt(n_l)`` times larger: ``E K = d Theta_1 + k Theta_2`` with
    ``Theta_l`` the arc-cosine layer terms (exact at depth 2). Same tolerance as above."""
    width, features = 512, 4
    model, problem = MLPModel(features, width, 2, "relu"), teacher(8, features)
    mean, error = empirical_mean_and_error(model, problem, 32)
    terms = arccos_ntk(problem.X_train, 2, per_layer=True)
    exact = features * terms[0] + width * terms[1]
    assert float(((mean - exact).abs() - 5 * error).max()) <= 1e-12 * float(exact.abs().max())
    assert float(error.max()) < 0.02 * float(exact.abs().max())


@pytest.mark.slow
def test_wide_deep_relu_mlp_approaches_arccos_ntk():
    """Depth 3 has a finite-width bias of order ``1/k`` (the second layer sees an empirical average
    over the first layer's units); at width 2,048 it is ~0.1% of ``Theta``, so the tolerance is
    5 standard errors (16 draws) plus 1% of ``max |Theta|``."""
    model, problem = MLPModel(4, 2048, 3, "relu", parametrization="ntk"), teacher(6, 4)
    mean, error = empirical_mean_and_error(model, problem, 16)
    exact = arccos_ntk(problem.X_train, 3)
    assert float(((mean - exact).abs() - 5 * error).max()) <= 0.01 * float(exact.abs().max())


# -------------------------------------------------------------------- bad input
def test_bad_layers_are_rejected_with_a_clear_error():
    model, problem = MLPModel(5, 6, 2), teacher(6, 5)
    layers = sample_layers(model, 0)
    with pytest.raises(ModelError, match="has 2 layers but 1 were given"):
        empirical_ntk(model, layers[:1], problem)
    with pytest.raises(ModelError, match=r"layer 1 has shape \(1, 6, 5\), expected \(6, 5\)"):
        empirical_ntk(model, [layers[0].unsqueeze(0), layers[1]], problem)
    with pytest.raises(ModelError, match="floating-point"):
        empirical_ntk(model, [layers[0].long(), layers[1].long()], problem)
    with pytest.raises(ModelError, match="layer 2 is torch.float32"):
        empirical_ntk(model, [layers[0], layers[1].float()], problem)
    with pytest.raises(ModelError, match="layer 1 contains NaN"):
        empirical_ntk(model, [layers[0] * float("nan"), layers[1]], problem)
    with pytest.raises(ModelError, match="sequence of tensors"):
        empirical_ntk(model, layers[0], problem)
    with pytest.raises(ModelError, match="expected a model family"):
        empirical_ntk(object(), layers, problem)


def test_bad_problems_methods_and_budgets_are_rejected_with_a_clear_error():
    model, problem = MLPModel(5, 6, 2), teacher(6, 5)
    layers = sample_layers(model, 0)
    with pytest.raises(ProblemError, match="an MLP needs a supervised problem"):
        empirical_ntk(model, layers, vl.make_sensing(5, 5, 1, 15, seed=0))
    with pytest.raises(ProblemError, match="model takes 5 input features but the problem has 3"):
        empirical_ntk(model, layers, teacher(6, 3))
    stacked = type(problem.tensors()).stack([problem.tensors(), problem.tensors()])
    with pytest.raises(ProblemError, match=r"stacked .* tensors.run\(index\)"):
        empirical_ntk(model, layers, stacked)
    with pytest.raises(ProblemError, match="expected a problem"):
        empirical_ntk(model, layers, "digits")
    with pytest.raises(VolumelabError, match="unknown NTK method 'exact'; expected one of jacobian, vp, factors"):
        empirical_ntk(model, layers, problem, method="exact")
    for bad in (0, -5, True, 1.5e9):
        with pytest.raises(VolumelabError, match="memory_bytes must be a positive integer"):
            empirical_ntk(model, layers, problem, memory_bytes=bad)
    for method in ("jacobian", "vp"):  # the factors need no working memory beyond the m x m products
        with pytest.raises(VolumelabError, match="memory_bytes=500 is too small for the 6x6 NTK Gram"):
            empirical_ntk(model, layers, problem, method=method, memory_bytes=500)
    # Task tensors work in place of the problem; float32 ones are converted to the layers' float64
    # (their inputs were rounded to float32, ~6e-8 relative, hence a tolerance of 1e-5).
    expected = empirical_ntk(model, layers, problem)
    assert_gram_close(empirical_ntk(model, layers, problem.tensors()), expected, EXACT)
    assert_gram_close(empirical_ntk(model, layers, problem.tensors(dtype=torch.float32)), expected, 1e-5)
    with pytest.raises(VolumelabError, match="seed must be a non-negative integer"):
        sample_layers(model, -1)
    with pytest.raises(VolumelabError, match="draw must be a non-negative integer, got 1.0"):
        sample_layers(model, 0, draw=1.0)


def test_bad_kernel_inputs_are_rejected_with_a_clear_error():
    inputs = torch.randn(4, 3, dtype=torch.float64)
    with pytest.raises(VolumelabError, match=r"non-empty \(n, d\) tensor, got \(3,\)"):
        arccos_ntk(inputs[0], 2)
    with pytest.raises(VolumelabError, match="depth must be a positive integer, got 0"):
        arccos_ntk(inputs, 0)
    zero = inputs.clone()
    zero[2] = 0
    with pytest.raises(VolumelabError, match="input 2 is zero"):
        arccos_ntk(zero, 2)
    with pytest.raises(VolumelabError, match="NaN or infinite"):
        arccos_ntk(inputs * float("inf"), 2)
    with pytest.raises(VolumelabError, match=r"square \(m, m\) Gram matrix, got \(4, 3\)"):
        ntk_eigenvalues(inputs)
