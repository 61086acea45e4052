"""Explicit, order-independent randomness.

Every random stream is derived from ``(seed, purpose, *indices)`` through NumPy's
``SeedSequence``, never from a global generator. Guess & Check draws live in fixed
blocks whose generator comes from ``(seed, "gnc", block_index)``, so results do not
depend on batch size, thread count, worker count or the order blocks are processed.

A *stream* replicates a whole experiment with fresh randomness: stream ``K`` replaces
every seed by :func:`stream_seed` ``(seed, K)`` before anything is derived from it, so
the problem, its data split, the draws and the initializations all change at once.
Stream 0 is the identity: the seeds (and numbers) of before streams existed.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

__all__ = ["derive_seed", "make_generator", "stream_seed"]


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


def stream_seed(seed: int, stream: int) -> int:
    """The seed a run of seed ``seed`` uses in replicate stream ``stream``.

    Args:
        seed: The user's seed (a sweep's seed or its ``problem_seed``).
        stream: The replicate stream; 0 is the original experiment.

    Returns:
        ``seed`` itself for stream 0 (bit-identical to runs made before streams existed);
        otherwise ``derive_seed(seed, "stream", stream)``, a 63-bit seed from which every
        stream of the run (``"data"``, ``"init"``, ``"gnc"``, ...) is derived as usual.

    Raises:
        ValueError: ``seed`` or ``stream`` is negative or not an integer.
    """
    if isinstance(stream, bool) or not isinstance(stream, (int, np.integer)) or stream < 0:
        raise ValueError(f"stream must be a non-negative integer, got {stream!r}")
    if int(seed) < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed}")
    if stream == 0:
        return int(seed)
    return derive_seed(seed, "stream", int(stream))
