"""Chiang et al.'s normalized training loss and the binning of G&C's states by it, against plain loops."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import volumelab as vl
from volumelab.errors import OptimizerError
from volumelab.models import MLPModel
from volumelab.optimizers.subset import loss_bins
from volumelab.problems import make_supervised


def _setting():
    problem = make_supervised("digits", 12, seed=0, classes=(3, 8), num_test=30)
    return problem, MLPModel(problem.num_features, 6, 3)


def test_the_normalized_loss_matches_a_loop_and_ignores_each_layers_scale():
    problem, model = _setting()
    tensors = problem.tensors("cpu", torch.float64)
    layers = model.sample_prior(5, torch.Generator().manual_seed(0), dtype=torch.float64)
    outputs = model.outputs(layers, tensors)
    value = tensors.normalized_train_loss(outputs, layers)
    for draw in range(5):
        scale = math.prod(float(torch.linalg.norm(layer[draw])) for layer in layers)
        expected = np.mean([math.log1p(math.exp(-float(y) * float(f) / scale))
                            for y, f in zip(tensors.targets[:12], outputs[draw, :12])])
        assert value[draw].item() == pytest.approx(expected, rel=1e-12)
    # A bias-free ReLU MLP is 1-homogeneous in each layer: scaling one layer changes nothing.
    scaled = [layers[0], layers[1] * 7.0, layers[2]]
    assert torch.allclose(tensors.normalized_train_loss(model.outputs(scaled, tensors), scaled), value, rtol=1e-12)


def test_loss_bins_match_a_loop():
    generator = np.random.default_rng(0)
    losses = [generator.normal(size=n) for n in (40, 55, 31)]
    errors = [generator.uniform(size=n) for n in (40, 55, 31)]
    bins = loss_bins(losses, errors, 3)
    pooled = np.sort(np.concatenate(losses))
    assert bins[0]["low"] == pooled[0] and bins[-1]["high"] == pooled[-1]
    assert sum(entry["states"] for entry in bins) == 126
    for entry in bins:
        means = []
        for loss, error in zip(losses, errors):
            chosen = [e for l, e in zip(loss, error)
                      if entry["low"] <= l and (l <= entry["high"] if entry is bins[-1] else l < entry["high"])]
            if chosen:
                means.append(sum(chosen) / len(chosen))
        assert entry["replicates"] == len(means)
        assert entry["test_error"] == pytest.approx(sum(means) / len(means), rel=1e-12)
        assert entry["test_error_stderr"] == pytest.approx(np.std(means, ddof=1) / math.sqrt(len(means)), rel=1e-12)


def test_subset_bins_its_states_and_gd_reports_the_same_loss():
    problem, model = _setting()
    result = vl.GuessCheck(eps=0, accept="train_error", method="subset", population=100, replicates=2,
                           loss_bins=3).run(problem, model, 20_000, seed=0)
    bins = result.diagnostics["loss_bins"]
    assert len(bins) == 3 and sum(entry["states"] for entry in bins) == result.metrics["accepted"]
    assert result.metrics["normalized_train_loss"] > 0 and "prior_normalized_train_loss" in result.metrics
    gd = vl.GradientDescent(lr=0.5, init_scale=1.0, device="cpu").run(problem, model, 20, seed=0)
    assert gd.metrics["normalized_train_loss"] > 0
    with pytest.raises(OptimizerError, match="needs accept='train_error'"):
        vl.GuessCheck(eps=0.5, method="subset", loss_bins=3)
    with pytest.raises(OptimizerError, match="only available with method='subset'"):
        vl.GuessCheck(eps=0, accept="train_error", loss_bins=3)
