"""Theorem 1's mechanism, measured: how far the prior's end-to-end ``W`` is from its Gaussian
limit, and how dependent the training and generalization losses are under the prior.

Theorem 1 of arXiv 2506.03931 says that with an anti-symmetric activation and an i.i.d.
zero-mean prior, the end-to-end matrix tends to an i.i.d. Gaussian matrix as the width grows;
then ``L_train`` (a function of ``W``'s projection on the measurements' span) and ``L_gen``
(of its projection on the orthogonal complement) become independent, and conditioning on a
small ``L_train`` tells nothing about ``L_gen``. :class:`PriorLaw` measures each link of that
chain on prior draws, as a sweep method (the optimizers' interface, like
:class:`volumelab.diagnostics.spectrum.NTKAtInit`):

* entries: ``entry_variance`` (the mean over entries of each entry's variance; the linear
  prior's exact value is ``1/rows`` under the paper's scaling) and ``excess_kurtosis`` (the
  mean over entries of ``m4 / m2^2 - 3``; 0 for a Gaussian; ``6/k`` for the linear depth-2
  prior of width ``k``: given the first layer, an entry is ``N(0, S/rows)`` with
  ``S ~ chi^2_k / k``, so ``E W^4 = 3 E[S^2] / rows^2 = 3 (1 + 2/k) / rows^2``);
* dependence between entries: ``row_correlation`` / ``col_correlation`` (the mean Pearson
  correlation over pairs of entries in one row / one column; 0 for any zero-mean prior by
  symmetry, not for a prior with non-zero mean) and ``row_square_correlation`` /
  ``col_square_correlation`` (the same for the squared centred entries: 0 for independent
  entries, positive where entries share a random scale, as a finite-width product's do);
* a moment statistic against the Gaussian with the draws' own covariance: Mardia's
  multivariate kurtosis ``b2 = mean_i (d_i^T S^-1 d_i)^2`` (Mardia 1970), reported as
  ``mardia_excess = b2 / E_0[b2] - 1`` and ``mardia_z = (b2 - E_0[b2]) / sqrt(Var_0[b2])``,
  with ``E_0[b2] = p (p + 2) (n - 1) / (n + 1)`` (Mardia 1970) and
  ``Var_0[b2] = 8 p (p + 2) (n - 3) (n - p - 1) (n - p + 1) / ((n + 1)^2 (n + 3) (n + 5))``
  (Mardia 1974, Sankhya B 36, eq. 3.6; ``8 p (p + 2) / n`` as ``n`` grows) its exact mean and
  variance under a Gaussian, so ``mardia_z`` has mean 0 and variance 1 there at every ``n``
  (approximately ``N(0, 1)``; its skewness fades like ``p / sqrt(n)``). Their standard errors
  are not batch means but the delta method (:func:`mardia_kurtosis`);
* the losses under the prior: ``loss_correlation`` (Pearson), ``loss_rank_correlation``
  (Spearman) and ``loss_mutual_information`` (nats, :func:`ksg_mutual_information` on the
  ranks), each 0 when ``L_train`` and ``L_gen`` are independent; with the prior's mean
  losses ``prior_train_loss`` and ``prior_gen_loss``.

Every statistic is computed on all draws; its standard error is the spread over
:data:`BATCHES` equal batches of the draws (batch means, ``std / sqrt(B)``), but Mardia's
(:func:`mardia_kurtosis` says why). Draws come from
the model's fastest exact sampler (:func:`volumelab.samplers.select_sampler`), from
the ``(seed, "prior_law")`` stream, in float32 (:data:`DRAW_DTYPE`), with every statistic computed in float64.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch
from scipy import special, stats
from scipy.spatial import cKDTree

from .._rng import make_generator
from ..errors import OptimizerError
from ..models import FactorizationModel
from .base import Measurement
from ..optimizers.base import RunResult

__all__ = ["BATCHES", "CHUNK", "CHUNK_BYTES", "ENTRY_KEYS", "KSG_NEIGHBOURS", "LOSS_KEYS", "MardiaKurtosis", "PriorDraws",
           "PriorLaw", "chunk_size", "entry_statistics", "ksg_mutual_information", "loss_dependence", "mardia_kurtosis",
           "row_correlation_closed_form"]

#: Equal batches of the draws whose spread gives each statistic's standard error.
BATCHES = 10
#: Neighbours of the Kraskov-Stoegbauer-Grassberger estimator (their recommended 2-4).
KSG_NEIGHBOURS = 3
#: Draws per sampler call at most, and the working memory one call may take: the chunk is the smaller of the
#: two (a function of the model only, so the draws depend on the arguments alone).
CHUNK = 4096
CHUNK_BYTES = 1 << 26
#: The draws are made in this precision, as G&C's are (the samplers' speed is measured in float32:
#: benchmarks/RESULTS_NOTES.md), and the statistics in float64; the draws' rounding (relative 6e-8) is far
#: below any statistic's standard error.
DRAW_DTYPE = torch.float32

ENTRY_KEYS = ("entry_variance", "excess_kurtosis", "row_correlation", "col_correlation", "row_square_correlation",
              "col_square_correlation", "mardia_excess", "mardia_z")
LOSS_KEYS = ("loss_correlation", "loss_rank_correlation", "loss_mutual_information")


def _pair_mean(corr: np.ndarray, rows: int, cols: int, axis: str) -> float | None:
    """The mean of ``corr`` over pairs of distinct entries sharing a row (``axis="row"``) or a column."""
    index = np.arange(rows * cols).reshape(rows, cols)
    groups = index if axis == "row" else index.T
    if groups.shape[1] < 2:
        return None
    upper = np.triu_indices(groups.shape[1], 1)
    values = [corr[np.ix_(group, group)][upper] for group in groups]
    return float(np.mean(np.concatenate(values)))


def entry_statistics(draws: np.ndarray) -> dict[str, float | None]:
    """The Gaussian-limit statistics of ``draws`` ``(n, rows, cols)``: see the module docstring."""
    draws = np.asarray(draws, dtype=np.float64)
    if draws.ndim != 3 or draws.shape[0] < 4:
        raise ValueError(f"draws must be (n >= 4, rows, cols), got shape {draws.shape}")
    n, rows, cols = draws.shape
    p = rows * cols
    centred = draws.reshape(n, p) - draws.reshape(n, p).mean(0)
    variance = np.mean(centred ** 2, axis=0)
    if np.any(variance <= 0):
        raise ValueError("an entry of the draws is constant: its kurtosis and correlations do not exist")
    kurtosis = np.mean(centred ** 4, axis=0) / variance ** 2 - 3.0
    corr = np.corrcoef(centred, rowvar=False)
    squares = centred ** 2
    square_corr = np.corrcoef(squares, rowvar=False)
    out: dict[str, float | None] = {
        "entry_variance": float(variance.mean()),
        "excess_kurtosis": float(kurtosis.mean()),
        "row_correlation": _pair_mean(corr, rows, cols, "row"),
        "col_correlation": _pair_mean(corr, rows, cols, "col"),
        "row_square_correlation": _pair_mean(square_corr, rows, cols, "row"),
        "col_square_correlation": _pair_mean(square_corr, rows, cols, "col"),
    }
    mardia = mardia_kurtosis(draws) if n > p + 1 else None
    out["mardia_excess"] = mardia.excess if mardia else None
    out["mardia_z"] = mardia.z if mardia else None
    return out


@dataclass(frozen=True)
class MardiaKurtosis:
    """Mardia's multivariate kurtosis of ``n`` draws of ``p`` entries, its Gaussian null, and its standard error.

    Attributes:
        b2: ``mean_i (d_i^T S^-1 d_i)^2``, ``d_i`` the centred draws, ``S`` their biased covariance.
        null_mean: ``E_0[b2] = p (p + 2) (n - 1) / (n + 1)``, exact for Gaussian draws (Mardia 1970).
        null_variance: ``Var_0[b2] = 8 p (p + 2) (n - 3) (n - p - 1) (n - p + 1) / ((n + 1)^2 (n + 3) (n + 5))``,
            exact for Gaussian draws (Mardia 1974, eq. 3.6).
        b2_stderr: The delta-method (influence-function) standard error of ``b2`` under the draws' own law.
    """

    b2: float
    null_mean: float
    null_variance: float
    b2_stderr: float

    @property
    def excess(self) -> float:
        """``b2 / E_0[b2] - 1``: 0 in expectation for Gaussian draws."""
        return self.b2 / self.null_mean - 1.0

    @property
    def z(self) -> float:
        """``(b2 - E_0[b2]) / sqrt(Var_0[b2])``: mean 0 and variance 1 for Gaussian draws, at every ``n``."""
        return (self.b2 - self.null_mean) / math.sqrt(self.null_variance)

    @property
    def excess_stderr(self) -> float:
        """The standard error of :attr:`excess`: ``SE(b2) / E_0[b2]``."""
        return self.b2_stderr / self.null_mean

    @property
    def z_stderr(self) -> float:
        """The standard error of :attr:`z`: ``SE(b2) / sqrt(Var_0[b2])`` (about 1 for Gaussian draws)."""
        return self.b2_stderr / math.sqrt(self.null_variance)


def mardia_kurtosis(draws: np.ndarray) -> MardiaKurtosis:
    """Mardia's kurtosis ``b2`` of ``draws`` ``(n, rows, cols)`` (or ``(n, p)``), with its standard error.

    **Why not batch means.** ``mardia_z`` is a standardized statistic: its spread does not
    shrink with ``n`` (about 1 under the null at any ``n``), so the spread of the
    :data:`BATCHES` batches' values, divided by ``sqrt(B)``, reported an SE ``sqrt(B) = 3.2``
    times too small (measured at depth 1, 10^4 draws, 100 seeds: ``mardia_z`` had SD 1.05 and a
    reported SE of 0.31). ``mardia_excess`` does shrink like ``1/sqrt(n)``, but ``b2``'s
    variance has finite-sample factors of order ``p / n`` (Mardia's exact null variance
    above), large for batches of ``n / B`` draws: at 10^3 draws of ``p = 25`` entries its
    batch-means z-scores had SD 1.54 over 300 seeds. Both SEs now come from one
    ``SE(b2)`` on all draws, rescaled: ``SE(excess) = SE(b2) / E_0[b2]`` and
    ``SE(z) = SE(b2) / sqrt(Var_0[b2])``.

    **The standard error of b2** is the delta method: ``SE(b2) = sd_i(IF_i) / sqrt(n)``
    with the influence function of ``beta_2 = E[((x - mu)^T Sigma^-1 (x - mu))^2]``.
    Writing ``y = Sigma^-1/2 (x - mu)`` and ``D = |y|^2``, the direct term ``D^2 - beta_2``, the
    mean's (``dD = -2 y . u``) and the covariance's (``dSigma = u u^T - I`` in whitened
    coordinates, ``dD = |y|^2 - (y . u)^2``) add up to

        ``IF(u) = D(u)^2 - 2 u^T M u - 4 m_3 . u + beta_2``,  ``M = E[D y y^T]``, ``m_3 = E[D y]``,

    estimated with the draws' own ``M`` and ``m_3`` (without whitening:
    ``u_i^T M u_i = d_i^T N d_i`` with ``N = mean_j D_j s_j s_j^T``, ``s_j = S^-1 d_j``, and
    ``m_3 . u_i = d_i . mean_j D_j s_j``). For Gaussian draws ``M = (p + 2) I`` and ``m_3 = 0``,
    and ``Var IF = 8 p (p + 2)``: Mardia's asymptotic variance. The covariance's term is
    what makes the plain spread of ``D_i^2`` (variance ``8 p (p + 2) (p + 3)`` under the
    null) the wrong SE. Measured under the Gaussian null (``p = 25``), ``(b2 - E_0[b2]) / SE(b2)``
    has SD 0.92, 1.08 and 1.04 at ``n`` = 200, 10^3 and 10^4 (3000, 2000, 300 repetitions).

    Args:
        draws: ``(n, rows, cols)`` or ``(n, p)`` with ``n > p + 1``.

    Returns:
        A :class:`MardiaKurtosis`.
    """
    draws = np.asarray(draws, dtype=np.float64)
    n = draws.shape[0]
    flat = draws.reshape(n, -1)
    p = flat.shape[1]
    if n <= p + 1:
        raise ValueError(f"Mardia's kurtosis of {p} entries needs more than {p + 1} draws, got {n}")
    centred = flat - flat.mean(0)
    # The biased covariance (Mardia's definition); needs n > p for S to be invertible.
    covariance = centred.T @ centred / n
    solved = np.linalg.solve(covariance, centred.T).T
    distances = np.sum(centred * solved, axis=1)
    b2 = float(np.mean(distances ** 2))
    weighted = solved * distances[:, None]
    quadratic = np.sum((centred @ (weighted.T @ solved / n)) * centred, axis=1)
    influence = distances ** 2 - 2.0 * quadratic - 4.0 * centred @ weighted.mean(0) + b2
    null_mean = p * (p + 2) * (n - 1) / (n + 1)
    null_variance = 8 * p * (p + 2) * (n - 3) * (n - p - 1) * (n - p + 1) / ((n + 1) ** 2 * (n + 3) * (n + 5))
    return MardiaKurtosis(b2, null_mean, null_variance, float(influence.std(ddof=1) / math.sqrt(n)))


def _neighbours_within(values: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """For each ``values[i]``, the number of other points with ``|values[j] - values[i]| < radius[i]``.

    A tree query compares the same differences the joint query measured ``radius`` with (the
    ``k``-th neighbour lies at exactly ``radius`` in one coordinate and must not count), which
    shifted bounds ``values[i] -+ radius[i]`` would round differently.
    """
    tree = cKDTree(values[:, None])
    return tree.query_ball_point(values[:, None], np.nextafter(radius, 0), p=np.inf, return_length=True) - 1


def ksg_mutual_information(x, y, neighbours: int = KSG_NEIGHBOURS) -> float:
    """Mutual information of two scalar samples in nats: Kraskov, Stoegbauer & Grassberger (2004), estimator 1.

    ``I = psi(k) + psi(n) - mean_i [psi(n_x(i) + 1) + psi(n_y(i) + 1)]``, where ``eps_i`` is the
    max-norm distance from point ``i`` to its ``k``-th neighbour in the joint space and ``n_x(i)``
    counts the other points with ``|x_j - x_i| < eps_i``. Both margins are replaced by their
    normal scores ``Phi^-1(rank / (n + 1))`` first: mutual information is invariant to monotone
    maps, the scores tame the losses' heavy tails, and unlike plain ranks (uniform margins with
    hard edges, where the k-NN balls are cut off) they leave no boundary to bias the counts.
    The estimate can be negative (it is about 0 for independent samples): it is not clipped,
    unlike scikit-learn's ``mutual_info_regression``, so that means over seeds stay unbiased.
    """
    x = np.asarray(x, dtype=np.float64).ravel()
    y = np.asarray(y, dtype=np.float64).ravel()
    n = x.size
    if y.size != n:
        raise ValueError(f"x and y must have the same length, got {n} and {y.size}")
    if not 1 <= neighbours < n:
        raise ValueError(f"neighbours must be between 1 and n - 1 = {n - 1}, got {neighbours}")
    if not (np.all(np.isfinite(x)) and np.all(np.isfinite(y))):
        raise ValueError("x and y must be finite")
    rx = special.ndtri(stats.rankdata(x, method="average") / (n + 1))
    ry = special.ndtri(stats.rankdata(y, method="average") / (n + 1))
    joint = np.column_stack([rx, ry])
    distances, _ = cKDTree(joint).query(joint, k=neighbours + 1, p=np.inf)
    radius = distances[:, -1]
    nx = _neighbours_within(rx, radius)
    ny = _neighbours_within(ry, radius)
    return float(special.digamma(neighbours) + special.digamma(n)
                 - np.mean(special.digamma(nx + 1) + special.digamma(ny + 1)))


def loss_dependence(train_loss, gen_loss) -> dict[str, float]:
    """Pearson and Spearman correlation and the KSG mutual information of the two losses."""
    train = np.asarray(train_loss, dtype=np.float64)
    gen = np.asarray(gen_loss, dtype=np.float64)
    return {"loss_correlation": float(np.corrcoef(train, gen)[0, 1]),
            "loss_rank_correlation": float(stats.spearmanr(train, gen).statistic),
            "loss_mutual_information": ksg_mutual_information(train, gen)}


def row_correlation_closed_form(model) -> float | None:
    """The exact row correlation of a depth-2, zero-mean Gaussian prior with the paper's scaling, at any width.

    ``W = W_2 s(W_1)``: given ``H = s(W_1)``, entry ``(i, j)`` is ``sum_l W_2[i, l] H[l, j]``, so
    ``Cov(W_ij, W_ik) = sum_l E[W_2[i,l]^2] E[H_lj H_lk]`` and the correlation of two entries of one row is
    ``E[s(g)]^2 / E[s(g)^2]`` with ``g ~ N(0, 1)`` whenever ``s(g / sqrt k) = s(g) / sqrt k`` (ReLU, leaky ReLU:
    positively homogeneous) or ``E s = 0`` (an odd ``s``: linear, tanh, giving 0). ReLU: ``1/pi``; leaky ReLU of
    slope ``a``: ``(1 - a)^2 / (pi (1 + a^2))``. ``None`` for any other model (no closed form here).
    """
    if (not isinstance(model, FactorizationModel) or model.depth != 2 or model.prior != "gaussian"
            or model.weight_mean or model.scaling != "paper" or model.normalize):
        return None
    name = model.activation_name
    if name in ("linear", "tanh"):
        return 0.0
    if name == "relu":
        return 1.0 / math.pi
    if name == "leaky_relu":
        slope = model.negative_slope
        return (1.0 - slope) ** 2 / (math.pi * (1.0 + slope ** 2))
    return None


def chunk_size(sampler, model) -> int:
    """Draws per sampler call: :data:`CHUNK`, or fewer where one call would need over :data:`CHUNK_BYTES`.

    Wide nonlinear layers hold ``width x cols`` hidden values per draw: at width 10240 a chunk of 4096 draws
    would need gigabytes.
    """
    per_draw = max(1, sampler.bytes_per_sample(model, DRAW_DTYPE))
    return max(16, min(CHUNK, CHUNK_BYTES // per_draw))


def _statistics(draws: np.ndarray, train: np.ndarray, gen: np.ndarray) -> dict[str, float | None]:
    return {**entry_statistics(draws), **loss_dependence(train, gen),
            "prior_train_loss": float(train.mean()), "prior_gen_loss": float(gen.mean())}


@dataclass(frozen=True)
class PriorDraws(Measurement):
    """What the measurements on prior draws of ``W`` share: their settings, checks and draws.

    Attributes:
        sampler: ``"auto"`` (the fastest exact sampler) or a sampler's name; the statistics do not depend on it.
        device: ``"cpu"`` or ``"auto"`` (the CPU: the statistics are NumPy's).
    """

    sampler: str = "auto"
    device: str = "cpu"

    #: The method's name, which is also its random stream's: ``(seed, method)``.
    method = "prior_draws"
    #: The fewest draws a run takes.
    minimum_draws = 2
    #: The model families whose draws the diagnostic reads (a factorization's ``W``).
    model_types: ClassVar[tuple[type, ...]] = (FactorizationModel,)

    def __post_init__(self) -> None:
        if self.device not in ("auto", "cpu"):
            raise OptimizerError(f"the {self.method} diagnostic runs on the CPU, got device {self.device!r}")

    def check(self, problem, model, budget) -> None:
        """A one-line error for a budget below :attr:`minimum_draws`, a model without a ``W`` or the wrong shape."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < self.minimum_draws:
            raise OptimizerError(f"the number of draws must be an integer of at least {self.minimum_draws}, "
                                 f"got {budget!r}")
        if not isinstance(model, self.model_types):
            families = [kind.family for kind in self.model_types]
            raise OptimizerError(f"the {self.method} diagnostic needs a {' or '.join(families)} model "
                                 f"(an end-to-end {'matrix' if len(families) == 1 else 'array'})")
        mismatch = model.problem_mismatch(problem)
        if mismatch:
            raise OptimizerError(mismatch)

    def blocks(self, model, budget: int, seed: int):
        """``budget`` prior draws of ``W`` in float64 blocks ``(count, rows, cols)`` (a CP model's ``T``:
        ``(count, *dims)``), from ``(seed, method)``."""
        from ..samplers import select_sampler

        sampler = select_sampler(model, self.sampler)
        generator = make_generator(seed, self.method)
        chunk = chunk_size(sampler, model)
        for start in range(0, budget, chunk):
            count = min(chunk, budget - start)
            yield sampler.sample(model, count, generator, dtype=DRAW_DTYPE).to(torch.float64)


@dataclass(frozen=True)
class PriorLaw(PriorDraws):
    """The prior's end-to-end law against its Gaussian limit, and its losses' dependence (module docstring)."""

    method = "prior_law"
    minimum_draws = 20 * BATCHES

    def draw(self, problem, model, budget: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``budget`` prior draws of ``W`` ``(n, rows, cols)`` and their training and generalization losses."""
        tensors = problem.tensors(dtype=torch.float64)
        draws, train, gen = [], [], []
        for block in self.blocks(model, budget, seed):
            block_train, block_gen = tensors.losses(block.reshape(block.shape[0], -1))
            draws.append(block.numpy().copy())
            train.append(block_train.numpy())
            gen.append(block_gen.numpy())
        return np.concatenate(draws), np.concatenate(train), np.concatenate(gen)

    def run(self, problem, model, budget: int = 10_000, seed: int = 0) -> RunResult:
        """``budget`` prior draws; every statistic with its batch-means standard error."""
        self.check(problem, model, budget)
        start = time.perf_counter()
        draws, train, gen = self.draw(problem, model, budget, seed)
        diagnostics = {"seed": seed, "sampler": self.sampler, "seconds": None}
        if not (np.all(np.isfinite(draws)) and np.all(np.isfinite(train)) and np.all(np.isfinite(gen))):
            diagnostics["seconds"] = time.perf_counter() - start
            return RunResult(self.method, "diverged", {"draws": budget}, {}, {}, diagnostics)
        metrics: dict = {"draws": budget, **_statistics(draws, train, gen),
                         "row_correlation_closed_form": row_correlation_closed_form(model)}
        size = budget // BATCHES
        batches = [_statistics(draws[b * size:(b + 1) * size], train[b * size:(b + 1) * size],
                               gen[b * size:(b + 1) * size]) for b in range(BATCHES)]
        errors: dict = {}
        for key, value in metrics.items():
            if key in ("draws", "row_correlation_closed_form") or value is None:
                continue
            values = [batch[key] for batch in batches]
            errors[key] = (float(np.std(values, ddof=1) / math.sqrt(BATCHES))
                           if all(v is not None for v in values) else None)
        if metrics["mardia_excess"] is not None:
            # Not batch means: mardia_z's spread does not shrink with n (mardia_kurtosis says why).
            mardia = mardia_kurtosis(draws)
            errors["mardia_excess"], errors["mardia_z"] = mardia.excess_stderr, mardia.z_stderr
        # The judged statistics' SEs also as metrics: a sweep's table (results.csv) keeps metrics only.
        for key in ENTRY_KEYS + LOSS_KEYS:
            metrics[f"{key}_stderr"] = errors.get(key)
        diagnostics["seconds"] = time.perf_counter() - start
        return RunResult(self.method, "ok", metrics, errors, {}, diagnostics)
