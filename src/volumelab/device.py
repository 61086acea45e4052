"""Device selection and free-memory queries (used to size batches automatically)."""

from __future__ import annotations

import os

import torch

from .errors import VolumelabError

__all__ = ["resolve_device", "available_memory_bytes"]


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Turn ``"auto" | "cpu" | "cuda" | "cuda:N"`` into a ``torch.device``.

    ``auto`` picks CUDA when PyTorch sees a GPU and the CPU otherwise. Asking for
    ``cuda`` without a GPU is an error rather than a silent fallback.
    """
    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = str(device).strip().lower()
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VolumelabError(
                f"device {name!r} requested but PyTorch sees no CUDA GPU "
                f"(torch {torch.__version__}); use --device cpu or install a CUDA build of torch"
            )
        return torch.device(name)
    if name == "cpu":
        return torch.device("cpu")
    raise VolumelabError(f"unknown device {device!r}; expected 'auto', 'cpu' or 'cuda'")


def available_memory_bytes(device: torch.device) -> int:
    """Memory that can be allocated now on ``device``, in bytes."""
    if device.type == "cuda":
        free, _total = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 4 * 1024**3
