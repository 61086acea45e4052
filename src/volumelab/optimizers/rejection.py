"""Guess & Check by rejection: independent prior draws, kept when ``L_train < eps``.

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
from typing import ClassVar

import torch
from tqdm.auto import tqdm

from .._rng import make_generator
from ..settings import setting
from ..device import available_memory_bytes, resolve_device
from ..errors import OptimizerError
from ..models import FactorizationModel
from ..problems import Problem
from ..samplers import PriorSampler, available_samplers, select_sampler
from ..samplers.workspace import thread_workspace
from ._threads import configured_threads, map_in_threads
from .base import Metric, ResultSchema, RunningMoments, RunResult, format_value
from .conditioning import (CONDITIONAL_METRICS, ConditionalEstimator, check_finite, conditional_lines,
                           register_estimator, scorer_for)

__all__ = ["ACCEPTANCE_CONFIDENCE", "REJECTION_SCHEMA", "RejectionGuessCheck", "acceptance_rate_interval",
           "block_size_for"]

logger = logging.getLogger(__name__)

#: Aim for blocks of about this many bytes of float32 working memory on a GPU, where a
#: block is one sequence of kernel launches and must be large enough that the launches
#: (about 70 per block) cost little next to the arithmetic. On the CPU a block is one
#: worker thread's unit of work, sized by the sampler (``PriorSampler.cpu_block_bytes``).
_CUDA_BLOCK_BYTES = 1 << 30
_MIN_BLOCK = 64
_MAX_BLOCK = {"cpu": 1 << 16, "cuda": 1 << 22}
_DTYPES = {"float32": torch.float32, "float64": torch.float64}

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


@register_estimator
@dataclass(frozen=True)
class RejectionGuessCheck(ConditionalEstimator):
    """Guess & Check by batched rejection sampling: ``budget`` independent prior draws, those with
    ``score < eps`` accepted (``eps``, ``accept``, ``device``, ``progress``, ``workers``: see
    :class:`~volumelab.optimizers.conditioning.ConditionalEstimator`).

    Attributes:
        sampler: ``"auto"`` (fastest exact sampler for the model) or a registered name.
        batch_size: Draws processed together; ``None`` chooses from free memory. It
            only controls memory and speed, never the result; it is rounded down to
            whole blocks (at least one). On a GPU, blocks (up to 2^22 draws, about
            1 GiB) run one at a time and this has no effect.
        dtype: ``"float32"`` (default) or ``"float64"`` for the draws. Estimators are
            always accumulated in float64, and acceptance is decided on float64 losses
            (float32 draws get float64 losses wherever they could be accepted; see
            :class:`~volumelab.optimizers.conditioning.LossContraction`). With
            ``accept="train_error"`` every draw is scored from a float64 forward pass.
        memory_fraction: Share of free memory a batch may use when sizing automatically.
        keep_samples: Keep up to this many accepted draws (the first ones, in draw
            order) in the result's ``arrays``: ``W`` ``(K, rows, cols)`` for a
            factorization (the fast samplers draw ``W`` only, not the layers), or
            ``layer_1 .. layer_d`` for other families, with their ``train_loss``,
            ``gen_loss`` (and e.g. ``test_error``). Kept draws are in the draws' dtype.
    """

    sampler: str = setting("auto", choices=("auto", *available_samplers()),
                           doc="Prior sampler; auto picks the fastest one that is exact for the model (README, "
                               "'Prior samplers').")
    batch_size: int | None = setting(None, minimum=1, count=True,
                                     doc="Draws per batch: memory only, never the result [default: from free "
                                         "memory].")
    dtype: str = "float32"
    memory_fraction: float = 0.25
    keep_samples: int = setting(0, minimum=0, count=True,
                                doc="Keep up to K accepted draws (W of a factorization, the layers of an MLP) with "
                                    "their losses; written to --save.")

    name: ClassVar[str] = "rejection"
    summary: ClassVar[str] = "independent prior draws (the paper's G&C)"
    budget_unit: ClassVar[str] = "prior draws"

    def __post_init__(self) -> None:
        super().__post_init__()
        if isinstance(self.keep_samples, bool) or not isinstance(self.keep_samples, int) or self.keep_samples < 0:
            raise OptimizerError(f"keep_samples must be a non-negative integer, got {self.keep_samples!r}")
        if self.batch_size is not None and (not isinstance(self.batch_size, int) or self.batch_size < 1):
            raise OptimizerError(f"batch_size must be a positive integer or None, got {self.batch_size!r}")
        if self.dtype not in _DTYPES:
            raise OptimizerError(f"dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        if not 0 < self.memory_fraction <= 1:
            raise OptimizerError(f"memory_fraction must be in (0, 1], got {self.memory_fraction!r}")

    def resolved(self, model, device_type: str) -> dict:
        """The sampler and block size the draws will use: both decide which random numbers make them."""
        sampler = select_sampler(model, self.sampler)
        return {"sampler": sampler.name, "block_size": block_size_for(model, sampler, device_type)}

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
        self.check_run(problem, model, budget)
        device = resolve_device(self.device)
        dtype = _DTYPES[self.dtype]
        sampler = select_sampler(model, self.sampler)
        block = block_size_for(model, sampler, device.type)
        blocks_per_batch = self._blocks_per_batch(model, sampler, block, device, dtype)
        num_blocks = -(-budget // block)
        logger.debug(
            "G&C: %d draws in %d blocks of %d, %d blocks per batch, sampler %s on %s",
            budget, num_blocks, block, blocks_per_batch, sampler.name, device,
        )

        eps = self.threshold(problem)
        contraction = scorer_for(model, problem, device, eps, self.accept)
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
            check_finite(losses, model)
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


def _rate_text(metrics: dict) -> str:
    """The acceptance rate with its exact 95% interval (an upper bound when nothing was accepted)."""
    low, high = metrics.get("acceptance_rate_low"), metrics.get("acceptance_rate_high")
    if high is None:
        return f"rate {format_value(metrics['acceptance_rate'])}"
    if not metrics["accepted"]:
        return f"rate 0, below {high:.2g} with 95% confidence"
    return f"rate {format_value(metrics['acceptance_rate'])} (95% interval {low:.3g} to {high:.3g})"


def _rejection_text(result: RunResult, scored: str) -> list[str]:
    metrics = result.metrics
    lines = [f"accepted {metrics['accepted']:,} of {metrics['samples']:,} draws at eps={metrics['eps']}: "
             f"{_rate_text(metrics)}", *conditional_lines(result, scored)]
    if result.status == "no_acceptance":
        lines.append(f"no draw was accepted (smallest L_train {metrics['min_train_loss']:.4g}); raise --samples or "
                     "--eps")
    return lines


REJECTION_SCHEMA = ResultSchema(
    metrics=(*CONDITIONAL_METRICS,
             Metric("accepted", "number of accepted draws, each an independent draw of the conditional law",
                    kind="count"),
             Metric("samples", "number of prior draws (the budget)", kind="count"),
             Metric("acceptance_rate_low", "lower end of the exact 95% interval of the acceptance rate "
                                           "(Clopper-Pearson; 0 when nothing was accepted)", kind="value"),
             Metric("acceptance_rate_high", "upper end of that interval (the one-sided 95% bound when nothing was "
                                            "accepted)", kind="value")),
    statuses={"ok": "at least one draw accepted", "no_acceptance": "no draw accepted: gen_loss is None"},
    text=_rejection_text,
)
RejectionGuessCheck.schema = REJECTION_SCHEMA
