"""Prior samplers: draw what a model's task scores, under the model's prior.

For a factorization, a draw is the end-to-end matrix: a sampler turns
``(model, num_samples, generator)`` into a ``(num_samples, rows, cols)`` tensor whose
distribution is exactly that of ``model.end_to_end(model.sample_prior(...))``. Fast
samplers reach the same distribution with fewer random numbers or FLOPs; each is
tested against the direct product for equality in distribution.

A CP model's draw is its tensor, ``(num_samples, *dims)``, by ``direct`` only
(docs/design.md, "Fast samplers for the CP model", says why no other).

For any other family (an MLP) the only sampler is ``direct`` and a draw is the layers
themselves, ``model.sample_prior(...)``: the task scores the network's outputs on its
inputs (:meth:`MLPModel.outputs`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import ModelError
from ..models import FactorizationModel

__all__ = ["PriorSampler", "DIRECT", "register_sampler", "select_sampler", "available_samplers"]


@dataclass(frozen=True)
class PriorSampler:
    """A named way of drawing end-to-end matrices from a model's prior.

    Attributes:
        name: Registry name (``"direct"``, ...).
        supports: Whether this sampler is exact for a given model.
        draw: ``(model, num_samples, generator, dtype, device) -> (num_samples, rows, cols)``.
        bytes_per_sample: Peak working memory per draw, used to size batches.
        priority: Higher wins in automatic selection among samplers that support a model.
        random_numbers_per_sample: Random numbers one draw consumes (``None``: unknown);
            the benchmarks compare throughput with the machine's random-number rate.
        uses_workspace: ``draw`` takes a ``workspace`` keyword (scratch memory reused
            across calls, see :mod:`volumelab.samplers.workspace`).
        cpu_block_bytes: Working memory of one G&C block on the CPU. Samplers that run
            many small tensor operations on few bytes per draw (``bartlett``,
            ``layerwise``) need larger blocks to amortize each operation's fixed cost;
            bandwidth-bound ones prefer cache-sized blocks.

    A sampler may return a non-contiguous view; when it is the batch-first view of a
    batch-last buffer (``W.permute(1, 2, 0)`` contiguous), ``GuessCheck`` contracts the
    losses on that buffer directly.
    """

    name: str
    supports: Callable[[FactorizationModel], bool]
    draw: Callable[..., torch.Tensor]
    bytes_per_sample: Callable[[FactorizationModel, torch.dtype], int]
    priority: int = 0
    random_numbers_per_sample: Callable[[FactorizationModel], float] | None = None
    uses_workspace: bool = False
    cpu_block_bytes: int = 1 << 24

    def sample(
        self,
        model: FactorizationModel,
        num_samples: int,
        generator: torch.Generator,
        *,
        dtype: torch.dtype = torch.float32,
        device: torch.device | str = "cpu",
        workspace=None,
    ) -> torch.Tensor:
        """Draw ``num_samples`` end-to-end matrices ``(num_samples, rows, cols)``.

        With a ``workspace`` (:class:`volumelab.samplers.Workspace`) a sampler that
        supports one keeps its temporaries, and the returned draws, in that memory:
        they are valid until the next call with the same workspace.
        """
        if workspace is not None and self.uses_workspace:
            return self.draw(model, num_samples, generator, dtype=dtype, device=device, workspace=workspace)
        return self.draw(model, num_samples, generator, dtype=dtype, device=device)


def _direct_draw(model, num_samples, generator, *, dtype, device):
    layers = model.sample_prior(num_samples, generator, dtype=dtype, device=device)
    return model.end_to_end(layers) if model.scores_array else layers


def _direct_bytes(model: FactorizationModel, dtype: torch.dtype) -> int:
    itemsize = torch.empty((), dtype=dtype).element_size()
    # The layers, plus one activation and one product of the largest layer alive at once.
    largest = max(out * inp for out, inp in model.layer_shapes)
    outputs = math.prod(model.shape) if model.scores_array else 0
    return itemsize * (model.num_parameters + 2 * largest + 2 * outputs)


DIRECT = PriorSampler(
    name="direct",
    supports=lambda model: True,
    draw=_direct_draw,
    bytes_per_sample=_direct_bytes,
    priority=0,
    random_numbers_per_sample=lambda model: float(model.num_parameters),
)

_REGISTRY: dict[str, PriorSampler] = {DIRECT.name: DIRECT}


def register_sampler(sampler: PriorSampler) -> PriorSampler:
    """Add a sampler to the registry (replacing one of the same name)."""
    _REGISTRY[sampler.name] = sampler
    return sampler


def available_samplers() -> list[str]:
    return sorted(_REGISTRY)


def select_sampler(model: FactorizationModel, name: str = "auto") -> PriorSampler:
    """The sampler named ``name``, or for ``"auto"`` the highest-priority exact one."""
    if name == "auto":
        candidates = [s for s in _REGISTRY.values() if s.supports(model)]
        return max(candidates, key=lambda s: s.priority)
    if name not in _REGISTRY:
        raise ModelError(f"unknown sampler {name!r}; expected 'auto' or one of {', '.join(available_samplers())}")
    sampler = _REGISTRY[name]
    if not sampler.supports(model):
        raise ModelError(f"sampler {name!r} is not exact for {model.describe()}; use 'auto' or 'direct'")
    return sampler
