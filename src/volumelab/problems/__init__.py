"""Tasks: matrix sensing / completion (ground truth, measurements, generalization basis) and
supervised data, with their losses and ``.npz`` storage."""

from .core import (
    Problem,
    ProblemTensors,
    complement_basis,
    load_problem,
    make_completion,
    make_ground_truth,
    make_problem,
    make_sensing,
    save_problem,
)
from .supervised import DATASETS, LOSSES, SupervisedProblem, SupervisedTensors, make_supervised

__all__ = [
    "DATASETS",
    "LOSSES",
    "SupervisedProblem",
    "SupervisedTensors",
    "make_supervised",
    "Problem",
    "ProblemTensors",
    "complement_basis",
    "load_problem",
    "make_completion",
    "make_ground_truth",
    "make_problem",
    "make_sensing",
    "save_problem",
]
