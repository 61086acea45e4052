"""The NTK's spectrum at initialization as a sweep method: one result per (problem, model, seed).

:class:`NTKAtInit` has the optimizers' interface, ``run(problem, model, budget, seed) ->
RunResult``, so a sweep, the results store and the report take it like any other
method. Its budget is the number of independent prior draws per seed; each draw's
empirical NTK on the training outputs (:func:`volumelab.diagnostics.ntk.empirical_ntk`)
gives its smallest and largest eigenvalue, and the run reports their means (with
standard errors when there are several draws).

Where the infinite-width NTK has a closed form (a bias-free ReLU MLP in the ``ntk``
parametrization: :func:`volumelab.diagnostics.ntk.arccos_ntk`), the run also reports that
kernel's smallest and largest eigenvalue on the same training inputs,
``lambda_min_limit`` and ``lambda_max_limit``, the value the empirical ones must approach
as the width grows.

Weights come from the model's prior (:meth:`sample_prior`: Gaussian by default, the law
the closed form assumes), drawn from the ``(seed, "ntk", draw)`` stream.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch

from .._rng import make_generator
from ..errors import OptimizerError
from ..models import MLPModel
from ..optimizers.base import RunResult, mean_and_stderr
from .base import Measurement
from .ntk import DEFAULT_MEMORY_BYTES, NTK_METHODS, arccos_ntk, empirical_ntk, ntk_eigenvalues

__all__ = ["NTKAtInit", "closed_form_limit"]


def closed_form_limit(model, problem) -> tuple[float, float] | None:
    """``(lambda_min, lambda_max)`` of the infinite-width NTK on the training inputs, or ``None`` without a closed form.

    The arc-cosine kernels are the limit of unit-variance weights: a bias-free ReLU MLP
    under the ntk parametrization with the Gaussian prior (the uniform prior's variance is 1/3).
    """
    if (not isinstance(model, MLPModel) or model.activation_name != "relu" or model.bias
            or model.parametrization != "ntk" or model.depth < 2 or model.prior != "gaussian"):
        return None
    eigenvalues = ntk_eigenvalues(arccos_ntk(problem.inputs()[: problem.num_train], model.depth))
    return float(eigenvalues[0]), float(eigenvalues[-1])


@dataclass(frozen=True)
class NTKAtInit(Measurement):
    """The empirical NTK's extreme eigenvalues at prior draws of the weights.

    Attributes:
        ntk_method: ``"jacobian"`` or ``"vp"`` (the two Gram implementations; same numbers).
        memory_bytes: Working-memory budget of one Gram.
        device: ``"cpu"`` or ``"auto"`` (which is the CPU here: the Grams are computed on the CPU).
    """

    ntk_method: str = "jacobian"
    memory_bytes: int = DEFAULT_MEMORY_BYTES
    device: str = "cpu"

    method = "ntk"

    def __post_init__(self) -> None:
        if self.ntk_method not in NTK_METHODS:
            raise OptimizerError(f"unknown ntk_method {self.ntk_method!r}; expected one of {', '.join(NTK_METHODS)}")
        if isinstance(self.memory_bytes, bool) or not isinstance(self.memory_bytes, int) or self.memory_bytes < 1:
            raise OptimizerError(f"memory_bytes must be a positive integer, got {self.memory_bytes!r}")
        if self.device not in ("auto", "cpu"):
            raise OptimizerError(f"the NTK diagnostic runs on the CPU, got device {self.device!r}")

    def run(self, problem, model, budget: int = 1, seed: int = 0) -> RunResult:
        """``budget`` prior draws, each from ``(seed, "ntk", draw)``; their NTKs' eigenvalues."""
        if isinstance(budget, bool) or not isinstance(budget, int) or budget < 1:
            raise OptimizerError(f"the number of draws must be a positive integer, got {budget!r}")
        mismatch = model.problem_mismatch(problem)
        if mismatch:
            raise OptimizerError(mismatch)
        start = time.perf_counter()
        smallest, largest = [], []
        for draw in range(budget):
            layers = model.sample_prior(1, make_generator(seed, "ntk", draw), dtype=torch.float64)
            gram = empirical_ntk(model, [layer[0] for layer in layers], problem, method=self.ntk_method,
                                 memory_bytes=self.memory_bytes)
            if not bool(torch.isfinite(gram).all()):
                # A prior draw whose NTK overflows: no eigenvalue is made up for it.
                diagnostics = {"ntk_method": self.ntk_method, "seed": seed, "non_finite_draw": draw,
                               "seconds": time.perf_counter() - start, "num_parameters": model.num_parameters}
                return RunResult(self.method, "diverged", {"num_train": problem.num_train, "draws": budget}, {}, {},
                                 diagnostics)
            eigenvalues = ntk_eigenvalues(gram)
            smallest.append(float(eigenvalues[0]))
            largest.append(float(eigenvalues[-1]))
        metrics: dict = {"num_train": problem.num_train, "draws": budget}
        errors: dict = {}
        for name, values in (("lambda_min", smallest), ("lambda_max", largest)):
            mean = sum(values) / budget
            m2 = sum((v - mean) ** 2 for v in values)
            metrics[name], errors[name] = mean_and_stderr(budget, mean, m2)
            # The spread over draws (sample standard deviation): concentration is its fall with width.
            metrics[f"{name}_std"] = math.sqrt(m2 / (budget - 1)) if budget > 1 else None
        limit = closed_form_limit(model, problem)
        metrics["lambda_min_limit"], metrics["lambda_max_limit"] = limit if limit else (None, None)
        metrics["condition"] = (metrics["lambda_max"] / metrics["lambda_min"]
                                if metrics["lambda_min"] > 0 else None)
        diagnostics = {"ntk_method": self.ntk_method, "seed": seed, "seconds": time.perf_counter() - start,
                       "num_parameters": model.num_parameters}
        status = "ok"
        return RunResult(self.method, status, metrics, errors, {}, diagnostics)
