"""What every optimizer returns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["RunResult", "RunningMoments", "mean_and_stderr"]


@dataclass(frozen=True)
class RunResult:
    """The outcome of one ``optimizer.run(problem, model, budget, seed)``.

    Attributes:
        method: ``"gnc"``, ``"gd"``, ...
        status: ``"ok"``, ``"no_acceptance"``, ``"completed"``, ``"converged"``, ``"diverged"``.
        metrics: Scalar results; a value that does not exist (e.g. the generalization
            loss of G&C when nothing was accepted) is ``None``, never a made-up number.
        standard_errors: Standard error of each metric that is an estimate.
        history: Per-step logs (lists of equal length), e.g. ``step``, ``train_loss``;
            ``None`` where a value does not exist (a GD run's losses after it diverged).
        diagnostics: Everything else worth keeping (sampler, timing, batch sizes).
        arrays: Optional outputs to analyse, NumPy arrays by name (empty unless asked
            for): G&C's kept accepted draws (``GuessCheck(keep_samples=K)``), GD's final
            layers and outputs (``run(..., observers=[FinalOutputs()])``). Not part of
            :meth:`to_dict`; a sweep stores them in its results store
            (:func:`volumelab.load_arrays`).
    """

    method: str
    status: str
    metrics: Mapping[str, Any]
    standard_errors: Mapping[str, float | None] = field(default_factory=dict)
    history: Mapping[str, list] = field(default_factory=dict)
    diagnostics: Mapping[str, Any] = field(default_factory=dict)
    arrays: Mapping[str, Any] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.metrics[key]

    def to_dict(self, *, include_history: bool = False) -> dict[str, Any]:
        """A flat JSON-ready dict: metrics, ``<metric>_stderr`` and diagnostics."""
        out: dict[str, Any] = {"method": self.method, "status": self.status}
        out.update(self.metrics)
        for key, value in self.standard_errors.items():
            out[f"{key}_stderr"] = value
        out["diagnostics"] = dict(self.diagnostics)
        if include_history:
            out["history"] = {key: list(values) for key, values in self.history.items()}
        return out


def mean_and_stderr(count: int, mean: float, m2: float) -> tuple[float | None, float | None]:
    """Mean and its standard error from a count, running mean and sum of squared deviations.

    Returns ``(None, None)`` for no data and ``(mean, None)`` for a single value (the
    standard error is undefined, not zero).
    """
    if count == 0:
        return None, None
    if count == 1:
        return mean, None
    variance = m2 / (count - 1)
    return mean, math.sqrt(max(variance, 0.0) / count)


@dataclass
class RunningMoments:
    """Count, mean and sum of squared deviations, mergeable (Chan, Golub, LeVeque 1979)."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: torch.Tensor) -> "RunningMoments":
        count = int(values.numel())
        if count == 0:
            return cls()
        values = values.to(torch.float64)
        mean = float(values.mean())
        return cls(count, mean, float((values - mean).square().sum()))

    def merge(self, other: "RunningMoments") -> None:
        if other.count == 0:
            return
        if self.count == 0:
            self.count, self.mean, self.m2 = other.count, other.mean, other.m2
            return
        total = self.count + other.count
        delta = other.mean - self.mean
        self.mean += delta * other.count / total
        self.m2 += other.m2 + delta * delta * self.count * other.count / total
        self.count = total

    def summary(self) -> tuple[float | None, float | None]:
        return mean_and_stderr(self.count, self.mean, self.m2)
