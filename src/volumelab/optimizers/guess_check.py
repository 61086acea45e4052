"""Guess & Check: rejection sampling of the prior conditioned on ``L_train < eps``.

arXiv 2506.03931, Sec. 2: G&C draws weights from the prior until the training loss
is below ``eps``; statistically it samples the prior conditioned on fitting the data.
For a classifier, ``accept="train_error"`` conditions on the training error instead
(``train_error < eps``; with ``eps <= 1/n`` that is 100% training accuracy), the
criterion of the volume hypothesis on real data (Chiang et al., ICLR 2023).
For ``N`` draws this module reports the mean generalization loss of the accepted
draws, the mean generalization loss of all draws (the prior's "chance" level), the
number and rate of acceptances, and the standard error of each, plus an exact
confidence interval for the acceptance rate (:func:`acceptance_rate_interval`), which
stays informative when few or no draws are accepted.

Determinism: draws live in fixed blocks. The block size is a function of the model
and sampler only, and block ``b`` is drawn from the generator ``(seed, "gnc", b)``.
Per-block statistics are merged in block order with Chan et al.'s pairwise update,
so results do not depend on batch size (how many blocks are processed together),
thread count or processing order. On the CPU, blocks are computed in parallel by
worker threads, each block serially (random-number generation is serial per
generator, so per-block streams are what spreads it over the cores).
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm

from .._rng import make_generator
from ..device import available_memory_bytes, resolve_device
from ..errors import OptimizerError
from ..models import FactorizationModel
from ..problems import Problem
from ..samplers import PriorSampler, select_sampler
from ..samplers.workspace import Workspace, scratch, thread_workspace
from ._threads import configured_threads, map_in_threads
from .base import RunningMoments, RunResult, mean_and_stderr

__all__ = ["ACCEPTANCE_CONFIDENCE", "ACCEPT_CRITERIA", "KERNELS", "METHODS", "GuessCheck", "RunningMoments",
           "acceptance_rate_interval", "block_size_for"]

logger = logging.getLogger(__name__)

#: Aim for blocks of about this many bytes of float32 working memory on a GPU, where a
#: block is one sequence of kernel launches and must be large enough that the launches
#: (about 70 per block) cost little next to the arithmetic. On the CPU a block is one
#: worker thread's unit of work, sized by the sampler (``PriorSampler.cpu_block_bytes``).
_CUDA_BLOCK_BYTES = 1 << 30
_MIN_BLOCK = 64
_MAX_BLOCK = {"cpu": 1 << 16, "cuda": 1 << 22}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}
#: What a draw must bring below ``eps`` to be accepted: a score row of the task.
ACCEPT_CRITERIA = ("train_loss", "train_error")
#: How the conditional law is sampled: independent prior draws, or subset simulation (:mod:`.subset`).
METHODS = ("rejection", "subset")
#: Subset simulation's Markov kernels: elliptical slice sampling (no step size) or pCN (step adapted by the pilot).
KERNELS = ("slice", "pcn")

#: Confidence level of the reported acceptance-rate interval.
ACCEPTANCE_CONFIDENCE = 0.95


def acceptance_rate_interval(accepted: int, samples: int, confidence: float = ACCEPTANCE_CONFIDENCE
                             ) -> tuple[float, float]:
    """An exact confidence interval ``(low, high)`` for a binomial rate from ``accepted`` of ``samples``.

    With ``alpha = 1 - confidence``:

    * ``accepted == 0``: ``(0, 1 - alpha^(1/samples))``, the exact *one-sided* upper
      confidence bound (the largest rate under which no acceptance in ``samples``
      draws still has probability ``alpha``; about ``3 / samples`` at 95%, the "rule
      of three"). The lower end is 0, which no number of rejections can exclude.
    * otherwise the two-sided Clopper-Pearson interval, each tail ``alpha / 2``:
      ``low = Beta(alpha/2; accepted, samples - accepted + 1)`` quantile and
      ``high = Beta(1 - alpha/2; accepted + 1, samples - accepted)`` quantile, with
      ``high = 1`` when every draw was accepted. It inverts the binomial tails
      exactly: each end misses the true rate with probability at most ``alpha / 2``.

    Reporting the one-sided bound at zero acceptances (rather than the two-sided
    ``1 - (alpha/2)^(1/samples)``) lowers the coverage of the reported interval below
    ``confidence`` only for rates between those two bounds, and never below
    ``1 - 1.5 alpha`` (92.5% at 95%).

    Args:
        accepted: Number of accepted draws, ``0 <= accepted <= samples``.
        samples: Number of draws, at least 1.
        confidence: Confidence level in ``(0, 1)``.

    Returns:
        ``(low, high)`` with ``0 <= low <= accepted / samples <= high <= 1``.

    Raises:
        OptimizerError: For counts or a confidence level out of range.
    """
    if not 0 <= accepted <= samples or samples < 1:
        raise OptimizerError(f"need 0 <= accepted <= samples and samples >= 1, got {accepted} of {samples}")
    if not 0 < confidence < 1:
        raise OptimizerError(f"confidence must be in (0, 1), got {confidence!r}")
    alpha = 1.0 - confidence
    if accepted == 0:
        # 1 - alpha^(1/N), without the cancellation of 1 - (a number close to 1).
        return 0.0, -math.expm1(math.log(alpha) / samples)
    # Imported here: scipy.special takes ~0.3 s to import (scipy.stats ~0.9 s) and only this needs it.
    # betaincinv(a, b, q) is the q-quantile of Beta(a, b), i.e. scipy.stats.beta.ppf(q, a, b).
    from scipy.special import betaincinv

    low = float(betaincinv(accepted, samples - accepted + 1, alpha / 2))
    high = 1.0 if accepted == samples else float(betaincinv(accepted + 1, samples - accepted, 1 - alpha / 2))
    return low, high


def block_size_for(model: FactorizationModel, sampler: PriorSampler, device_type: str = "cpu") -> int:
    """Draws per randomness block: a power of two set by the model, sampler and device type alone.

    The device type enters because CPU and GPU use different generators anyway (the same
    seed gives the same law on both, not the same numbers); free memory, batch size and
    thread count never do.
    """
    fixed = model.gnc_block_size
    if fixed is not None:
        # A family whose draws' memory depends on the data (an MLP's activations on every
        # input) fixes its block size: the result then cannot depend on the data's size.
        return int(fixed)
    kind = "cuda" if device_type == "cuda" else "cpu"
    target = _CUDA_BLOCK_BYTES if kind == "cuda" else sampler.cpu_block_bytes
    per_draw = max(1, sampler.bytes_per_sample(model, torch.float32))
    size = 1 << max(0, int(math.floor(math.log2(max(1, target // per_draw)))))
    return int(min(_MAX_BLOCK[kind], max(_MIN_BLOCK, size)))


def _moments_of_rows(values: torch.Tensor) -> list[RunningMoments]:
    """:class:`RunningMoments` of each row of a ``(rows, n)`` float64 tensor."""
    count = int(values.shape[1])
    if count == 0:
        return [RunningMoments() for _ in range(values.shape[0])]
    mean = values.mean(1, keepdim=True)
    m2 = (values - mean).square_().sum(1)
    return [RunningMoments(count, mu, sq) for mu, sq in zip(mean.flatten().tolist(), m2.tolist())]


@dataclass
class _Tally:
    """Moments of every row of the blocks' ``(rows, n)`` scores, over all draws and over the accepted ones.

    Row 0 is ``L_train``, row 1 ``L_gen``, then the task's extra metrics (e.g. ``test_error``).
    """

    prior: list[RunningMoments] = field(default_factory=list)
    accepted: list[RunningMoments] = field(default_factory=list)
    min_train: float = math.inf
    #: Kept accepted draws (``keep_samples``): arrays by name, in block order.
    kept: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    kept_count: int = 0

    @classmethod
    def of_block(cls, losses: torch.Tensor, eps: float, accept_row: int = 0) -> "_Tally":
        """Statistics of one block's scores: a float64 ``(rows, block)`` tensor, rows ``(train, gen, ...)``.

        A draw is accepted when its score in row ``accept_row`` (0: ``L_train``) is below
        ``eps``. All rows are reduced together, which keeps the number of small tensor
        operations per block low.
        """
        train = losses[0]
        return cls(_moments_of_rows(losses), _moments_of_rows(losses[:, losses[accept_row] < eps]),
                   float(train.min()) if train.numel() else math.inf)

    def merge(self, other: "_Tally") -> None:
        if not self.prior:
            self.prior = [RunningMoments() for _ in other.prior]
            self.accepted = [RunningMoments() for _ in other.accepted]
        for mine, theirs in zip(self.prior + self.accepted, other.prior + other.accepted):
            mine.merge(theirs)
        self.min_train = min(self.min_train, other.min_train)

    def keep(self, other: "_Tally", limit: int) -> None:
        """Append ``other``'s kept draws (the next block's) up to ``limit`` in all."""
        room = limit - self.kept_count
        if room <= 0 or not other.kept_count:
            return
        for name, parts in other.kept.items():
            self.kept.setdefault(name, []).extend(part[:room] for part in parts)
        self.kept_count += min(room, other.kept_count)


def _kept_draws(draws, chosen: torch.Tensor, scores: torch.Tensor, names: tuple[str, ...]) -> dict:
    """The chosen draws (``W`` of a factorization, or each layer) and their scores, copied to the CPU."""
    if isinstance(draws, torch.Tensor):
        kept = {"W": draws[chosen].cpu()}
    else:
        kept = {f"layer_{j + 1}": layer[chosen].cpu() for j, layer in enumerate(draws)}
    for row, name in enumerate(names):
        kept[name] = scores[row, chosen].cpu()
    return {name: [value] for name, value in kept.items()}


class _LossContraction:
    #: The matrix tasks score only the two losses (no task metrics besides them).
    metric_names: tuple[str, ...] = ()
    """Train and generalization losses of a batch of draws, float32 where that is exact enough.

    The contraction is the task's (:meth:`ProblemTensors.batch_last_residuals` and
    :meth:`ProblemTensors.batch_last_losses`): with ``O`` the ``(m + t, rows * cols)``
    stacked flattened measurement and test matrices and ``V`` the ``(rows * cols, n)``
    draws, ``R = O V - b`` holds every residual; ``M (R * R)`` with the ``(2, m + t)``
    averaging matrix ``M`` gives both losses. This class only decides the precision.

    Float64 draws are contracted in float64. Float32 draws are contracted in float32
    (half the cost of casting them and contracting in float64), and every draw whose
    float32 training loss is below ``2 eps`` (every draw that could be accepted, with a
    factor-2 margin over the float32 error, which is about 1e-6 of the loss) gets both
    losses recomputed in float64 from the same float32 draw. Acceptance decisions and
    the accepted draws' statistics are therefore float64 exactly as if every draw had
    been contracted in float64; only the prior's (all draws') statistics use float32
    losses, whose relative error (~1e-6) lies far below their standard errors. For
    ``eps < 1e-6``, where float32 residuals could come within a factor 2 of ``eps``,
    every draw is contracted in float64.
    """

    #: Below this eps every draw is contracted in float64.
    FLOAT64_BELOW_EPS = 1e-6

    def __init__(self, problem: Problem, device: torch.device, eps: float) -> None:
        # The task's contraction (ProblemTensors' batch-last GEMMs), in both precisions.
        self.exact = problem.tensors(device, torch.float64)
        self.fast = self.exact.to(torch.float32)
        self.candidate_below = 2.0 * eps
        self.float32_allowed = eps >= self.FLOAT64_BELOW_EPS

    def _float64(self, flat: torch.Tensor, workspace: Workspace | None) -> torch.Tensor:
        """Float64 ``(2, n)`` losses of flattened draws ``flat (rows * cols, n)``."""
        count = flat.shape[1]
        device = flat.device
        flat64 = scratch(workspace, "loss_flat", tuple(flat.shape), torch.float64, device).copy_(flat)
        residual = scratch(workspace, "loss_residual", (self.exact.num_outputs, count), torch.float64, device)
        return self.exact.batch_last_losses(self.exact.batch_last_residuals(flat64, out=residual))

    def __call__(self, draws: torch.Tensor, workspace: Workspace | None = None) -> torch.Tensor:
        """Losses of ``draws (n, rows, cols)`` (``(n, *shape)`` of any order): a float64 ``(2, n)`` tensor,
        rows ``(train, gen)``.

        With a ``workspace`` the temporaries reuse its memory.
        """
        count = draws.shape[0]
        batch_last = draws.movedim(0, -1)
        if batch_last.is_contiguous():  # the fast samplers' layout: no transpose copy
            flat = batch_last.reshape(-1, count)
        else:
            flat = draws.reshape(count, -1).T
        if flat.dtype != torch.float32 or not self.float32_allowed:
            return self._float64(flat, workspace)
        device = flat.device
        residual = scratch(workspace, "loss_residual32", (self.fast.num_outputs, count), torch.float32, device)
        losses32 = self.fast.batch_last_losses(self.fast.batch_last_residuals(flat, out=residual),
                                               out=scratch(workspace, "loss_pair32", (2, count), torch.float32, device))
        losses = scratch(workspace, "loss_pair", (2, count), torch.float64, device).copy_(losses32)
        candidates = torch.lt(losses32[0], self.candidate_below).nonzero().flatten()
        if candidates.numel():
            losses[:, candidates] = self._float64(flat[:, candidates], None)
        return losses


class _OutputScorer:
    """Scores of draws of any model family whose task scores its outputs (an MLP on supervised data).

    A draw is the model's layers (the ``direct`` sampler); the task's tensors turn the
    model's outputs into ``(L_train, L_gen, *extra metrics)``. Float32 draws run the
    forward pass in float32, their scores are taken in float64 from those outputs, and
    every draw whose training loss is below ``2 eps`` (any that could be accepted) is
    scored again from a float64 forward pass of the same draw, as
    :class:`_LossContraction` does for matrices: acceptance and the accepted draws'
    statistics are float64 throughout.

    With ``accept="train_error"`` every draw is scored from a float64 forward pass. The
    candidate margin does not transfer to a 0/1 criterion: a training point counts as
    an error when ``y f(x) <= 0``, and a float32 output within rounding of 0 can have
    either sign however large or small the draw's loss is, so no threshold on the
    float32 loss (or error) picks out every draw whose float64 training error could be
    0. Scoring everything in float64 makes each decision exactly the float64 one, at
    the cost of the float64 forward pass.
    """

    FLOAT64_BELOW_EPS = _LossContraction.FLOAT64_BELOW_EPS

    def __init__(self, model, problem, device: torch.device, eps: float, accept: str = "train_loss") -> None:
        self.model = model
        self.exact = problem.tensors(device, torch.float64)
        self.fast = self.exact.to(torch.float32)
        self.metric_names = tuple(self.exact.metric_names)
        self.candidate_below = 2.0 * eps
        self.float32_allowed = eps >= self.FLOAT64_BELOW_EPS and accept == "train_loss"

    def _scores(self, layers, tensors) -> torch.Tensor:
        outputs = self.model.outputs(layers, tensors).to(torch.float64)
        train, gen = self.exact.losses(outputs)
        extra = self.exact.extra_metrics(outputs)
        return torch.stack([train, gen, *(extra[name] for name in self.metric_names)])

    def __call__(self, draws, workspace: Workspace | None = None) -> torch.Tensor:
        """Scores of ``draws`` (the layers, each ``(n, out, in)``): float64 ``(rows, n)``."""
        if draws[0].dtype != torch.float32 or not self.float32_allowed:
            return self._scores([layer.to(torch.float64) for layer in draws], self.exact)
        scores = self._scores(draws, self.fast)
        candidates = torch.lt(scores[0], self.candidate_below).nonzero().flatten()
        if candidates.numel():
            scores[:, candidates] = self._scores([layer[candidates].to(torch.float64) for layer in draws],
                                                 self.exact)
        return scores


def _scorer_for(model, problem, device: torch.device, eps: float, accept: str = "train_loss"):
    """How a block of draws becomes scores: the matrix tasks' contraction, or the generic output scorer."""
    if model.scores_array:  # a factorization's W, a CP model's T
        return _LossContraction(problem, device, eps)
    return _OutputScorer(model, problem, device, eps, accept)


def _check_finite(losses: torch.Tensor, model: FactorizationModel) -> None:
    if not bool(torch.isfinite(losses).all()):
        raise OptimizerError(
            f"non-finite losses in prior draws of {model.describe()}; the prior "
            "overflowed (use dtype='float64' or the normalized prior)"
        )


@dataclass(frozen=True)
class GuessCheck:
    """Guess & Check by batched rejection sampling.

    Attributes:
        eps: Acceptance threshold: a draw is accepted when its ``accept`` score is
            below it (``L_train < eps`` by default).
        sampler: ``"auto"`` (fastest exact sampler for the model) or a registered name.
        batch_size: Draws processed together; ``None`` chooses from free memory. It
            only controls memory and speed, never the result; it is rounded down to
            whole blocks (at least one). On a GPU, blocks (up to 2^22 draws, about
            1 GiB) run one at a time and this has no effect.
        device: ``"auto" | "cpu" | "cuda"``.
        dtype: ``"float32"`` (default) or ``"float64"`` for the draws. Estimators are
            always accumulated in float64, and acceptance is decided on float64 losses
            (float32 draws get float64 losses wherever they could be accepted; see
            ``_LossContraction``).
        memory_fraction: Share of free memory a batch may use when sizing automatically.
        progress: Show a progress bar.
        workers: CPU threads drawing blocks in parallel; ``None`` uses
            the process's torch thread count. Each block is computed by one thread with one
            intra-op thread, so the result does not depend on this or on the thread
            count (only speed does).
        keep_samples: Keep up to this many accepted draws (the first ones, in draw
            order) in the result's ``arrays``: ``W`` ``(K, rows, cols)`` for a
            factorization (the fast samplers draw ``W`` only, not the layers), or
            ``layer_1 .. layer_d`` for other families, with their ``train_loss``,
            ``gen_loss`` (and e.g. ``test_error``). Kept draws are in the draws' dtype.
        accept: What must be below ``eps``: ``"train_loss"`` (``L_train``, the paper's
            G&C) or ``"train_error"`` (the training error of a classification task, the
            logistic loss; any ``eps`` in ``(0, 1/n]`` accepts exactly the draws that
            classify all ``n`` training points correctly). With ``"train_error"`` every
            draw is scored from a float64 forward pass (see ``_OutputScorer``), so
            acceptance is the float64 decision; the reported statistics keep their
            meaning (``gen_loss`` is the accepted draws' mean test loss, ...).
        method: ``"rejection"`` (independent prior draws, the paper's G&C) or
            ``"subset"`` (subset simulation over a ladder of thresholds, the same
            conditional law at eps far below rejection's reach; :mod:`.subset`). With
            ``"subset"`` the budget counts model evaluations, the computation is in
            float64 on the prior's latent weights (``sampler``, ``dtype`` and
            ``batch_size`` do not apply), and the result adds ``ess``, ``rhat``,
            ``evaluations``, ``min_eps_reached`` and the ladder (``diagnostics["levels"]``).
        population: Subset simulation: states per level and replicate.
        level_fraction: Subset simulation: share of a level's population below the next
            threshold of the adaptive ladder (``p0``).
        replicates: Subset simulation: independent descents of the ladder; the standard
            errors are their spread.
        kernel: Subset simulation's Markov kernel: ``"slice"`` (elliptical slice
            sampling, no step size) or ``"pcn"`` (preconditioned Crank-Nicolson, one
            evaluation per move, its step adapted per level by the pilot).
        moves: Subset simulation: kernel steps between the recorded states of a chain
            at the ladder's levels (1: every step is recorded); more decorrelate each
            level's population from its seeds at that many times the cost.
    """

    eps: float
    sampler: str = "auto"
    batch_size: int | None = None
    device: str = "auto"
    dtype: str = "float32"
    memory_fraction: float = 0.25
    progress: bool = False
    workers: int | None = None
    keep_samples: int = 0
    accept: str = "train_loss"
    method: str = "rejection"
    population: int = 500
    level_fraction: float = 0.1
    replicates: int = 8
    kernel: str = "pcn"
    moves: int = 5

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise OptimizerError(f"method must be one of {', '.join(METHODS)}, got {self.method!r}")
        for name, minimum in (("population", 10), ("replicates", 2), ("moves", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise OptimizerError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if not (isinstance(self.level_fraction, (int, float)) and 0 < self.level_fraction < 1):
            raise OptimizerError(f"level_fraction must be in (0, 1), got {self.level_fraction!r}")
        if self.kernel not in KERNELS:
            raise OptimizerError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.method == "subset" and self.keep_samples:
            raise OptimizerError("keep_samples is only available with method='rejection'")
        if self.accept not in ACCEPT_CRITERIA:
            raise OptimizerError(f"accept must be one of {', '.join(ACCEPT_CRITERIA)}, got {self.accept!r}")
        if isinstance(self.keep_samples, bool) or not isinstance(self.keep_samples, int) or self.keep_samples < 0:
            raise OptimizerError(f"keep_samples must be a non-negative integer, got {self.keep_samples!r}")
        if self.workers is not None and (
            isinstance(self.workers, bool) or not isinstance(self.workers, int) or self.workers < 1
        ):
            raise OptimizerError(f"workers must be a positive integer or None, got {self.workers!r}")
        if not (isinstance(self.eps, (int, float)) and math.isfinite(self.eps) and self.eps > 0):
            raise OptimizerError(f"eps must be a positive finite number, got {self.eps!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise OptimizerError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.dtype not in _DTYPES:
            raise OptimizerError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not 0 < self.memory_fraction <= 1:
            raise OptimizerError(f"memory_fraction must be in (0, 1], got {self.memory_fraction!r}")

    def _blocks_per_batch(self, model, sampler, block, device, dtype) -> int:
        per_block = sampler.bytes_per_sample(model, dtype) * block
        if device.type != "cpu":
            # A GPU runs one block at a time; it only has to fit (with room for the
            # float64 losses and the allocator's slack).
            budget = available_memory_bytes(device) * 0.8
            if per_block > budget:
                raise OptimizerError(
                    f"one block of {block} draws of {model.describe()} needs {per_block / 2**30:.2f} GiB "
                    f"but only {budget / 2**30:.2f} GiB is free on {device}; free GPU memory or use device='cpu'"
                )
            return 1
        if self.batch_size is not None:
            return max(1, self.batch_size // block)
        budget = available_memory_bytes(device) * self.memory_fraction
        if per_block > budget:
            raise OptimizerError(
                f"one block of {block} draws of {model.describe()} needs {per_block / 2**30:.2f} GiB "
                f"but only {budget / 2**30:.2f} GiB may be used on {device}; free memory or use a "
                "smaller model"
            )
        # Beyond a few hundred MiB per batch there is nothing to gain.
        return int(max(1, min(budget, 1 << 28) // per_block))

    def run(self, problem: Problem, model: FactorizationModel, budget: int, seed: int = 0) -> RunResult:
        """Draw ``budget`` samples from the prior and keep those with ``L_train < eps`` (or ``train_error``).

        Args:
            problem: The sensing / completion problem.
            model: The factorization and its prior; its shape must match the problem.
            budget: Number of prior draws ``N``.
            seed: Seed of the draws (blocks use ``(seed, "gnc", block_index)``).

        Returns:
            A :class:`RunResult` with metrics ``gen_loss`` (mean over accepted draws, or
            ``None`` when none was accepted), ``train_loss``, ``prior_gen_loss``,
            ``prior_train_loss``, ``accepted``, ``samples``, ``acceptance_rate``
            (``accepted / samples``), ``acceptance_rate_low`` and
            ``acceptance_rate_high`` (its 95% confidence interval: two-sided
            Clopper-Pearson, or ``0`` and the one-sided 95% upper bound
            ``1 - 0.05^(1/samples)`` when nothing was accepted; see
            :func:`acceptance_rate_interval`) and ``min_train_loss``, and the standard
            errors of the estimates. The acceptance rate's standard error is the Wald
            ``sqrt(rate (1 - rate) / samples)`` when ``0 < accepted < samples`` and
            ``None`` when all or no draws were accepted, where that formula gives 0 and
            would claim certainty; the interval is the statement to use there. ``eps``
            and ``accept`` are echoed in the metrics.

        Raises:
            OptimizerError: A bad budget, a model that does not fit the problem, or
                ``accept="train_error"`` on a task without a training error.
        """
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise OptimizerError(f"the number of samples must be a positive integer, got {budget!r}")
        mismatch = model.problem_mismatch(problem)
        if mismatch:
            raise OptimizerError(mismatch)
        if self.accept != "train_loss" and self.accept not in problem.tensors("cpu").metric_names:
            raise OptimizerError(
                f"accept={self.accept!r} needs a task that reports {self.accept} (a supervised problem with the "
                "logistic loss); this one reports only train_loss and gen_loss: use accept='train_loss'")
        device = resolve_device(self.device)
        if self.method == "subset":
            from .subset import subset_simulation

            scorer = _scorer_for(model, problem, device, self.eps, self.accept)
            names = ("train_loss", "gen_loss", *scorer.metric_names)
            return subset_simulation(self, model, budget, seed, scorer, names, device,
                                     lambda losses: _check_finite(losses, model))
        dtype = _DTYPES[self.dtype]
        sampler = select_sampler(model, self.sampler)
        block = block_size_for(model, sampler, device.type)
        blocks_per_batch = self._blocks_per_batch(model, sampler, block, device, dtype)
        num_blocks = -(-budget // block)
        logger.debug(
            "G&C: %d draws in %d blocks of %d, %d blocks per batch, sampler %s on %s",
            budget, num_blocks, block, blocks_per_batch, sampler.name, device,
        )

        contraction = _scorer_for(model, problem, device, self.eps, self.accept)
        eps = self.eps
        keep = self.keep_samples
        row_names = ("train_loss", "gen_loss", *contraction.metric_names)
        accept_row = row_names.index(self.accept)

        def block_tally(index: int) -> tuple[_Tally, int]:
            """Draw block ``index`` and reduce it to its statistics (on the block's device)."""
            size = min(block, budget - index * block)
            generator = make_generator(seed, "gnc", index, device=device)
            # Each CPU worker thread reuses its own scratch memory from block to block; the
            # block's draws are consumed (reduced to losses) before its next block. A GPU's
            # caching allocator recycles memory by itself.
            workspace = thread_workspace() if device.type == "cpu" else None
            draws = sampler.sample(model, size, generator, dtype=dtype, device=device, workspace=workspace)
            losses = contraction(draws, workspace)
            _check_finite(losses, model)
            block_result = _Tally.of_block(losses, eps, accept_row)
            if keep:
                chosen = torch.nonzero(losses[accept_row] < eps).flatten()[:keep]
                if chosen.numel():
                    block_result.kept = _kept_draws(draws, chosen, losses, row_names)
                    block_result.kept_count = int(chosen.numel())
            del draws
            return block_result, size

        tally = _Tally()
        workers = 1
        if device.type == "cpu":
            workers = max(1, min(self.workers or configured_threads(), blocks_per_batch, num_blocks))
            blocks = map_in_threads(block_tally, num_blocks, workers)
        else:
            # On a GPU one block (up to 2^22 draws) fills the device by itself: blocks run one
            # after the other. The loss GEMMs always see one block, so their rounding cannot
            # depend on batch size.
            blocks = (block_tally(index) for index in range(num_blocks))
        start = time.perf_counter()
        with tqdm(total=budget, unit="draw", unit_scale=True, disable=not self.progress, desc="G&C") as bar:
            for block_result, size in blocks:
                tally.merge(block_result)
                if keep:
                    tally.keep(block_result, keep)
                bar.update(size)
        seconds = time.perf_counter() - start
        names = contraction.metric_names
        return self._result(tally, budget, seconds, sampler, block, blocks_per_batch, device, seed, workers, names)

    def _result(self, tally, budget, seconds, sampler, block, blocks_per_batch, device, seed, workers,
                metric_names=()) -> RunResult:
        accepted = tally.accepted[1].count
        train_loss, train_se = tally.accepted[0].summary()
        gen_loss, gen_se = tally.accepted[1].summary()
        prior_train, prior_train_se = tally.prior[0].summary()
        prior_gen, prior_gen_se = tally.prior[1].summary()
        rate = accepted / budget
        rate_low, rate_high = acceptance_rate_interval(accepted, budget)
        metrics = {
            "gen_loss": gen_loss,
            "train_loss": train_loss,
            "prior_gen_loss": prior_gen,
            "prior_train_loss": prior_train,
            "accepted": accepted,
            "samples": budget,
            "acceptance_rate": rate,
            "acceptance_rate_low": rate_low,
            "acceptance_rate_high": rate_high,
            # The natural log of the prior volume P(accept), from the acceptance rate; none without acceptance.
            "log_volume": math.log(rate) if accepted else None,
            "min_train_loss": tally.min_train,
            # Independent draws: every accepted draw is an effective sample.
            "ess": accepted or None,
            "eps": self.eps,
            "accept": self.accept,
        }
        errors = {
            "gen_loss": gen_se,
            "train_loss": train_se,
            "prior_gen_loss": prior_gen_se,
            "prior_train_loss": prior_train_se,
            # The Wald standard error is 0 when all or no draws were accepted: undefined there.
            "acceptance_rate": math.sqrt(rate * (1 - rate) / budget) if 0 < accepted < budget else None,
            # The delta method: SE(log p) = SE(p) / p = sqrt((1 - p) / accepted); undefined where the rate's is.
            "log_volume": math.sqrt((1 - rate) / accepted) if 0 < accepted < budget else None,
        }
        # The task's extra metrics (e.g. test_error): over the accepted draws, and the prior's.
        for index, name in enumerate(metric_names, start=2):
            metrics[name], errors[name] = tally.accepted[index].summary()
            metrics[f"prior_{name}"], errors[f"prior_{name}"] = tally.prior[index].summary()
        diagnostics = {
            "acceptance_rate_interval": (
                f"one-sided {ACCEPTANCE_CONFIDENCE:.0%} upper bound (no acceptance)" if accepted == 0
                else f"two-sided {ACCEPTANCE_CONFIDENCE:.0%} Clopper-Pearson"
            ),
            "sampler": sampler.name,
            "block_size": block,
            "batch_size": block * blocks_per_batch,
            "device": str(device),
            "workers": workers,
            "seed": seed,
            "seconds": seconds,
            "draws_per_second": budget / seconds if seconds > 0 else None,
        }
        status = "ok" if accepted else "no_acceptance"
        arrays = {name: torch.cat(parts).numpy() for name, parts in tally.kept.items()}
        if not accepted:
            logger.warning(
                "G&C accepted none of %d draws at eps=%g (smallest training loss %.4g); "
                "the generalization loss is undefined", budget, self.eps, tally.min_train,
            )
        if self.keep_samples:
            diagnostics["kept_samples"] = tally.kept_count
        return RunResult("gnc", status, metrics, errors, {}, diagnostics, arrays)
