"""Gradient descent: the step rules against a hand-written reference, stopping, divergence."""

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.errors import OptimizerError
from volumelab.models import DiagonalNetwork
from volumelab.optimizers.gradient import _ClosedFormObjective
from volumelab.problems import make_supervised


def _reference_run(problem, init, lr, steps, rule, beta, decay=0.99, eps=1e-6):
    """Depth-1 model (W itself), written out in NumPy from docs/design.md's step rule.

    L(W) = (1/m) sum_i (<A_i, W> - y_i)^2, so grad L = (2/m) sum_i r_i A_i.
    """
    a = problem.A_train.numpy().reshape(problem.num_measurements, -1)
    y = problem.b_train.numpy()
    w = init.copy().reshape(-1)
    ema, buffer = 0.0, np.zeros_like(w)
    for t in range(1, steps + 1):
        grad = 2.0 / len(y) * a.T @ (a @ w - y)
        if rule == "group_rmsprop":
            ema = decay * ema + (1 - decay) * float(grad @ grad)
            grad = grad / (np.sqrt(ema / (1 - decay**t)) + eps)
        buffer = beta * buffer + grad
        w = w - lr * buffer
    b = problem.A_test.numpy().reshape(problem.num_test, -1)
    return np.mean((a @ w - y) ** 2), np.mean((b @ w - problem.b_test.numpy()) ** 2)


@pytest.mark.parametrize(("rule", "beta"), [("gd", 0.0), ("gd", 0.9), ("group_rmsprop", 0.0), ("group_rmsprop", 0.9)])
def test_step_rules_match_reference(sensing_problem, rule, beta):
    model = vl.FactorizationModel(5, 5, 1, 1)
    optimizer = vl.GradientDescent(lr=0.05, init_scale=1.0, step_rule=rule, momentum=beta)
    result = optimizer.run(sensing_problem, model, 7, seed=4)
    init = model.initialize(1.0, make_generator(4, "init"))[0].numpy()
    train, gen = _reference_run(sensing_problem, init, 0.05, 7, rule, beta)
    assert result.metrics["train_loss"] == pytest.approx(train, rel=1e-10)
    assert result.metrics["gen_loss"] == pytest.approx(gen, rel=1e-10)
    assert result.metrics["steps"] == 7 and result.status == "completed"


def test_momentum_changes_the_trajectory(sensing_problem):
    model = vl.FactorizationModel(5, 5, 10, 2)
    plain, heavy = (vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", momentum=b).run(sensing_problem, model, 200)
                    for b in (0.0, 0.9))
    assert plain.metrics["train_loss"] != heavy.metrics["train_loss"]


def test_gd_from_small_init_generalizes(sensing_problem):
    model = vl.FactorizationModel(5, 5, 40, 2)
    result = vl.GradientDescent(lr=1e-2, init_scale=1e-3, step_rule="group_rmsprop").run(
        sensing_problem, model, 3000, seed=0)
    prior_level = 1 / 5 + sensing_problem.mean_squared_target()
    assert result.metrics["train_loss"] < 1e-4
    assert result.metrics["gen_loss"] < 0.01 * prior_level
    history = result.history
    assert len(history["step"]) == len(history["train_loss"]) == len(history["gen_loss"]) > 100
    assert history["train_loss"][-1] < history["train_loss"][0]


def test_threshold_stops_early(sensing_problem):
    model = vl.FactorizationModel(5, 5, 10, 2)
    result = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", train_loss_threshold=1e-2).run(
        sensing_problem, model, 5000)
    assert result.status == "converged"
    assert 0 < result.metrics["steps"] < 5000
    assert result.metrics["train_loss"] < 1e-2


def test_divergence_is_reported_not_a_number(sensing_problem):
    model = vl.FactorizationModel(5, 5, 10, 3)
    result = vl.GradientDescent(lr=50.0, init_scale=1.0).run(sensing_problem, model, 500)
    assert result.status == "diverged"
    assert result.metrics["gen_loss"] is None and result.metrics["train_loss"] is None
    assert result.metrics["diverged_at_step"] is not None


def test_batch_equals_separate_runs(sensing_problem, rectangular_problem):
    model = vl.FactorizationModel(5, 5, 8, 3, "tanh")
    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in (0, 1, 2)]
    optimizer = vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop", momentum=0.9)
    batched = optimizer.run_batch(problems, model, 100, seeds=[0, 1, 2])
    for problem, seed, together in zip(problems, (0, 1, 2), batched):
        alone = optimizer.run(problem, model, 100, seed=seed)
        assert together.metrics["train_loss"] == pytest.approx(alone.metrics["train_loss"], rel=1e-9)
        assert together.metrics["gen_loss"] == pytest.approx(alone.metrics["gen_loss"], rel=1e-9)


def test_one_diverging_run_does_not_spoil_the_batch():
    # Ground truth of norm 1000 makes plain GD at lr 0.1 blow up; norm 1 does not.
    problems = [vl.make_sensing(5, 5, 1, 15, seed=0, norm=n) for n in (1.0, 1000.0, 1.0, 1000.0)]
    model = vl.FactorizationModel(5, 5, 10, 2)
    optimizer = vl.GradientDescent(lr=0.1, init_scale=1.0)
    results = optimizer.run_batch(problems, model, 300, seeds=[0, 1, 2, 3])
    assert [r.status for r in results] == ["completed", "diverged", "completed", "diverged"]
    for problem, seed, together in zip(problems, range(4), results):
        alone = optimizer.run(problem, model, 300, seed=seed)
        assert together.status == alone.status
        assert together.metrics["diverged_at_step"] == alone.metrics["diverged_at_step"]
        if alone.status == "completed":
            assert together.metrics["gen_loss"] == pytest.approx(alone.metrics["gen_loss"], rel=1e-9)
            assert together.metrics["steps"] == 300


def test_non_finite_gradient_with_finite_loss_is_divergence():
    """A dead ReLU unit with a huge outgoing weight: ``L_train`` is finite, its gradient is NaN.

    At width 1 with an init whose one hidden unit is dead (``W_1 < 0`` everywhere),
    ``W = W_2 relu(W_1) = 0``, so ``L_train = mean(y^2)`` is finite. The backward pass
    still forms ``W_2^T dL/dW``, which overflows for ``W_2 ~ 1e300`` and targets of
    norm 1e10 (not for norm 1), and the dead unit's zero derivative times inf is NaN.
    The loop used to zero such entries, so this run sat still and ended "completed".
    """
    model = vl.FactorizationModel(5, 5, 1, 2, activation="relu")
    seed = 100
    init = model.initialize(1e300, make_generator(seed, "init"))
    assert bool((init[0] < 0).all()), "the hidden unit must start dead"
    calm, loud = (vl.make_sensing(5, 5, 1, 15, seed=0, norm=norm) for norm in (1.0, 1e10))
    params = torch.cat([layer.reshape(-1) for layer in init]).unsqueeze(0)
    for problem, finite_gradient in ((calm, True), (loud, False)):
        tensors = problem.tensors("cpu", torch.float64)
        objective = _ClosedFormObjective(model, tensors)
        train, grad = objective.train_loss_and_gradient(params.clone())
        assert math.isfinite(float(train[0])) and bool(torch.isfinite(grad).all()) == finite_gradient

    optimizer = vl.GradientDescent(lr=1e-2, init_scale=1e300, log_every=10)
    calm_run, loud_run = optimizer.run_batch([calm, loud], model, 100, seeds=[seed, seed])
    assert loud_run.status == "diverged"
    assert loud_run.metrics == {"train_loss": None, "gen_loss": None, "steps": 0, "diverged_at_step": 0,
                                "effective_rank": None}
    # Its loss at step 0 was finite and is kept; after it, the frozen run has none.
    assert loud_run.history["step"] == list(range(0, 101, 10))
    assert math.isfinite(loud_run.history["train_loss"][0])
    assert loud_run.history["train_loss"][1:] == [None] * 10 and loud_run.history["gen_loss"][1:] == [None] * 10
    # The other run (its gradient is exactly zero: a dead unit) is unaffected.
    alone = optimizer.run(calm, model, 100, seed=seed)
    assert calm_run.status == alone.status == "completed"
    assert calm_run.metrics == alone.metrics and calm_run.history == alone.history


@pytest.mark.parametrize("bad_value", [math.nan, math.inf, -math.inf])
@pytest.mark.parametrize(
    "config",
    [dict(lr=0.05), dict(lr=1e-2, step_rule="group_rmsprop"), dict(lr=1e-2, step_rule="group_rmsprop", momentum=0.9),
     dict(lr=0.05, momentum=0.9)],
    ids=["gd", "rmsprop", "rmsprop-momentum", "gd-momentum"],
)
def test_a_non_finite_gradient_entry_stops_only_its_own_run(monkeypatch, config, bad_value):
    """One gradient entry of run 1 turns non-finite at step 7 while its loss stays finite.

    That run diverges at step 7 and is frozen there; the other runs of the batch end
    exactly (bit for bit) as in the same batch without the fault, and as when run alone.
    """
    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in range(3)]
    model = vl.FactorizationModel(5, 5, 6, 2, activation="tanh")
    optimizer = vl.GradientDescent(**config, log_every=5)
    clean = optimizer.run_batch(problems, model, 40, seeds=[0, 1, 2])
    assert [run.status for run in clean] == ["completed"] * 3

    original = _ClosedFormObjective.train_loss_and_gradient
    steps = []

    def faulty_train_loss_and_gradient(self, params):
        train, grad = original(self, params)
        if len(steps) == 7:
            grad[1, 3] = bad_value
        steps.append(len(steps))
        return train, grad

    monkeypatch.setattr(_ClosedFormObjective, "train_loss_and_gradient", faulty_train_loss_and_gradient)
    faulted = optimizer.run_batch(problems, model, 40, seeds=[0, 1, 2])
    monkeypatch.undo()

    run = faulted[1]
    assert run.status == "diverged"
    assert run.metrics == {"train_loss": None, "gen_loss": None, "steps": 7, "diverged_at_step": 7,
                           "effective_rank": None}
    assert run.history["step"] == clean[1].history["step"] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    for key in ("train_loss", "gen_loss"):
        assert run.history[key][:2] == clean[1].history[key][:2]  # steps 0 and 5, before the fault
        assert run.history[key][2:] == [None] * 7
    for index in (0, 2):
        assert faulted[index].status == "completed"
        assert faulted[index].metrics == clean[index].metrics
        assert faulted[index].history == clean[index].history
        alone = optimizer.run(problems[index], model, 40, seed=index)
        assert faulted[index].metrics["gen_loss"] == pytest.approx(alone.metrics["gen_loss"], rel=1e-9)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be a positive finite"),
        ({"lr": 1e-2, "init_scale": -1.0}, "init_scale must be a positive finite"),
        ({"lr": 1e-2, "step_rule": "nadam"}, "unknown step rule 'nadam'"),
        ({"lr": 1e-2, "step_rule": "adam", "momentum": 0.5}, "momentum 0.5 does not apply to step_rule adam"),
        ({"lr": 1e-2, "adam_beta2": 1.0}, "adam_beta2 must be in \\[0, 1\\)"),
        ({"lr": 1e-2, "adam_eps": 0.0}, "adam_eps must be a positive finite"),
        ({"lr": 1e-2, "batch_size": 0}, "batch_size must be a positive integer or None"),
        ({"lr": 1e-2, "momentum": 1.0}, "momentum must be in \\[0, 1\\)"),
        ({"lr": 1e-2, "train_loss_threshold": 0.0}, "train_loss_threshold must be positive"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(OptimizerError, match=message):
        vl.GradientDescent(**kwargs)


def test_bad_run_arguments(sensing_problem, rectangular_problem):
    model = vl.FactorizationModel(5, 5, 5, 2)
    optimizer = vl.GradientDescent(lr=1e-2)
    with pytest.raises(OptimizerError, match="number of steps"):
        optimizer.run(sensing_problem, model, -1)
    with pytest.raises(OptimizerError, match="model is 5x5 but the problem is 4x6"):
        optimizer.run(rectangular_problem, model, 10)
    with pytest.raises(OptimizerError, match="one problem per seed"):
        optimizer.run_batch([sensing_problem, sensing_problem], model, 10, seeds=[0, 1, 2])


@pytest.mark.parametrize("momentum", [0.0, 0.9])
@pytest.mark.parametrize("step_rule", ["gd", "group_rmsprop"])
def test_both_ways_of_freezing_a_stopped_run_give_the_same_numbers(monkeypatch, step_rule, momentum):
    """Small batches zero a stopped run's gradient with ``where``, large ones in place: same bits.

    Run 1's gradient gets an infinite entry at step 7 and run 3's a NaN at step 12, so
    both branches freeze diverged runs next to live ones.
    """
    from volumelab.optimizers import gradient

    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in range(4)]
    model = vl.FactorizationModel(5, 5, 8, 2, activation="tanh")
    optimizer = vl.GradientDescent(lr=0.05, step_rule=step_rule, momentum=momentum, log_every=3)
    original = _ClosedFormObjective.train_loss_and_gradient

    def run(threshold: int) -> list:
        steps = []

        def faulty(self, params):
            train, grad = original(self, params)
            if len(steps) == 7:
                grad[1, 3] = math.inf
            if len(steps) == 12:
                grad[3, 0] = math.nan
            steps.append(None)
            return train, grad

        monkeypatch.setattr(_ClosedFormObjective, "train_loss_and_gradient", faulty)
        monkeypatch.setattr(gradient, "_MASK_IN_PLACE_ABOVE", threshold)
        return optimizer.run_batch(problems, model, 40, seeds=[0, 1, 2, 3])

    in_place_runs, where_runs = run(0), run(10**9)  # 0: always in place; 10**9: always `where`
    assert [r.status for r in in_place_runs] == ["completed", "diverged", "completed", "diverged"]
    assert [r.metrics["diverged_at_step"] for r in in_place_runs] == [None, 7, None, 12]
    for in_place, with_where in zip(in_place_runs, where_runs):
        assert in_place.status == with_where.status
        assert in_place.metrics == with_where.metrics
        assert in_place.history == with_where.history


@pytest.mark.parametrize("step_rule", ["gd", "group_rmsprop"])
def test_an_overflowing_gradient_norm_is_divergence_not_a_frozen_run(monkeypatch, step_rule):
    """Finite gradient entries of 1e200 at step 7: ||g||^2 overflows to inf.

    group_rmsprop used to divide by sqrt(inf) = inf there, so the run stood still and was
    reported "completed" with the loss it had; it is now "diverged" at step 7, and the
    other runs of the batch end as without the fault.
    """
    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in range(3)]
    model = vl.FactorizationModel(5, 5, 6, 2, activation="tanh")
    optimizer = vl.GradientDescent(lr=0.05, step_rule=step_rule, log_every=5)
    clean = optimizer.run_batch(problems, model, 40, seeds=[0, 1, 2])
    original = _ClosedFormObjective.train_loss_and_gradient
    steps = []

    def overflowing(self, params):
        train, grad = original(self, params)
        if len(steps) == 7:
            grad[1] = 1e200  # every entry finite, the squared norm is not
        steps.append(None)
        return train, grad

    monkeypatch.setattr(_ClosedFormObjective, "train_loss_and_gradient", overflowing)
    faulted = optimizer.run_batch(problems, model, 40, seeds=[0, 1, 2])
    assert faulted[1].status == "diverged" and faulted[1].metrics["diverged_at_step"] == 7
    for index in (0, 2):
        assert faulted[index].metrics == clean[index].metrics and faulted[index].history == clean[index].history


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_reusing_the_probe_norm_gives_the_numbers_of_computing_it_again(monkeypatch, momentum):
    """group_rmsprop reads ||g||^2 from the step's finiteness probe; computing it afresh gives the same bits."""
    from volumelab.optimizers.transforms import StepContext

    problems = [vl.make_sensing(5, 5, 1, 15, seed=s) for s in range(4)]
    model = vl.FactorizationModel(5, 5, 8, 3, activation="tanh")
    optimizer = vl.GradientDescent(lr=1e-2, init_scale=0.1, step_rule="group_rmsprop", momentum=momentum,
                                   log_every=7)
    shared = optimizer.run_batch(problems, model, 150, seeds=range(4))
    monkeypatch.setattr(StepContext, "squared_norm", lambda self, direction: torch.linalg.vecdot(direction, direction))
    fresh = optimizer.run_batch(problems, model, 150, seeds=range(4))
    for a, b in zip(shared, fresh):
        assert a.metrics == b.metrics and a.history == b.history


def test_squared_norm_is_recomputed_after_an_earlier_transform_scaled_the_gradient_in_place():
    """A chain step size -> group RMS: the RMS transform materializes the step size into the gradient
    buffer, so the norm taken before the chain is stale; it must read ||lr g||^2, not ||g||^2."""
    from volumelab.optimizers.transforms import StepContext, Update, chain, scale_by_group_rms, scale_by_learning_rate

    gradient = torch.tensor([[3.0, 4.0], [1.0, 0.0]], dtype=torch.float64)
    active = torch.ones(2, dtype=torch.bool)
    zero = torch.zeros((), dtype=torch.float64)
    context = StepContext(0, active, torch.zeros_like(gradient), None, gradient,
                          torch.linalg.vecdot(gradient, gradient), zero)
    transform = chain(scale_by_learning_rate(0.5), scale_by_group_rms(decay=0.0, eps=0.0))
    update, _ = transform.update(Update(gradient), transform.init(gradient), context)
    # decay 0: v = ||0.5 g||^2, so the step is 0.5 g / ||0.5 g|| = g / ||g||, a unit vector per run.
    step = update.materialize()
    expected = torch.tensor([[0.6, 0.8], [1.0, 0.0]], dtype=torch.float64)
    assert torch.allclose(step, expected, rtol=0, atol=1e-15)


def test_effective_rank_against_a_numpy_loop():
    """exp(entropy of sigma / sum sigma) (Roy & Vetterli 2007): k equal singular values give k."""
    import numpy as np

    from volumelab.optimizers.gradient import effective_rank

    generator = np.random.default_rng(0)
    matrices = generator.standard_normal((4, 5, 6))
    matrices[1] = np.outer(generator.standard_normal(5), generator.standard_normal(6))  # rank one
    matrices[2] = 0.0
    matrices[3] = np.diag([2.0, 2.0, 2.0, 0.0, 0.0]) @ np.eye(5, 6)  # three equal singular values
    expected = []
    for matrix in matrices:
        sigma = np.linalg.svd(matrix, compute_uv=False)
        if sigma.sum() == 0:
            expected.append(np.nan)
            continue
        p = sigma / sigma.sum()
        expected.append(float(np.exp(-sum(x * np.log(x) for x in p if x > 0))))
    got = effective_rank(torch.tensor(matrices)).numpy()
    assert np.allclose(got, expected, rtol=1e-12, equal_nan=True)
    assert abs(got[1] - 1) < 1e-6 and abs(got[3] - 3) < 1e-12 and np.isnan(got[2])


# ------------------------------------------------------------------ the balanced initialization (issue 31, item 2)
def _start(optimizer, problem, model, seeds=(0, 1)):
    """The end-to-end outputs every run of ``optimizer.init`` starts from, ``(S, ...)``."""
    state = optimizer.init([problem], model, list(seeds))
    return state.objective.outputs(state.params)


def test_the_random_initialization_is_the_default_and_is_what_it_was():
    assert vl.GradientDescent(lr=0.1).initialization == "random"
    assert vl.NaturalGradientDescent(lr=0.1).initialization == "random"
    with pytest.raises(OptimizerError, match="unknown initialization 'even'"):
        vl.GradientDescent(lr=0.1, initialization="even")


def test_under_the_balanced_initialization_every_depth_starts_from_the_depth_one_matrix(sensing_problem):
    random, balanced = (vl.GradientDescent(lr=0.1, init_scale=0.2, initialization=name) for name in ("random",
                                                                                                     "balanced"))
    depth_one = vl.FactorizationModel(5, 5, 5, 1)
    reference = _start(random, sensing_problem, depth_one)
    assert torch.equal(_start(balanced, sensing_problem, depth_one), reference)  # depth 1: bit-identical
    for depth, width in ((2, 5), (3, 5), (3, 8), (4, 6)):
        model = vl.FactorizationModel(5, 5, width, depth)
        start = _start(balanced, sensing_problem, model)
        assert float((start - reference).norm() / reference.norm()) <= 1e-12
        # The random start of a deeper model is another function.
        assert float((_start(random, sensing_problem, model) - reference).norm() / reference.norm()) > 0.1


def test_a_balanced_start_and_its_run_agree_with_and_without_batching(sensing_problem):
    model = vl.FactorizationModel(5, 5, 7, 3)
    gd = vl.GradientDescent(lr=0.05, init_scale=0.3, step_rule="group_rmsprop", initialization="balanced")
    batch = gd.run_batch([sensing_problem], model, 30, [0, 1])
    alone = [gd.run(sensing_problem, model, 30, seed=seed) for seed in (0, 1)]
    # To rounding: a batched product's rounding can depend on how many runs share it (README, Reproducibility;
    # 2e-16 relative here after 30 steps on an AMD EPYC, 0 on an Intel Xeon); another start differs by far more.
    assert [r.metrics["train_loss"] for r in batch] == pytest.approx([r.metrics["train_loss"] for r in alone],
                                                                      rel=1e-12, abs=0)
    assert batch[0].diagnostics["initialization"] == "balanced"
    assert "initialization" not in vl.GradientDescent(lr=0.05).run(sensing_problem, model, 1).diagnostics


def test_hidden_units_beyond_the_rank_stay_zero_under_gd_and_ngd(sensing_problem):
    """The balanced factors of a 5x5 W(0) use 5 of 8 hidden units; the other rows and columns get no gradient."""
    model = vl.FactorizationModel(5, 5, 8, 3)
    for optimizer in (vl.GradientDescent(lr=0.05, init_scale=0.3, initialization="balanced"),
                      vl.NaturalGradientDescent(lr=0.05, init_scale=0.3, damping=1e-4, initialization="balanced")):
        state = optimizer.init([sensing_problem], model, [0])
        for _ in range(5):
            state, _info = optimizer.step(state)
        first, hidden, last = state.objective.layers(state.params)
        assert bool((first[:, 5:] == 0).all()) and bool((last[:, :, 5:] == 0).all())
        assert bool((hidden[:, 5:] == 0).all()) and bool((hidden[:, :, 5:] == 0).all())
        assert float(state.params.abs().max()) > 0 and bool(state.active.all())


def test_from_the_balanced_start_an_ngd_step_moves_the_training_outputs_alike_at_every_depth(sensing_problem):
    """To first order an NGD step changes the training outputs by -lr H^-1 dL/dz whatever the parametrization
    (the push-through identity); from one start the depths then differ only at second order in lr."""
    def gap(initialization: str) -> float:
        moves = []
        for depth in (1, 3):
            model = vl.FactorizationModel(5, 5, 5, depth)
            ngd = vl.NaturalGradientDescent(lr=1e-3, init_scale=0.3, damping=1e-10, solve="dual",
                                            initialization=initialization)
            state = ngd.init([sensing_problem], model, [2])
            before = state.objective.tensors.train_outputs(state.objective.outputs(state.params))
            state, _info = ngd.step(state)
            moves.append(state.objective.tensors.train_outputs(state.objective.outputs(state.params)) - before)
        return float((moves[1] - moves[0]).norm() / moves[0].norm())

    # Measured: 8.3e-4 (about lr, as the second order says) from the balanced start, 0.32 from the random ones.
    assert gap("balanced") < 1e-2 < 0.1 < gap("random")


def test_a_deep_linear_classifier_starts_from_the_depth_one_predictor():
    problem = make_supervised("sparse_teacher", 20, seed=0, num_features=8, num_test=50)
    gd = vl.GradientDescent(lr=0.1, init_scale=0.5, initialization="balanced")
    for family in (lambda depth: vl.MLPModel(8, 6, depth, "linear"), lambda depth: DiagonalNetwork(8, depth),
                   lambda depth: DiagonalNetwork(8, depth, "difference")):
        reference = _start(gd, problem, family(1))
        for depth in (2, 3):
            assert float((_start(gd, problem, family(depth)) - reference).abs().max()) <= 1e-12 * float(
                reference.abs().max() + 1e-300)


@pytest.mark.parametrize("model, message", [
    (vl.FactorizationModel(5, 5, 5, 2, activation="tanh"), "needs a linear factorization"),
    (vl.FactorizationModel(5, 5, 3, 2), "needs width >= min\\(rows, cols\\) = 5"),
])
def test_the_balanced_initialization_on_a_model_without_one_is_an_error(sensing_problem, model, message):
    balanced = vl.GradientDescent(lr=0.1, initialization="balanced")
    assert balanced.model_mismatch(model) is not None
    assert vl.GradientDescent(lr=0.1).model_mismatch(model) is None
    with pytest.raises(OptimizerError, match=message):
        balanced.run(sensing_problem, model, 1)
    with pytest.raises(OptimizerError, match=message):
        vl.NaturalGradientDescent(lr=0.1, initialization="balanced").run(sensing_problem, model, 1)
