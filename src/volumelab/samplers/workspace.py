"""Reusable scratch tensors for the samplers' hot loops.

A G&C block allocates a few megabytes of temporaries (normals, factors, residuals).
Allocating them afresh for every block costs more than using them: the C allocator
hands large blocks back to the operating system when they are freed, so every block
pays page faults on fresh memory (measured on this project's 2-core CPU: about 3 ms of a
5 ms block at width 40). A :class:`Workspace` keeps one tensor per name and hands the
same memory back on the next request of that name with the same shape and dtype.

A workspace belongs to one thread, and a tensor it returns is valid only until the
next request of the same name: G&C gives each worker thread its own workspace and
consumes a block's draws before drawing the next. Callers that keep draws (or run on
a GPU, whose caching allocator already recycles memory) pass no workspace and get
fresh tensors.
"""

from __future__ import annotations

import threading

import torch

__all__ = ["Workspace", "thread_workspace", "scratch"]


class Workspace:
    """Named scratch tensors, reused across calls with equal shape, dtype and device."""

    def __init__(self) -> None:
        self._buffers: dict[str, torch.Tensor] = {}

    def get(self, name: str, shape: tuple[int, ...], dtype: torch.dtype, device) -> torch.Tensor:
        """An uninitialized tensor for ``name``; the previous one when it fits exactly."""
        shape = tuple(int(s) for s in shape)
        buffer = self._buffers.get(name)
        if buffer is None or tuple(buffer.shape) != shape or buffer.dtype != dtype or buffer.device != torch.device(device):
            buffer = torch.empty(shape, dtype=dtype, device=device)
            self._buffers[name] = buffer
        return buffer

    def clear(self) -> None:
        self._buffers.clear()


_LOCAL = threading.local()


def thread_workspace() -> Workspace:
    """The calling thread's workspace (created on first use)."""
    workspace = getattr(_LOCAL, "workspace", None)
    if workspace is None:
        workspace = _LOCAL.workspace = Workspace()
    return workspace


def scratch(workspace: Workspace | None, name: str, shape, dtype: torch.dtype, device) -> torch.Tensor:
    """``workspace.get(...)``, or a fresh tensor when there is no workspace."""
    if workspace is None:
        return torch.empty(tuple(shape), dtype=dtype, device=device)
    return workspace.get(name, tuple(shape), dtype, device)
