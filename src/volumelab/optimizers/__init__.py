"""Optimizers: each is a frozen config with ``run(problem, model, budget, seed) -> RunResult``."""

from .base import RunningMoments, RunResult, mean_and_stderr
from . import transforms
from .gradient import STEP_RULES, GDInfo, GDState, GradientDescent
from .guess_check import GuessCheck, acceptance_rate_interval, block_size_for
from .natural_gradient import SOLVES, NaturalGradientDescent

__all__ = [
    "GDInfo",
    "GDState",
    "STEP_RULES",
    "GradientDescent",
    "GuessCheck",
    "NaturalGradientDescent",
    "SOLVES",
    "RunResult",
    "RunningMoments",
    "acceptance_rate_interval",
    "block_size_for",
    "mean_and_stderr",
    "transforms",
]
