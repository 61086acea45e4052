"""Ground truth, measurements, generalization basis, and ``.npz`` storage."""

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

__all__ = [
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
