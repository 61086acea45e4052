"""Diagnostics of models at a point: the empirical and the infinite-width neural tangent kernel; the
Lyapunov exponents of random Gaussian products."""

from .lyapunov import LyapunovEstimate, lyapunov_closed_form, lyapunov_exponents
from .ntk import (
    DEFAULT_MEMORY_BYTES,
    NTK_METHODS,
    NTKSummary,
    arccos_ntk,
    empirical_ntk,
    ntk_eigenvalues,
    ntk_summary,
    sample_layers,
    training_outputs_function,
)

__all__ = [
    "DEFAULT_MEMORY_BYTES",
    "LyapunovEstimate",
    "NTK_METHODS",
    "NTKSummary",
    "arccos_ntk",
    "empirical_ntk",
    "lyapunov_closed_form",
    "lyapunov_exponents",
    "ntk_eigenvalues",
    "ntk_summary",
    "sample_layers",
    "training_outputs_function",
]
