"""Lyapunov exponents of products of random Gaussian matrices (the depth mechanism of Theorem 2).

For ``P_D = W_D ... W_1`` with ``k x k`` layers of i.i.d. ``N(0, sigma^2)`` entries, the
Lyapunov exponents are the limits ``lambda_i = lim_D (1/D) log s_i(P_D)`` of the log singular
values. The **QR method** (Benettin et al. 1980) computes them stably: start from
``Q_0 = I``; at each layer factor ``W_t Q_{t-1} = Q_t R_t``; then
``lambda_i ~ (1/D) sum_t log |R_t[i, i]|``.

**Closed form** (Newman 1986): ``lambda_i = (1/2) [log(2 sigma^2) + psi((k - i + 1) / 2)]``,
``i = 1..k``, with ``psi`` the digamma function. For Gaussian layers it holds exactly at any
depth in expectation: ``W_t Q_{t-1}`` is again a Gaussian matrix (rotation invariance), so
``|R_t[i, i]|^2 / sigma^2`` is chi-square with ``k - i + 1`` degrees of freedom, independent
over ``t``, and ``E log chi^2_n = log 2 + psi(n / 2)``. The estimator is thus unbiased, and its
standard error is the spread over independent products.

The gap ``lambda_1 - lambda_2`` is what makes deep normalized products collapse towards rank
one: ``s_2 / s_1 ~ exp(-(lambda_1 - lambda_2) D)``. Each estimate also reports that collapse,
measured on the normalized end product (:func:`collapse_statistics`); its singular values come
from an SVD in float64, so ratios below about 1e-12 are rounding: measured at k = 4 (gap 0.193),
``log(s_1/s_2)/D`` reads 0.208 at depth 50 (the O(1/D) approach) but 0.171 at depth 200, where
``s_2/s_1 ~ e^-39``. Such products are counted in ``unresolved_products``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.special import digamma, entr

from .._rng import make_generator
from ..errors import VolumelabError
from ..models import CPModel, FactorizationModel
from .prior_law import PriorDraws

__all__ = ["CHUNK", "LyapunovEstimate", "ProductCollapse", "collapse_statistics", "lyapunov_closed_form",
           "lyapunov_exponents"]


def lyapunov_closed_form(width: int, variance: float) -> np.ndarray:
    """Newman's exponents ``(1/2)[log(2 sigma^2) + psi((k - i + 1)/2)]``, ``i = 1..k``, largest first."""
    if width < 1:
        raise VolumelabError(f"width must be at least 1, got {width}")
    if not variance > 0:
        raise VolumelabError(f"the entry variance must be positive, got {variance}")
    degrees = np.arange(width, 0, -1, dtype=np.float64)
    return 0.5 * (math.log(2.0 * variance) + digamma(degrees / 2.0))


@dataclass(frozen=True)
class LyapunovEstimate:
    """The QR-method exponents (largest first), their standard errors, and the closed form."""

    width: int
    depth: int
    samples: int
    variance: float
    exponents: np.ndarray
    exponents_stderr: np.ndarray
    closed_form: np.ndarray
    #: Statistics of each product's normalized end point ``P_D / ||P_D||_F``, mean and SE over the
    #: products (see :func:`collapse_statistics`).
    collapse: dict[str, float]
    collapse_stderr: dict[str, float]
    #: The SE of ``lambda_1 - lambda_2``: the spread of each product's own difference (the two are correlated).
    gap_stderr: float | None = None

    def to_dict(self) -> dict:
        return {"width": self.width, "depth": self.depth, "samples": self.samples, "variance": self.variance,
                "exponents": self.exponents.tolist(), "exponents_stderr": self.exponents_stderr.tolist(),
                "closed_form": self.closed_form.tolist(), "collapse": self.collapse,
                "collapse_stderr": self.collapse_stderr,
                "gap": float(self.exponents[0] - self.exponents[1]) if self.width > 1 else None,
                "gap_stderr": self.gap_stderr,
                "gap_closed_form": float(self.closed_form[0] - self.closed_form[1]) if self.width > 1 else None}


def collapse_statistics(singular_values: np.ndarray, depth: int = 1) -> dict[str, np.ndarray]:
    """How close each normalized product is to rank one, from its singular values ``(n, k)`` (largest first).

    ``sigma2_over_sigma1``; ``top_share`` ``s_1^2 / sum s_i^2`` (the share of the squared
    Frobenius norm in the top singular value); ``rank_one_distance`` ``sqrt(1 - top_share)``, the
    Frobenius distance of ``P / ||P||_F`` from its nearest rank-one matrix (Eckart-Young);
    ``effective_rank`` ``exp(-sum p_i log p_i)`` with ``p_i = s_i / sum s_j`` (Roy & Vetterli 2007);
    ``log_sigma1_over_sigma2_per_layer`` ``log(s_1 / s_2) / depth``, which tends to
    ``lambda_1 - lambda_2``.
    """
    values = np.asarray(singular_values, dtype=np.float64)
    squares = values ** 2
    # A ReLU product can be exactly rank one (sigma2 = 0: log(s1/s2) = inf) or zero (0/0 = NaN). Those
    # values are the measurement, counted by the studies, not a numerical accident to warn about.
    with np.errstate(divide="ignore", invalid="ignore"):
        top_share = squares[:, 0] / squares.sum(1)
        out = {"top_share": top_share, "rank_one_distance": np.sqrt(np.clip(1.0 - top_share, 0.0, None)),
               "effective_rank": np.exp(entr(values / values.sum(1, keepdims=True)).sum(1))}
        if values.shape[1] > 1:
            out["sigma2_over_sigma1"] = values[:, 1] / values[:, 0]
            out["log_sigma1_over_sigma2_per_layer"] = np.log(values[:, 0] / values[:, 1]) / depth
    return out


def _unfolding_singular_values(draws: torch.Tensor) -> list[np.ndarray]:
    """Singular values ``(n, dims[m])`` of each distinct unfolding of ``draws (n, *dims)``: every mode of a tensor,
    the matrix itself at order 2 (its other unfolding is its transpose)."""
    order = draws.ndim - 1
    modes = range(order) if order > 2 else (0,)
    return [torch.linalg.svdvals(draws.movedim(1 + mode, 1).reshape(draws.shape[0], draws.shape[1 + mode], -1)
                                 .contiguous()).numpy() for mode in modes]


def _collapse_with_top2(values: np.ndarray, depth: int) -> dict[str, np.ndarray]:
    """:func:`collapse_statistics` and ``top2_share``, the top two singular values' share (what rank 2 needs)."""
    statistics = collapse_statistics(values, depth)
    if values.shape[1] > 1:
        squares = values ** 2
        statistics["top2_share"] = squares[:, :2].sum(1) / squares.sum(1)
    return statistics


#: Below this sigma_2 / sigma_1 a float64 SVD of the normalized product resolves no more than rounding.
RESOLVED_RATIO = 1e-12
#: Products drawn and stepped together (fixed: PyTorch's ``randn`` in pieces of other sizes gives other numbers).
CHUNK = 4096


def lyapunov_exponents(width: int, depth: int, samples: int, seed: int = 0,
                       variance: float | None = None) -> LyapunovEstimate:
    """The Lyapunov exponents of ``samples`` independent depth-``depth`` products of ``width x width`` Gaussians.

    Each product is one estimate per exponent, ``(1/D) sum_t log |R_t[i, i]|``; the result is
    their mean with standard error ``sd / sqrt(samples)`` (so ``samples >= 2``). ``variance``
    is the entry variance ``sigma^2`` (default ``1 / width``, the paper's scaling of a hidden
    layer). Float64; the random numbers come from ``(seed, "lyapunov")``, :data:`CHUNK`
    products at a time, so the result depends only on the arguments.
    """
    if width < 1 or depth < 1:
        raise VolumelabError(f"width and depth must be at least 1, got width {width}, depth {depth}")
    if samples < 2:
        raise VolumelabError(f"samples must be at least 2 (the standard error is their spread), got {samples}")
    variance = 1.0 / width if variance is None else float(variance)
    closed = lyapunov_closed_form(width, variance)
    generator = make_generator(seed, "lyapunov")
    scale = math.sqrt(variance)
    per_product, finals = [], []
    for start in range(0, samples, CHUNK):
        count = min(CHUNK, samples - start)
        # One stream, one product at a time in order: product p's layers are consecutive draws.
        layers = torch.randn((count, depth, width, width), generator=generator, dtype=torch.float64) * scale
        basis = torch.eye(width, dtype=torch.float64).expand(count, width, width)
        product = torch.eye(width, dtype=torch.float64).expand(count, width, width)
        logs = torch.zeros(count, width, dtype=torch.float64)
        for t in range(depth):
            basis, upper = torch.linalg.qr(layers[:, t] @ basis)
            logs += torch.log(torch.diagonal(upper, dim1=-2, dim2=-1).abs())
            # The normalized product itself, rescaled every layer (the scale cancels in every statistic).
            product = layers[:, t] @ product
            product = product / torch.linalg.matrix_norm(product)[:, None, None]
        per_product.append(logs / depth)
        finals.append(torch.linalg.svdvals(product))
    estimates = torch.cat(per_product).numpy()
    statistics = collapse_statistics(torch.cat(finals).numpy(), depth)
    unresolved = int((statistics["sigma2_over_sigma1"] < RESOLVED_RATIO).sum()) if width > 1 else 0
    collapse = {name: float(values.mean()) for name, values in statistics.items()}
    collapse["unresolved_products"] = unresolved
    collapse_se = {name: float(values.std(ddof=1) / math.sqrt(samples)) for name, values in statistics.items()}
    gap_se = (float((estimates[:, 0] - estimates[:, 1]).std(ddof=1) / math.sqrt(samples)) if width > 1 else None)
    return LyapunovEstimate(width, depth, samples, variance, estimates.mean(0),
                            estimates.std(0, ddof=1) / math.sqrt(samples), closed, collapse, collapse_se, gap_se)


#: Products the QR method steps for :class:`ProductCollapse` (its cost is depth x this; the draws' count is the budget).
QR_SAMPLES = 2000


@dataclass(frozen=True)
class ProductCollapse(PriorDraws):
    """Theorem 2's mechanism as a sweep method: how close the prior's end-to-end ``W`` is to rank one.

    ``run(problem, model, draws, seed)`` draws ``draws`` end-to-end matrices from the model's
    prior (its fastest exact sampler, stream ``(seed, "collapse")``) and reports the
    mean over draws, with its standard error, of each :func:`collapse_statistics` value (draws in
    float32 as G&C's, singular values in float64):
    ``sigma2_over_sigma1``, ``top_share``, ``rank_one_distance``, ``effective_rank`` and
    ``log_sigma1_over_sigma2_per_layer``, and the share of the top two singular values
    ``top2_share`` (what rank-2 ground truth needs). These hold for any activation; the
    normalization divides ``W`` by a scalar and changes none of them. A draw that is exactly 0
    (possible with ReLU: every unit of a layer off) has no singular direction; such draws are
    counted in ``zero_draws`` and the means are over the others.

    For the product the theorem is about (linear, zero-mean Gaussian prior, depth >= 2) it also
    reports the QR-method exponents of :data:`QR_SAMPLES` depth-``depth`` products of
    ``width x width`` layers with the hidden layers' variance ``1/width`` (``lambda1``,
    ``lambda2``, ``gap``, stream ``(seed, "lyapunov")``) next to Newman's closed form
    (``lambda1_closed_form``, ``gap_closed_form``).
    """

    method = "collapse"
    model_types = (FactorizationModel, CPModel)

    def run(self, problem, model, budget: int = 10_000, seed: int = 0):
        """A matrix ``W``'s statistics, or a CP model's tensor ``T``'s: those of every mode-n unfolding ``T_(n)``
        (``dims[n] x`` the rest), averaged over the modes draw by draw. A tensor of CP rank one has every
        unfolding of rank one; at order 2 the unfoldings are ``W`` and ``W^T``, so ``W``'s alone are used."""
        import time

        from ..optimizers.base import RunResult

        self.check(problem, model, budget)
        start = time.perf_counter()
        pieces = [_unfolding_singular_values(block) for block in self.blocks(model, budget, seed)]
        per_mode = [np.concatenate(part) for part in zip(*pieces)]
        diagnostics = {"seed": seed, "sampler": self.sampler, "unfoldings": len(per_mode)}
        if not all(np.all(np.isfinite(values)) for values in per_mode):
            diagnostics["seconds"] = time.perf_counter() - start
            return RunResult(self.method, "diverged", {"draws": budget}, {}, {}, diagnostics)
        # A ReLU product can be exactly 0 (every unit of a layer off): it has no direction to collapse.
        # Such draws are counted, and the statistics are over the others.
        zero = per_mode[0][:, 0] <= 0
        if int((~zero).sum()) < 2:
            diagnostics["seconds"] = time.perf_counter() - start
            return RunResult(self.method, "diverged", {"draws": budget, "zero_draws": int(zero.sum())}, {}, {},
                             diagnostics)
        stats = [_collapse_with_top2(values[~zero], model.depth) for values in per_mode]
        averaged = {name: sum(s[name] for s in stats) / len(stats) for name in stats[0]}
        metrics, errors = self._summaries(averaged, budget, int(zero.sum()))
        self._add_lyapunov(model, seed, metrics, errors)
        diagnostics["seconds"] = time.perf_counter() - start
        return RunResult(self.method, "ok", metrics, errors, {}, diagnostics)

    @staticmethod
    def _summaries(statistics: dict, budget: int, zero_draws: int) -> tuple[dict, dict]:
        """Each statistic's mean over draws and its SE, as metrics (the SEs too) and errors."""
        metrics: dict = {"draws": budget, "zero_draws": zero_draws}
        errors: dict = {}
        for name, series in statistics.items():
            metrics[name] = float(series.mean())
            errors[name] = float(series.std(ddof=1) / math.sqrt(len(series)))
            # Also as metrics: a sweep's table keeps metrics only, and the verdicts pool these SEs.
            metrics[f"{name}_stderr"] = errors[name]
        return metrics, errors

    @staticmethod
    def _add_lyapunov(model, seed: int, metrics: dict, errors: dict) -> None:
        """The QR-method exponents of the model's ``width x width`` products next to Newman's closed form, for the
        linear Gaussian product (a CP model's factor matrices: products of ``R x R`` layers of variance 1/R)."""
        if (model.is_linear and model.depth >= 2 and model.width >= 2 and model.prior == "gaussian"
                and not model.weight_mean):
            estimate = lyapunov_exponents(model.width, model.depth, QR_SAMPLES, seed=seed)
            metrics.update(lambda1=float(estimate.exponents[0]), lambda2=float(estimate.exponents[1]),
                           gap=float(estimate.exponents[0] - estimate.exponents[1]),
                           lambda1_closed_form=float(estimate.closed_form[0]),
                           gap_closed_form=float(estimate.closed_form[0] - estimate.closed_form[1]))
            errors.update(lambda1=float(estimate.exponents_stderr[0]), lambda2=float(estimate.exponents_stderr[1]),
                          gap=estimate.gap_stderr)
            metrics["gap_stderr"] = estimate.gap_stderr
