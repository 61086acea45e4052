"""The time-left estimator against plain computations on synthetic tasks of known cost."""

from __future__ import annotations

import math

import numpy as np
import pytest

from volumelab.experiments.progress import (
    MAX_EXPONENT,
    PRIOR_EXPONENT,
    PRIOR_EXPONENT_SD,
    TaskSize,
    TimeLeftEstimator,
    fit_method,
)


def _seconds(task: TaskSize, scale: float, exponent: float) -> float:
    """A task's compute seconds under the power law the estimator assumes."""
    return task.seeds * scale * task.work ** exponent


def test_no_estimate_before_a_task_finished():
    estimator = TimeLeftEstimator({"a": TaskSize("gnc", 100.0), "b": TaskSize("gd", 10.0, seeds=8)})
    assert estimator.estimate(elapsed=30.0) is None
    assert estimator.compute_left() is None
    assert estimator.fits() == {}
    assert fit_method([]) is None


def test_recovers_the_remaining_time_of_known_power_laws_per_method():
    """Two methods 10^4 apart per unit of work, each an exact power law over sizes 1 to 10^4: after the
    largest half of each has finished, the predicted compute left is the true one (exponent 0.5 exactly,
    since the prior's pull changes nothing there; exponent 1 within 0.5%: the prior pulls the slope
    by (1 - 0.5) * 4 / (4 + sxx / 0.01))."""
    laws = {"gnc": (2e-3, 0.5), "gd": (2e-7, 1.0)}
    works = [10.0 ** (k / 2) for k in range(9)]  # 1 .. 10^4
    tasks = {f"{method}-{i}": TaskSize(method, work, seeds=8 if method == "gd" else 1)
             for method in laws for i, work in enumerate(works)}
    estimator = TimeLeftEstimator(tasks)
    largest_first = sorted(tasks, key=lambda name: -tasks[name].work)
    done = [name for name in largest_first if tasks[name].work >= 100.0]
    compute_done = 0.0
    for name in done:
        seconds = _seconds(tasks[name], *laws[tasks[name].method])
        estimator.finished(name, seconds)
        compute_done += seconds
    truth = {method: sum(_seconds(task, *laws[method]) for name, task in tasks.items()
                         if task.method == method and name not in done) for method in laws}
    fits = estimator.fits()
    assert fits["gnc"].exponent == pytest.approx(0.5, abs=1e-12)
    assert fits["gd"].exponent == pytest.approx(1.0, abs=1e-3)
    per_method = {method: sum(fits[method].seconds(task) for name, task in tasks.items()
                              if task.method == method and name not in done) for method in laws}
    assert per_method["gnc"] == pytest.approx(truth["gnc"], rel=1e-12)
    assert per_method["gd"] == pytest.approx(truth["gd"], rel=5e-3)
    # Wall time: the compute left over the concurrency seen (compute done per elapsed second), here 2.
    estimate = estimator.estimate(elapsed=compute_done / 2)
    assert estimate.concurrency == pytest.approx(2.0)
    assert estimate.seconds == pytest.approx(estimate.compute_left / 2)
    assert estimate.compute_left == pytest.approx(sum(truth.values()), rel=5e-3)
    assert estimate.share_done == pytest.approx(compute_done / (compute_done + estimate.compute_left))


def test_fit_is_the_posterior_mean_of_a_weighted_line_fit():
    """The exponent against a plain computation: numpy's weighted least squares, then the normal prior's
    posterior mean with the residual variance as the noise; the scale keeps the finished tasks' total."""
    rng = np.random.default_rng(0)
    works = np.array([30.0, 30.0, 300.0, 3000.0, 3000.0, 30000.0])
    seeds = np.array([1, 4, 2, 8, 1, 3])
    seconds = seeds * 0.01 * works ** 0.7 * np.exp(rng.normal(0.0, 0.4, size=works.size))
    fit = fit_method([(TaskSize("m", w, int(s)), float(t)) for w, s, t in zip(works, seeds, seconds)])
    x, y, weight = np.log(works), np.log(seconds / seeds), seeds.astype(float)
    slope, intercept = np.polyfit(x, y, 1, w=np.sqrt(weight))  # polyfit weights multiply residuals
    noise = max(np.sum(weight * (y - intercept - slope * x) ** 2) / (weight.sum() - 2), 0.01)
    sxx = np.sum(weight * (x - np.average(x, weights=weight)) ** 2)
    prior = 1 / PRIOR_EXPONENT_SD ** 2
    expected = (sxx / noise * slope + prior * PRIOR_EXPONENT) / (sxx / noise + prior)
    assert fit.exponent == pytest.approx(expected, rel=1e-10)
    assert fit.scale == pytest.approx(seconds.sum() / np.sum(seeds * works ** expected), rel=1e-10)
    assert fit.tasks == works.size


def test_one_size_seen_uses_the_prior_exponent():
    fit = fit_method([(TaskSize("m", 400.0), 2.0), (TaskSize("m", 400.0), 6.0), (TaskSize("m", 400.0), 4.0)])
    assert fit.exponent == PRIOR_EXPONENT
    assert fit.seconds(TaskSize("m", 100.0)) == pytest.approx(4.0 * math.sqrt(100.0 / 400.0))  # mean, scaled


def test_exponent_is_kept_between_zero_and_the_maximum():
    falling = [(TaskSize("m", w), 100.0 / w) for w in (1.0, 10.0, 100.0, 1000.0)]  # more work, less time
    assert fit_method(falling).exponent == 0.0
    steep = [(TaskSize("m", w), w ** 4) for w in (1.0, 10.0, 100.0, 1000.0)]
    assert fit_method(steep).exponent == MAX_EXPONENT


def test_a_method_never_seen_gets_the_pooled_rate():
    """Until one of its tasks finishes, a method's tasks cost the finished tasks' seconds per unit of work."""
    tasks = {"g1": TaskSize("gnc", 100.0), "g2": TaskSize("gnc", 50.0), "d1": TaskSize("gd", 20.0, seeds=8),
             "d2": TaskSize("gd", 5.0, seeds=8)}
    estimator = TimeLeftEstimator(tasks)
    estimator.finished("g1", 3.0)
    fits = estimator.fits()
    assert fits["gd"].tasks == 0 and fits["gd"].exponent == 1.0
    rate = 3.0 / 100.0
    assert fits["gd"].seconds(tasks["d1"]) == pytest.approx(8 * 20.0 * rate)
    left = estimator.compute_left()
    assert left == pytest.approx(3.0 * math.sqrt(0.5) + 8 * 25.0 * rate)
    estimator.finished("d1", 40.0)  # now gd has its own fit: one size, the prior's exponent
    assert estimator.fits()["gd"].tasks == 1
    assert estimator.fits()["gd"].seconds(tasks["d2"]) == pytest.approx(40.0 * math.sqrt(5.0 / 20.0))


def test_last_task_leaves_nothing_and_unknown_names_are_refused():
    estimator = TimeLeftEstimator({"a": TaskSize("m", 10.0), "b": TaskSize("m", 10.0)})
    estimator.finished("a", 1.0)
    with pytest.raises(KeyError):
        estimator.finished("a", 1.0)
    estimator.finished("b", 1.5)
    estimate = estimator.estimate(elapsed=3.0)
    assert estimate.seconds == 0.0 and estimate.share_done == 1.0
    assert estimator.tasks_done == 2


def test_tasks_that_took_no_time_give_no_share_of_nothing():
    estimator = TimeLeftEstimator({"a": TaskSize("m", 10.0), "b": TaskSize("m", 10.0)})
    estimator.finished("a", 0.0)
    estimate = estimator.estimate(elapsed=0.5)
    assert estimate.seconds == 0.0 and math.isfinite(estimate.share_done)


def test_groups_keep_their_own_scale_and_do_not_tilt_the_exponent():
    """Two groups of one method 10x apart at every size, exponent 0.5; the dear group has finished at the largest
    size only, the cheap one at the two largest. A fit without groups would read the cheap group's tasks at the
    smaller size as a steeper slope; with them the exponent and every remaining task are exact."""
    scales = {"cheap": 1e-3, "dear": 1e-2}
    works = (100.0, 1000.0, 10000.0)
    tasks = {f"{group}-{work:g}-{seed}": TaskSize("gnc", work, group=group)
             for group in scales for work in works for seed in range(3)}
    estimator = TimeLeftEstimator(tasks)
    done = [name for name, task in tasks.items() if task.work == 10000.0
            or (task.group == "cheap" and task.work == 1000.0)]
    for name in done:
        estimator.finished(name, _seconds(tasks[name], scales[tasks[name].group], 0.5))
    fit = estimator.fits()["gnc"]
    assert fit.exponent == pytest.approx(0.5, abs=1e-12)
    assert fit.group_scales == pytest.approx(scales, rel=1e-12)
    truth = sum(_seconds(task, scales[task.group], 0.5) for name, task in tasks.items() if name not in done)
    assert estimator.compute_left() == pytest.approx(truth, rel=1e-12)
    ungrouped = fit_method([(TaskSize("gnc", tasks[name].work), _seconds(tasks[name], scales[tasks[name].group], 0.5))
                            for name in done])
    assert ungrouped.exponent > 0.8  # without groups the dear group tilts it far above the true 0.5


def test_grouped_fit_is_a_weighted_least_squares_fit_with_one_intercept_per_group():
    """Against numpy: weighted least squares on [log work, one indicator per group], then the posterior mean;
    each group's scale keeps its finished total; an unseen group gets the method's scale."""
    rng = np.random.default_rng(1)
    groups = np.array(["a", "a", "a", "b", "b", "c", "c", "c"])
    works = np.array([10.0, 100.0, 1000.0, 100.0, 1000.0, 10.0, 10.0, 1000.0])
    seeds = np.array([1, 2, 1, 8, 8, 1, 3, 1])
    level = {"a": 1e-3, "b": 3e-2, "c": 1e-4}
    seconds = seeds * np.array([level[g] for g in groups]) * works ** 0.8 * np.exp(rng.normal(0, 0.3, works.size))
    fit = fit_method([(TaskSize("m", w, int(s), group=g), float(t))
                      for g, w, s, t in zip(groups, works, seeds, seconds)])
    names = sorted(set(groups))
    design = np.column_stack([np.log(works)] + [(groups == name).astype(float) for name in names])
    root = np.sqrt(seeds.astype(float))
    y = np.log(seconds / seeds)
    coefficients, *_ = np.linalg.lstsq(design * root[:, None], y * root, rcond=None)
    slope = coefficients[0]
    residual = y - design @ coefficients
    noise = max(np.sum(seeds * residual ** 2) / (seeds.sum() - len(names) - 1), 0.01)
    centred = np.log(works) - np.array([np.average(np.log(works)[groups == g], weights=seeds[groups == g])
                                        for g in groups])
    sxx = np.sum(seeds * centred ** 2)
    prior = 1 / PRIOR_EXPONENT_SD ** 2
    expected = (sxx / noise * slope + prior * PRIOR_EXPONENT) / (sxx / noise + prior)
    assert fit.exponent == pytest.approx(expected, rel=1e-10)
    for name in names:
        chosen = groups == name
        assert fit.group_scales[name] == pytest.approx(
            seconds[chosen].sum() / np.sum(seeds[chosen] * works[chosen] ** expected), rel=1e-10)
    assert fit.seconds(TaskSize("m", 50.0, group="unseen")) == pytest.approx(
        seconds.sum() / np.sum(seeds * works ** expected) * 50.0 ** expected, rel=1e-10)
