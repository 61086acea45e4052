"""Exact prior samplers used by Guess & Check, chosen automatically per model."""

from .base import DIRECT, PriorSampler, available_samplers, register_sampler, select_sampler

__all__ = ["DIRECT", "PriorSampler", "available_samplers", "register_sampler", "select_sampler"]
