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
from .input_moments import coordinate_absolute_moment, moment_order_exists
from .supervised import (
    DATASETS,
    INPUT_DISTRIBUTIONS,
    LOSSES,
    GaussianInputs,
    InputPool,
    RadialInputs,
    SupervisedProblem,
    SupervisedTensors,
    checked_classes,
    checked_inputs,
    make_supervised,
)

__all__ = [
    "DATASETS",
    "GaussianInputs",
    "INPUT_DISTRIBUTIONS",
    "InputPool",
    "LOSSES",
    "RadialInputs",
    "SupervisedProblem",
    "SupervisedTensors",
    "checked_classes",
    "checked_inputs",
    "coordinate_absolute_moment",
    "moment_order_exists",
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
