"""Batched GD with closed-form gradients keeps the semantics of the per-step autograd loop.

The reference below is the original implementation's loop (autograd, a host check
every step; a non-finite gradient entry is divergence, as a non-finite loss is) for one
run; the batched closed-form code must reproduce its statuses,
step counts, divergence steps and histories. Floating-point tolerance: the two
compute the same quantities in a different order, so values agree to ~1e-9 relative
after hundreds of steps, not bitwise.
"""

from __future__ import annotations

import math

import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.optimizers.gradient import _AutogradObjective, _ClosedFormObjective

RTOL = 1e-9


def reference_gd(gd: vl.GradientDescent, problem, model, budget: int, seed: int) -> dict:
    """One run of the original per-step loop (autograd, per-step checks)."""
    tensors = problem.tensors("cpu", torch.float64)
    m = tensors.num_train
    params = [p.requires_grad_(True) for p in model.initialize(gd.init_scale, make_generator(seed, "init"))]
    buffers = [torch.zeros_like(p) for p in params]
    ema, steps_done, diverged_at, converged_at = 0.0, 0, None, None
    log_every = gd.log_every or max(1, budget // 200)
    history = {"step": [], "train_loss": [], "gen_loss": []}

    def losses():
        squared = (model.end_to_end(params).reshape(-1) @ tensors.operator - tensors.targets).square()
        return squared[:m].mean(), squared[m:].mean()

    for step in range(budget):
        train, gen = losses()
        gen = gen.detach()
        if step % log_every == 0:
            history["step"].append(step)
            history["train_loss"].append(float(train.detach()))
            history["gen_loss"].append(float(gen))
        if not math.isfinite(float(train.detach())):
            diverged_at = step
            break
        if gd.train_loss_threshold is not None and float(train.detach()) < gd.train_loss_threshold:
            converged_at = step
            break
        grads = torch.autograd.grad(train, params)
        if not all(bool(torch.isfinite(g).all()) for g in grads):
            diverged_at = step
            break
        with torch.no_grad():
            if gd.step_rule == "group_rmsprop":
                ema = gd.ema_decay * ema + (1 - gd.ema_decay) * float(sum(g.square().sum() for g in grads))
                scale = 1.0 / (math.sqrt(ema / (1 - gd.ema_decay ** (step + 1))) + gd.stability_eps)
                grads = [g * scale for g in grads]
            if gd.momentum:
                for b, g in zip(buffers, grads):
                    b.mul_(gd.momentum).add_(g)
                grads = buffers
            for p, g in zip(params, grads):
                p.sub_(gd.lr * g)
        steps_done += 1
    with torch.no_grad():
        train, gen = losses()
    history["step"].append(steps_done)
    history["train_loss"].append(float(train))
    history["gen_loss"].append(float(gen))
    return {"steps": steps_done, "diverged_at": diverged_at, "converged_at": converged_at, "history": history}


def assert_matches_reference(result: vl.RunResult, reference: dict) -> None:
    assert result.metrics["steps"] == reference["steps"]
    expected_status = (
        "diverged" if reference["diverged_at"] is not None
        else "converged" if reference["converged_at"] is not None
        else "completed"
    )
    assert result.status == expected_status
    if expected_status == "diverged":
        assert result.metrics["diverged_at_step"] == reference["diverged_at"]
        assert result.metrics["train_loss"] is None
    assert result.history["step"] == reference["history"]["step"]
    for key in ("train_loss", "gen_loss"):
        got, want = result.history[key], reference["history"][key]
        for a, b in zip(got, want):
            if math.isfinite(b):
                assert a == pytest.approx(b, rel=RTOL, abs=1e-15)
            else:
                assert not math.isfinite(a)


@pytest.mark.parametrize("activation", ["linear", "tanh", "leaky_relu", "relu"])
@pytest.mark.parametrize("depth", [2, 3])
def test_closed_form_gradient_equals_autograd(sensing_problem, activation, depth):
    model = vl.FactorizationModel(5, 5, 7, depth, activation=activation)
    tensors = sensing_problem.tensors("cpu", torch.float64)
    args = (model, tensors)
    params = torch.randn(4, model.num_parameters, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    train_closed, grad_closed = _ClosedFormObjective(*args).train_loss_and_gradient(params)
    train_auto, grad_auto = _AutogradObjective(*args).train_loss_and_gradient(params)
    torch.testing.assert_close(train_closed, train_auto, rtol=1e-12, atol=0)
    torch.testing.assert_close(grad_closed, grad_auto, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "config",
    [
        dict(lr=1e-2, step_rule="group_rmsprop"),
        dict(lr=1e-2, step_rule="group_rmsprop", momentum=0.9),
        dict(lr=0.5, step_rule="gd", init_scale=1.0),
    ],
    ids=["rmsprop", "rmsprop-momentum", "plain"],
)
@pytest.mark.parametrize("activation", ["linear", "tanh", "leaky_relu"])
def test_batch_matches_reference_loop(sensing_problem, config, activation):
    model = vl.FactorizationModel(5, 5, 6, 2, activation=activation)
    gd = vl.GradientDescent(**config, log_every=7)
    seeds = [0, 1, 2]
    results = gd.run_batch([sensing_problem], model, 150, seeds)
    for result, seed in zip(results, seeds):
        assert_matches_reference(result, reference_gd(gd, sensing_problem, model, 150, seed))


def test_divergence_is_reported_at_the_same_step(sensing_problem):
    """A huge plain-GD step overflows; the step where L_train first is non-finite is reported."""
    model = vl.FactorizationModel(5, 5, 4, 3, activation="linear")
    gd = vl.GradientDescent(lr=50.0, step_rule="gd", init_scale=3.0, log_every=1)
    results = gd.run_batch([sensing_problem], model, 200, [0, 1])
    for result, seed in zip(results, [0, 1]):
        reference = reference_gd(gd, sensing_problem, model, 200, seed)
        assert reference["diverged_at"] is not None, "the setting must diverge for this test to mean anything"
        assert_matches_reference(result, reference)


def test_threshold_stops_runs_and_cuts_the_history(sensing_problem):
    model = vl.FactorizationModel(5, 5, 8, 2, activation="tanh")
    gd = vl.GradientDescent(lr=3e-2, step_rule="group_rmsprop", init_scale=0.3, train_loss_threshold=0.05, log_every=3)
    results = gd.run_batch([sensing_problem], model, 400, [0, 1, 2, 3])
    references = [reference_gd(gd, sensing_problem, model, 400, s) for s in range(4)]
    assert all(r["converged_at"] is not None for r in references), "all runs must reach the threshold"
    for result, reference in zip(results, references):
        # The batch stops when the last run stops; every run's log goes that far.
        last = max(r["steps"] for r in references)
        assert result.status == "converged"
        assert result.metrics["steps"] == reference["steps"]
        assert max(result.history["step"][:-1]) <= last


def test_callable_activation_uses_autograd_and_agrees(sensing_problem):
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop")
    named = gd.run_batch([sensing_problem], vl.FactorizationModel(5, 5, 6, 2, activation="tanh"), 100, [0, 1])
    custom = gd.run_batch([sensing_problem], vl.FactorizationModel(5, 5, 6, 2, activation=torch.tanh), 100, [0, 1])
    for a, b in zip(named, custom):
        assert a.metrics["train_loss"] == pytest.approx(b.metrics["train_loss"], rel=RTOL)
        assert a.metrics["gen_loss"] == pytest.approx(b.metrics["gen_loss"], rel=RTOL)


def test_normalized_model_runs_through_autograd(sensing_problem):
    model = vl.FactorizationModel(5, 5, 5, 3, normalize=True)
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", log_every=10)
    (result,) = gd.run_batch([sensing_problem], model, 60, [0])
    assert_matches_reference(result, reference_gd(gd, sensing_problem, model, 60, 0))


def test_distinct_problems_per_seed(sensing_problem):
    other = vl.make_sensing(5, 5, 1, 15, seed=5)
    model = vl.FactorizationModel(5, 5, 6, 2, activation="tanh")
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", log_every=9)
    results = gd.run_batch([sensing_problem, other], model, 80, [0, 1])
    assert_matches_reference(results[0], reference_gd(gd, sensing_problem, model, 80, 0))
    assert_matches_reference(results[1], reference_gd(gd, other, model, 80, 1))


def test_sweep_equals_batches_for_any_worker_count(sensing_problem):
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", log_every=5)
    points = [(sensing_problem, vl.FactorizationModel(5, 5, w, 2, activation="tanh")) for w in (5, 10, 20)]
    batches = [gd.run_batch([p], m, 50, [0, 1]) for p, m in points]
    threads = torch.get_num_threads()
    for workers in (1, 3):
        sweep = gd.run_sweep(points, 50, [0, 1], workers=workers)
        assert torch.get_num_threads() == threads
        for got, want in zip(sweep, batches):
            for a, b in zip(got, want):
                assert a.metrics == b.metrics
                assert a.history == b.history


def test_sweep_rejects_bad_workers(sensing_problem):
    gd = vl.GradientDescent(lr=1e-2)
    with pytest.raises(vl.OptimizerError, match="workers"):
        gd.run_sweep([(sensing_problem, vl.FactorizationModel(5, 5, 5, 2))], 10, [0], workers=0)


def test_same_result_for_any_thread_count(sensing_problem):
    model = vl.FactorizationModel(5, 5, 40, 2, activation="leaky_relu")
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", momentum=0.5, log_every=10)
    outcomes = []
    for threads in (1, 2):
        torch.set_num_threads(threads)
        outcomes.append([(r.metrics, r.history) for r in gd.run_batch([sensing_problem], model, 100, [0, 1, 2])])
        assert torch.get_num_threads() == threads
    assert outcomes[0] == outcomes[1]


def test_a_point_does_not_depend_on_the_other_points_of_its_sweep(sensing_problem):
    # Widths 5, 9, 16, 40 (as in a figure's sweep) together, each point alone, and each
    # point's own batch: identical, bit for bit, whichever widths share the sweep.
    gd = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", momentum=0.9, init_scale=1e-2, log_every=20)
    points = [(sensing_problem, vl.FactorizationModel(5, 5, w, 3, activation="tanh")) for w in (5, 9, 16, 40)]
    together = gd.run_sweep(points, 200, [0, 1])
    reversed_order = gd.run_sweep(points[::-1], 200, [0, 1], workers=2)[::-1]
    for point, runs, runs_reversed in zip(points, together, reversed_order):
        (alone,) = gd.run_sweep([point], 200, [0, 1])
        batch = gd.run_batch([point[0]], point[1], 200, [0, 1])
        for run, *others in zip(runs, runs_reversed, alone, batch):
            for other in others:
                assert run.metrics == other.metrics and run.history == other.history
        assert all("padded_to_width" not in run.diagnostics for run in runs)


def test_sweep_has_no_width_padding(sensing_problem):
    gd = vl.GradientDescent(lr=1e-2)
    with pytest.raises(TypeError, match="pad_widths"):
        gd.run_sweep([(sensing_problem, vl.FactorizationModel(5, 5, 5, 2))], 10, [0], pad_widths=True)
