"""One contract for every optimizer: finite output, same seed -> same result,
batch size does not matter (STYLE.md, "Tests")."""

import math

import pytest

import volumelab as vl

OPTIMIZERS = {
    "gnc": (lambda batch: vl.GuessCheck(eps=0.1, batch_size=batch), 30_000, (4096, None)),
    "gd": (lambda batch: vl.GradientDescent(lr=1e-2), 50, (None,)),
    "group_rmsprop": (lambda batch: vl.GradientDescent(lr=1e-2, step_rule="group_rmsprop"), 50, (None,)),
    "momentum": (lambda batch: vl.GradientDescent(lr=1e-2, momentum=0.9), 50, (None,)),
}


@pytest.fixture(params=sorted(OPTIMIZERS))
def optimizer_case(request):
    return request.param, *OPTIMIZERS[request.param]


@pytest.mark.parametrize("activation", ["linear", "tanh", "leaky_relu", "relu"])
def test_contract(optimizer_case, sensing_problem, activation):
    name, build, budget, batch_sizes = optimizer_case
    model = vl.FactorizationModel(5, 5, 6, 3, activation)
    first = build(batch_sizes[0]).run(sensing_problem, model, budget, seed=1)
    assert isinstance(first, vl.RunResult)
    for key in ("gen_loss", "train_loss"):
        assert first.metrics[key] is not None and math.isfinite(first.metrics[key])
    for batch in batch_sizes:
        again = build(batch).run(sensing_problem, model, budget, seed=1)
        assert again.metrics == first.metrics, name
    if name != "gnc":
        batched = build(None).run_batch([sensing_problem], model, budget, seeds=[7, 1])[1]
        assert batched.metrics["gen_loss"] == pytest.approx(first.metrics["gen_loss"], rel=1e-9)
