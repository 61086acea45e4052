"""Optimizers: each is a frozen config with ``run(problem, model, budget, seed) -> RunResult``."""

from .base import Metric, ResultSchema, RunningMoments, RunResult, mean_and_stderr
from . import transforms
from .gradient import STEP_RULES, GDInfo, GDState, GradientDescent
from .conditioning import ConditionalEstimator, estimators, register_estimator
from .guess_check import GuessCheck, acceptance_rate_interval, block_size_for
from .rejection import RejectionGuessCheck
from .subset import SubsetGuessCheck
from .natural_gradient import SOLVES, NaturalGradientDescent

__all__ = [
    "ConditionalEstimator",
    "Metric",
    "RejectionGuessCheck",
    "ResultSchema",
    "SubsetGuessCheck",
    "estimators",
    "register_estimator",
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
