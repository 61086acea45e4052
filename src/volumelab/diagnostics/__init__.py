"""Diagnostics of models at a point: the empirical and the infinite-width neural tangent kernel."""

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
    "NTK_METHODS",
    "NTKSummary",
    "arccos_ntk",
    "empirical_ntk",
    "ntk_eigenvalues",
    "ntk_summary",
    "sample_layers",
    "training_outputs_function",
]
