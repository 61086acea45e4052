"""What the diagnostics that run as sweep methods are: measurements, not optimizers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = ["Measurement"]


@dataclass(frozen=True)
class Measurement:
    """A measurement of a model at its prior or its initialization (the prior's law, the collapse of a product,
    the NTK at initialization): nothing is fitted and nothing is conditioned on the data.

    Like every procedure it has ``run(problem, model, budget, seed) -> RunResult`` (its budget counts draws), so
    a sweep runs it as a method; it is registered there as a measurement (``MethodSpec(procedure="measurement")``).
    It has no optimizer's settings (no learning rate, no progress bar: each run is one short computation).
    """

    #: The method's name, which is also its random stream's: ``(seed, method)``.
    method: ClassVar[str] = ""
