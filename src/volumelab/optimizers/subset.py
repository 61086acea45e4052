"""Guess & Check by subset simulation: the prior conditioned on ``L_train < eps`` where rejection cannot reach.

Rejection pays about ``1 / P(L_train < eps)`` draws per accepted sample. Subset
simulation (Au & Beck 2001) reaches the same conditional law through a ladder of
thresholds ``eps_1 > eps_2 > ... > eps_L = eps``: ``P(L < eps)`` is the product of the
conditional probabilities ``P(L < eps_j | L < eps_{j-1})``, each of order the level
fraction ``p0`` (0.1 by default) and so estimable from a population of a few hundred
states, and the population at each level is moved by a Markov kernel that leaves the
prior restricted to ``L < eps_j`` invariant.

**The kernel** is elliptical slice sampling (Murray, Adams & MacKay 2010) on the
prior's latent standard normal vector ``z`` (every weight of every layer): a Gaussian
prior's layer is ``scale * z``, a uniform prior's ``scale * (2 Phi(z) - 1)`` (``Phi``
the standard normal CDF, so each entry is ``U[-scale, scale]``). The "likelihood" is
the indicator of ``L_train(z) < eps_j``; the slice step proposes
``z cos(theta) + nu sin(theta)`` with ``nu`` a fresh prior draw and shrinks the angle
bracket towards the current state until the proposal satisfies the constraint. It
always moves, has no step size, and works for every model family of the core (it
needs only the latent Gaussian and the loss); the normalized prior is the normalized
``W`` of the model's own ``end_to_end``.

**The pCN kernel** (the default; preconditioned Crank-Nicolson, Cotter et al. 2013)
proposes ``sqrt(1 - b^2) z + b nu``, which is reversible for the prior, and accepts
exactly the proposals inside the constraint: one evaluation per move. Its step ``b``
is adapted by the pilot, level by level, towards an acceptance rate of 0.3; the
replicates use the pilot's steps, fixed, so their kernels are not adaptive. Measured
at the paper's depth setting (``benchmarks/subset_efficiency.py``) it gives several
times the effective sample size per second of the slice kernel.

**The exact readout kernel** (``"pcn-exact"``, :class:`ExactReadout`) follows each pCN step on the hidden layers
(the readout fixed; none at depth 1) with an exact move of an MLP's readout when the run conditions on the
training error: with the hidden layers fixed the outputs are
linear in the readout, the readouts with fewer than ``eps_j n`` training errors are a union of polyhedral cones,
and the angles on the ellipse ``u cos t + nu sin t`` that stay inside are arcs in closed form, so ``t`` is drawn
uniformly on them with no rejection (analytic elliptical slice sampling, Gessner, Kanjilal & Hennig 2020). A
step costs two evaluations (the pCN proposal's, and the hidden features of the new state on every input; one at
depth 1, where the readout is the whole model and there is no pCN step).

**The ladder's score for the training error.** With ``accept="train_error"`` the ladder's thresholds are on
``train_error_score`` (``tie_break="margin"``, the default), the error count with its ties broken by the margins,
``(k + V / (V + S)) / n`` (:meth:`~volumelab.problems.SupervisedTensors.error_scores`: ``V`` the errors' summed
``|y f(x)|``, ``S`` all points'), and the last threshold is :func:`error_score_threshold`'s ``(K + 1) / n``, below
which lie exactly the draws with at most ``K`` errors, the ``K`` that ``eps`` allows: the same conditional law as
the count's. The count alone (``tie_break="none"``) has ``n + 1`` values, so a level's ``p0``-quantile falls on a
tie, the level keeps far more or far fewer states than ``p0`` of them, and a replicate can lose its whole
population at a level (``not_reached``); on the score every level keeps ``p0`` of its population. (The
``levels`` then report ``eps`` on the score.)

**The readout slice kernel** (``"pcn-readout"``, :class:`ReadoutSlice`; a deep factorization with the Gaussian
prior of mean 0 on a matrix task) alternates pCN steps on the hidden layers (the readout fixed) with elliptical
slice moves of the readout ``W_d`` (the hidden layers fixed), one evaluation each. Given the hidden layers the
product ``M = W_d F`` is linear in the readout, so along the ellipse ``u cos t + nu sin t`` of its latent
``M(t) = M_0 cos t + M_1 sin t``; the measurements of the normalized ``W(t) = M(t) / (||M(t)|| + 1e-6)`` are
``(p cos t + q sin t) / (||M(t)|| + 1e-6)`` with ``||M(t)||^2`` a quadratic form in ``(cos t, sin t)``, so the
slice sampler's shrinking bracket runs on this closed form and only the new state is scored by the model. The
normalization rules out closed-form arcs (the exact readout kernel's), not the slice. Measured on Figure 2's
quick setting (2x10^5 evaluations, eps 0.0035, width 5; ``benchmarks/subset_mixing.py``, RESULTS.md): at leaky-ReLU
depth 10, 3 of 16 seeds ``not_mixed`` against pCN's 6 (the figure's seeds 0-7: 1 against 3; redrawn: 2 against
3), at depth 6, 2 against 5 (1 against 3; redrawn: 1 against 1); the median split-R-hat lower and the median ESS
per evaluation 1.1-3x pCN's on every measured setting, at about 2x pCN's wall time per evaluation (the shrinkage
loop is Python-bound). pCN stays the default: this kernel covers the factorizations only; the depth figures'
quick scale names it, with population 1000 and 4 replicates (at depths 9-10 on held-out problems, 5 of 64 runs
not ok against 15 with 500 and 8 at the same budget: each replicate draws more founders of a rare set of
interpolators; RESULTS.md).

**Moves per state.** At the ladder's levels each chain records a state every ``moves``
kernel steps (5 by default). With one step per state a level's population stays close
to its seeds, and after a few levels each replicate descends from a handful of
ancestors: measured at the paper's depth setting, 5-6 steps per state cut the spread
of the replicates' estimates by 2-4x at equal evaluations.

**The ladder** is chosen adaptively by a *pilot* population (its own random stream):
each threshold is the ``p0``-quantile of the current population's scores, until the
requested ``eps`` is below that quantile. Then ``replicates`` independent runs (streams
``(seed, "subset", r)``) descend the *fixed* ladder: at each level the fraction below
the threshold estimates the conditional probability, the states below it seed Markov
chains that refill the population, and at the last level (``eps``) the chains run on
until the run's evaluation budget is spent, every state counting towards the posterior
means. Fixing the ladder makes every replicate an estimator at the same thresholds, so
each threshold on the ladder has its estimate and a standard error from one run.

**Standard errors** come from the spread over the independent replicates, which
accounts for the autocorrelation of the chains and the correlation within a
population (all descend from a few seeds). ``P(L < eps)`` is estimated by the mean of
the replicates' products (each unbiased up to ``O(1/population)``), ``log_volume`` by
its logarithm with the delta-method standard error ``sd_r(P_r) / (sqrt(R) mean_r P_r)``.
Once the replicates' logs ``l_r = log P_r`` spread over a nat or more, that mean is
dominated by the largest replicate and its SE by the same one (a sample of ``R = 8``
lognormals says little about their mean). ``log_volume_mean_log`` is the other
estimator, ``mean_r l_r`` with ``log_volume_mean_log_stderr = sd_r(l_r) / sqrt(R)``: it
is not dominated by one replicate and its SE is that of a plain mean, but it estimates
``E[log P_r]``, below ``log P`` by about ``Var(l_r) / 2`` (Jensen; plus the levels'
``O(levels / population)`` bias both share). Both are reported at every threshold of
the ladder (``diagnostics["levels"]``).

**What the replicates' SE leaves out: the ladder.** The replicates are independent *given* the pilot's
ladder and steps, and their spread is the variance given them; the expected estimate depends on the ladder
(the chains' bias depends on where its thresholds fall and on the adapted steps), so across runs with their
own pilots the estimates spread more: measured at a 12-level ladder (digits n = 128, width 16, depth 3,
16 runs; docs/design.md) 1.70x the reported SE of ``log_volume`` and 1.41x that of ``log_volume_mean_log``,
against 0.99x and 0.87x with the pilot held fixed. With ``independent_ladders`` each replicate descends the
ladder of its own pilot (stream ``(seed, "subset-pilot", r)``, replicate 0's the shared pilot's own, budget
``samples / (2 replicates)`` each), so
the replicates are i.i.d. ladder included; ``levels`` then has the common last threshold only (and the
``condition_test`` rung, a rung of every ladder). The run then costs about ``3 replicates`` pilots' worth of
evaluations (a pilot, a ladder and the chains per replicate) against ``2 (replicates + 1)``.

**Guardrails.** A pilot that spends its share of the budget before its threshold comes
down to ``eps`` ends the run with status ``"budget_too_small"`` and the budget it would
need (``budget_needed``, extrapolated from the rate its thresholds fell:
:func:`budget_needed_from_rate`), unless that rate says its thresholds level off above
``eps`` (the set ``L < eps`` may be empty for the architecture): then, as when it runs out
of levels, the status is ``"not_reached"``. Both report the smallest threshold reached
(``min_eps_reached``) and its volume. A pilot that reaches ``eps`` with more evaluations
than each replicate's share of the rest (each replicate's ladder costs about as much)
ends the run as ``"budget_too_small"`` too, so a run never spends more than its budget. The chains' mixing is checked by the split-R-hat
of the posterior generalization loss over the replicates (Gelman et al., *Bayesian
Data Analysis*, 3rd ed., Sec. 11.4): above :data:`RHAT_THRESHOLD` the run's status is
``"not_mixed"``; its numbers are reported, flagged, never silently averaged.

Determinism: every random number comes from the pilot's or a replicate's generator in
a fixed order, so the result depends only on the seed (and the device type), never on
the number of worker threads.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from tqdm.auto import tqdm

from .._rng import make_generator
from ..settings import setting
from ..device import resolve_device
from ..errors import OptimizerError
from ..models.factorization import NORMALIZE_EPS
from ._threads import configured_threads, map_in_threads
from .base import Metric, ResultSchema, RunningMoments, RunResult, format_value
from .conditioning import CONDITIONAL_METRICS, ConditionalEstimator, LossContraction, check_finite, \
    conditional_lines, register_estimator, scorer_for

__all__ = ["ExactReadout", "KERNELS", "LatentPrior", "RHAT_THRESHOLD", "ReadoutSlice", "SUBSET_SCHEMA",
           "SubsetGuessCheck", "TIE_BREAKS", "elliptical_slice_step", "error_score_threshold", "feasible_arcs",
           "loss_bins", "split_rhat", "subset_simulation", "uniform_on_arcs"]

#: A run whose split-R-hat over replicates exceeds this is flagged ``"not_mixed"`` (Gelman et al.'s
#: classic threshold; with a handful of replicates the stricter 1.01 would flag sound runs by chance).
RHAT_THRESHOLD = 1.1
#: Bracket shrinkages in one slice step before the chain stays where it is (the bracket is then
#: about ``2 pi 2^-64`` wide: never reached in practice; counted as ``stuck`` in the diagnostics).
MAX_SHRINKS = 64
#: Replicates stepped together in one thread (their proposals scored in one call). Fixed, so the
#: grouping, and with it every floating-point operation, never depends on the number of workers.
REPLICATES_PER_GROUP = 4
#: The pCN kernel: the pilot's step starts here and is adapted towards this acceptance rate (about the
#: rate that maximizes a random-walk sampler's efficiency; Roberts & Rosenthal 2001), within these bounds.
PCN_INITIAL_STEP = 0.5
PCN_TARGET_ACCEPTANCE = 0.3
PCN_MIN_STEP, PCN_MAX_STEP = 1e-4, 1.0
#: Ladder levels the pilot may take (p0 = 0.1: log P down to about -460).
MAX_LEVELS = 200
#: The Markov kernels: elliptical slice sampling (no step size), pCN (step adapted by the pilot), pCN
#: followed by an exact move of an MLP's readout (:class:`ExactReadout`), or pCN steps on the hidden layers
#: alternating with exact slice moves of a factorization's readout (:class:`ReadoutSlice`).
KERNELS = ("slice", "pcn", "pcn-exact", "pcn-readout")
#: The kernels whose step is pCN's (adapted by the pilot).
PCN_KERNELS = ("pcn", "pcn-exact", "pcn-readout")
#: With ``accept="train_error"``, the ladder's score: the error count with ties broken by the margins
#: (:meth:`~volumelab.problems.SupervisedTensors.error_scores`), or the count alone.
TIE_BREAKS = ("margin", "none")


#: A chunk of states scored in one pass holds at most about this many bytes in one activation (float64, every
#: input, the widest layer): at n = 256 digits and width 64 the fixed 8,192 states took 1.5 GB an activation,
#: several of them per thread, and the run was killed for memory on this 23 GB machine.
ACTIVATION_BYTES = 1 << 28


def chunk_states(prior: "LatentPrior", scorer, largest: int) -> int:
    """States scored in one pass: ``largest``, or fewer where one state's widest activation on every input
    (``scorer.points``) would make a chunk's exceed :data:`ACTIVATION_BYTES`. A function of the model and the
    task only, so the chunks, and every floating-point operation, never depend on the workers."""
    per_state = 8 * scorer.points * max(out for out, _ in prior.shapes)
    return max(1, min(largest, ACTIVATION_BYTES // max(1, per_state)))


class LatentPrior:
    """The model's prior as a function of a standard normal latent vector ``z`` (every weight of every layer).

    Layer ``j`` is ``model.prior_from_normal(z_j, j)`` (:meth:`LayeredModel.prior_from_normal`:
    the law :meth:`LayeredModel.sample_prior` draws, defined once with it).
    """

    def __init__(self, model) -> None:
        self.model = model
        self.shapes = tuple(model.layer_shapes)
        self.size = sum(out * inp for out, inp in self.shapes)

    def layers(self, latent: torch.Tensor) -> list[torch.Tensor]:
        """``[W_1, ..., W_d]``, each ``(n, out, in)``, from latents ``(n, size)``."""
        layers, offset = [], 0
        for index, (out, inp) in enumerate(self.shapes):
            block = latent[:, offset:offset + out * inp].reshape(-1, out, inp)
            offset += out * inp
            layers.append(self.model.prior_from_normal(block, index))
        return layers

    def draws(self, latent: torch.Tensor):
        """What the task scores: the end-to-end ``W`` of a factorization, the layers of any other family."""
        layers = self.layers(latent)
        return self.model.end_to_end(layers) if self.model.scores_array else layers


#: The kernels' fresh normal directions are drawn in this precision and widened to the latent's float64:
#: PyTorch's CPU ``randn`` is about 5x faster in float32, and the float64 draws took 61% of a run's time at
#: width 160, depth 2 (27% at width 5; cProfile, 2026-12-03). A direction rounded to float32 is still a
#: draw of N(0, I) to within that rounding (relative 6e-8), far below any statistical error of a run.
NOISE_DTYPE = torch.float32


def _normals(generators, counts, size: int, dtype, device) -> torch.Tensor:
    """``counts[r]`` standard normal vectors of length ``size`` from ``generators[r]``, in run order, as ``dtype``."""
    parts = [torch.randn((count, size), generator=generator, dtype=NOISE_DTYPE, device=device)
             for generator, count in zip(generators, counts)]
    return (parts[0] if len(parts) == 1 else torch.cat(parts)).to(dtype)


def _uniforms(generators, counts, dtype, device) -> torch.Tensor:
    """``counts[r]`` uniforms on ``[0, 1)`` from ``generators[r]``, concatenated in run order."""
    return torch.cat([torch.rand(count, generator=generator, dtype=dtype, device=device)
                      for generator, count in zip(generators, counts)])


def elliptical_slice_step(latent: torch.Tensor, scores: torch.Tensor, counts, threshold: float, score, generators,
                          accept_row: int = 0) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """One elliptical slice step of every chain, for the prior restricted to ``scores[accept_row] < threshold``.

    Murray, Adams & MacKay (2010), with the indicator of the constraint as the
    likelihood: draw ``nu ~ N(0, I)`` and ``theta ~ U[0, 2 pi)``, bracket
    ``[theta - 2 pi, theta]``; propose ``z cos(theta) + nu sin(theta)``; if it violates
    the constraint, shrink the bracket end on ``theta``'s side to ``theta`` and draw
    ``theta`` again from the bracket. The step leaves the restricted prior invariant.

    The chains may belong to several independent runs, concatenated in run order:
    ``counts[r]`` chains of run ``r``, whose random numbers all come from
    ``generators[r]`` (its ``nu``, then its angles, then the angles of its pending
    chains at each shrinkage), so a run's numbers do not depend on which runs share
    the step. The proposals of all runs are scored together.

    Args:
        latent: Current states ``(n, size)``, each inside the constraint.
        scores: Their scores ``(rows, n)``.
        counts: Chains per run (summing to ``n``).
        threshold: The constraint ``scores[accept_row] < threshold``.
        score: ``latent (m, size) -> scores (rows, m)`` float64.
        generators: One per run.

    Returns:
        ``(latent, scores, evaluations, stuck)``: the new states and scores, and per run
        the number of model evaluations and of chains that stayed put after
        :data:`MAX_SHRINKS` shrinkages.
    """
    dtype, device = latent.dtype, latent.device
    runs = len(counts)
    owner = torch.repeat_interleave(torch.arange(runs, device=device), torch.tensor(counts, device=device))
    direction = _normals(generators, counts, latent.shape[1], dtype, device)
    new_latent, new_scores = latent.clone(), scores.clone()
    evaluations = torch.zeros(runs, dtype=torch.long, device=device)

    def inside_at(pending: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
        proposal = latent[pending] * angle.cos()[:, None] + direction[pending] * angle.sin()[:, None]
        proposed = score(proposal)
        evaluations.add_(torch.bincount(owner[pending], minlength=runs))
        inside = proposed[accept_row] < threshold
        done = pending[inside]
        new_latent[done] = proposal[inside]
        new_scores[:, done] = proposed[:, inside]
        return inside

    pending = _shrink_bracket(owner, runs, generators, dtype, device, inside_at)
    stuck = torch.bincount(owner[pending], minlength=runs)
    return new_latent, new_scores, evaluations.tolist(), stuck.tolist()


def _shrink_bracket(owner: torch.Tensor, runs: int, generators, dtype, device, inside_at) -> torch.Tensor:
    """Elliptical slice sampling's angle search (Murray, Adams & MacKay 2010), the one loop of both slice moves.

    Draws ``theta ~ U[0, 2 pi)`` per chain (chain ``i`` of run ``owner[i]``, from that run's generator), brackets
    ``[theta - 2 pi, theta]`` and asks ``inside_at(pending, angle)`` which of the pending chains' angles are
    inside the constraint (the callback records the accepted ones); for the others it shrinks the bracket's end
    on the angle's side to it and draws the angle again from the bracket, up to :data:`MAX_SHRINKS` times.

    Returns:
        The chains still pending (left where they were).
    """
    angle = _uniforms(generators, torch.bincount(owner, minlength=runs).tolist(), dtype, device).mul_(2 * math.pi)
    low, high = angle - 2 * math.pi, angle.clone()
    pending = torch.arange(owner.shape[0], device=device)
    for _ in range(MAX_SHRINKS):
        # The pending chains' brackets and angles, kept compact (aligned with ``pending``).
        outside = ~inside_at(pending, angle)
        pending, angle, low, high = pending[outside], angle[outside], low[outside], high[outside]
        if not pending.numel():
            break
        negative = angle < 0
        low, high = torch.where(negative, angle, low), torch.where(negative, high, angle)
        fresh = _uniforms(generators, torch.bincount(owner[pending], minlength=runs).tolist(), dtype, device)
        angle = low + (high - low) * fresh
    return pending


def pcn_step(latent: torch.Tensor, scores: torch.Tensor, counts, threshold: float, score, generators, step: float,
             accept_row: int = 0, block: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
    """One preconditioned Crank-Nicolson step of every chain, for the prior restricted to the constraint.

    The proposal ``z' = sqrt(1 - b^2) z + b nu`` with ``nu ~ N(0, I)`` is reversible with
    respect to the standard normal prior (Cotter et al. 2013), so the Metropolis-Hastings
    ratio for the restricted prior is the indicator of the constraint: a proposal is
    accepted exactly when ``scores[accept_row] < threshold``, otherwise the chain stays.
    One evaluation per chain. Runs are concatenated as in :func:`elliptical_slice_step`
    (run ``r``'s ``nu`` from ``generators[r]``). With ``block`` only the first ``block`` coordinates
    move (the prior is a product, so the step is reversible for it all the same): the exact readout
    kernel's move of the hidden layers, the readout's coordinates coming last.

    Returns:
        ``(latent, scores, evaluations, accepted)``, the last two per run.
    """
    runs = len(counts)
    device = latent.device
    owner = torch.repeat_interleave(torch.arange(runs, device=device), torch.tensor(counts, device=device))
    size = latent.shape[1] if block is None else block
    moved = _normals(generators, counts, size, latent.dtype, device).mul_(step)
    moved.add_(latent[:, :size], alpha=math.sqrt(1.0 - step * step))
    proposal = moved if size == latent.shape[1] else torch.cat([moved, latent[:, size:]], 1)
    proposed = score(proposal)
    inside = proposed[accept_row] < threshold
    new_latent = torch.where(inside[:, None], proposal, latent)
    new_scores = torch.where(inside[None, :], proposed, scores)
    return new_latent, new_scores, list(counts), torch.bincount(owner[inside], minlength=runs).tolist()


def feasible_arcs(current: torch.Tensor, direction: torch.Tensor,
                  max_errors: torch.Tensor | int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The angles ``t`` on each chain's ellipse where at most ``max_errors`` margins are ``<= 0``, as arcs.

    Margin ``i`` along the ellipse ``z cos t + nu sin t`` is ``P_i cos t + Q_i sin t = R_i cos(t - phi_i)``
    with ``P_i = <a_i, z>``, ``Q_i = <a_i, nu>``, ``phi_i = atan2(Q_i, P_i)``: positive exactly on the
    half-circle ``|t - phi_i| < pi/2``. It turns non-positive at ``phi_i + pi/2`` (one error more) and
    positive at ``phi_i - pi/2`` (one fewer); a margin with ``P_i = Q_i = 0`` is an error at every angle.
    Sorting the ``2 n`` crossings cuts ``[0, 2 pi)`` into ``2 n + 1`` arcs, each with a constant error
    count: the count at ``t = 0`` (the current state) plus the crossings before the arc.

    Args:
        current: ``P``, the margins' directions applied to the current states, ``(chains, n)``.
        direction: ``Q``, applied to the fresh directions, ``(chains, n)``.
        max_errors: The most errors allowed (an int, or one per chain).

    Returns:
        ``(starts, lengths, feasible)``, each ``(chains, 2 n + 1)``: every arc's first angle, its length and
        whether its error count is at most ``max_errors``.
    """
    phase = torch.atan2(direction, current)
    two_pi = 2 * math.pi
    crossings = torch.cat([torch.remainder(phase + math.pi / 2, two_pi), torch.remainder(phase - math.pi / 2, two_pi)],
                          1)
    degenerate = ((current == 0) & (direction == 0)).to(current.dtype)
    ones = torch.ones_like(current)
    changes = torch.cat([ones - degenerate, degenerate - ones], 1)
    ordered, order = torch.sort(crossings, 1)
    errors = (current <= 0).sum(1, keepdim=True).to(current.dtype)
    counts = torch.cat([errors, errors + torch.cumsum(torch.gather(changes, 1, order), 1)], 1)
    edges = torch.cat([torch.zeros_like(errors), ordered, torch.full_like(errors, two_pi)], 1)
    limit = torch.as_tensor(max_errors, dtype=current.dtype, device=current.device).reshape(-1, 1)
    # Rounding may leave a count a hair off an integer: compare with half a unit of slack.
    return edges[:, :-1], edges[:, 1:] - edges[:, :-1], counts <= limit + 0.5


def uniform_on_arcs(starts: torch.Tensor, lengths: torch.Tensor, feasible: torch.Tensor,
                    uniforms: torch.Tensor) -> torch.Tensor:
    """An angle uniform on each chain's feasible arcs, from ``uniforms`` on ``[0, 1)`` ``(chains,)``: the
    ``u``-quantile of the feasible length, laid end to end."""
    kept = torch.where(feasible, lengths, torch.zeros_like(lengths))
    cumulative = torch.cumsum(kept, 1)
    target = uniforms * cumulative[:, -1]
    index = torch.searchsorted(cumulative, target[:, None], right=True).clamp_(max=kept.shape[1] - 1)
    before = torch.gather(cumulative - kept, 1, index)[:, 0]
    angle = torch.gather(starts, 1, index)[:, 0] + (target - before)
    end = torch.gather(starts + lengths, 1, index)[:, 0]
    return torch.minimum(angle, end)


class ExactReadout:
    """Analytic elliptical slice moves of an MLP's readout, the other layers fixed (Gessner, Kanjilal & Hennig
    2020, for the prior restricted to linear constraints; here to at most ``K`` violated ones).

    With the hidden layers fixed, the outputs are linear in the readout's latent ``u`` (``f = s u^T F``,
    ``F`` the :meth:`~volumelab.models.MLPModel.last_layer_features`, ``s`` its prior scale), so the training
    error is the count of the margins ``y_i <u, F_i>`` that are ``<= 0``. Along the ellipse
    ``u cos t + nu sin t`` (``nu`` a fresh prior draw) the angles where fewer than ``threshold * n`` of them
    are errors are a union of arcs in closed form (:func:`feasible_arcs`); the move draws ``t`` uniformly on
    it, with no rejection. It is the elliptical slice sampler's exact limit: given the ellipse (an orbit of
    the rotation ``(u, nu) -> (u cos t + nu sin t, nu cos t - u sin t)``, which keeps the joint Gaussian law
    of ``(u, nu)``), the restricted prior's conditional on the orbit is uniform on the feasible angles, so the
    move leaves the restricted prior invariant. One model evaluation per move (the hidden features on every
    input, train and test, for the new state's scores).
    """

    #: Chains moved in one pass at most (memory of the hidden features on every input), as :class:`_Sampler`.
    CHUNK = 8192
    #: The move follows every pCN step of the hidden layers (in the same kernel step).
    alternates = False

    def __init__(self, prior: LatentPrior, scorer, accept_row: int) -> None:
        model = prior.model
        out, inp = prior.shapes[-1]
        self.prior, self.scorer, self.accept_row = prior, scorer, accept_row
        self.offset, self.size = prior.size - out * inp, out * inp
        tensors = scorer.exact
        self.inputs, self.num_train = tensors.inputs, tensors.num_train
        self.labels = tensors.targets[:tensors.num_train]
        self.model = model

    @staticmethod
    def mismatch(model, accept: str, scorer) -> str | None:
        """Why the exact readout move does not apply, or ``None``."""
        if accept != "train_error":
            return (f"the exact readout kernel conditions on the training error (accept='train_error'): with "
                    f"accept={accept!r} the feasible readouts are not a union of polyhedral cones")
        if not model.capabilities.linear_readout:
            return (f"the exact readout kernel needs a model whose output is linear in its last layer (an MLP), "
                    f"not a {model.family} model")
        if model.prior != "gaussian" or model.weight_mean:
            return (f"the exact readout kernel needs the Gaussian prior of mean 0 (the readout's latent is then "
                    f"linear in the outputs), got the {model.prior} prior")
        return None

    def step(self, latent: torch.Tensor, scores: torch.Tensor, counts, threshold: float,
             generators) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        """One exact move of every chain's readout; runs concatenated as in :func:`elliptical_slice_step`.

        Returns:
            ``(latent, scores, evaluations, kept)``, the last two per run; ``kept`` counts chains left where
            they were because the new state's float64 scores put it on the constraint's boundary (rounding).
        """
        runs, device, dtype = len(counts), latent.device, latent.dtype
        owner = torch.repeat_interleave(torch.arange(runs, device=device), torch.tensor(counts, device=device))
        # Every random number first, in run order; the chains are then moved in chunks (memory of the features).
        direction = _normals(generators, counts, self.size, dtype, device)
        uniforms = _uniforms(generators, counts, dtype, device)
        grid = torch.arange(self.num_train + 1, dtype=torch.float64, device=device) / self.num_train
        max_errors = int((grid < threshold).sum()) - 1  # the train_error row is count / n
        moved = torch.empty_like(direction)
        parts = []
        size = chunk_states(self.prior, self.scorer, self.CHUNK)
        for start in range(0, latent.shape[0], size):
            chunk = slice(start, start + size)
            layers = self.prior.layers(latent[chunk])
            features = self.model.last_layer_features(layers, self.inputs)  # (c, in_d, N)
            train = features[..., :self.num_train]  # the margins' directions a_i are these columns times y_i
            readout = latent[chunk, self.offset:]
            current = torch.matmul(readout[:, None, :], train).squeeze(1) * self.labels
            along = torch.matmul(direction[chunk, None, :], train).squeeze(1) * self.labels
            angle = uniform_on_arcs(*feasible_arcs(current, along, max_errors), uniforms[chunk])
            moved[chunk] = readout * angle.cos()[:, None] + direction[chunk] * angle.sin()[:, None]
            layer = self.model.prior_from_normal(moved[chunk].reshape(-1, *self.prior.shapes[-1]),
                                                 len(self.prior.shapes) - 1)
            parts.append(self.scorer.scores_from_outputs(torch.matmul(layer, features).squeeze(-2),
                                                         [*layers[:-1], layer]))
        proposed = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        inside = proposed[self.accept_row] < threshold
        new_latent = latent.clone()
        new_latent[inside, self.offset:] = moved[inside]
        new_scores = torch.where(inside[None, :], proposed, scores)
        kept = torch.bincount(owner[~inside], minlength=runs).tolist()
        return new_latent, new_scores, list(counts), kept


class ReadoutSlice:
    """Elliptical slice moves of a deep factorization's readout ``W_d``, the other layers fixed, on the loss's
    closed form along the ellipse (kernel ``"pcn-readout"``, for a matrix task's squared loss).

    With the hidden layers fixed, the product is linear in the readout, ``M = W_d F`` with ``F = sigma(a_{d-1})``
    (``F = I`` at depth 1); the Gaussian prior's readout is ``W_d = s u`` (``s`` its scale). On the ellipse
    ``u cos t + nu sin t`` (``nu`` a fresh prior draw) the product is ``M(t) = M_0 cos t + M_1 sin t`` and every
    measurement ``<O_i, W(t)> = (p_i cos t + q_i sin t) / (||M(t)|| + 1e-6)`` (without the normalization, the
    numerator alone), with ``p = O vec(M_0)``, ``q = O vec(M_1)`` and ``||M(t)||^2`` a quadratic form in
    ``(cos t, sin t)`` of the Gram matrix of ``M_0, M_1``: the training loss at any angle costs ``O(m)``
    operations, no model evaluation. The angle is then drawn by the elliptical slice sampler's shrinking
    bracket (Murray, Adams & MacKay 2010) on that closed form, so the move leaves the prior restricted to
    ``L_train < eps_j`` invariant (given the hidden layers, it is the elliptical slice step of the readout's
    conditional) and always moves. The new state is scored by the model's own forward pass (its hidden
    features and one more product: one model evaluation per move); a state the closed form put inside and
    that pass outside (float64 rounding at the boundary) is not taken, the chain stays (``kept``).

    The normalization is what rules out the exact readout kernel's arcs (:class:`ExactReadout`): the feasible
    angles solve an equation in ``cos t, sin t`` and ``||M(t)||``, not a union of half-circles; the slice
    sampler needs only the loss at chosen angles.
    """

    #: Every chain's readout moves on its own kernel step, alternating with pCN steps on the hidden layers.
    alternates = True

    def __init__(self, prior: LatentPrior, scorer, accept_row: int) -> None:
        out, inp = prior.shapes[-1]
        self.prior, self.scorer, self.accept_row = prior, scorer, accept_row
        self.model = prior.model
        self.offset, self.size = prior.size - out * inp, out * inp
        self.tensors = scorer.exact  # the task's float64 operator, targets and averaging (ProblemTensors)

    @staticmethod
    def mismatch(model, scorer) -> str | None:
        """Why the readout slice move does not apply, or ``None``."""
        if not model.capabilities.matrix_product:
            return (f"the pcn-readout kernel needs a deep factorization W = W_d sigma(...), whose product is linear "
                    f"in its readout, not a {model.family} model (use kernel='pcn')")
        if model.prior != "gaussian" or model.weight_mean:
            return (f"the pcn-readout kernel needs the Gaussian prior of mean 0 (the readout is then linear in its "
                    f"latent), got the {model.prior} prior (use kernel='pcn')")
        if not isinstance(scorer, LossContraction):
            return "the pcn-readout kernel needs a matrix task's squared loss (use kernel='pcn')"
        return None

    def _losses(self, measured: torch.Tensor, direction: torch.Tensor, gram: torch.Tensor,
                angle: torch.Tensor) -> torch.Tensor:
        """``(2, c)`` losses at ``angle (c,)`` from ``p, q (c, m + t)`` and the Gram entries ``(c, 3)``."""
        cos, sin = angle.cos()[:, None], angle.sin()[:, None]
        values = measured * cos + direction * sin
        if self.model.normalize:
            squared = gram[:, :1] * cos * cos + 2 * gram[:, 1:2] * cos * sin + gram[:, 2:] * sin * sin
            values = values / (squared.clamp_min(0).sqrt() + NORMALIZE_EPS)
        return self.tensors.batch_last_losses((values - self.tensors.targets).T.contiguous())

    def step(self, latent: torch.Tensor, scores: torch.Tensor, counts, threshold: float,
             generators) -> tuple[torch.Tensor, torch.Tensor, list[int], list[int]]:
        """One readout slice move of every chain; runs concatenated as in :func:`elliptical_slice_step` (run
        ``r``'s ``nu``, then its angles, then its pending chains' angles at each shrinkage, from ``generators[r]``).

        Returns:
            ``(latent, scores, evaluations, kept)``, the last two per run; ``kept`` counts chains left where
            they were (the model's pass put the new state outside, or :data:`MAX_SHRINKS` shrinkages).
        """
        runs, device, dtype = len(counts), latent.device, latent.dtype
        model, last, shape = self.model, len(self.prior.shapes) - 1, self.prior.shapes[-1]
        owner = torch.repeat_interleave(torch.arange(runs, device=device), torch.tensor(counts, device=device))
        direction = _normals(generators, counts, self.size, dtype, device)
        layers = self.prior.layers(latent)
        features = None
        if last:
            post: list[torch.Tensor] = []
            model.forward(layers, post=post)
            features = post[-1]  # (n, width, cols)

        def product(layer: torch.Tensor) -> torch.Tensor:  # the unnormalized product M = W_d F, (n, rows, cols)
            return layer if features is None else torch.matmul(layer, features)

        current = product(layers[-1]).flatten(1)
        moved = product(model.prior_from_normal(direction.reshape(-1, *shape), last)).flatten(1)
        operator = self.tensors.operator
        outputs = operator.shape[1]
        # Per chain: p, q (each (m + t,)) and the Gram entries, packed so each shrinkage gathers one tensor.
        packed = torch.cat([current @ operator, moved @ operator,
                            torch.stack([(current * current).sum(1), (current * moved).sum(1),
                                         (moved * moved).sum(1)], 1)], 1)
        accepted = torch.zeros(latent.shape[0], dtype=dtype, device=device)

        def inside_at(pending: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
            rows = packed[pending]
            losses = self._losses(rows[:, :outputs], rows[:, outputs:2 * outputs], rows[:, 2 * outputs:], angle)
            inside = losses[self.accept_row] < threshold
            accepted[pending[inside]] = angle[inside]
            return inside

        pending = _shrink_bracket(owner, runs, generators, dtype, device, inside_at)
        # Chains still pending after MAX_SHRINKS keep angle 0: their own state.
        readout = latent[:, self.offset:] * accepted.cos()[:, None] + direction * accepted.sin()[:, None]
        proposed = self.scorer(model.normalize_output(product(model.prior_from_normal(readout.reshape(-1, *shape),
                                                                                       last))))
        inside = proposed[self.accept_row] < threshold
        new_latent = latent.clone()
        new_latent[inside, self.offset:] = readout[inside]
        new_scores = torch.where(inside[None, :], proposed, scores)
        kept = torch.bincount(owner[~inside], minlength=runs) + torch.bincount(owner[pending], minlength=runs)
        return new_latent, new_scores, list(counts), kept.tolist()


def split_rhat(chains) -> float | None:
    """Split-R-hat of chains of draws (Gelman et al., BDA3, eq. 11.4, each chain split in halves).

    ``chains`` is a sequence of 1-D arrays, each a chain's draws in time order; the
    lengths may differ (each half then counts with its own size in its mean and
    variance, and ``n`` is the mean half length). With ``W`` the mean within-half
    variance and ``B / n`` the variance of the half means,
    ``R-hat = sqrt(((n - 1) / n W + B / n) / W)``. ``None`` when it is undefined: fewer
    than 2 chains, a chain shorter than 4 draws, or no variance within the halves.
    """
    chains = [np.asarray(chain, dtype=np.float64).ravel() for chain in chains]
    if len(chains) < 2 or min(chain.size for chain in chains) < 4:
        return None
    halves = []
    for chain in chains:
        half = chain.size // 2
        halves += [chain[:half], chain[chain.size - half:]]
    within = float(np.mean([h.var(ddof=1) for h in halves]))
    if not within > 0:
        return None
    length = float(np.mean([h.size for h in halves]))
    between_over_n = float(np.var([h.mean() for h in halves], ddof=1))
    return math.sqrt(((length - 1) / length * within + between_over_n) / within)


@dataclass
class _Level:
    """One replicate's numbers at one threshold of the ladder."""

    eps: float
    log_fraction: float          # log of the fraction of the previous population below eps
    means: np.ndarray            # mean of each score row over the level's states
    states: int
    evaluations: int             # the kernel's evaluations to grow this level's population
    moves: int                   # slice steps taken


@dataclass
class _Replicate:
    levels: list[_Level] = field(default_factory=list)
    prior_scores: np.ndarray | None = None      # (rows, population): the level-0 draws' scores
    final_steps: int = 0                         # steps of the chains at the last threshold
    final_values: np.ndarray | None = None       # (rows, states) at the last threshold
    evaluations: int = 0
    stuck: int = 0
    min_train: float = math.inf
    failed_at: float | None = None               # a threshold nothing fell below


class _Columns:
    """Score columns appended step by step, kept in blocks of :data:`BLOCK` columns.

    The chains at ``eps`` record every state's scores, a few hundred columns a step for 10^5 steps or more: kept
    as one small tensor a step, those long-lived allocations sat between the step's large temporary ones and the
    C allocator could not give the freed memory back: a run at n = 256 digits, width 64 grew to 20 GB of resident
    memory and was killed; 200 steps of 4 x 100 pCN chains there, scores kept per step, peaked at 3.9 GB against
    0.8 GB with nothing kept (2026-12-06). Copied into a few large blocks, the same run at 4 x 10^5 evaluations
    peaked at 1.8 GB, with the same numbers.
    """

    BLOCK = 1 << 16

    def __init__(self, first: torch.Tensor) -> None:
        self.rows, self.dtype, self.device = first.shape[0], first.dtype, first.device
        self.blocks: list[torch.Tensor] = []
        self.used = self.BLOCK
        self.append(first)

    def append(self, columns: torch.Tensor) -> None:
        start = 0
        while start < columns.shape[1]:
            if self.used == self.BLOCK:
                self.blocks.append(torch.empty((self.rows, self.BLOCK), dtype=self.dtype, device=self.device))
                self.used = 0
            count = min(columns.shape[1] - start, self.BLOCK - self.used)
            self.blocks[-1][:, self.used:self.used + count] = columns[:, start:start + count]
            self.used += count
            start += count

    def tensor(self) -> torch.Tensor:
        return torch.cat([*self.blocks[:-1], self.blocks[-1][:, :self.used]], 1)


class _Sampler:
    """Scores latents and grows the populations of several runs together; counts each run's evaluations."""

    #: States scored in one call at most (memory of an MLP's activations on every input).
    CHUNK = 8192

    def __init__(self, prior: LatentPrior, scorer, accept_row: int, device, check, bar=None,
                 exact: ExactReadout | ReadoutSlice | None = None) -> None:
        self.prior, self.scorer, self.accept_row, self.device, self.check = prior, scorer, accept_row, device, check
        self.bar = bar
        self.exact = exact

    def score(self, latent: torch.Tensor) -> torch.Tensor:
        size = chunk_states(self.prior, self.scorer, self.CHUNK)
        parts = [self.scorer(self.prior.draws(latent[start:start + size])) for start in range(0, latent.shape[0], size)]
        scores = parts[0] if len(parts) == 1 else torch.cat(parts, 1)
        self.check(scores)
        if self.bar is not None:
            self.bar.update(latent.shape[0])
        return scores

    def initial(self, generators, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """``count`` prior draws of each run, scored together."""
        latent = torch.cat([torch.randn((count, self.prior.size), generator=generator, dtype=torch.float64,
                                        device=self.device) for generator in generators])
        scores = self.score(latent)
        return [(latent[r * count:(r + 1) * count], scores[:, r * count:(r + 1) * count])
                for r in range(len(generators))]

    def grow(self, seeds, threshold: float, generators, targets=None, budgets=None, step: float | None = None,
             adapt: bool = False, thin: int = 1):
        """Chains from every seed of every run, stepped together, until each run has its target or spent its budget.

        ``seeds[r]`` is run ``r``'s ``(latent, scores)``. With ``targets`` run ``r``'s
        population is its seeds, then each step's new states in chain order, truncated
        to ``targets[r]`` (its last step moves only the chains it needs). With
        ``budgets`` instead, all of a run's chains step until the next step would
        exceed ``budgets[r]`` evaluations (judged by its previous step's cost; its first
        step is taken whenever the budget is positive).

        The kernel is the elliptical slice step, or with a ``step`` the pCN step of that
        size; with ``adapt`` (the pilot) the pCN step is multiplied by
        ``exp(acceptance - PCN_TARGET_ACCEPTANCE)`` after every step. With the sampler's ``exact`` readout
        move (kernel ``"pcn-exact"``) every step is followed by it (its evaluations count with the step's); with
        the readout slice move (``"pcn-readout"``, its ``alternates``) the kernel's steps alternate: the ``i``-th
        step of this call is a pCN step of the hidden layers for even ``i`` and the readout's move for odd ``i``
        (every step at depth 1), whichever runs step along.
        With ``targets``, each recorded state is ``thin`` kernel steps after the previous one of its chain.

        Returns ``(runs, step)``: per run ``(latent, scores, evaluations, moves, stuck,
        steps)`` (with ``budgets``, ``latent`` holds the chains' last states only, ``scores`` every
        state's), where ``stuck`` counts slice chains that stayed put or pCN proposals
        rejected and ``steps`` the steps its chains took, and the pCN step at the end
        (``None`` for the slice kernel).
        """
        runs = len(seeds)
        chains = [list(pair) for pair in seeds]
        parts = [[pair] for pair in seeds]
        columns = None if targets is not None else [_Columns(pair[1]) for pair in seeds]
        totals = [pair[0].shape[0] for pair in seeds]
        evaluations, moves, stuck = [0] * runs, [0] * runs, [0] * runs
        per_move: list[float | None] = [None] * runs
        steps = [0] * runs
        cycle = 0  # kernel steps so far in this call (the readout slice move takes the odd ones)
        alternates = self.exact is not None and self.exact.alternates
        while True:
            active = []
            for r in range(runs):
                size = chains[r][0].shape[0]
                if targets is not None:
                    active.append(max(0, min(size, targets[r] - totals[r])))
                elif per_move[r] is None:
                    active.append(size if budgets[r] > 0 else 0)
                else:
                    active.append(size if evaluations[r] + per_move[r] * size <= budgets[r] else 0)
            live = [r for r in range(runs) if active[r]]
            if not live:
                break
            latent = torch.cat([chains[r][0][:active[r]] for r in live])
            scores = torch.cat([chains[r][1][:, :active[r]] for r in live], 1)
            sizes = [active[r] for r in live]
            used, stuck_now = [0] * len(live), [0] * len(live)
            # Thinning: at the ladder's levels each recorded state is `thin` kernel steps on.
            for _ in range(thin if targets is not None else 1):
                used_now, still = [0] * len(live), [0] * len(live)  # no pCN step without hidden layers
                readout_turn = alternates and (cycle % 2 == 1 or self.exact.offset == 0)
                cycle += 1
                if step is None:
                    latent, scores, used_now, still = elliptical_slice_step(
                        latent, scores, sizes, threshold, self.score, [generators[r] for r in live], self.accept_row)
                elif (self.exact is None or self.exact.offset > 0) and not readout_turn:
                    # With the exact readout move, pCN moves the hidden layers only (the readout's latent last).
                    block = None if self.exact is None else self.exact.offset
                    latent, scores, used_now, accepted = pcn_step(latent, scores, sizes, threshold, self.score,
                                                                  [generators[r] for r in live], step, self.accept_row,
                                                                  block)
                    still = [size - count for size, count in zip(sizes, accepted)]
                    if adapt:
                        rate = sum(accepted) / sum(sizes)
                        step = min(PCN_MAX_STEP, max(PCN_MIN_STEP, step * math.exp(rate - PCN_TARGET_ACCEPTANCE)))
                used = [a + b for a, b in zip(used, used_now)]
                stuck_now = [a + b for a, b in zip(stuck_now, still)]
                if self.exact is not None and (readout_turn or not alternates):
                    latent, scores, used_now, _ = self.exact.step(latent, scores, sizes, threshold,
                                                                  [generators[r] for r in live])
                    self.check(scores)
                    if self.bar is not None:
                        self.bar.update(latent.shape[0])
                    used = [a + b for a, b in zip(used, used_now)]
            offset = 0
            for i, r in enumerate(live):
                count = active[r]
                moved = (latent[offset:offset + count], scores[:, offset:offset + count])
                offset += count
                if count < chains[r][0].shape[0]:
                    chains[r] = [torch.cat([moved[0], chains[r][0][count:]]),
                                 torch.cat([moved[1], chains[r][1][:, count:]], 1)]
                else:
                    chains[r] = list(moved)
                # With budgets (the chains at eps) only the scores of every state are kept: their latents are
                # never read, and at 10^6 states of a width-16 MLP (1,040 weights) they took 8 GB.
                if targets is not None:
                    parts[r].append(moved)
                else:
                    columns[r].append(moved[1])
                totals[r] += count
                evaluations[r] += used[i]
                moves[r] += count
                stuck[r] += stuck_now[i]
                per_move[r] = used[i] / count
                steps[r] += 1
        return [(torch.cat([part[0] for part in parts[r]]) if targets is not None else chains[r][0],
                 torch.cat([part[1] for part in parts[r]], 1) if targets is not None else columns[r].tensor(),
                 evaluations[r], moves[r], stuck[r], steps[r]) for r in range(runs)], step


def _threshold(values: torch.Tensor, keep: int) -> float | None:
    """The ``keep``-quantile threshold: ``keep`` values (about) lie strictly below it; ``None`` if all are equal."""
    ordered = torch.sort(values).values
    threshold = float(ordered[keep])
    if threshold > float(ordered[0]):
        return threshold
    above = ordered[ordered > ordered[0]]
    return float(above[0]) if above.numel() else None


def _pilot(sampler: _Sampler, eps: float, population: int, keep: int, budget: int, generator, kernel: str,
           thin: int = 1, waypoints: tuple[float, ...] = ()):
    """The adaptive ladder: ``(thresholds, steps, reached, log_volume_estimate, evaluations, next_threshold)``.

    ``waypoints`` (decreasing, above ``eps``) are thresholds the ladder must have as rungs of their own: each is
    taken as the next threshold once at least ``keep`` states lie below it.

    ``next_threshold`` is the threshold of the level the pilot would have added next when it stopped short of
    ``eps`` because its budget was spent (``None`` otherwise): with the ladder, the pilot's rate of descent.

    ``steps[j]`` is the pCN step the replicates use at ``thresholds[j]`` (the pilot's
    adapted step at the end of its level; ``None`` for the slice kernel).
    """
    latent, scores = sampler.initial([generator], population)[0]
    evaluations = population
    ladder: list[float] = []
    steps: list[float | None] = []
    step = PCN_INITIAL_STEP if kernel in PCN_KERNELS else None
    log_volume = 0.0
    row = sampler.accept_row
    goals = [*waypoints, eps]
    while True:
        values = scores[row]
        # A waypoint is a rung of its own once keep states are below it; then on towards the next goal.
        waypoint = len(goals) > 1 and int((values < goals[0]).sum()) >= keep
        if waypoint:
            threshold = goals[0]
        else:
            below_eps = int((values < eps).sum())
            if below_eps >= keep:
                if step is not None:
                    # The last level's step: adapted by a growth of the pilot's own population at eps.
                    inside = values < eps
                    _, step = sampler.grow([(latent[inside], scores[:, inside])], eps, [generator],
                                           targets=[population], step=step, adapt=True, thin=thin)
                ladder.append(eps)
                steps.append(step)
                return ladder, steps, True, log_volume + math.log(below_eps / population), evaluations, None
            threshold = _threshold(values, keep)
            if threshold is None or len(ladder) >= MAX_LEVELS:
                return ladder, steps, False, log_volume, evaluations, None
        if evaluations >= budget:
            return ladder, steps, False, log_volume, evaluations, threshold
        if waypoint:
            goals.pop(0)
        inside = values < threshold
        log_volume += math.log(int(inside.sum()) / population)
        ladder.append(threshold)
        grown, step = sampler.grow([(latent[inside], scores[:, inside])], threshold, [generator],
                                   targets=[population], step=step, adapt=True, thin=thin)
        steps.append(step)
        latent, scores, used, _, _, _ = grown[0]
        evaluations += used


def _descend(sampler: _Sampler, ladder: list[float], steps: list[float | None], population: int, budget: int,
             generators, thin: int = 1) -> list[_Replicate]:
    """Independent descents of the fixed ladder, one per generator, stepped together.

    Each run's last level (``eps``) keeps its chains going until its ``budget`` of
    evaluations is spent. ``steps`` are the pilot's pCN steps per level (``None``: slice).
    """
    results = [_Replicate() for _ in generators]
    current = sampler.initial(generators, population)
    for result, (_, scores) in zip(results, current):
        result.prior_scores = scores.cpu().numpy()
        result.evaluations = population
        result.min_train = float(scores[0].min())
    row = sampler.accept_row
    for index, (threshold, step) in enumerate(zip(ladder, steps)):
        seeds, fractions = [], []
        for result, (latent, scores) in zip(results, current):
            inside = scores[row] < threshold
            count = int(inside.sum())
            if count == 0:
                result.failed_at = threshold
            seeds.append((latent[inside], scores[:, inside]))
            fractions.append(math.log(count / scores.shape[1]) if count else -math.inf)
        if any(result.failed_at is not None for result in results):
            return results
        last = index == len(ladder) - 1
        grown, _ = sampler.grow(seeds, threshold, generators,
                                targets=None if last else [population] * len(generators),
                                budgets=[max(0, budget - result.evaluations) for result in results] if last else None,
                                step=step, thin=thin)
        current = []
        for result, fraction, (latent, scores, used, moves, stuck, taken) in zip(results, fractions, grown):
            result.evaluations += used
            result.stuck += stuck
            result.min_train = min(result.min_train, float(scores[0].min()))
            values = scores.cpu().numpy()
            result.levels.append(_Level(threshold, fraction, values.mean(1), values.shape[1], used, moves))
            if last:
                result.final_steps = taken
                result.final_values = values
            current.append((latent, scores))
    return results


def _log_mean_exp(logs: np.ndarray) -> tuple[float, float | None]:
    """``log(mean(exp(logs)))`` and its delta-method standard error ``SE(mean) / mean``."""
    top = float(logs.max())
    weights = np.exp(logs - top)
    mean = float(weights.mean())
    if logs.size < 2:
        return top + math.log(mean), None
    return top + math.log(mean), float(weights.std(ddof=1) / math.sqrt(logs.size) / mean)


def _mean_se(values: np.ndarray) -> tuple[float, float | None]:
    return float(values.mean()), (float(values.std(ddof=1) / math.sqrt(values.size)) if values.size > 1 else None)


def error_score_threshold(eps: float, num_train: int, inclusive: bool = False) -> float:
    """The threshold on ``train_error_score`` that keeps exactly the draws whose training error is below ``eps``
    (with ``inclusive``, at most ``eps``; the same for a test error's score with ``num_train`` test points).

    The error ``k / n`` is below ``eps`` for ``k = 0, ..., K`` (``K + 1`` the number of those fractions, taken in
    float64 as the error is); the score ``(k + t) / n`` with its tie-break ``t`` in ``[0, 1/2]`` is below
    ``(K + 1) / n`` exactly for those ``k`` (:meth:`~volumelab.problems.SupervisedTensors.error_scores`).
    """
    allowed = sum(1 for k in range(num_train + 1) if (k / num_train <= eps if inclusive else k / num_train < eps))
    if allowed == 0:
        raise OptimizerError(f"eps {eps!r} is {'below' if inclusive else 'at or below'} 0: no error is "
                             f"{'at or ' if inclusive else ''}below it")
    return allowed / num_train


def subset_simulation(optimizer, model, budget: int, seed: int, scorer, row_names: tuple[str, ...], device,
                      check, threshold: float | None = None, ladder_score: str | None = None,
                      hold: float | None = None) -> RunResult:
    """The subset-simulation G&C run behind :meth:`SubsetGuessCheck.run` (see the module docstring).

    Budget: ``budget`` model evaluations in all. The pilot may use up to
    ``budget / (replicates + 1)``; the rest is split evenly over the replicates, whose
    last level's chains run until their share is spent (judged by the previous step's
    cost, so a slice step may overrun it by a little). A pilot that needs more than
    each replicate's share ends the run as ``"budget_too_small"`` instead. With
    ``independent_ladders`` each replicate's own pilot may use up to ``budget / (2 replicates)``
    and the rest is split as before.

    ``threshold`` is the ladder's last level, what the accept score must be below (default ``optimizer.eps``;
    see :meth:`~volumelab.optimizers.conditioning.ConditionalEstimator.threshold`). ``ladder_score`` is the row
    the ladder's thresholds are on (default ``optimizer.accept``; ``"train_error_score"`` for the training error
    with its ties broken, ``threshold`` then being :func:`error_score_threshold`'s); it is not reported as a
    metric. With ``hold`` (a threshold above ``threshold``) the ladder has it as a rung, the run's estimates
    are those at it, and the levels below it give ``log_volume_test_given_train`` (``condition_test``).
    """
    population = optimizer.population
    keep = max(1, int(round(optimizer.level_fraction * population)))
    if keep >= population:
        raise OptimizerError(f"level_fraction {optimizer.level_fraction} keeps the whole population of {population}")
    accept_row = row_names.index(ladder_score or optimizer.accept)
    bar = tqdm(total=budget, unit="eval", unit_scale=True, disable=not optimizer.progress, desc="G&C subset")
    try:
        return _run(optimizer, model, budget, seed, scorer, row_names, device, check, bar, keep, accept_row,
                    optimizer.eps if threshold is None else threshold, hold)
    finally:
        bar.close()


def _pilots_per_budget(replicates: int, independent: bool) -> int:
    """What a run costs in pilots' worth of evaluations: with the shared ladder, a pilot and ``replicates`` ladders
    as costly and as much again for the chains at eps, ``2 (replicates + 1)``; with a ladder per replicate, each
    replicate's pilot, its ladder and its chains, ``3 replicates``."""
    return 3 * replicates if independent else 2 * (replicates + 1)


def _run(optimizer, model, budget, seed, scorer, row_names, device, check, bar, keep, accept_row,
         threshold, hold=None) -> RunResult:
    replicates, population = optimizer.replicates, optimizer.population
    independent = optimizer.independent_ladders
    prior = LatentPrior(model)
    exact = ExactReadout(prior, scorer, accept_row) if optimizer.kernel == "pcn-exact" else None
    if optimizer.kernel == "pcn-readout":
        exact = ReadoutSlice(prior, scorer, accept_row)
    sampler = _Sampler(prior, scorer, accept_row, device, check, bar, exact)
    start = time.perf_counter()
    # With a ladder per replicate, each replicate's pilot may use half of its share (its ladder the other half).
    pilot_share = budget // (2 * replicates) if independent else budget // (replicates + 1)
    share_text = "samples / (2 replicates)" if independent else "samples / (replicates + 1)"
    if pilot_share < population:
        # The pilot could not even draw its first population within its share: end before spending anything.
        needed = _pilots_per_budget(replicates, independent) * population
        metrics = {"eps": optimizer.eps, "accept": optimizer.accept, "samples": budget, "budget_needed": needed}
        diagnostics = {"method": "subset", "kernel": optimizer.kernel, "population": population,
                       "replicates": replicates, "seed": seed, "device": str(device), "pilot_evaluations": 0,
                       "independent_ladders": independent, "ladder": []}
        return _not_reached([], None, 0, metrics, diagnostics, time.perf_counter() - start,
                            f"the budget is too small: samples {budget:,} leave the pilot {pilot_share:,} evaluations "
                            f"({share_text}), fewer than one population of {population:,}; raise "
                            f"samples to at least {needed:,} (more for a deep ladder), or lower population",
                            status="budget_too_small")

    def pilot_work(index: int):
        parts = ("subset-pilot", index) if independent else ("subset-pilot",)
        return _pilot(sampler, threshold, population, keep, pilot_share,
                      make_generator(seed, *parts, device=device), optimizer.kernel, optimizer.moves,
                      () if hold is None else (hold,))

    workers_wanted = optimizer.workers or configured_threads()
    if independent:
        pilots = list(map_in_threads(pilot_work, replicates, max(1, min(workers_wanted, replicates))))
    else:
        pilots = [next(map_in_threads(pilot_work, 1, 1))]
    # One group of replicates per ladder (stepped together, REPLICATES_PER_GROUP at most).
    if independent:
        groups = [[r] for r in range(replicates)]
    else:
        groups = [list(range(first, min(replicates, first + REPLICATES_PER_GROUP)))
                  for first in range(0, replicates, REPLICATES_PER_GROUP)]
    workers = max(1, min(workers_wanted, len(groups)))
    ladders = [pilot[0] for pilot in pilots]
    steps_of = [pilot[1] for pilot in pilots]
    pilot_evaluations = sum(pilot[4] for pilot in pilots)
    base_metrics = {"eps": optimizer.eps, "accept": optimizer.accept, "samples": budget}
    base_diagnostics = {"method": "subset", "kernel": optimizer.kernel,
                        "pcn_steps": steps_of if independent else steps_of[0], "moves": optimizer.moves,
                        "population": population,
                        "level_fraction": optimizer.level_fraction, "replicates": replicates, "seed": seed,
                        "device": str(device), "workers": workers, "pilot_evaluations": pilot_evaluations,
                        "independent_ladders": independent,
                        "ladder": [list(ladder) for ladder in ladders] if independent else list(ladders[0])}
    # A pilot that did not reach eps ends the run: the first such (by index) names it; with a ladder per replicate
    # the run reports every pilot's evaluations and the largest budget any of them needs.
    failures = [(index, pilot) for index, pilot in enumerate(pilots) if not pilot[2]]
    if failures:
        index, (ladder, steps, reached, pilot_log_volume, evaluations, next_threshold) = failures[0]
        whose = f"replicate {index}'s pilot" if independent else "the pilot"
        needs = [budget_needed_from_rate([*pilot[0], pilot[5]], threshold, pilot[4], population, replicates,
                                         independent) for _, pilot in failures if pilot[5] is not None]
        needs = [need for need in needs if need is not None]
        if next_threshold is not None and needs:
            needed = max(needs)
            rate_of = "the pilots'" if independent else "its"
            base_metrics["budget_needed"] = needed
            return _not_reached(ladder, pilot_log_volume, pilot_evaluations, base_metrics, base_diagnostics,
                                time.perf_counter() - start,
                                f"the budget is too small: {whose}'s thresholds came down to {ladder[-1]:.4g} "
                                f"(eps {optimizer.eps:g}) in {len(ladder)} levels with {evaluations:,} "
                                f"evaluations, its share of the budget being {pilot_share:,} ({share_text}); "
                                f"at the rate {rate_of} thresholds fell, reaching "
                                f"eps takes about {needed:,} samples: raise samples to at least that",
                                status="budget_too_small")
        smallest = f"{ladder[-1]:.4g}" if ladder else "none (no level)"
        return _not_reached(ladder, pilot_log_volume, pilot_evaluations, base_metrics, base_diagnostics,
                            time.perf_counter() - start,
                            f"{whose}'s thresholds came down to {smallest} (eps {optimizer.eps:g}) with "
                            f"{evaluations:,} evaluations, its share of the budget being {pilot_share:,} "
                            f"({share_text}): the budget is too small, or the set L < {optimizer.eps:g} "
                            "is empty or nearly so for this model")
    share = (budget - pilot_evaluations) // replicates
    largest = max(pilot[4] for pilot in pilots)
    if share < largest:
        # Each replicate's ladder costs about what its pilot's did; it would overrun its share.
        needed = _pilots_per_budget(replicates, independent) * largest
        base_metrics["budget_needed"] = needed
        first = pilots[0]
        return _not_reached(first[0], first[3], pilot_evaluations, base_metrics, base_diagnostics,
                            time.perf_counter() - start,
                            f"the budget is too small: the pilot{'s' if independent else ''} reached eps "
                            f"{optimizer.eps:g} with {largest:,} evaluations{' at most' if independent else ''}, "
                            f"about what each of the {replicates} replicates' ladders costs, but each replicate's "
                            f"share is {share:,}; raise samples to at least {needed:,} (a third of it for the "
                            "chains at eps)" if independent else
                            f"the budget is too small: the pilot reached eps {optimizer.eps:g} with "
                            f"{largest:,} evaluations, about what each of the {replicates} replicates' "
                            f"ladders costs, but each replicate's share is {share:,}; raise samples to at least "
                            f"{needed:,} (half of it for the chains at eps)",
                            status="budget_too_small")

    def group_work(index: int) -> list[_Replicate]:
        pilot = pilots[index] if independent else pilots[0]
        return _descend(sampler, pilot[0], pilot[1], population, share,
                        [make_generator(seed, "subset", r, device=device) for r in groups[index]], optimizer.moves)

    runs = [run for group in map_in_threads(group_work, len(groups), workers) for run in group]
    seconds = time.perf_counter() - start
    failed = [run.failed_at for run in runs if run.failed_at is not None]
    if failed:
        return _not_reached(ladders[0], pilots[0][3], pilot_evaluations, base_metrics, base_diagnostics,
                            seconds, f"{len(failed)} of {replicates} replicates had no state below threshold "
                            f"{max(failed):.4g} of {'its pilot' if independent else 'the pilot'}'s ladder; "
                            "raise population")
    run_ladders = [pilots[g][0] if independent else ladders[0] for g, group in enumerate(groups) for _ in group]
    result = _combine(runs, run_ladders, row_names, base_metrics, base_diagnostics, pilot_evaluations, seconds,
                      scorer.score_names, hold)
    if optimizer.loss_bins:
        result.diagnostics["loss_bins"] = loss_bins(
            [run.final_values[row_names.index("normalized_train_loss")] for run in runs],
            [run.final_values[row_names.index("test_error")] for run in runs], optimizer.loss_bins)
    return result


def loss_bins(losses, errors, bins: int) -> list[dict]:
    """Chiang et al.'s (ICLR 2023) binning of G&C by the normalized training loss: per bin of the pooled states'
    losses (``bins`` equal-count bins, edges at their quantiles), the test error averaged within each replicate
    and then over the replicates with a state in the bin, its SE their spread (``None`` below two replicates).

    Args:
        losses, errors: Per replicate, its states' normalized training losses and test errors (1-D, aligned).
        bins: Number of bins.
    """
    pooled = np.concatenate([np.asarray(values, dtype=np.float64) for values in losses])
    edges = np.quantile(pooled, np.linspace(0, 1, bins + 1))
    out = []
    for index in range(bins):
        low, high = float(edges[index]), float(edges[index + 1])
        means, states = [], 0
        for loss, error in zip(losses, errors):
            loss, error = np.asarray(loss, dtype=np.float64), np.asarray(error, dtype=np.float64)
            inside = (loss >= low) & ((loss <= high) if index == bins - 1 else (loss < high))
            states += int(inside.sum())
            if inside.any():
                means.append(float(error[inside].mean()))
        mean, se = _mean_se(np.array(means)) if means else (None, None)
        out.append({"low": low, "high": high, "states": states, "replicates": len(means), "test_error": mean,
                    "test_error_stderr": se})
    return out


def budget_needed_from_rate(thresholds: list[float], eps: float, evaluations: int, population: int,
                            replicates: int, independent: bool = False) -> int | None:
    """The samples a subset-simulation run would need to reach ``eps``, extrapolated from a pilot that stopped
    short of it; ``None`` when its thresholds level off above ``eps`` (the set ``L < eps`` may be empty).

    Each level lowers the threshold by a factor; ``d_j = log(t_j / t_{j+1})`` is the j-th level's descent. The
    descents are extrapolated geometrically, ``d_{k+n} = d_k r^n``, with ``r`` the geometric mean of the last two
    ratios of successive descents (capped at 1; ``r = 1``, a constant rate, with fewer than three descents). The
    levels still needed are the fewest ``n`` whose descents sum to ``log(t_k / eps)``; when even all of them
    (``d_k r / (1 - r)``) fall short, or ``n`` would pass :data:`MAX_LEVELS`, eps is out of reach: ``None``.
    A level costs what the pilot's did on average (``(evaluations - population) / levels grown``); the run needs
    a pilot of that many levels and, as :func:`subset_simulation` splits it, ``replicates`` ladders as costly
    and as much again for the chains at eps: ``2 (replicates + 1)`` pilots (with ``independent`` ladders, a pilot,
    a ladder and the chains per replicate: ``3 replicates``).

    Args:
        thresholds: The pilot's ladder and the next threshold it had chosen (at least two, decreasing).
        eps: The target threshold.
        evaluations: The pilot's model evaluations, its first population's included.
        population: States per level.
        replicates: Independent replicate ladders.
    """
    if len(thresholds) < 2 or thresholds[-1] <= eps:
        return None
    descents = [math.log(a / b) for a, b in zip(thresholds, thresholds[1:])]
    if descents[-1] <= 0:
        return None
    ratio = 1.0
    if len(descents) >= 3 and all(d > 0 for d in descents[-3:]):
        ratio = min(1.0, math.sqrt(descents[-1] / descents[-3]))
    remaining, descent, more = math.log(thresholds[-1] / eps), descents[-1], 0
    while remaining > 0:
        descent *= ratio
        more += 1
        remaining -= descent
        if more + len(thresholds) > MAX_LEVELS or descent < 1e-12:
            return None
    grown = len(thresholds) - 1  # the pilot grew one population per threshold of its ladder
    # To eps: the ladder's levels, the next threshold's, ``more`` beyond it (the last of them is eps itself).
    levels = grown + 1 + more
    pilot = population + max(1.0, (evaluations - population) / grown) * levels
    return int(math.ceil(_pilots_per_budget(replicates, independent) * pilot))


def _not_reached(ladder, log_volume, evaluations, metrics, diagnostics, seconds, reason,
                 status: str = "not_reached") -> RunResult:
    """A run without estimates: why, the smallest threshold the pilot reached and its volume there."""
    metrics = dict(metrics)
    smallest = ladder[-1] if ladder else None
    metrics.update({"gen_loss": None, "train_loss": None, "log_volume": None, "log_volume_mean_log": None,
                    "log_volume_mean_log_stderr": None, "acceptance_rate": None,
                    "accepted": 0, "evaluations": evaluations, "min_eps_reached": smallest,
                    "log_volume_at_min_eps": log_volume if ladder else None, "ess": None, "rhat": None})
    diagnostics = dict(diagnostics, reason=reason, seconds=seconds)
    return RunResult("gnc", status, metrics, {"gen_loss": None, "log_volume": None, "log_volume_mean_log": None}, {},
                     diagnostics)


def _level_entry(runs: list[_Replicate], at: list[int], threshold: float, row_names) -> dict:
    """The replicates' estimates at one threshold, replicate ``r``'s level ``at[r]`` (its ladder's index of it)."""
    logs = np.array([sum(level.log_fraction for level in run.levels[:index + 1]) for run, index in zip(runs, at)])
    log_volume, log_volume_se = _log_mean_exp(logs)
    mean_log, mean_log_se = _mean_se(logs)
    means = np.array([run.levels[index].means for run, index in zip(runs, at)])  # (replicates, rows)
    entry = {"eps": threshold, "log_volume": log_volume, "log_volume_stderr": log_volume_se,
             "log_volume_mean_log": mean_log, "log_volume_mean_log_stderr": mean_log_se,
             "states": int(sum(run.levels[index].states for run, index in zip(runs, at))),
             "evaluations_per_move": (sum(run.levels[index].evaluations for run, index in zip(runs, at))
                                      / max(1, sum(run.levels[index].moves for run, index in zip(runs, at))))}
    for row, name in enumerate(row_names):
        entry[name], entry[f"{name}_stderr"] = _mean_se(means[:, row])
    return entry


def _combine(runs: list[_Replicate], ladders, row_names, metrics, diagnostics, pilot_evaluations,
             seconds, unreported: tuple[str, ...] = (), hold: float | None = None) -> RunResult:
    """Replicate means and spreads at every threshold, the prior's moments, R-hat and the effective sample size.

    ``ladders[r]`` is replicate ``r``'s ladder: one ladder shared by all (every threshold then has its estimates
    in ``diagnostics["levels"]``), or a ladder per replicate (``independent_ladders``: only their common last
    threshold, and ``hold``, are thresholds of every replicate, and ``levels`` has the last one only).
    The rows named in ``unreported`` (the ladder's error scores) appear in ``diagnostics["levels"]`` only. With
    ``hold`` (a rung of every ladder) the estimates are that rung's, and the rungs below it give
    ``log_volume_test_given_train``: the log of the replicates' mean product of the fractions below it, with the
    delta-method SE (as ``log_volume``).
    """
    metrics, errors = dict(metrics), {}
    shared = all(list(ladder) == list(ladders[0]) for ladder in ladders)
    # Per replicate, the level index of every reported threshold (all of a shared ladder's; else the last).
    if shared:
        thresholds = list(ladders[0])
        indices = [list(range(len(thresholds))) for _ in runs]
    else:
        thresholds = [ladders[0][-1]]
        indices = [[len(ladder) - 1] for ladder in ladders]
    levels = []
    for position, threshold in enumerate(thresholds):
        at = [index[position] for index in indices]
        levels.append(_level_entry(runs, at, threshold, row_names))
    held = None if hold is None else [list(ladder).index(hold) for ladder in ladders]
    if held is not None and not shared:
        levels.insert(0, _level_entry(runs, held, hold, row_names))
    hold_position = None if held is None else (held[0] if shared else 0)
    final = levels[-1] if held is None else levels[hold_position]
    if held is not None:
        logs = np.array([sum(level.log_fraction for level in run.levels[index + 1:])
                         for run, index in zip(runs, held)])
        metrics["log_volume_test_given_train"], errors["log_volume_test_given_train"] = _log_mean_exp(logs)
        metrics["log_volume_test_given_train_stderr"] = errors["log_volume_test_given_train"]
    for name in row_names:
        if name not in unreported:
            metrics[name], errors[name] = final[name], final[f"{name}_stderr"]
    metrics["log_volume"], errors["log_volume"] = final["log_volume"], final["log_volume_stderr"]
    # The mean of the replicates' logs, with its SE also as a metric: a sweep's table keeps metrics only.
    metrics["log_volume_mean_log"] = final["log_volume_mean_log"]
    metrics["log_volume_mean_log_stderr"] = errors["log_volume_mean_log"] = final["log_volume_mean_log_stderr"]
    rate = math.exp(final["log_volume"])
    metrics["acceptance_rate"] = rate
    errors["acceptance_rate"] = rate * final["log_volume_stderr"] if final["log_volume_stderr"] is not None else None
    metrics["acceptance_rate_low"] = metrics["acceptance_rate_high"] = None
    prior = [RunningMoments() for _ in row_names]
    for run in runs:
        for row, moments in enumerate(prior):
            moments.merge(RunningMoments.of(torch.from_numpy(run.prior_scores[row])))
    for row, name in enumerate(row_names):
        if name not in unreported:
            metrics[f"prior_{name}"], errors[f"prior_{name}"] = prior[row].summary()
    finals = np.concatenate([run.final_values for run in runs], axis=1)
    metrics["accepted"] = int(finals.shape[1])
    evaluations = pilot_evaluations + sum(run.evaluations for run in runs)
    metrics["evaluations"] = evaluations
    metrics["min_train_loss"] = min(run.min_train for run in runs)
    gen_se = levels[-1]["gen_loss_stderr"]  # the chains at the last rung (below the held one with hold)
    variance = float(finals[1].var(ddof=1)) if finals.shape[1] > 1 else None
    metrics["ess"] = variance / gen_se ** 2 if variance is not None and gen_se else None
    # Each replicate's final states in time order (the seeds, then every step's states).
    rhat = split_rhat([run.final_values[1] for run in runs])
    steps = min(run.final_steps for run in runs)
    metrics["rhat"] = rhat
    metrics["min_eps_reached"] = ladders[0][-1]
    status = "not_mixed" if rhat is not None and rhat > RHAT_THRESHOLD else "ok"
    diagnostics = dict(diagnostics)
    diagnostics.update({
        "levels": levels, "seconds": seconds, "rhat_threshold": RHAT_THRESHOLD,
        # Each replicate's own estimates at eps: what the standard errors are the spread of.
        "replicate_estimates": [{"log_volume": sum(level.log_fraction for level in run.levels),
                                 "gen_loss": float(run.levels[-1].means[1]), "states": run.levels[-1].states,
                                 "evaluations": run.evaluations} for run in runs],
        "final_steps": steps, "stuck_chains": sum(run.stuck for run in runs),
        "evaluations_per_second": evaluations / seconds if seconds > 0 else None,
    })
    if status == "not_mixed":
        diagnostics["warning"] = (f"split-R-hat {rhat:.3f} over {len(runs)} replicates exceeds {RHAT_THRESHOLD}: the "
                                  "chains have not mixed; raise the budget or the population")
    return RunResult("gnc", status, metrics, errors, {}, diagnostics)


def _subset_text(result: RunResult, scored: str) -> list[str]:
    metrics, errors, diagnostics = result.metrics, result.standard_errors, result.diagnostics
    if metrics.get("gen_loss") is None:
        lines = [f"subset simulation stopped ({result.status}): {diagnostics['reason']}"]
        if metrics.get("log_volume_at_min_eps") is not None:
            lines.append(f"smallest threshold reached {metrics['min_eps_reached']:.4g}, where the pilot estimates "
                         f"log P(L_train < threshold) = {metrics['log_volume_at_min_eps']:.3f}")
        return lines
    if diagnostics.get("independent_ladders"):
        sizes = sorted(len(ladder) for ladder in diagnostics["ladder"])
        rungs = f"{sizes[0]}" if sizes[0] == sizes[-1] else f"{sizes[0]}-{sizes[-1]}"
        ladder = f"{len(sizes)} independent ladders of {rungs} thresholds"
    else:
        ladder = f"{len(diagnostics['ladder'])} thresholds"
    lines = [f"subset simulation ({diagnostics['kernel']} kernel) over {ladder} "
             f"down to eps={metrics['eps']}: {metrics['evaluations']:,} evaluations, "
             f"ESS {format_value(metrics['ess'])}, split-R-hat {format_value(metrics['rhat'])}",
             "log P(L_train < eps):".ljust(27) + format_value(metrics["log_volume"], errors["log_volume"])]
    if metrics.get("log_volume_test_given_train") is not None:
        gd = f" (GD's test error {metrics['gd_test_error']:.4g})" if metrics.get("gd_test_error") is not None else ""
        lines.append(f"log P(test error <= {metrics['test_eps']:.4g} | train):".ljust(27) + " "
                     + format_value(metrics["log_volume_test_given_train"], errors["log_volume_test_given_train"])
                     + gd)
    if result.status == "not_mixed":
        lines.append(f"warning: {diagnostics['warning']}")
    lines = lines + conditional_lines(result, scored)
    if diagnostics.get("loss_bins"):
        lines.append("test error by normalized training loss (Chiang et al.'s bins):")
        for entry in diagnostics["loss_bins"]:
            lines.append(f"  [{entry['low']:.4g}, {entry['high']:.4g}]: ".ljust(27)
                         + format_value(entry["test_error"], entry["test_error_stderr"])
                         + f"  ({entry['states']:,} states)")
    return lines


SUBSET_SCHEMA = ResultSchema(
    metrics=(*CONDITIONAL_METRICS,
             Metric("accepted", "number of chain states at eps that the conditional means average: correlated "
                                "Markov-chain states, not independent draws (ess says how many independent draws "
                                "they are worth)", kind="count"),
             Metric("samples", "the budget, in model evaluations", kind="count"),
             Metric("evaluations", "model evaluations spent (pilot and replicates)", kind="count"),
             Metric("acceptance_rate_low", "None: the volume's uncertainty is log_volume's standard error",
                    kind="value"),
             Metric("acceptance_rate_high", "None, as acceptance_rate_low", kind="value"),
             Metric("log_volume_mean_log", "mean over the replicates of their log volumes (estimates E[log P_r], "
                                           "below log P by about Var/2)"),
             Metric("log_volume_mean_log_stderr", "its standard error, also as a metric (a sweep's table keeps "
                                                  "metrics only)", kind="value"),
             Metric("rhat", "split-R-hat of the conditional gen_loss over the replicates' chains (with "
                            "condition_test, the chains at the test threshold)", kind="check"),
             Metric("log_volume_test_given_train", "log P(test error <= test_eps | training error < eps) under "
                                                   "the prior, from the ladder's rungs below the training "
                                                   "threshold", when="condition_test runs"),
             Metric("log_volume_test_given_train_stderr", "its standard error, also as a metric", kind="value",
                    when="condition_test runs"),
             Metric("test_eps", "the test error condition_test conditions on (test error <= test_eps)",
                    kind="value", when="condition_test runs"),
             Metric("gd_test_error", "the test error of the GD run that set test_eps", kind="value",
                    when="gnc --condition-test without --test-eps"),
             Metric("gd_train_error", "that GD run's training error", kind="value",
                    when="gnc --condition-test without --test-eps"),
             Metric("min_eps_reached", "the smallest threshold of the ladder", kind="value"),
             Metric("log_volume_at_min_eps", "the pilot's log volume at min_eps_reached", kind="value",
                    when="runs that stopped before eps"),
             Metric("budget_needed", "the samples (model evaluations) the run would need: twice the cost of one "
                                     "ladder per replicate and pilot, as measured by the pilot (extrapolated at the "
                                     "rate its thresholds fell when it stopped short of eps; a lower bound of one "
                                     "population per run when the pilot could not start; with independent_ladders "
                                     "three ladders per replicate, the largest any pilot needs)", kind="value",
                    when="budget_too_small runs")),
    statuses={"ok": "reached eps; the chains mixed",
              "not_mixed": f"reached eps, but split-R-hat exceeds {RHAT_THRESHOLD}: numbers reported, flagged",
              "not_reached": "the pilot's thresholds levelled off above eps (the set L < eps may be empty), or "
                             "a replicate lost its population: no estimate at eps",
              "budget_too_small": "the budget cannot reach eps (the pilot could not start, its thresholds were "
                                  "still falling when its share ran out, or it reached eps but the replicates' "
                                  "shares are too small): no estimate; budget_needed says how many samples would "
                                  "do"},
    text=_subset_text,
)


@register_estimator
@dataclass(frozen=True)
class SubsetGuessCheck(ConditionalEstimator):
    """Guess & Check by subset simulation (this module's docstring): the prior conditioned on ``score < eps``
    at ``eps`` far below rejection's reach. The budget counts model evaluations; the computation is in
    float64 on the prior's latent weights (``eps``, ``accept``, ``device``, ``progress``, ``workers``: see
    :class:`~volumelab.optimizers.conditioning.ConditionalEstimator`).

    Attributes:
        population: States per level and replicate.
        level_fraction: Share of a level's population below the next threshold of the adaptive ladder (``p0``).
        replicates: Independent descents of the ladder; the standard errors are their spread.
        kernel: ``"slice"`` (elliptical slice sampling, no step size), ``"pcn"`` (preconditioned
            Crank-Nicolson, one evaluation per move, its step adapted per level by the pilot), ``"pcn-exact"``
            (pCN on the hidden layers, then an exact move of an MLP's readout: :class:`ExactReadout`; Gaussian
            prior and ``accept="train_error"`` only; two evaluations per move, one at depth 1) or
            ``"pcn-readout"`` (pCN steps on a factorization's hidden layers alternating with slice moves of its
            readout on the loss's closed form: :class:`ReadoutSlice`; Gaussian prior of mean 0 and a matrix task
            only; one evaluation per move).
        moves: Kernel steps between the recorded states of a chain at the ladder's levels (1: every step
            is recorded); more decorrelate each level's population from its seeds at that many times the cost.
    """

    population: int = setting(500, minimum=10, count=True, doc="States per level and replicate.")
    level_fraction: float = setting(0.1, minimum=0, maximum=1, exclusive=True,
                                    doc="Share of a level's population below the next threshold.")
    replicates: int = setting(8, minimum=2,
                              doc="Independent descents of the ladder; the standard errors are their spread.")
    kernel: str = setting("pcn", choices=KERNELS,
                          doc="Markov kernel, preconditioned Crank-Nicolson (step adapted by a pilot run), "
                              "elliptical slice sampling, pCN followed by an exact move of an MLP's readout "
                              "inside the training constraint (pcn-exact: Gaussian prior, --accept train_error), "
                              "or pCN on a factorization's hidden layers alternating with slice moves of its "
                              "readout (pcn-readout: Gaussian prior, matrix tasks).")
    moves: int = setting(5, minimum=1,
                         doc="Kernel steps between the recorded states of a chain at the ladder's levels.")
    condition_test: bool = setting(False, doc="With --accept train_error: continue the ladder on the test error "
                                              "inside the training constraint, down to test error <= --test-eps, "
                                              "and report log_volume_test_given_train with its SE.")
    test_eps: float | None = setting(None, minimum=0, maximum=1,
                                     doc="With --condition-test: the test error the ladder conditions on (test "
                                         "error <= it; the gnc command's default: GD's test error).")
    loss_bins: int = setting(0, minimum=0,
                             doc="With --accept train_error on an MLP: Chiang et al.'s binning, the test error of "
                                 "the chains' states in this many equal-count bins of the weight-normalized "
                                 "training loss (0: none).")
    independent_ladders: bool = setting(
        False, doc="Give every replicate a ladder of its own (its own pilot) instead of the one pilot's ladder that "
                   "all replicates share: the standard errors then include the ladder's own variance, which the "
                   "shared ladder's omit (measured 1.4-1.7x low at 12 levels), at about 1.8x the ladder's cost.")
    tie_break: str = setting("margin", choices=TIE_BREAKS,
                             doc="With --accept train_error, the score the ladder's thresholds are on: the error "
                                 "count with its ties broken by the margins (margin), or the count alone (none).")

    name: ClassVar[str] = "subset"
    summary: ClassVar[str] = ("subset simulation over a ladder of thresholds, the same conditional law at eps far "
                              "below rejection's reach (--samples then counts model evaluations)")
    budget_unit: ClassVar[str] = "model evaluations"
    schema: ClassVar[ResultSchema] = SUBSET_SCHEMA

    def __post_init__(self) -> None:
        for name, minimum in (("population", 10), ("replicates", 2), ("moves", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
                raise OptimizerError(f"{name} must be an integer >= {minimum}, got {value!r}")
        if not (isinstance(self.level_fraction, (int, float)) and 0 < self.level_fraction < 1):
            raise OptimizerError(f"level_fraction must be in (0, 1), got {self.level_fraction!r}")
        if self.kernel not in KERNELS:
            raise OptimizerError(f"kernel must be one of {', '.join(KERNELS)}, got {self.kernel!r}")
        if self.tie_break not in TIE_BREAKS:
            raise OptimizerError(f"tie_break must be one of {', '.join(TIE_BREAKS)}, got {self.tie_break!r}")
        if isinstance(self.loss_bins, bool) or not isinstance(self.loss_bins, int) or self.loss_bins < 0:
            raise OptimizerError(f"loss_bins must be an integer >= 0, got {self.loss_bins!r}")
        if self.loss_bins and self.accept != "train_error":
            raise OptimizerError("loss_bins bins a classifier's states by their normalized training loss: it needs "
                                 f"accept='train_error', got accept={self.accept!r}")
        for name in ("condition_test", "independent_ladders"):
            if not isinstance(getattr(self, name), bool):
                raise OptimizerError(f"{name} must be True or False, got {getattr(self, name)!r}")
        if self.test_eps is not None and not (isinstance(self.test_eps, (int, float))
                                              and not isinstance(self.test_eps, bool) and 0 <= self.test_eps <= 1):
            raise OptimizerError(f"test_eps must be a test error in [0, 1], got {self.test_eps!r}")
        if self.test_eps is not None and not self.condition_test:
            raise OptimizerError("test_eps is the threshold of condition_test: set condition_test too")
        if self.condition_test and (self.accept != "train_error" or self.tie_break != "margin"):
            raise OptimizerError("condition_test continues the ladder of the training error's score: it needs "
                                 f"accept='train_error' and tie_break='margin' (got accept={self.accept!r}, "
                                 f"tie_break={self.tie_break!r})")
        super().__post_init__()

    def run(self, problem, model, budget: int, seed: int = 0) -> RunResult:
        """Estimate the conditional law with ``budget`` model evaluations (see :func:`subset_simulation`).

        Returns:
            A :class:`RunResult` with the metrics of :data:`SUBSET_SCHEMA` (the rejection estimator's
            losses and volume, plus ``evaluations``, ``ess``, ``rhat``, ``min_eps_reached``, ...) and the
            ladder with each threshold's estimates in ``diagnostics["levels"]``.
        """
        self.check_run(problem, model, budget)
        device = resolve_device(self.device)
        threshold = self.threshold(problem)
        tie_break = self.accept == "train_error" and self.tie_break == "margin"
        ladder_score, hold = None, None
        if tie_break:
            threshold, ladder_score = error_score_threshold(threshold, problem.num_train), "train_error_score"
        if self.condition_test:
            if self.test_eps is None:
                raise OptimizerError("condition_test needs test_eps, the test error to condition on (the gnc "
                                     "command takes GD's test error when --test-eps is not given)")
            # The training score's threshold is a rung; below it the ladder is on the test error's score.
            hold, ladder_score = threshold, "test_given_train_score"
            threshold = hold * 0.5 * error_score_threshold(self.test_eps, problem.num_test, inclusive=True)
        if self.loss_bins and not model.capabilities.linear_readout:
            raise OptimizerError(f"loss_bins needs an MLP (its weight-normalized loss), not a {model.family} model")
        scorer = scorer_for(model, problem, device, threshold, self.accept, error_scores=tie_break,
                            train_threshold=hold, normalized_loss=bool(self.loss_bins))
        if self.kernel == "pcn-exact":
            reason = ExactReadout.mismatch(model, self.accept, scorer)
            if reason:
                raise OptimizerError(reason)
        if self.kernel == "pcn-readout":
            reason = ReadoutSlice.mismatch(model, scorer)
            if reason:
                raise OptimizerError(reason)
        names = ("train_loss", "gen_loss", *scorer.metric_names, *scorer.score_names)
        result = subset_simulation(self, model, budget, seed, scorer, names, device,
                                   lambda losses: check_finite(losses, model), threshold=threshold,
                                   ladder_score=ladder_score, hold=hold)
        if self.condition_test:
            result.metrics["test_eps"] = self.test_eps
        return result
