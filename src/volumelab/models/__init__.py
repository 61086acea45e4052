"""Factorization models, activations and priors."""

from .factorization import ACTIVATIONS, NORMALIZE_EPS, PRIORS, SCALINGS, FactorizationModel

__all__ = ["ACTIVATIONS", "NORMALIZE_EPS", "PRIORS", "SCALINGS", "FactorizationModel"]
