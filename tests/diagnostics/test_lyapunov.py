"""Lyapunov exponents of Gaussian products (``volumelab theory lyapunov``): QR method, closed form, CLI."""

import json
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

from volumelab._rng import make_generator
from volumelab.cli import main
from volumelab.diagnostics.lyapunov import collapse_statistics, lyapunov_closed_form, lyapunov_exponents
from volumelab.errors import VolumelabError


@pytest.mark.parametrize("width, variance", [(4, None), (6, 0.5)])
def test_exponents_at_depth_60_match_newmans_closed_form(width, variance):
    """Each exponent within 4 SE of lambda_i = (1/2)[log(2 sigma^2) + psi((k - i + 1)/2)] (Newman 1986).

    For Gaussian layers the QR estimator is unbiased at every depth (module docstring), so
    the tolerance is purely statistical: 4 standard errors over 1,500 independent products.
    """
    estimate = lyapunov_exponents(width, 60, 1500, seed=3, variance=variance)
    assert np.all(np.diff(estimate.closed_form) < 0)
    z = (estimate.exponents - estimate.closed_form) / estimate.exponents_stderr
    assert np.all(np.abs(z) < 4), z
    # The SE is that of a mean over independent products: it shrinks like 1/sqrt(depth * samples).
    assert np.all(estimate.exponents_stderr < 0.01)


def test_closed_form_of_one_by_one_products_is_the_mean_log_of_a_gaussian():
    """k = 1: lambda = E log|sigma z| = (1/2) log sigma^2 + E log|z|, E log|z| by quadrature."""
    def integrand(z):
        return 2 * math.log(z) * stats.norm.pdf(z)  # symmetric in z: twice the positive half

    mean_log = integrate.quad(integrand, 0, 1)[0] + integrate.quad(integrand, 1, np.inf)[0]
    for variance in (0.2, 1.0, 3.0):
        assert lyapunov_closed_form(1, variance)[0] == pytest.approx(0.5 * math.log(variance) + mean_log, abs=1e-9)


def _layers(width, depth, samples, seed, variance):
    """The estimator's own layers, drawn again from its stream (one chunk)."""
    generator = make_generator(seed, "lyapunov")
    return (torch.randn((samples, depth, width, width), generator=generator, dtype=torch.float64)
            * math.sqrt(variance)).numpy()


def test_batched_qr_equals_a_plain_loop_and_the_exponents_sum_to_the_log_determinant():
    """The batched torch path against a per-product NumPy loop on the same layers; and the identity
    sum_i lambda_i = (1/D) log|det(W_D ... W_1)| for every product, with det from slogdet."""
    width, depth, samples, seed, variance = 4, 7, 5, 2, 0.3
    estimate = lyapunov_exponents(width, depth, samples, seed=seed, variance=variance)
    layers = _layers(width, depth, samples, seed, variance)
    per_product, log_dets = [], []
    for product in layers:
        basis, logs = np.eye(width), np.zeros(width)
        for layer in product:
            basis, upper = np.linalg.qr(layer @ basis)
            logs += np.log(np.abs(np.diag(upper)))
        per_product.append(logs / depth)
        total = np.eye(width)
        for layer in product:
            total = layer @ total
        log_dets.append(np.linalg.slogdet(total)[1] / depth)
    per_product = np.array(per_product)
    np.testing.assert_allclose(estimate.exponents, per_product.mean(0), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(estimate.exponents_stderr, per_product.std(0, ddof=1) / math.sqrt(samples),
                               rtol=1e-8)
    np.testing.assert_allclose(per_product.sum(1), log_dets, rtol=1e-9, atol=1e-12)


def test_same_seed_same_numbers_and_bad_arguments_are_refused():
    first = lyapunov_exponents(3, 10, 50, seed=7)
    again = lyapunov_exponents(3, 10, 50, seed=7)
    assert np.array_equal(first.exponents, again.exponents)
    assert not np.array_equal(first.exponents, lyapunov_exponents(3, 10, 50, seed=8).exponents)
    for arguments in [(0, 5, 10), (3, 0, 10), (3, 5, 1)]:
        with pytest.raises(VolumelabError):
            lyapunov_exponents(*arguments)
    with pytest.raises(VolumelabError):
        lyapunov_closed_form(3, 0.0)


def test_cli_prints_the_promised_keys_and_refuses_bad_input(capsys):
    code = main(["theory", "lyapunov", "--width", "3", "--depth", "50", "--samples", "200", "--seed", "1", "--json"])
    out, _ = capsys.readouterr()
    assert code == 0
    payload = json.loads(out)
    library = lyapunov_exponents(3, 50, 200, seed=1)
    assert payload["exponents"] == library.exponents.tolist()
    assert payload["exponents_stderr"] == library.exponents_stderr.tolist()
    assert payload["closed_form"] == library.closed_form.tolist()
    assert payload["exponents"][0] > payload["exponents"][1] > payload["exponents"][2]
    code = main(["theory", "lyapunov", "--width", "3", "--depth", "50", "--samples", "1"])
    _, err = capsys.readouterr()
    assert code == 2 and "--samples" in err and len(err.strip().splitlines()) == 1
    code = main(["theory", "lyapunov", "--width", "0", "--depth", "5"])
    _, err = capsys.readouterr()
    assert code == 2 and "--width" in err


def test_collapse_statistics_of_known_singular_values():
    """Singular values (4, 3, 0): top share 16/25, rank-one distance 3/5, effective rank exp(H(4/7, 3/7))."""
    stats_ = collapse_statistics(np.array([[4.0, 3.0, 0.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(stats_["top_share"], [16 / 25, 1 / 3])
    np.testing.assert_allclose(stats_["rank_one_distance"], [3 / 5, math.sqrt(2 / 3)])
    entropy = -(4 / 7 * math.log(4 / 7) + 3 / 7 * math.log(3 / 7))
    np.testing.assert_allclose(stats_["effective_rank"], [math.exp(entropy), 3.0])
    np.testing.assert_allclose(stats_["sigma2_over_sigma1"], [0.75, 1.0])


def test_collapse_of_the_end_product_equals_an_svd_of_the_plain_product():
    """The renormalized running product against the plain product of the same layers, SVD in NumPy."""
    width, depth, samples, seed, variance = 4, 9, 6, 5, 0.25
    estimate = lyapunov_exponents(width, depth, samples, seed=seed, variance=variance)
    values = []
    for product in _layers(width, depth, samples, seed, variance):
        total = np.eye(width)
        for layer in product:
            total = layer @ total
        values.append(np.linalg.svd(total, compute_uv=False))
    plain = collapse_statistics(np.array(values), depth)
    assert estimate.collapse["unresolved_products"] == 0
    for name, per_product in plain.items():
        assert estimate.collapse[name] == pytest.approx(per_product.mean(), rel=1e-9), name
        assert estimate.collapse_stderr[name] == pytest.approx(per_product.std(ddof=1) / math.sqrt(samples),
                                                               rel=1e-6), name


def test_the_normalized_product_collapses_at_the_rate_of_the_exponent_gap():
    """log(s_1 / s_2) = (lambda_1 - lambda_2) D + O(1) (Oseledets): per layer, the estimate is within
    2/D + 4 SE of the closed-form gap at depth 60, and nearer to it than at depth 25. (At depth 60
    s_2/s_1 is about e^-12, inside float64 for every product; at depth 100 some products are rounding.)"""
    gap = float(np.subtract(*lyapunov_closed_form(4, 0.25)[:2]))
    deep = lyapunov_exponents(4, 60, 400, seed=11)
    shallow = lyapunov_exponents(4, 25, 400, seed=12)
    assert deep.collapse["unresolved_products"] == 0
    assert lyapunov_exponents(4, 300, 20, seed=1).collapse["unresolved_products"] > 0
    rate_deep = deep.collapse["log_sigma1_over_sigma2_per_layer"]
    assert abs(rate_deep - gap) < 2 / 60 + 4 * deep.collapse_stderr["log_sigma1_over_sigma2_per_layer"]
    assert abs(rate_deep - gap) < abs(shallow.collapse["log_sigma1_over_sigma2_per_layer"] - gap)
    assert deep.collapse["top_share"] > shallow.collapse["top_share"] > 0.9
    assert deep.collapse["effective_rank"] < shallow.collapse["effective_rank"]


def test_product_collapse_equals_a_numpy_svd_of_the_same_draws_and_the_qr_estimate():
    """The sweep method's means are those of a NumPy SVD of its own draws (redrawn from its stream),
    and its exponents are lyapunov_exponents' at the hidden layers' variance 1/width."""
    from volumelab import FactorizationModel, make_problem
    from volumelab.diagnostics import ProductCollapse
    from volumelab.diagnostics.lyapunov import QR_SAMPLES
    from volumelab.samplers import select_sampler

    problem = make_problem("sensing", 5, 5, rank=1, num_measurements=15, seed=0)
    for activation in ("linear", "tanh"):
        model = FactorizationModel(5, 5, 5, 4, activation=activation, normalize=True)
        result = ProductCollapse().run(problem, model, 300, seed=2)
        draws = select_sampler(model).sample(model, 300, make_generator(2, "collapse"), dtype=torch.float32)
        draws = draws.to(torch.float64)
        values = np.linalg.svd(draws.numpy(), compute_uv=False)
        squares = values ** 2
        expected = {"sigma2_over_sigma1": values[:, 1] / values[:, 0], "top_share": squares[:, 0] / squares.sum(1),
                    "top2_share": squares[:, :2].sum(1) / squares.sum(1)}
        for key, series in expected.items():
            assert result.metrics[key] == pytest.approx(series.mean(), rel=1e-10), key
            assert result.standard_errors[key] == pytest.approx(series.std(ddof=1) / math.sqrt(300), rel=1e-8)
        if activation == "linear":
            estimate = lyapunov_exponents(5, 4, QR_SAMPLES, seed=2)
            assert result.metrics["gap"] == pytest.approx(estimate.exponents[0] - estimate.exponents[1])
            assert result.metrics["gap_closed_form"] == pytest.approx(estimate.closed_form[0] - estimate.closed_form[1])
        else:
            assert "gap" not in result.metrics  # no closed form for a nonlinear product


def test_tensor_collapse_averages_a_numpy_svd_of_every_unfolding():
    """For a CP model, the means are over draws of the mode-averaged statistics of the unfoldings T_(n), each
    from a NumPy SVD of the method's own draws (redrawn from its stream, unfolded by a plain transpose)."""
    from volumelab.diagnostics import ProductCollapse
    from volumelab.models import CPModel
    from volumelab.problems import make_tensor_problem
    from volumelab.samplers import select_sampler

    problem = make_tensor_problem("tensor-sensing", (3, 4, 5), 1, 10, seed=0)
    model = CPModel((3, 4, 5), 4, depth=3, normalize=True)
    result = ProductCollapse().run(problem, model, 200, seed=1)
    draws = select_sampler(model).sample(model, 200, make_generator(1, "collapse"), dtype=torch.float32)
    draws = draws.to(torch.float64).numpy()
    shares, ratios = [], []
    for mode in range(3):
        axes = [mode] + [a for a in range(3) if a != mode]
        unfolded = np.stack([d.transpose(axes).reshape(d.shape[mode], -1) for d in draws])
        values = np.linalg.svd(unfolded, compute_uv=False)
        shares.append(values[:, 0] ** 2 / (values ** 2).sum(1))
        ratios.append(values[:, 1] / values[:, 0])
    share, ratio = sum(shares) / 3, sum(ratios) / 3
    assert result.metrics["top_share"] == pytest.approx(share.mean(), rel=1e-10)
    assert result.metrics["sigma2_over_sigma1"] == pytest.approx(ratio.mean(), rel=1e-10)
    assert result.standard_errors["top_share"] == pytest.approx(share.std(ddof=1) / math.sqrt(200), rel=1e-8)
    # The factor matrices are products of 4 x 4 layers of variance 1/4: the QR gap is the matrix one's.
    from volumelab.diagnostics.lyapunov import QR_SAMPLES

    estimate = lyapunov_exponents(4, 3, QR_SAMPLES, seed=1)
    assert result.metrics["gap"] == pytest.approx(estimate.exponents[0] - estimate.exponents[1])


def test_a_rank_one_cp_prior_has_every_unfolding_of_rank_one():
    from volumelab.diagnostics import ProductCollapse
    from volumelab.models import CPModel
    from volumelab.problems import make_tensor_problem

    problem = make_tensor_problem("tensor-sensing", (3, 3, 3), 1, 6, seed=0)
    rank_one = ProductCollapse().run(problem, CPModel((3, 3, 3), 1), 100, seed=0)
    assert rank_one.metrics["top_share"] == pytest.approx(1.0, abs=1e-6)
    assert rank_one.metrics["sigma2_over_sigma1"] < 1e-3
    several = ProductCollapse().run(problem, CPModel((3, 3, 3), 6), 2000, seed=0)
    assert several.metrics["top_share"] < 0.9


def test_degenerate_products_give_inf_and_nan_without_warnings():
    """A rank-one product (sigma2 = 0) has log(s1/s2) = inf, a zero product NaN: values, not warnings."""
    import warnings

    import numpy as np

    from volumelab.diagnostics.lyapunov import collapse_statistics

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = collapse_statistics(np.array([[1.0, 0.0], [0.0, 0.0], [2.0, 1.0]]), depth=2)
    assert np.isinf(out["log_sigma1_over_sigma2_per_layer"][0]) and np.isnan(out["sigma2_over_sigma1"][1])
    assert out["sigma2_over_sigma1"][2] == 0.5 and out["log_sigma1_over_sigma2_per_layer"][2] == np.log(2) / 2
