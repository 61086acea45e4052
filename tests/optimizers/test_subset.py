"""Subset-simulation G&C (``GuessCheck(method="subset")``): its kernel, its R-hat, and its
estimates against independent computations: rejection sampling of the same conditional
law, the closed-form prior volume of a depth-1 Gaussian prior, and a truncated normal.

Statistical checks use fixed seeds and state their tolerance in standard errors.
"""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch
from scipy import stats

from volumelab._rng import make_generator
from volumelab.diagnostics.prior_volume import depth1_quadratic_form, quadratic_form_log_cdf
from volumelab.errors import OptimizerError
from volumelab.models import FactorizationModel
from volumelab.optimizers import GuessCheck
from volumelab.optimizers import subset as subset_module
from volumelab.optimizers.subset import (RHAT_THRESHOLD, LatentPrior, budget_needed_from_rate, elliptical_slice_step,
                                         pcn_step, split_rhat)
from volumelab.problems.core import make_completion, make_sensing


# ----------------------------------------------------------------------------- the kernel
def _truncated_start(stream: str):
    """A generator of ``(0, stream)``, 20,000 draws of N(0, I_3) restricted to ``z_0 < -1``, and the score
    ``(z_0, z_1)`` whose first row the constraint reads."""
    generator = make_generator(0, stream)
    start = torch.randn(200_000, 3, generator=generator, dtype=torch.float64)

    def score(latent):
        return torch.stack([latent[:, 0], latent[:, 1]])

    return generator, start[start[:, 0] < -1][:20_000], score


@pytest.mark.parametrize("noise", [torch.float32, torch.float64], ids=["float32-noise", "float64-noise"])
@pytest.mark.parametrize("kernel", ["slice", "pcn"])
def test_kernel_keeps_a_truncated_normal_invariant(kernel, noise, monkeypatch):
    """Chains started from exact draws of N(0, I_3) restricted to z_0 < -1 stay so distributed.

    The restricted law's first coordinate is a normal truncated to (-inf, -1) (mean
    ``-phi(1) / Phi(-1)``), and the other two stay standard normal. After 5 steps of
    20,000 chains, each statistic is within 4 SE of its closed form (the chains are
    independent, so the SE is the plain one), and every state satisfies the constraint.
    Both the kernels' fast path (directions drawn in float32, widened) and the plain
    float64 draws it replaced are checked.
    """
    monkeypatch.setattr(subset_module, "NOISE_DTYPE", noise)
    generator, start, score = _truncated_start("test-slice")
    latent, scores = start, score(start)
    for _ in range(5):
        if kernel == "slice":
            latent, scores, used, stuck = elliptical_slice_step(latent, scores, [latent.shape[0]], -1.0, score,
                                                               [generator])
            assert stuck == [0] and used[0] >= latent.shape[0]
        else:
            latent, scores, used, accepted = pcn_step(latent, scores, [latent.shape[0]], -1.0, score, [generator],
                                                      0.8)
            assert used == [latent.shape[0]] and 0 < accepted[0] < latent.shape[0]
    assert bool((latent[:, 0] < -1).all())
    assert torch.equal(scores[0], latent[:, 0])
    first = latent[:, 0].numpy()
    truncated = stats.truncnorm(-np.inf, -1.0)
    n = first.size
    assert abs(first.mean() - truncated.mean()) < 4 * truncated.std() / math.sqrt(n)
    for column in (1, 2):
        values = latent[:, column].numpy()
        assert abs(values.mean()) < 4 / math.sqrt(n)
        assert abs(values.var() - 1) < 4 * math.sqrt(2 / n)
    # The chains moved: few states are where they started (a pCN chain stays put on a rejection).
    assert float((latent == start).all(1).double().mean()) < (0.01 if kernel == "slice" else 0.2)


def test_slice_step_runs_share_nothing_but_the_scoring_call():
    """Two runs stepped together give exactly what each gives stepped alone."""
    def score(latent):
        return torch.stack([latent.square().sum(1), latent[:, 0]])

    states = [torch.randn(50, 4, generator=make_generator(i, "test-share"), dtype=torch.float64) * 0.3
              for i in range(2)]
    together = elliptical_slice_step(torch.cat(states), score(torch.cat(states)), [50, 50], 1.0, score,
                                     [make_generator(i, "test-steps") for i in range(2)])
    for i, state in enumerate(states):
        alone = elliptical_slice_step(state, score(state), [50], 1.0, score, [make_generator(i, "test-steps")])
        assert torch.equal(alone[0], together[0][50 * i:50 * (i + 1)])
        assert alone[2][0] == together[2][i]


def test_latent_prior_draws_the_model_prior():
    """A uniform prior's latent map gives U[-scale, scale] entries; a Gaussian's N(0, scale^2) (KS, 10^4 draws)."""
    for prior, reference in (("uniform", "uniform"), ("gaussian", "norm")):
        model = FactorizationModel(3, 3, 4, 2, prior=prior)
        latent = torch.randn(10_000, LatentPrior(model).size, generator=make_generator(1, "test-latent"),
                             dtype=torch.float64)
        layers = LatentPrior(model).layers(latent)
        for layer, scale in zip(layers, model.layer_scales):
            values = (layer[:, 0, 0] / scale).numpy()
            law = stats.uniform(-1, 2) if reference == "uniform" else stats.norm()
            assert stats.kstest(values, law.cdf).pvalue > 1e-3


# ----------------------------------------------------------------------------- split-R-hat
def _rhat_loop(chains: list[np.ndarray]) -> float:
    """BDA3 eq. 11.4 written out with plain loops, for chains of equal length."""
    halves = []
    for chain in chains:
        half = len(chain) // 2
        halves.append(list(chain[:half]))
        halves.append(list(chain[len(chain) - half:]))
    n = len(halves[0])
    means = [sum(h) / n for h in halves]
    grand = sum(means) / len(means)
    between = n / (len(halves) - 1) * sum((mean - grand) ** 2 for mean in means)
    within = sum(sum((x - mean) ** 2 for x in h) / (n - 1) for h, mean in zip(halves, means)) / len(halves)
    return math.sqrt(((n - 1) / n * within + between / n) / within)


def test_split_rhat_matches_the_textbook_formula_and_flags_disagreeing_chains():
    rng = np.random.default_rng(0)
    mixed = [rng.normal(size=400) for _ in range(6)]
    assert split_rhat(mixed) == pytest.approx(_rhat_loop(mixed), rel=1e-12)
    assert split_rhat(mixed) < 1.02
    shifted = [chain + offset for chain, offset in zip(mixed, (0, 0, 0, 0, 2, 2))]
    assert split_rhat(shifted) == pytest.approx(_rhat_loop(shifted), rel=1e-12)
    assert split_rhat(shifted) > 1.3
    # Each chain drifts: its halves' means differ by 1.5 sd, so R-hat is about
    # sqrt(1 + 0.56 / 1.19) = 1.23 (half-mean variance over within-half variance 1 + 1.5^2 / 12).
    drifting = [np.linspace(0, 3, 400) + chain for chain in mixed]
    assert split_rhat(drifting) == pytest.approx(_rhat_loop(drifting), rel=1e-12)
    assert split_rhat(drifting) > RHAT_THRESHOLD
    assert split_rhat([mixed[0]]) is None
    assert split_rhat([np.ones(10), np.ones(10)]) is None


# ----------------------------------------------------------------------------- against rejection
AGREEMENT = [
    # (task, depth, activation, prior, normalize, eps, kernel)
    ("sensing", 2, "linear", "gaussian", False, 0.05, "pcn"),
    ("sensing", 2, "linear", "gaussian", False, 0.05, "slice"),
    ("sensing", 3, "tanh", "gaussian", True, 0.02, "pcn"),
    ("sensing", 3, "tanh", "gaussian", True, 0.02, "slice"),
    ("sensing", 3, "leaky_relu", "uniform", False, 0.06, "pcn"),
    ("completion", 2, "linear", "uniform", True, 0.04, "pcn"),
    ("completion", 4, "tanh", "gaussian", False, 0.03, "slice"),
]


def _problem(task):
    if task == "sensing":
        return make_sensing(5, 5, 1, 10, seed=0)
    return make_completion(5, 5, 1, 10, seed=0)


@pytest.mark.parametrize("task,depth,activation,prior,normalize,eps,kernel", AGREEMENT)
def test_subset_agrees_with_rejection(task, depth, activation, prior, normalize, eps, kernel):
    """The generalization loss and the log volume agree within 3 combined standard errors.

    Each configuration's eps is one where rejection accepts a few hundred to a few
    thousand of its draws.
    """
    problem = _problem(task)
    model = FactorizationModel(5, 5, 5, depth, activation=activation, prior=prior, normalize=normalize)
    rejection = GuessCheck(eps=eps).run(problem, model, 400_000, seed=11)
    # The slice kernel spends several evaluations per move: one move per recorded state, a larger population.
    settings = {"population": 1000, "moves": 1} if kernel == "slice" else {}
    subset = GuessCheck(eps=eps, method="subset", kernel=kernel, **settings).run(problem, model, 150_000, seed=12)
    assert rejection["accepted"] >= 300
    assert subset.status == "ok", subset.diagnostics.get("warning")
    for key in ("gen_loss", "log_volume", "train_loss"):
        combined = math.hypot(rejection.standard_errors[key], subset.standard_errors[key])
        assert abs(rejection[key] - subset[key]) < 3 * combined, key
    # The prior's level is estimated from the replicates' i.i.d. first populations.
    combined = math.hypot(rejection.standard_errors["prior_gen_loss"], subset.standard_errors["prior_gen_loss"])
    assert abs(rejection["prior_gen_loss"] - subset["prior_gen_loss"]) < 3 * combined
    assert subset["evaluations"] <= 150_000 * 1.05


# ----------------------------------------------------------------------------- the closed form at depth 1
def test_log_volume_matches_the_generalized_chi_square_down_to_minus_40():
    """Depth 1, Gaussian prior: log P(L_train < eps) at eps where the closed form gives log P = -40.

    The closed form is ``quadratic_form_log_cdf`` of the generalized chi-square
    (:mod:`volumelab.diagnostics.prior_volume`, tested against chi-square, noncentral
    chi-square and quadrature closed forms down to -40); rejection would need about
    e^40 draws per acceptance.
    """
    problem = make_sensing(5, 5, 1, 10, seed=0)
    model = FactorizationModel(5, 5, 5, 1)
    weights, shifts = depth1_quadratic_form(problem, model)
    eps = 3.6e-5
    exact = quadratic_form_log_cdf(weights, shifts, eps)
    assert -41 < exact < -39
    # Subset simulation's log P has a small negative bias of order levels / population (the 18
    # levels' fractions are correlated): measured over 8 seeds -0.19 +- 0.07 at population 500
    # and -0.08 +- 0.07 at 2000. The larger population keeps it well inside the tolerance.
    result = GuessCheck(eps=eps, method="subset", population=2000, moves=1).run(problem, model, 1_200_000, seed=3)
    assert result["min_eps_reached"] == eps
    assert abs(result["log_volume"] - exact) < 3 * result.standard_errors["log_volume"]
    # Every threshold of the ladder against the closed form at that threshold.
    for level in result.diagnostics["levels"]:
        reference = quadratic_form_log_cdf(weights, shifts, level["eps"])
        assert abs(level["log_volume"] - reference) < 3 * level["log_volume_stderr"], level["eps"]


def test_depth_one_posterior_gen_loss_equals_the_prior_at_every_threshold():
    """Depth 1, Gaussian prior: the generalization coordinates are independent of the measured ones.

    So the conditional mean generalization loss equals the prior's at every eps of the
    ladder (here down to log P of about -12); each is within 3 combined SE of the prior's.
    """
    problem = make_sensing(5, 5, 1, 10, seed=0)
    model = FactorizationModel(5, 5, 5, 1)
    result = GuessCheck(eps=0.012, method="subset", population=500).run(problem, model, 150_000, seed=5)
    assert result["log_volume"] < -10
    prior, prior_se = result["prior_gen_loss"], result.standard_errors["prior_gen_loss"]
    for level in result.diagnostics["levels"]:
        assert abs(level["gen_loss"] - prior) < 3 * math.hypot(level["gen_loss_stderr"], prior_se), level["eps"]


def test_mean_log_volume_is_the_mean_of_the_replicates_logs():
    """``log_volume_mean_log`` and its SE are the mean and ``sd / sqrt(R)`` of the replicates' log products, at
    eps and at every threshold; ``log_volume`` stays the log of the mean of their products."""
    problem = make_sensing(4, 4, 1, 6, seed=0)
    model = FactorizationModel(4, 4, 3, 2, activation="tanh")
    result = GuessCheck(eps=0.05, method="subset", population=100).run(problem, model, 20_000, seed=4)
    logs = np.array([replicate["log_volume"] for replicate in result.diagnostics["replicate_estimates"]])
    assert result["log_volume_mean_log"] == pytest.approx(logs.mean(), abs=1e-12)
    assert result["log_volume_mean_log_stderr"] == pytest.approx(logs.std(ddof=1) / math.sqrt(logs.size), rel=1e-9)
    assert result.standard_errors["log_volume_mean_log"] == result["log_volume_mean_log_stderr"]
    assert result["log_volume"] == pytest.approx(math.log(np.mean(np.exp(logs))), abs=1e-12)
    assert result["log_volume_mean_log"] <= result["log_volume"]  # Jensen
    for level in result.diagnostics["levels"]:
        assert level["log_volume_mean_log"] <= level["log_volume"] + 1e-12
        assert level["log_volume_mean_log_stderr"] > 0
    assert result.diagnostics["levels"][-1]["log_volume_mean_log"] == result["log_volume_mean_log"]


# ----------------------------------------------------------------------------- determinism, guardrails
def test_same_seed_same_result_whatever_the_workers():
    problem = make_sensing(4, 4, 1, 6, seed=0)
    model = FactorizationModel(4, 4, 3, 2, activation="tanh")
    runs = [GuessCheck(eps=0.05, method="subset", population=100, workers=workers).run(problem, model, 20_000, seed=4)
            for workers in (1, 2, 1)]
    for run in runs[1:]:
        assert run.metrics == runs[0].metrics
        assert run.standard_errors == runs[0].standard_errors
    other = GuessCheck(eps=0.05, method="subset", population=100).run(problem, model, 20_000, seed=5)
    assert other["gen_loss"] != runs[0]["gen_loss"]


def test_an_unreachable_eps_is_reported_with_the_smallest_eps_reached():
    """A normalized W (unit norm) cannot fit a norm-3 truth measured at 15 of 16 entries.

    ``||W_obs - T_obs|| >= ||T_obs|| - 1``, so ``L_train`` stays far above eps = 0.01.
    """
    problem = make_completion(4, 4, 1, 15, seed=0, norm=3.0)
    model = FactorizationModel(4, 4, 4, 2, normalize=True)
    result = GuessCheck(eps=0.01, method="subset", population=100).run(problem, model, 30_000, seed=0)
    assert result.status == "not_reached"
    assert result["gen_loss"] is None and result["log_volume"] is None
    assert result["min_eps_reached"] > 0.01
    assert result["log_volume_at_min_eps"] < 0
    assert "is empty or nearly so" in result.diagnostics["reason"]


def test_a_budget_below_the_ladder_cost_is_refused_not_overrun():
    problem = make_sensing(5, 5, 1, 10, seed=0)
    model = FactorizationModel(5, 5, 5, 2)
    result = GuessCheck(eps=0.01, method="subset", population=500, moves=1).run(problem, model, 20_000, seed=0)
    assert result.status == "budget_too_small"
    assert result["gen_loss"] is None
    assert result["evaluations"] <= 20_000 // 9 + 500
    assert "raise samples to at least" in result.diagnostics["reason"]


def test_budget_needed_from_rate_against_a_plain_count():
    """Thresholds falling by a constant factor e^-0.5 a level (a pilot that spent 1,000 evaluations on each of its
    two levels, population 500): from e^-1 to eps = e^-2.9 is 1.9 nats, four more levels after the next threshold
    (4 x 0.5 >= 1.9 > 3 x 0.5), so a pilot of 2 + 1 + 4 = 7 levels, 500 + 7 x 1,000 evaluations, and 2 (R + 1)
    such pilots for R = 8 replicates."""
    thresholds = [1.0, math.exp(-0.5), math.exp(-1.0)]
    assert budget_needed_from_rate(thresholds, math.exp(-2.9), 2_500, 500, 8) == 2 * 9 * (500 + 7 * 1_000)
    # Descents shrinking by 0.6 a level (a floor near 0.27, as a normalized W that cannot fit the truth) sum to
    # far less than the way down to 0.01: out of reach, no made-up budget.
    floor = [0.27 + 0.3 * 0.6 ** j for j in range(6)]
    assert budget_needed_from_rate(floor, 0.01, 6_000, 500, 8) is None
    # One threshold only, or none below the last: no rate to extrapolate.
    assert budget_needed_from_rate([0.1], 0.01, 500, 500, 8) is None
    assert budget_needed_from_rate([0.1, 0.1], 0.01, 1_500, 500, 8) is None


def test_a_budget_too_small_to_reach_eps_says_a_budget_that_does():
    """The issue's case: eps 0.02 at width 5 with 20,000 samples (the pilot gets 2,222 and stops after one level)
    ends budget_too_small with the budget its rate of descent asks for, never spending more than the samples;
    that budget then reaches eps."""
    problem = make_sensing(5, 5, 1, 15, seed=0)
    model = FactorizationModel(5, 5, 5, 2)
    short = GuessCheck(eps=0.02, method="subset").run(problem, model, 20_000, seed=0)
    assert short.status == "budget_too_small" and short["gen_loss"] is None
    assert short["evaluations"] <= 20_000
    needed = short["budget_needed"]
    assert needed > 20_000 and "raise samples to at least that" in short.diagnostics["reason"]
    enough = GuessCheck(eps=0.02, method="subset").run(problem, model, needed, seed=0)
    assert enough.status == "ok" and enough["evaluations"] <= needed


@pytest.mark.parametrize("samples", [4_500, 9_000, 20_000, 45_000])
def test_subset_never_spends_more_than_its_samples(samples):
    problem = make_sensing(5, 5, 1, 15, seed=1)
    model = FactorizationModel(5, 5, 5, 2)
    result = GuessCheck(eps=0.02, method="subset").run(problem, model, samples, seed=1)
    assert result["evaluations"] <= samples, result.status


def test_unmixed_chains_are_flagged_not_averaged_silently(monkeypatch):
    monkeypatch.setattr(subset_module, "split_rhat", lambda chains: 1.5)
    problem = make_sensing(4, 4, 1, 6, seed=0)
    model = FactorizationModel(4, 4, 3, 2)
    result = GuessCheck(eps=0.1, method="subset", population=100).run(problem, model, 20_000, seed=0)
    assert result.status == "not_mixed"
    assert result["rhat"] == 1.5
    assert "not mixed" in result.diagnostics["warning"]


@pytest.mark.parametrize("settings,message", [
    ({"method": "mcmc"}, "method must be one of"),
    ({"method": "subset", "population": 5}, "population must be an integer >= 10"),
    ({"method": "subset", "replicates": 1}, "replicates must be an integer >= 2"),
    ({"method": "subset", "level_fraction": 1.0}, "level_fraction must be in (0, 1)"),
    ({"method": "subset", "keep_samples": 3}, "keep_samples is only available with method='rejection'"),
])
def test_bad_settings_are_refused(settings, message):
    with pytest.raises(OptimizerError, match=re.escape(message)):
        GuessCheck(eps=0.1, **settings)



@pytest.mark.slow
def test_subset_agrees_with_rejection_on_an_mlp_classifier():
    """Any model family: an MLP (width 8, depth 2) on 8 digits images, accepting a logistic training loss below 0.45.

    Rejection accepts about 320 of its 2x10^5 draws there. The test loss and the log
    volume agree within 3 combined standard errors.
    """
    from volumelab.models import MLPModel
    from volumelab.problems import make_supervised

    problem = make_supervised("digits", 8, seed=2)
    model = MLPModel(problem.num_features, 8, 2)
    rejection = GuessCheck(eps=0.45).run(problem, model, 200_000, seed=1)
    subset = GuessCheck(eps=0.45, method="subset").run(problem, model, 150_000, seed=2)
    assert rejection["accepted"] >= 300 and subset.status == "ok"
    for key in ("gen_loss", "log_volume", "test_error"):
        combined = math.hypot(rejection.standard_errors[key], subset.standard_errors[key])
        assert abs(rejection[key] - subset[key]) < 3 * combined, key


def test_a_pcn_step_on_a_block_moves_only_that_block_and_keeps_the_law():
    """``block=2`` of N(0, I_3) restricted to z_0 < -1: the third coordinate never changes, and after 5 steps of
    20,000 chains the first is still the truncated normal and the second standard normal (4 SE)."""
    generator, start, score = _truncated_start("test-block")
    latent, scores = start, score(start)
    for _ in range(5):
        latent, scores, used, accepted = pcn_step(latent, scores, [latent.shape[0]], -1.0, score, [generator], 0.8,
                                                  block=2)
        assert 0 < accepted[0] < latent.shape[0]
    assert torch.equal(latent[:, 2], start[:, 2]) and bool((latent[:, 0] < -1).all())
    n = latent.shape[0]
    truncated = stats.truncnorm(-np.inf, -1.0)
    assert abs(latent[:, 0].mean().item() - truncated.mean()) < 4 * truncated.std() / math.sqrt(n)
    assert abs(latent[:, 1].mean().item()) < 4 / math.sqrt(n)
    assert abs(latent[:, 1].var().item() - 1) < 4 * math.sqrt(2 / n)
    assert float((latent[:, :2] == start[:, :2]).all(1).double().mean()) < 0.2


def test_independent_ladders_give_each_replicate_its_own_pilot_and_combine_like_a_plain_loop():
    """``independent_ladders``: replicate ``r`` descends the ladder of its own pilot (stream ``(seed,
    "subset-pilot", r)``), so the ladders differ; ``log_volume`` and ``log_volume_mean_log`` are the log mean
    exp and the mean of the replicates' own log volumes (a plain loop over ``replicate_estimates``), with their
    SEs; the result is the same for any number of workers."""
    problem = make_sensing(4, 4, 1, 6, seed=0)
    model = FactorizationModel(4, 4, 3, 2, activation="tanh")
    runs = [GuessCheck(eps=0.05, method="subset", population=100, independent_ladders=True, workers=workers).run(
        problem, model, 60_000, seed=4) for workers in (1, 2)]
    assert runs[0].status == "ok", runs[0].diagnostics.get("reason")
    assert runs[1].metrics == runs[0].metrics and runs[1].standard_errors == runs[0].standard_errors
    result = runs[0]
    ladders = result.diagnostics["ladder"]
    assert len(ladders) == 8 and all(ladder[-1] == 0.05 for ladder in ladders)
    assert len({tuple(ladder) for ladder in ladders}) > 1  # each pilot chose its own thresholds
    logs = [estimate["log_volume"] for estimate in result.diagnostics["replicate_estimates"]]
    top = max(logs)
    weights = [math.exp(log - top) for log in logs]
    mean = sum(weights) / len(weights)
    sd = math.sqrt(sum((w - mean) ** 2 for w in weights) / (len(weights) - 1))
    assert result["log_volume"] == pytest.approx(top + math.log(mean), abs=1e-12)
    assert result.standard_errors["log_volume"] == pytest.approx(sd / math.sqrt(len(weights)) / mean, rel=1e-12)
    plain = sum(logs) / len(logs)
    assert result["log_volume_mean_log"] == pytest.approx(plain, abs=1e-12)
    spread = math.sqrt(sum((log - plain) ** 2 for log in logs) / (len(logs) - 1))
    assert result["log_volume_mean_log_stderr"] == pytest.approx(spread / math.sqrt(len(logs)), rel=1e-12)
    # Only the common last threshold is reported per level (the ladders' other thresholds differ).
    assert [level["eps"] for level in result.diagnostics["levels"]] == [0.05]
    # The shared ladder of the same seed is another estimate of the same volume.
    shared = GuessCheck(eps=0.05, method="subset", population=100).run(problem, model, 60_000, seed=4)
    # Replicate 0's pilot stream (seed, "subset-pilot", 0) is the shared pilot's (seed, "subset-pilot"): NumPy's
    # SeedSequence reads a trailing 0 as absent. The others differ.
    assert ladders[0] == shared.diagnostics["ladder"] and shared.diagnostics["ladder"] not in ladders[1:]
    se = math.hypot(shared.standard_errors["log_volume"], result.standard_errors["log_volume"])
    assert abs(shared["log_volume"] - result["log_volume"]) < 4 * se


def test_independent_ladders_are_refused_a_budget_their_pilots_cannot_share():
    """Each replicate's pilot may spend ``samples / (2 replicates)``: below one population the run ends before
    spending anything, and says so; a setting that is not a bool is an error."""
    problem = make_sensing(5, 5, 1, 10, seed=0)
    model = FactorizationModel(5, 5, 5, 2)
    result = GuessCheck(eps=0.01, method="subset", population=500, independent_ladders=True).run(
        problem, model, 7_000, seed=0)
    assert result.status == "budget_too_small" and result["evaluations"] == 0
    assert "samples / (2 replicates)" in result.diagnostics["reason"]
    assert result["budget_needed"] == 3 * 8 * 500
    # Pilots that run out of their share: the run counts every pilot's evaluations, not the first failing one's.
    result = GuessCheck(eps=0.01, method="subset", population=50, independent_ladders=True).run(
        problem, model, 4_800, seed=0)
    assert result.status == "budget_too_small" and result["budget_needed"] > 4_800
    assert result["evaluations"] == result.diagnostics["pilot_evaluations"] > 8 * 50
    assert "replicate 0's pilot" in result.diagnostics["reason"]
    with pytest.raises(OptimizerError, match="independent_ladders must be True or False"):
        GuessCheck(eps=0.01, method="subset", independent_ladders="yes")
