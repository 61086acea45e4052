"""Fast exact samplers against the direct product and against closed forms.

Statistical design. Every comparison is a two-sample Kolmogorov–Smirnov test at
level ``ALPHA`` per statistic (Bonferroni over the statistics of a case keeps the
family-wise false-alarm rate of a case below 1%). With ``n = 200,000`` draws per
side the critical KS distance at ``ALPHA = 1e-3`` is ``1.95 * sqrt(2 / n) = 0.0062``.
A 4% change of scale moves the CDF of the training loss (a weighted chi-square) by
about ``0.04 * max_x x f(x) ~ 0.012`` in KS distance, so the power against it is ~1;
``test_the_comparison_has_power`` checks this on a deliberately wrong sampler.
All seeds are fixed, so the outcome is reproducible.
"""

from __future__ import annotations

import pytest
import scipy.stats as stats
import torch

import volumelab as vl
from volumelab.samplers import DIRECT, bartlett_factor, chi_square, select_sampler

ALPHA = 1e-3
NUM_DRAWS = 200_000


def _losses_and_entries(sampler, model, problem, seed, num=NUM_DRAWS, scale=1.0):
    draws = sampler.sample(model, num, torch.Generator().manual_seed(seed)) * scale
    return _losses_and_entries_of(draws, model, problem)


def _losses_and_entries_of(draws, model, problem):
    train, gen = problem.losses(draws.to(torch.float64))
    # Three entries in different rows and columns (the law is invariant under
    # row and column permutations for these priors).
    entries = [draws[:, 0, 0], draws[:, -1, 1 % model.cols], draws[:, model.rows // 2, -1]]
    return [train, gen, *entries]


def _min_p_value(model, problem, *, fast_scale=1.0):
    fast = select_sampler(model)
    assert fast.name != "direct"
    statistics_fast = _losses_and_entries(fast, model, problem, seed=11, scale=fast_scale)
    statistics_direct = _losses_and_entries(DIRECT, model, problem, seed=12)
    return min(
        stats.ks_2samp(a.double().numpy(), b.double().numpy()).pvalue
        for a, b in zip(statistics_fast, statistics_direct)
    )


CASES = [
    ("bartlett", dict(rows=5, cols=5, width=40, depth=2)),
    ("bartlett", dict(rows=5, cols=5, width=5, depth=10, normalize=True)),
    ("bartlett", dict(rows=3, cols=6, width=7, depth=3)),  # built from the rows side
    ("bartlett", dict(rows=6, cols=3, width=2, depth=3)),  # width below min(rows, cols)
    ("bartlett", dict(rows=5, cols=5, width=8, depth=3, scaling="fan_in")),
    ("gram", dict(rows=5, cols=5, width=40, depth=2, activation="tanh")),
    ("gram", dict(rows=5, cols=5, width=40, depth=2, activation="leaky_relu")),
    ("gram", dict(rows=4, cols=6, width=9, depth=2, activation="relu", normalize=True)),
    ("layerwise", dict(rows=5, cols=5, width=5, depth=10, activation="tanh", normalize=True)),
    ("layerwise", dict(rows=5, cols=5, width=5, depth=6, activation="leaky_relu", normalize=True)),
    ("layerwise", dict(rows=3, cols=6, width=7, depth=3, activation="relu", prior="uniform")),
    ("layerwise", dict(rows=5, cols=5, width=4, depth=4, prior="uniform", normalize=True)),
]


@pytest.mark.parametrize("name, kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_fast_sampler_equals_direct_in_distribution(name, kwargs):
    model = vl.FactorizationModel(**kwargs)
    problem = vl.make_sensing(model.rows, model.cols, 1, model.rows * model.cols // 2, seed=3)
    assert select_sampler(model).name == name
    assert _min_p_value(model, problem) > ALPHA


# ReLU at width cols + 1: on ~11% of draws a hidden column is all zero or H has rank < cols,
# and on ~2% the Gram's Cholesky breaks down (a pivot <= 0 after round-off pivots). Width 9,
# cols 6 (the case above) is too well conditioned to show it.
SINGULAR_RELU = dict(rows=5, cols=5, width=6, depth=2, activation="relu")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_factor_is_exact_on_singular_relu_grams(dtype):
    # W = s_2 Z L^T has the law of the direct product only if L L^T = H^T H, so the factor
    # must reproduce the Gram to rounding on every draw, singular ones included. Before the
    # QR fallback, clamping a breakdown pivot dropped up to 150% of ||G|| in float32 (1.5e-4
    # of draws off by more than 1e-4) and up to 1.7e-8 in float64; on this batch the old
    # factor's worst was 7e4 eps (float32) and 7e5 eps (float64).
    from volumelab.samplers.fast import _cholesky_semidefinite, _gram_factor

    model = vl.FactorizationModel(**SINGULAR_RELU)
    gram, lower = _gram_factor(model, 1 << 16, torch.Generator().manual_seed(7), dtype=dtype, device="cpu")
    eps = torch.finfo(dtype).eps
    # Not vacuous: singular Grams (smallest eigenvalue at rounding level: 11% of these draws)
    # and Cholesky breakdowns, which take the QR path (2.2%), both occur in this batch.
    eigenvalues = torch.linalg.eigvalsh(gram.permute(2, 0, 1).double())
    assert (eigenvalues[:, 0] <= 8 * eps * eigenvalues[:, -1]).double().mean() > 0.05
    _, broken = _cholesky_semidefinite(gram, torch.empty_like(gram))
    assert broken.double().mean() > 0.01
    assert not lower.permute(2, 0, 1).triu(1).any()  # lower triangular, as _times_lower_transpose needs
    # Rounding-level bound on ||L L^T - G||_F / ||G||_F (p = cols = 5, k = width = 6, u = eps / 2):
    # a completed Cholesky has |E_ij| <= gamma_{p+1} sqrt(G_ii G_jj), so ||E||_F <= (p + 1) u trace G
    # <= (p + 1) u sqrt(p) ||G||_F ~ 6.7 eps (Higham, Thm. 10.3); the QR of H and the Gram's own
    # rounding add a few (k + p) u sqrt(p) ||G||_F. Measured worst: 5 eps (float32), 6 eps
    # (float64). 64 eps leaves room for the constants, 10^3 times below the old factor's errors.
    product = torch.einsum("ikn,jkn->ijn", lower.double(), lower.double())
    residual = (product - gram.double()).square().sum((0, 1)).sqrt()
    norm = gram.double().square().sum((0, 1)).sqrt()
    worst = (residual / norm.clamp(min=torch.finfo(torch.float64).tiny)).max().item()
    assert worst <= 64 * eps, f"max ||L L^T - G|| / ||G|| = {worst:.3g} = {worst / eps:.3g} eps"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gram_sampler_equals_direct_on_singular_relu_grams(dtype):
    """The losses and entries, plus ``||W||_F`` and ``sigma_min / sigma_max`` of ``W``, as KS tests above.

    ``W = W_2 H`` has rank ``rank(H)``: the singular-value ratio sees the mass of rank-deficient
    draws (~11%) and any factor that changes their rank or scale. Ratios below 1e-3 are clamped
    there: a rank-deficient ``W``'s computed ratio is round-off (1e-7 in float32) whose exact
    value differs between samplers. Seven statistics at ``ALPHA`` keep the case below 1%.
    This checks the law of the QR path's draws; the old factor's breakdowns (1.5e-4 of
    draws) are 40 times below the KS resolution at this ``n`` (0.0062), which is why
    ``test_gram_factor_is_exact_on_singular_relu_grams`` checks the factor itself.
    """
    model = vl.FactorizationModel(**SINGULAR_RELU)
    problem = vl.make_sensing(model.rows, model.cols, 1, model.rows * model.cols // 2, seed=3)
    gram = select_sampler(model)
    assert gram.name == "gram"

    def statistics(sampler, seed):
        draws = sampler.sample(model, NUM_DRAWS, torch.Generator().manual_seed(seed), dtype=dtype)
        singular_values = torch.linalg.svdvals(draws.to(torch.float64))
        norm = singular_values.square().sum(-1).sqrt()
        ratio = (singular_values[:, -1] / singular_values[:, 0]).clamp(min=1e-3)
        return [*_losses_and_entries_of(draws, model, problem), norm, ratio]

    p_values = [
        stats.ks_2samp(a.double().numpy(), b.double().numpy()).pvalue
        for a, b in zip(statistics(gram, 11), statistics(DIRECT, 12))
    ]
    assert min(p_values) > ALPHA, p_values


def test_the_comparison_has_power():
    """The same test rejects a sampler whose draws are 4% too large."""
    model = vl.FactorizationModel(5, 5, 40, 2)
    problem = vl.make_sensing(5, 5, 1, 12, seed=3)
    assert _min_p_value(model, problem, fast_scale=1.04) < ALPHA


def test_samplers_are_chosen_only_where_exact():
    assert select_sampler(vl.FactorizationModel(5, 5, 10, 2)).name == "bartlett"
    assert select_sampler(vl.FactorizationModel(5, 5, 10, 1)).name == "direct"
    assert select_sampler(vl.FactorizationModel(5, 5, 10, 2, prior="uniform")).name == "layerwise"
    assert select_sampler(vl.FactorizationModel(5, 5, 40, 2, prior="uniform")).name == "direct"
    assert select_sampler(vl.FactorizationModel(5, 5, 10, 2, activation="tanh", prior="uniform")).name == "layerwise"
    assert select_sampler(vl.FactorizationModel(5, 5, 160, 2, activation="tanh")).name == "gram"
    assert select_sampler(vl.FactorizationModel(5, 5, 5, 2, activation="tanh")).name == "layerwise"
    assert select_sampler(vl.FactorizationModel(5, 5, 20, 3, activation="tanh")).name == "layerwise"
    assert select_sampler(vl.FactorizationModel(5, 5, 40, 3, activation="tanh")).name == "direct"
    assert select_sampler(vl.FactorizationModel(5, 5, 20, 2, activation=torch.tanh)).name == "direct"
    with pytest.raises(vl.ModelError, match="not exact"):
        select_sampler(vl.FactorizationModel(5, 5, 10, 2, prior="uniform"), "bartlett")


@pytest.mark.parametrize("degrees", [1, 2, 3, 8, 9, 40, 601, 10_000])
def test_chi_square_matches_its_distribution(degrees):
    """One-sample KS against scipy's chi2 CDF; n = 200,000 (critical distance 0.0044 at 1e-3)."""
    draws = chi_square([degrees], NUM_DRAWS, torch.Generator().manual_seed(degrees))[0]
    assert stats.kstest(draws.numpy(), stats.chi2(degrees).cdf).pvalue > ALPHA


def test_chi_square_rows_are_independent_and_ordered():
    draws = chi_square([3, 50, 3], 100_000, torch.Generator().manual_seed(0))
    assert draws[1].mean() == pytest.approx(50, abs=4 * (100 / 100_000) ** 0.5)
    assert abs(stats.spearmanr(draws[0].numpy(), draws[2].numpy()).statistic) < 4 / 100_000**0.5


def test_bartlett_factor_gives_wishart_moments():
    """E[L L^T] = n I; Var(A_ij) = n (i != j) and 2n (i = j) for Wishart_p(n, I); 5 standard errors."""
    size, degrees, num = 4, 9, 100_000
    factor = bartlett_factor(size, degrees, num, torch.Generator().manual_seed(0), dtype=torch.float64)
    wishart = torch.einsum("ikn,jkn->ijn", factor, factor)
    mean, variance = wishart.mean(-1), wishart.var(-1)
    expected_variance = degrees * (torch.ones(size, size) + torch.eye(size)).double()
    standard_error = (expected_variance / num).sqrt()
    assert ((mean - degrees * torch.eye(size).double()).abs() < 5 * standard_error).all()
    assert not factor.permute(2, 0, 1).triu(1).any()  # lower triangular
    # Var of a variance estimate: relative SE about sqrt(2 / num) * (kurtosis factor); 10% is > 10 SE.
    assert ((variance / expected_variance - 1).abs() < 0.1).all()


def test_bad_arguments_raise_clear_errors():
    with pytest.raises(vl.ModelError, match="degrees of freedom"):
        chi_square([3, 0], 10, torch.Generator())
    with pytest.raises(vl.ModelError, match="degrees >= size"):
        bartlett_factor(5, 4, 10, torch.Generator())


def test_wide_linear_prior_gen_loss_closed_form():
    """docs/design.md: linear, Gaussian, unnormalized: E[L_gen] = 1/rows + mean_B <B, W*>^2 at any width.

    Width 10^4 would need 10^5 random numbers per draw directly; Bartlett draws it
    for the price of width 5. Tolerance: 5 standard errors of the estimate.
    """
    problem = vl.make_sensing(5, 5, 1, 15, seed=0)
    model = vl.FactorizationModel(5, 5, 10_000, 2)
    result = vl.GuessCheck(eps=0.02).run(problem, model, 400_000, seed=0)
    expected = 1 / 5 + problem.mean_squared_target()
    assert result.diagnostics["sampler"] == "bartlett"
    assert abs(result.metrics["prior_gen_loss"] - expected) < 5 * result.standard_errors["prior_gen_loss"]


def _gamma_full_test_only(shapes, num_samples, generator):
    """Marsaglia-Tsang with the logarithmic test alone, in the sampler's draw order."""
    from volumelab.samplers.random import _marsaglia_tsang

    shape_a = torch.tensor(shapes, dtype=torch.float64).unsqueeze(1)
    x = torch.randn(len(shapes), num_samples, generator=generator, dtype=torch.float32).to(torch.float64)
    u = torch.rand(len(shapes), num_samples, generator=generator, dtype=torch.float32).to(torch.float64)
    value, accepted = _marsaglia_tsang(shape_a, x, u)
    value, accepted = value.reshape(-1), accepted.reshape(-1)
    pending = (~accepted).nonzero().flatten()
    while pending.numel():
        retry_x = torch.randn(pending.numel(), generator=generator, dtype=torch.float32).to(torch.float64)
        retry_u = torch.rand(pending.numel(), generator=generator, dtype=torch.float32).to(torch.float64)
        retry, ok = _marsaglia_tsang(shape_a.flatten()[pending // num_samples], retry_x, retry_u)
        value[pending[ok]] = retry[ok]
        pending = pending[~ok]
    return value.view(len(shapes), num_samples)


@pytest.mark.parametrize("shapes", [[1.0, 1.5, 4.5, 5.0, 6.5], [20.0], [5000.0, 4999.5]])
def test_gamma_squeeze_accepts_exactly_what_the_full_test_accepts(shapes):
    # The squeeze only skips logarithms: same proposals, same accepted set (so the same
    # retries), and the same values up to float32 rounding of d v (computed in float32:
    # 1 + w carries an absolute error up to 6e-8, so tiny values are compared absolutely).
    from volumelab.samplers.random import _gamma_by_rejection
    from volumelab.samplers.workspace import Workspace

    fast = _gamma_by_rejection(shapes, 50_000, torch.Generator().manual_seed(3), "cpu", Workspace(),
                               dtype=torch.float32)
    reference = _gamma_full_test_only(shapes, 50_000, torch.Generator().manual_seed(3))
    torch.testing.assert_close(fast.double(), reference, rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("rows, cols, width, normalize", [(5, 5, 5, False), (5, 5, 11, False), (4, 6, 40, True),
                                                          (6, 4, 10_000, False)])
def test_two_layer_bartlett_path_equals_the_general_chain(rows, cols, width, normalize):
    # The depth-2 path folds both scales into L and skips the dense factor; it uses the
    # same random numbers in the same order as the chain, so draws agree to float32 rounding.
    from volumelab.samplers.fast import _bartlett_chain

    model = vl.FactorizationModel(rows, cols, width, 2, normalize=normalize)
    fast = select_sampler(model).sample(model, 4096, torch.Generator().manual_seed(5))
    chain = _bartlett_chain(model, 4096, torch.Generator().manual_seed(5), dtype=torch.float32, device="cpu")
    torch.testing.assert_close(fast, chain, rtol=2e-5, atol=1e-6 * float(chain.abs().max()))


@pytest.mark.parametrize("kwargs", [dict(width=40, depth=2), dict(width=5, depth=10, normalize=True),
                                    dict(width=3, depth=3), dict(width=40, depth=2, activation="tanh")])
def test_workspace_gives_the_same_draws_as_fresh_memory(kwargs):
    from volumelab.samplers import Workspace

    model = vl.FactorizationModel(5, 5, **kwargs)
    sampler = select_sampler(model)
    workspace = Workspace()
    for seed in (1, 2):  # the second call reuses the first call's buffers
        reused = sampler.sample(model, 1000, torch.Generator().manual_seed(seed), workspace=workspace).clone()
        fresh = sampler.sample(model, 1000, torch.Generator().manual_seed(seed))
        assert torch.equal(reused, fresh)


def test_marsaglia_tsang_keeps_valid_proposals_far_in_the_left_tail():
    # a = 4.5 (chi-square with 9 degrees): x = -4 gives w = c x = -0.65, a valid
    # proposal (v = (1 + w)^3 > 0) that must keep its value d v and its exact test.
    from volumelab.samplers.random import _marsaglia_tsang

    a = torch.tensor([4.5, 4.5], dtype=torch.float64)
    d = a - 1 / 3
    c = 1 / torch.sqrt(9 * d)
    x = torch.tensor([-4.0, -7.0], dtype=torch.float64)  # -7: w < -1, invalid
    value, accepted = _marsaglia_tsang(a, x.clone(), torch.tensor([1e-300, 1e-300], dtype=torch.float64))
    assert value[0].item() == pytest.approx((d[0] * (1 + c[0] * x[0]) ** 3).item(), rel=1e-12)
    expected = (x[0] ** 2 / 2 + d[0] - d[0] * (1 + c[0] * x[0]) ** 3 + 3 * d[0] * torch.log1p(c[0] * x[0])).item()
    assert accepted[0].item() == (torch.log(torch.tensor(1e-300)).item() < expected)
    assert not accepted[1].item()
