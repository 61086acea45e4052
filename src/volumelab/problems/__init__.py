"""Tasks: matrix and order-N tensor sensing / completion (ground truth, measurements, generalization basis) and
supervised data, with their losses and ``.npz`` storage."""

from .core import (
    TENSOR_TASKS,
    Problem,
    ProblemTensors,
    complement_basis,
    load_problem,
    make_completion,
    make_cp_ground_truth,
    make_ground_truth,
    make_problem,
    make_sensing,
    make_tensor_problem,
    save_problem,
)
from .supervised import (
    DATASETS,
    LOSSES,
    GaussianInputs,
    InputPool,
    SupervisedProblem,
    SupervisedTensors,
    checked_classes,
    make_supervised,
)

__all__ = [
    "DATASETS",
    "GaussianInputs",
    "InputPool",
    "LOSSES",
    "SupervisedProblem",
    "SupervisedTensors",
    "checked_classes",
    "make_supervised",
    "Problem",
    "ProblemTensors",
    "complement_basis",
    "load_problem",
    "make_completion",
    "make_ground_truth",
    "make_problem",
    "make_sensing",
    "make_tensor_problem",
    "make_cp_ground_truth",
    "save_problem",
    "TENSOR_TASKS",
]
