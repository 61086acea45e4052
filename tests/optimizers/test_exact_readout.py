"""Subset simulation's exact readout move (:class:`~volumelab.optimizers.subset.ExactReadout`): its feasible angles
against a dense grid of angles checked one by one, its invariance against rejection sampling of a truncated
Gaussian, and its use inside subset simulation against the orthant probability of a linear classifier.

Statistical checks use fixed seeds and state their tolerance in standard errors.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.diagnostics.prior_volume import linear_classifier_log_volume
from volumelab.errors import OptimizerError
from volumelab.optimizers.subset import feasible_arcs, uniform_on_arcs


def _errors_on_a_grid(constraints: np.ndarray, current: np.ndarray, direction: np.ndarray,
                      angles: np.ndarray) -> np.ndarray:
    """Errors (margins <= 0) of ``current cos t + direction sin t`` at every angle, one angle and one margin at a
    time."""
    counts = np.zeros(angles.size, dtype=int)
    for k, t in enumerate(angles):
        point = current * math.cos(t) + direction * math.sin(t)
        for row in constraints:
            if float(row @ point) <= 0:
                counts[k] += 1
    return counts


@pytest.mark.parametrize("max_errors", [0, 1, 3])
def test_feasible_arcs_match_a_dense_grid_of_angles(max_errors):
    """6 random constraints on R^4 (and one zero row, an error at every angle), 3 chains: at 20,000 angles on
    [0, 2 pi), an angle lies in a feasible arc exactly when the plain count of its non-positive margins is at
    most ``max_errors`` (angles within 1e-9 of an arc's end are skipped)."""
    generator = np.random.default_rng(7)
    constraints = np.vstack([generator.standard_normal((6, 4)), np.zeros((1, 4))])
    angles = (np.arange(20_000) + 0.5) * (2 * math.pi / 20_000)
    for _ in range(3):
        current = generator.standard_normal(4)
        direction = generator.standard_normal(4)
        starts, lengths, feasible = feasible_arcs(torch.tensor(constraints @ current)[None],
                                                  torch.tensor(constraints @ direction)[None], max_errors)
        starts, ends, feasible = starts[0].numpy(), (starts + lengths)[0].numpy(), feasible[0].numpy()
        assert starts[0] == 0 and ends[-1] == pytest.approx(2 * math.pi) and np.all(np.diff(starts) >= 0)
        expected = _errors_on_a_grid(constraints, current, direction, angles) <= max_errors
        index = np.searchsorted(ends, angles, side="right")
        near_an_end = np.min(np.abs(angles[:, None] - ends[None, :]), axis=1) < 1e-9
        assert np.array_equal(feasible[index][~near_an_end], expected[~near_an_end])


def test_uniform_on_arcs_is_uniform_on_the_feasible_angles():
    """Arcs [0, 1) feasible, [1, 3) not, [3, 2 pi) feasible: 200,000 draws land only on feasible arcs, each arc's
    share equals its share of the feasible length (within 4 SE), and the mean within an arc is its midpoint
    (within 4 SE)."""
    starts = torch.tensor([[0.0, 1.0, 3.0]], dtype=torch.float64).expand(200_000, 3)
    lengths = torch.tensor([[1.0, 2.0, 2 * math.pi - 3.0]], dtype=torch.float64).expand(200_000, 3)
    feasible = torch.tensor([[True, False, True]]).expand(200_000, 3)
    uniforms = torch.rand(200_000, generator=make_generator(0, "test-arcs"), dtype=torch.float64)
    angles = uniform_on_arcs(starts, lengths, feasible, uniforms).numpy()
    assert not np.any((angles >= 1.0) & (angles < 3.0))
    first = angles < 1.0
    share = 1.0 / (1.0 + 2 * math.pi - 3.0)
    assert abs(first.mean() - share) < 4 * math.sqrt(share * (1 - share) / angles.size)
    for inside, low, high in ((first, 0.0, 1.0), (~first, 3.0, 2 * math.pi)):
        values = angles[inside]
        assert abs(values.mean() - (low + high) / 2) < 4 * (high - low) / math.sqrt(12 * values.size)
        assert values.min() >= low and values.max() <= high


def _two_dimensional_classifier():
    """A depth-1 MLP on 3 points of R^2: every margin positive is a wedge of the plane."""
    inputs = torch.tensor([[1.0, 0.2], [0.3, 1.0], [1.0, -0.6]], dtype=torch.float64)
    labels = torch.ones(3, dtype=torch.float64)
    problem = vl.SupervisedProblem(inputs, labels, inputs[:1], labels[:1], loss="logistic")
    return problem, vl.MLPModel(2, 1, 1)


@pytest.mark.parametrize("max_error_count", [0, 1])
def test_the_exact_move_keeps_a_truncated_gaussian_invariant(max_error_count):
    """Chains started from exact draws of N(0, I_2) restricted to at most ``max_error_count`` errors on 3
    points, after 3 exact moves: the mean of each coordinate, of its square and of their product equal those of
    200,000 rejection draws of the same law, within 4 combined SE (the chains are independent); every state
    satisfies the constraint, and (almost) every chain moved."""
    from volumelab.optimizers.conditioning import OutputScorer
    from volumelab.optimizers.subset import ExactReadout, LatentPrior

    problem, model = _two_dimensional_classifier()
    threshold = (max_error_count + 0.5) / 3
    scorer = OutputScorer(model, problem, torch.device("cpu"), threshold, accept="train_error")
    prior = LatentPrior(model)
    row = 2  # train_loss, gen_loss, train_error, test_error

    def draws(seed: int, count: int) -> torch.Tensor:
        latent = torch.randn(count * 8, 2, generator=make_generator(seed, "test-exact"), dtype=torch.float64)
        scores = scorer(prior.layers(latent))
        return latent[scores[row] < threshold][:count]

    reference = draws(1, 200_000)
    start = draws(2, 50_000)
    assert reference.shape[0] == 200_000 and start.shape[0] == 50_000
    move = ExactReadout(prior, scorer, row)
    latent, scores = start, scorer(prior.layers(start))
    generator = make_generator(3, "test-exact-moves")
    for _ in range(3):
        latent, scores, used, kept = move.step(latent, scores, [latent.shape[0]], threshold, [generator])
        assert used == [latent.shape[0]] and kept == [0]
    assert bool((scores[row] < threshold).all())
    assert torch.allclose(scores, scorer(prior.layers(latent)), rtol=0, atol=1e-12)
    assert float((latent == start).all(1).double().mean()) < 1e-3

    def statistics(values: torch.Tensor) -> np.ndarray:
        x = values.numpy()
        return np.stack([x[:, 0], x[:, 1], x[:, 0] ** 2, x[:, 1] ** 2, x[:, 0] * x[:, 1]])

    moved, exact = statistics(latent), statistics(reference)
    se = np.sqrt(moved.var(1) / moved.shape[1] + exact.var(1) / exact.shape[1])
    assert np.all(np.abs(moved.mean(1) - exact.mean(1)) < 4 * se), (moved.mean(1), exact.mean(1), se)
    # The law is not the prior's: the first coordinate's mean is far from 0 (the wedge leans to x > 0).
    assert abs(exact[0].mean()) > 20 * se[0]


def test_the_exact_kernel_refuses_what_it_cannot_move():
    problem = vl.make_supervised("digits", 10, seed=0, classes=(3, 8), num_test=20)
    gaussian, uniform = vl.MLPModel(64, 4, 2), vl.MLPModel(64, 4, 2, prior="uniform")
    with pytest.raises(OptimizerError, match="accept='train_error'"):
        vl.GuessCheck(eps=0.5, method="subset", kernel="pcn-exact").run(problem, gaussian, 10_000, seed=0)
    with pytest.raises(OptimizerError, match="Gaussian prior"):
        vl.GuessCheck(eps=0, accept="train_error", method="subset", kernel="pcn-exact").run(problem, uniform,
                                                                                              10_000, seed=0)
    sensing = vl.make_sensing(4, 4, 1, 6, seed=0)
    with pytest.raises(OptimizerError):
        vl.GuessCheck(eps=0.1, method="subset", kernel="pcn-exact").run(sensing, vl.FactorizationModel(4, 4, 3, 2),
                                                                         10_000, seed=0)


def test_the_exact_kernel_gives_the_same_result_whatever_the_workers():
    """Same seed, same numbers with 1 or 2 worker threads (the replicates' groups); another seed differs. Every
    state at eps has no training error."""
    problem = vl.make_supervised("digits", 10, seed=0, classes=(1, 7), num_test=40)
    model = vl.MLPModel(problem.num_features, 4, 2)
    runs = [vl.GuessCheck(eps=0, accept="train_error", method="subset", kernel="pcn-exact", population=100,
                          workers=workers).run(problem, model, 40_000, seed=2) for workers in (1, 2)]
    assert runs[0].status in ("ok", "not_mixed") and runs[0]["train_error"] == 0.0
    assert runs[0].metrics == runs[1].metrics and runs[0].standard_errors == runs[1].standard_errors
    other = vl.GuessCheck(eps=0, accept="train_error", method="subset", kernel="pcn-exact", population=100).run(
        problem, model, 40_000, seed=3)
    assert other["log_volume"] != runs[0]["log_volume"]


def test_the_exact_move_does_not_depend_on_its_chunks(monkeypatch):
    """Moving 50 chains of a depth-2 MLP in chunks of 7 gives the states and scores of one pass, to rounding.

    Each chain keeps its own random numbers and features whatever chunk it is in (a misaligned chunk moves chains
    by O(1)). Not bit for bit: on some CPUs the math library rounds a matrix product's rows differently with the
    number of rows (measured on an AMD EPYC with MKL, 2026-12-06: features differ by 1e-15), so the states may
    differ in the last digits; 1e-12 leaves a thousand times that. The chunk size is a function of the model and
    the task only (``chunk_states``), so a run's numbers never depend on the workers."""
    from volumelab.optimizers.conditioning import OutputScorer
    from volumelab.optimizers.subset import ExactReadout, LatentPrior

    problem = vl.make_supervised("digits", 12, seed=0, classes=(3, 8), num_test=30)
    model = vl.MLPModel(problem.num_features, 5, 2, activation="tanh")
    scorer = OutputScorer(model, problem, torch.device("cpu"), 0.5, accept="train_error")
    prior = LatentPrior(model)
    latent = torch.randn(400, prior.size, generator=make_generator(0, "test-chunks"), dtype=torch.float64)
    scores = scorer(prior.layers(latent))
    inside = scores[2] < 0.5
    latent, scores = latent[inside][:50], scores[:, inside][:, :50]
    assert latent.shape[0] == 50
    one = ExactReadout(prior, scorer, 2).step(latent, scores, [30, 20], 0.5,
                                              [make_generator(r, "test-chunk-moves") for r in range(2)])
    monkeypatch.setattr(ExactReadout, "CHUNK", 7)
    chunked = ExactReadout(prior, scorer, 2).step(latent, scores, [30, 20], 0.5,
                                                  [make_generator(r, "test-chunk-moves") for r in range(2)])
    assert torch.allclose(one[0], chunked[0], rtol=0, atol=1e-12)
    assert torch.allclose(one[1], chunked[1], rtol=0, atol=1e-12) and one[2:] == chunked[2:]
    assert torch.equal((one[0] != latent).any(1), (chunked[0] != latent).any(1))  # the same chains moved
    assert not torch.equal(one[0], latent) and bool((one[1][2] < 0.5).all())
