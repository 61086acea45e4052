"""Subset simulation's readout slice move (:class:`~volumelab.optimizers.subset.ReadoutSlice`, kernel
``"pcn-readout"``): its closed-form losses along the ellipse against the model's own forward pass, its invariance
against rejection sampling of the prior restricted to ``L_train < eps``, its use inside subset simulation
against rejection G&C, its determinism over workers, and its refusals.

Statistical checks use fixed seeds and state their tolerance in standard errors.
"""

from __future__ import annotations

import math

import pytest
import torch

from volumelab._rng import make_generator
from volumelab.errors import OptimizerError
from volumelab.models import FactorizationModel, MLPModel
from volumelab.optimizers import GuessCheck
from volumelab.optimizers.conditioning import scorer_for
from volumelab.optimizers.subset import LatentPrior, ReadoutSlice
from volumelab.problems import make_supervised
from volumelab.problems.core import make_sensing

CPU = torch.device("cpu")


def _setting(depth: int, activation: str = "leaky_relu", normalize: bool = True):
    problem = make_sensing(3, 3, 1, 4, seed=3)
    model = FactorizationModel(3, 3, 3, depth, activation=activation, normalize=normalize)
    return problem, model, LatentPrior(model)


@pytest.mark.parametrize("depth,normalize", [(1, True), (3, True), (3, False)])
def test_closed_form_losses_along_the_ellipse_match_the_forward_pass(depth, normalize):
    """At 7 angles on each of 50 chains' ellipses, the closed form's (train, gen) losses equal the scorer's losses
    of the model's own end-to-end matrix (float64, 1e-10 relative)."""
    problem, model, prior = _setting(depth, normalize=normalize)
    scorer = scorer_for(model, problem, CPU, 0.1)
    move = ReadoutSlice(prior, scorer, 0)
    generator = make_generator(0, "test-readout-closed-form")
    latent = torch.randn(50, prior.size, generator=generator, dtype=torch.float64)
    direction = torch.randn(50, move.size, generator=generator, dtype=torch.float64)
    layers = prior.layers(latent)
    shape = prior.shapes[-1]
    if depth > 1:
        post = []
        model.forward(layers, post=post)
        features = post[-1]
    else:
        features = torch.eye(3, dtype=torch.float64).expand(50, 3, 3)
    current = torch.matmul(layers[-1], features).flatten(1)
    moved = torch.matmul(model.prior_from_normal(direction.reshape(-1, *shape), depth - 1), features).flatten(1)
    operator = scorer.exact.operator
    gram = torch.stack([(current * current).sum(1), (current * moved).sum(1), (moved * moved).sum(1)], 1)
    for angle in torch.linspace(-3.0, 3.0, 7, dtype=torch.float64):
        closed = move._losses(current @ operator, moved @ operator, gram, angle.expand(50))
        point = latent.clone()
        point[:, move.offset:] = latent[:, move.offset:] * angle.cos() + direction * angle.sin()
        direct = scorer(prior.draws(point))
        torch.testing.assert_close(closed, direct, rtol=1e-10, atol=1e-14)


def _rejection_draws(prior, scorer, threshold: float, stream: str, count: int):
    """``count`` exact draws of the latent prior restricted to ``L_train < threshold`` and their scores."""
    generator = make_generator(0, stream)
    kept, scores = [], []
    while sum(part.shape[0] for part in kept) < count:
        latent = torch.randn(100_000, prior.size, generator=generator, dtype=torch.float64)
        values = scorer(prior.draws(latent))
        inside = values[0] < threshold
        kept.append(latent[inside])
        scores.append(values[:, inside])
    return torch.cat(kept)[:count], torch.cat(scores, 1)[:, :count]


@pytest.mark.parametrize("depth", [1, 3])
def test_readout_slice_keeps_the_restricted_prior_invariant(depth):
    """Chains started from rejection draws of the depth-``depth`` normalized leaky-ReLU prior restricted to
    ``L_train < eps`` (eps the prior's 5% quantile, so rejection is cheap) stay so distributed.

    After 5 moves of 20,000 chains, the means of the training loss, the generalization loss, the squared norm of
    the readout's latent and its first coordinate each lie within 4 combined standard errors of those of 20,000
    independent rejection draws (the chains are independent: plain SEs); every state satisfies the constraint and
    its scores are the model's; few chains stay put.
    """
    problem, model, prior = _setting(depth)
    scorer = scorer_for(model, problem, CPU, 0.1)
    prior_scores = scorer(prior.draws(torch.randn(100_000, prior.size, generator=make_generator(0, "test-eps"),
                                                  dtype=torch.float64)))
    threshold = float(torch.quantile(prior_scores[0], 0.05))
    move = ReadoutSlice(prior, scorer, 0)
    start, scores = _rejection_draws(prior, scorer, threshold, "test-readout-start", 20_000)
    reference, reference_scores = _rejection_draws(prior, scorer, threshold, "test-readout-reference", 20_000)
    generator = make_generator(0, "test-readout-moves")
    latent = start
    kept_total = 0
    for _ in range(5):
        latent, scores, used, kept = move.step(latent, scores, [latent.shape[0]], threshold, [generator])
        assert used == [latent.shape[0]]
        kept_total += kept[0]
    assert bool((scores[0] < threshold).all())
    torch.testing.assert_close(scores, scorer(prior.draws(latent)), rtol=0, atol=0)
    assert torch.equal(latent[:, :move.offset], start[:, :move.offset])  # the hidden layers never move
    assert kept_total < 0.01 * 5 * latent.shape[0]
    assert float((latent == start).all(1).double().mean()) < 0.01

    def statistics(states, values):
        readout = states[:, move.offset:]
        return {"train": values[0], "gen": values[1], "norm": readout.square().sum(1), "first": readout[:, 0]}

    chains, exact = statistics(latent, scores), statistics(reference, reference_scores)
    n = latent.shape[0]
    for name in chains:
        combined = math.hypot(chains[name].std().item(), exact[name].std().item()) / math.sqrt(n)
        assert abs(chains[name].mean().item() - exact[name].mean().item()) < 4 * combined, name


def test_pcn_readout_agrees_with_rejection():
    """Subset simulation with the pcn-readout kernel on the normalized depth-3 leaky-ReLU prior (5 x 5 sensing,
    10 measurements) agrees with rejection G&C within 3 combined standard errors (gen loss, log volume, train
    loss)."""
    problem = make_sensing(5, 5, 1, 10, seed=0)
    model = FactorizationModel(5, 5, 5, 3, activation="leaky_relu", normalize=True)
    rejection = GuessCheck(eps=0.02).run(problem, model, 400_000, seed=11)
    subset = GuessCheck(eps=0.02, method="subset", kernel="pcn-readout").run(problem, model, 150_000, seed=12)
    assert rejection["accepted"] >= 300
    assert subset.status == "ok", subset.diagnostics.get("warning")
    for key in ("gen_loss", "log_volume", "train_loss"):
        combined = math.hypot(rejection.standard_errors[key], subset.standard_errors[key])
        assert abs(rejection[key] - subset[key]) < 3 * combined, key
    assert subset["evaluations"] <= 150_000


@pytest.mark.parametrize("depth", [1, 4])
def test_pcn_readout_same_seed_same_result_whatever_the_workers(depth):
    problem = make_sensing(4, 4, 1, 6, seed=0)
    model = FactorizationModel(4, 4, 3, depth, activation="leaky_relu", normalize=True)
    runs = [GuessCheck(eps=0.05, method="subset", kernel="pcn-readout", population=100, workers=workers)
            .run(problem, model, 20_000, seed=4) for workers in (1, 2, 1)]
    assert runs[0].diagnostics["kernel"] == "pcn-readout" and runs[0]["gen_loss"] is not None
    for run in runs[1:]:
        assert run.metrics == runs[0].metrics
        assert run.standard_errors == runs[0].standard_errors
    pcn = GuessCheck(eps=0.05, method="subset", population=100).run(problem, model, 20_000, seed=4)
    assert pcn["gen_loss"] != runs[0]["gen_loss"]


def test_pcn_readout_refuses_what_it_cannot_move():
    sensing = make_sensing(4, 4, 1, 6, seed=0)
    uniform = FactorizationModel(4, 4, 3, 2, prior="uniform", normalize=True)
    with pytest.raises(OptimizerError, match="Gaussian prior of mean 0"):
        GuessCheck(eps=0.05, method="subset", kernel="pcn-readout").run(sensing, uniform, 20_000)
    supervised = make_supervised("teacher", 20, seed=0)
    with pytest.raises(OptimizerError, match="needs a deep factorization"):
        GuessCheck(eps=0.5, method="subset", kernel="pcn-readout").run(supervised,
                                                                        MLPModel(supervised.num_features, 4, 2), 20_000)
