"""What every optimizer returns."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = ["METRIC_KINDS", "Metric", "ResultSchema", "RunResult", "RunningMoments", "format_value", "mean_and_stderr"]


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


# ------------------------------------------------------------------ declared results
#: What a metric is: an ``estimate`` (it has a standard error in ``standard_errors``), a ``count``, an exact
#: ``value`` (a bound, a rate computed from counts, a setting echoed back) or a ``check`` of the run's health.
METRIC_KINDS = ("estimate", "count", "value", "check")


@dataclass(frozen=True)
class Metric:
    """One key of a procedure's ``RunResult.metrics``: its name, its kind (:data:`METRIC_KINDS`) and what it
    means. ``when`` says when it is present if not always (e.g. ``"classification tasks"``)."""

    name: str
    meaning: str
    kind: str = "estimate"
    when: str = ""

    def __post_init__(self) -> None:
        if self.kind not in METRIC_KINDS:
            raise ValueError(f"metric kind must be one of {', '.join(METRIC_KINDS)}, got {self.kind!r}")


@dataclass(frozen=True)
class ResultSchema:
    """What a procedure returns, declared next to it: its metrics with their meanings, its statuses, and how
    a result reads as text (the command line prints ``text(result, scored)``; ``scored`` is the name of the
    loss on held-out data, ``"generalization loss"`` or ``"test loss"``).

    A test holds every built-in procedure to its schema (no metric it does not declare), so a
    metric's meaning is written here once and docs and the command line read it from here.
    """

    metrics: tuple[Metric, ...]
    statuses: Mapping[str, str]
    text: Any = None

    def names(self) -> tuple[str, ...]:
        return tuple(metric.name for metric in self.metrics)

    def meaning(self, name: str) -> str:
        """What metric ``name`` means; a ``KeyError`` naming the declared metrics when it is not one."""
        for metric in self.metrics:
            if metric.name == name:
                return metric.meaning
        raise KeyError(f"{name!r} is not a declared metric; declared: {', '.join(self.names())}")

    def undeclared(self, result: RunResult) -> list[str]:
        """The metrics and statuses of ``result`` this schema does not declare (empty when it conforms)."""
        names = set(self.names())
        found = [name for name in result.metrics if name not in names]
        found += [f"{name} (standard error)" for name in result.standard_errors if name not in names]
        if result.status not in self.statuses:
            found.append(f"status {result.status!r}")
        return found

    def lines(self, result: RunResult, scored: str = "generalization loss") -> list[str]:
        """``result`` as lines of text (its metrics with standard errors when no ``text`` is declared)."""
        if self.text is not None:
            return list(self.text(result, scored))
        lines = [f"status: {result.status}"]
        for metric in self.metrics:
            if metric.name in result.metrics:
                lines.append(f"{metric.name}:".ljust(27) + format_value(result.metrics[metric.name],
                                                                      result.standard_errors.get(metric.name)))
        return lines


def format_value(value, stderr=None, digits: int = 4) -> str:
    """``value ± stderr`` to ``digits`` significant digits (the SE to 2); ``undefined`` for ``None``."""
    if value is None:
        return "undefined"
    if isinstance(value, str):
        return value
    text = f"{value:.{digits}g}"
    if stderr is not None:
        text += f" ± {stderr:.2g}"
    return text
