"""Exact prior samplers used by G&C, chosen automatically per model.

``direct`` draws every layer and multiplies; ``layerwise`` does the same batch-last
for narrow nets; ``bartlett`` (linear nets) and ``gram`` (depth-2 nonlinear nets)
reach the same distribution of ``W`` with fewer random numbers (see
:mod:`volumelab.samplers.fast`).
"""

from .base import DIRECT, PriorSampler, available_samplers, register_sampler, select_sampler
from .fast import BARTLETT, GRAM, LAYERWISE
from .random import bartlett_factor, chi_square
from .workspace import Workspace, thread_workspace

__all__ = [
    "BARTLETT",
    "DIRECT",
    "GRAM",
    "LAYERWISE",
    "Workspace",
    "PriorSampler",
    "available_samplers",
    "bartlett_factor",
    "chi_square",
    "register_sampler",
    "select_sampler",
    "thread_workspace",
]
