"""What the report's tables read: the methods by role, medians' ratios and their standard errors.

Tables read methods by the *role* their registration gives them
(:mod:`volumelab.experiments.methods`), never by name: the ``sampler`` (samples the prior and
keeps what fits the data), the ``trainer`` (trains from an initialization) and the ``chance`` rows
the sampler stores (the prior's loss on the same draws). Verdicts are not made here: every verdict
is a study's (:mod:`volumelab.evidence`).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ...experiments.methods import CHANCE, SAMPLER, TRAINER, companion, role_labels

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["MIN_SEED_FRACTION", "Roles", "SummaryPoint", "ratio_and_stderr", "read_roles"]

#: A table marks a point where fewer than this fraction of the seeds have a loss.
MIN_SEED_FRACTION = 0.5


def _labels(labels: Mapping[str, str] | None = None) -> dict[str, str]:
    """The words for the roles: ``labels``, else the registered ones, else the roles' names."""
    words = {SAMPLER: SAMPLER, TRAINER: TRAINER, CHANCE: CHANCE, **role_labels()}
    return {**words, **(labels or {})}


@dataclass(frozen=True)
class Roles:
    """The methods of a summary the verdicts read, by role, and the words for the roles."""

    sampler: str | None
    trainer: str | None
    chance: str | None
    labels: dict[str, str]


def _primary(candidates: list[tuple[str, str]]) -> str | None:
    """Of ``(method, method_type)`` pairs: the method named like its type, else the first by name."""
    if not candidates:
        return None
    for method, method_type in sorted(candidates):
        if method == method_type:
            return method
    return sorted(candidates)[0][0]


def read_roles(summary: "pd.DataFrame") -> Roles:
    """Which methods of ``summary`` (:func:`volumelab.plotting.summarize`) the verdicts read.

    The chance rows are those the sampler stores with the role ``chance`` (see
    :func:`volumelab.experiments.methods.companion`), else any rows of that role.
    """
    from ...experiments.methods import row_kind

    methods = list(dict.fromkeys(summary["method"])) if len(summary) else []
    if "method_type" in summary:
        types = {str(m): str(t) for m, t in zip(summary["method"], summary["method_type"])}
    else:
        types = {str(m): str(m) for m in methods}
    by_role: dict[str, list[tuple[str, str]]] = {}
    for method in methods:
        by_role.setdefault(row_kind(types[str(method)]).role, []).append((str(method), types[str(method)]))
    sampler = _primary(by_role.get(SAMPLER, []))
    trainer = _primary(by_role.get(TRAINER, []))
    chance = companion(sampler, types[sampler], CHANCE) if sampler is not None else None
    if chance not in types:
        chance = _primary(by_role.get(CHANCE, []))
    labels = {}
    for role, method in ((SAMPLER, sampler), (TRAINER, trainer), (CHANCE, chance)):
        if method is not None:
            labels[role] = row_kind(types[method]).label if method == types[method] or role == CHANCE else method
    return Roles(sampler, trainer, chance, _labels(labels))


@dataclass(frozen=True)
class SummaryPoint:
    """One (panel, method, x) row of the summary table: median, its standard error and seed counts."""

    median: float
    stderr: float
    with_loss: int
    runs: int
    seed_losses: Mapping[int, float] = field(default_factory=dict)
    seed_stderrs: Mapping[int, float] = field(default_factory=dict)

    @property
    def scarce(self) -> bool:
        """Fewer than half of the seeds have a loss."""
        return self.with_loss < MIN_SEED_FRACTION * self.runs


def ratio_and_stderr(numerator: SummaryPoint, denominator: SummaryPoint) -> tuple[float, float]:
    """``numerator / denominator`` of two medians and its standard error.

    The errors are combined as independent (first order):
    ``SE = sqrt(SE_n^2 + r^2 SE_d^2) / d``. ``(NaN, NaN)`` where the denominator is not positive.
    """
    if not denominator.median > 0:
        return math.nan, math.nan
    value = numerator.median / denominator.median
    stderr = math.sqrt(numerator.stderr ** 2 + value ** 2 * denominator.stderr ** 2) / denominator.median
    return value, stderr
