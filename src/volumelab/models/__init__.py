"""Factorization models, activations, normalization and priors."""

from .activations import Activation, activation_for
from .factorization import ACTIVATIONS, NORMALIZE_EPS, PRIORS, SCALINGS, FactorizationModel, normalize_frobenius

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "NORMALIZE_EPS",
    "PRIORS",
    "SCALINGS",
    "FactorizationModel",
    "activation_for",
    "normalize_frobenius",
]
