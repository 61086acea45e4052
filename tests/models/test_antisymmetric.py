"""The MLP's antisymmetric start (``initialization="antisymmetric"``): the zero function, the same effective weights
under every parametrization, a Jacobian that is not degenerate; float64 throughout."""

from __future__ import annotations

import pytest
import torch

import volumelab as vl
from volumelab._rng import make_generator
from volumelab.errors import ModelError, OptimizerError
from volumelab.models import MLPModel

PARAMETRIZATIONS = ("standard", "ntk", "mup")


def _start(model: MLPModel, seed: int = 3) -> list[torch.Tensor]:
    return model.initialize_antisymmetric(2.0, make_generator(seed, "init"))


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("depth", [2, 3, 4])
@pytest.mark.parametrize("parametrization", PARAMETRIZATIONS)
def test_the_start_is_the_zero_function(parametrization, depth, bias):
    """Zero on random inputs to rounding: the two halves' activations are equal and the readout subtracts them
    (a BLAS may sum the readout's products in any order, so not bit for bit)."""
    model = MLPModel(3, 8, depth, "tanh", parametrization=parametrization, bias=bias)
    inputs = 3.0 * torch.randn(200, 3, generator=make_generator(0, "test"), dtype=torch.float64)
    outputs = model.forward(_start(model), inputs)
    assert outputs.shape == (200,)
    assert float(outputs.abs().max()) < 1e-14


@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("depth", [2, 3])
def test_every_parametrization_starts_from_the_same_effective_weights(depth, bias):
    effective = {}
    for parametrization in PARAMETRIZATIONS:
        model = MLPModel(2, 6, depth, "tanh", parametrization=parametrization, bias=bias)
        effective[parametrization] = [layer * multiplier for layer, multiplier in
                                      zip(_start(model), model.layer_multipliers)]
    for parametrization in ("ntk", "mup"):
        for layer, reference in zip(effective[parametrization], effective["standard"]):
            torch.testing.assert_close(layer, reference, rtol=1e-15, atol=0)
    # Under standard the stored layers are the effective ones, built from the standard width-3 network's draw.
    half = MLPModel(2, 3, depth, "tanh", bias=bias).initialize(2.0, make_generator(3, "init"))
    first, readout = effective["standard"][0], effective["standard"][-1]
    assert torch.equal(first[:3], half[0]) and torch.equal(first[3:], half[0])
    assert torch.equal(readout[..., :3], half[-1][..., :3]) and torch.equal(readout[..., 3:6], -half[-1][..., :3])
    if bias:
        assert float(readout[..., -1]) == 0.0
    if depth == 3:
        hidden = effective["standard"][1]
        assert torch.equal(hidden[:3, 3:6], torch.zeros(3, 3, dtype=torch.float64))
        assert torch.equal(hidden[3:, 3:6], half[1][:, :3]) and torch.equal(hidden[:3, :3], half[1][:, :3])


@pytest.mark.parametrize("depth", [2, 3])
def test_the_jacobian_is_not_degenerate(depth):
    """At depth 2 the outputs' Gram matrix (the NTK) is twice the half network's (one copy each, the second with
    the opposite sign); deeper, the zero off-diagonal blocks of the hidden layers add their own (positive
    semi-definite) part. Either way the NTK on a few inputs is positive definite."""
    model, half_model = MLPModel(2, 8, depth, "tanh"), MLPModel(2, 4, depth, "tanh")
    inputs = torch.randn(7, 2, generator=make_generator(1, "test"), dtype=torch.float64)

    def kernel(network, layers):
        jacobian = torch.func.jacrev(lambda *ws: network.forward(list(ws), inputs),
                                     argnums=tuple(range(depth)))(*layers)
        flat = torch.cat([part.reshape(7, -1) for part in jacobian], 1)
        return flat @ flat.T

    full = kernel(model, _start(model))
    half = kernel(half_model, half_model.initialize(2.0, make_generator(3, "init")))
    if depth == 2:
        torch.testing.assert_close(full, 2 * half, rtol=1e-12, atol=1e-14)
    else:
        assert float(torch.linalg.eigvalsh(full - 2 * half)[0]) > -1e-12
    assert float(torch.linalg.eigvalsh(full)[0]) > 1e-6 * float(torch.linalg.eigvalsh(full)[-1])


@pytest.mark.parametrize("model, words", [
    (MLPModel(3, 8, 1, "tanh"), "depth >= 2"),
    (MLPModel(3, 7, 2, "tanh"), "even width"),
    (vl.FactorizationModel(rows=3, cols=3, width=4, depth=2), "defined for MLPs"),
])
def test_a_model_without_an_antisymmetric_start_is_a_one_line_error(model, words):
    assert words in model.antisymmetric_mismatch()
    with pytest.raises(ModelError, match=words):
        model.initialize_antisymmetric(1.0, make_generator(0, "init"))
    problem = (vl.make_supervised("teacher", 10, num_test=5, num_features=3, seed=0) if isinstance(model, MLPModel)
               else vl.make_sensing(rows=3, cols=3, rank=1, num_measurements=5, seed=0))
    for optimizer in (vl.GradientDescent(lr=0.1, initialization="antisymmetric"),
                      vl.NaturalGradientDescent(lr=0.1, initialization="antisymmetric")):
        assert optimizer.model_mismatch(model) is not None
        with pytest.raises(OptimizerError, match=words) as caught:
            optimizer.run(problem, model, 1)
        assert "\n" not in str(caught.value)


def test_gd_and_ngd_runs_start_from_the_zero_function_and_ngd_moves_alike_under_every_parametrization():
    """From the common start NGD's first step is the same in function space under every parametrization (to its
    damping, tiny here), GD's is not (ntk and mup move the layers at other rates)."""
    from volumelab.optimizers.observers import Trajectory

    problem = vl.make_supervised("teacher", 12, num_test=20, num_features=2, seed=0)
    outputs = {}
    for name, optimizer in (("gd", vl.GradientDescent(lr=0.05, init_scale=2.0, initialization="antisymmetric")),
                            ("ngd", vl.NaturalGradientDescent(lr=0.05, init_scale=2.0, damping=1e-9, fisher="population",
                                                              unlabeled=64, initialization="antisymmetric"))):
        for parametrization in PARAMETRIZATIONS:
            model = MLPModel(2, 6, 2, "tanh", parametrization=parametrization)
            result = optimizer.run(problem, model, 1, seed=0, observers=[Trajectory(1)])
            trajectory = result.arrays["trajectory"]
            assert float(abs(trajectory[0]).max()) < 1e-14  # the start
            assert result.diagnostics["initialization"] == "antisymmetric"
            outputs[name, parametrization] = trajectory[-1]
    for parametrization in ("ntk", "mup"):
        ngd_gap = abs(outputs["ngd", parametrization] - outputs["ngd", "standard"]).max()
        gd_gap = abs(outputs["gd", parametrization] - outputs["gd", "standard"]).max()
        assert ngd_gap < 1e-6 * abs(outputs["ngd", "standard"]).max() and gd_gap > 1e-3 * abs(outputs["gd", "standard"]).max()
