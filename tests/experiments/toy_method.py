"""A third method registered from outside volumelab: it answers the constant matrix ``offset``.

Importing this module registers it (as a plug-in would); the tests use it to show that
a method needs nothing but its registration to run in sweeps, fill its own CSV
column, be drawn and enter the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from volumelab.experiments import Column, MethodRunner, MethodSpec, register_method
from volumelab.optimizers import RunResult


@dataclass(frozen=True)
class ConstantGuess:
    """Every entry of W is ``offset`` (``offset = 0``: the zero matrix, whose L_gen is mean <B, W*>^2).

    Attributes:
        offset: The value of every entry.
        repeats: How often the answer is given (it changes nothing).
        progress: Run-only, left out of the sweep settings.
    """

    offset: float = 0.0
    label_only: str = "none"
    progress: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.offset):
            raise ValueError(f"offset must be finite, got {self.offset!r}")

    def run(self, problem, model, budget: int, seed: int = 0) -> RunResult:
        weights = torch.full((problem.rows, problem.cols), float(self.offset), dtype=torch.float64)
        train, gen = problem.losses(weights)
        metrics = {"train_loss": float(train), "gen_loss": float(gen), "w_norm": abs(self.offset) * math.sqrt(
            problem.rows * problem.cols), "repeats": budget}
        return RunResult("constant", "ok", metrics, {}, {}, {"seed": seed})


def _run(problems, model, settings, seeds):
    optimizer = settings.optimizer(progress=False)
    return [optimizer.run(problem, model, settings.repeats, seed) for problem, seed in zip(problems, seeds)]


SPEC = register_method(MethodSpec(
    type="constant",
    optimizer=ConstantGuess,
    budget="repeats",
    budget_unit="answers",
    runner=MethodRunner(_run),
    execution_fields=frozenset({"label_only"}),
    role="baseline",
    label="constant W",
    style={"color": "#000000", "marker": "x", "linestyle": ":"},
    columns=(Column("w_norm"), Column("offset", source="setting"), Column("repeats", dtype="count")),
))
