"""Diagnostics of models at a point: the empirical and the infinite-width neural tangent kernel; the
Lyapunov exponents of random Gaussian products; the mechanisms of the G&C paper's two theorems measured on
prior draws (:class:`PriorLaw` for width, :class:`ProductCollapse` for depth)."""

from .lyapunov import LyapunovEstimate, ProductCollapse, lyapunov_closed_form, lyapunov_exponents
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
    "LyapunovEstimate",
    "NTK_METHODS",
    "NTKLaziness",
    "NTKSummary",
    "PriorLaw",
    "ProductCollapse",
    "arccos_ntk",
    "empirical_ntk",
    "lyapunov_closed_form",
    "lyapunov_exponents",
    "ntk_eigenvalues",
    "ntk_summary",
    "sample_layers",
    "training_outputs_function",
]
