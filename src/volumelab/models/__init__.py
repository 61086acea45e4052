"""Model families (factorization, MLP), activations, normalization and priors."""

from .activations import Activation, activation_for
from .balanced import balanced_diagonal_factors, balanced_factors
from .factorization import ACTIVATIONS, NORMALIZE_EPS, PRIORS, SCALINGS, FactorizationModel, normalize_frobenius
from .cp import CPModel
from .diagonal import DIAGONAL_FORMS, DiagonalNetwork
from .layers import Capabilities, LayeredModel, model_families, register_family
from .mlp import MLP_PARAMETRIZATIONS, MLP_SCALINGS, MLPModel

__all__ = [
    "ACTIVATIONS",
    "Activation",
    "CPModel",
    "DIAGONAL_FORMS",
    "DiagonalNetwork",
    "Capabilities",
    "LayeredModel",
    "MLPModel",
    "MLP_PARAMETRIZATIONS",
    "MLP_SCALINGS",
    "NORMALIZE_EPS",
    "PRIORS",
    "SCALINGS",
    "FactorizationModel",
    "activation_for",
    "balanced_diagonal_factors",
    "balanced_factors",
    "model_families",
    "normalize_frobenius",
    "register_family",
]
