"""Diagnostics of models at a point: the empirical and the infinite-width neural tangent kernel, and the kernel
predictor of the NTK at initialization (kernel regression from the initial function); the
Lyapunov exponents of random Gaussian products; the max-margin and min-norm directions a linear predictor's
optimizers approach on separable data; the mechanisms of the G&C paper's two theorems measured on
prior draws (:class:`PriorLaw` for width, :class:`ProductCollapse` for depth)."""

from .kernel_regression import (
    KernelPrediction,
    KernelRegression,
    SingularKernelError,
    kernel_predictor,
    ntk_on_task_inputs,
)
from .lyapunov import LyapunovEstimate, ProductCollapse, lyapunov_closed_form, lyapunov_exponents
from .max_margin import (
    KKT_TOLERANCE,
    LimitDirections,
    MaxMarginSolution,
    cosine,
    direction_report,
    l1_max_margin,
    l2_max_margin,
    mahalanobis_max_margin,
    min_norm_interpolant,
)
from .ntk import (
    DEFAULT_MEMORY_BYTES,
    NTK_METHODS,
    NTKLaziness,
    NTKSummary,
    arccos_ntk,
    empirical_ntk,
    ntk_eigenvalues,
    ntk_summary,
    sample_layers,
    training_outputs_function,
)
from .prior_law import PriorLaw

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "KKT_TOLERANCE",
    "LimitDirections",
    "KernelPrediction",
    "KernelRegression",
    "LyapunovEstimate",
    "MaxMarginSolution",
    "NTK_METHODS",
    "NTKLaziness",
    "NTKSummary",
    "PriorLaw",
    "ProductCollapse",
    "SingularKernelError",
    "arccos_ntk",
    "cosine",
    "direction_report",
    "empirical_ntk",
    "kernel_predictor",
    "l1_max_margin",
    "l2_max_margin",
    "lyapunov_closed_form",
    "lyapunov_exponents",
    "mahalanobis_max_margin",
    "min_norm_interpolant",
    "ntk_eigenvalues",
    "ntk_on_task_inputs",
    "ntk_summary",
    "sample_layers",
    "training_outputs_function",
]
