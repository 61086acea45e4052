"""Explicit, order-independent randomness.

Every random stream is derived from ``(seed, purpose, *indices)`` through NumPy's
``SeedSequence``, never from a global generator. Guess & Check draws live in fixed
blocks whose generator comes from ``(seed, "gnc", block_index)``, so results do not
depend on batch size, thread count, worker count or the order blocks are processed.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator"]


def derive_seed(seed: int, purpose: str, *indices: int) -> int:
    """Derive a 63-bit seed for one stream.

    Args:
        seed: The user's seed (any non-negative integer).
        purpose: Name of the stream, e.g. ``"data"``, ``"init"``, ``"gnc"``.
        *indices: Further integers (block index, seed index, ...).

    Returns:
        A non-negative integer below 2**63, a deterministic function of the inputs.
    """
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    tag = zlib.crc32(purpose.encode("utf-8"))
    sequence = np.random.SeedSequence([int(seed), tag, *(int(i) for i in indices)])
    return int(sequence.generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def make_generator(seed: int, purpose: str, *indices: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A torch generator on ``device`` seeded by :func:`derive_seed`."""
    generator = torch.Generator(device=device)
    generator.manual_seed(derive_seed(seed, purpose, *indices))
    return generator
