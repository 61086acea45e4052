"""The coordinate check: how big a network's activations and their updates are, as width grows.

After ``steps`` steps of GD from the parametrization's initialization (``init_scale=1``),
each layer's pre-activations ``a_j`` on the training inputs are compared with their values
at initialization: the mean absolute coordinate of ``a_j`` and of ``a_j(T) - a_j(0)``. A
parametrization whose updates are width-independent (``mup``, Yang & Hu 2021) keeps
both flat in width; under ``standard`` with a fixed learning rate the updates of the
hidden and output coordinates grow with width, under ``ntk`` the hidden ones shrink
(the lazy regime). The log-log slope in width summarizes each curve.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import torch

from ..errors import ModelError
from ..models import MLPModel

__all__ = ["coordinate_check", "loglog_slope"]


def loglog_slope(widths: Sequence[float], values: Sequence[float]) -> float:
    """Least-squares slope of ``log(values)`` against ``log(widths)`` (NaN if a value is not positive)."""
    values = np.asarray(values, dtype=float)
    if len(widths) < 2 or not np.all(values > 0) or not np.all(np.isfinite(values)):
        return float("nan")
    return float(np.polyfit(np.log(np.asarray(widths, dtype=float)), np.log(values), 1)[0])


def _pre_activations(model, layers, inputs) -> list[torch.Tensor]:
    pre: list[torch.Tensor] = []
    model.forward(layers, inputs, pre=pre)
    return pre


def coordinate_check(problem, model, widths: Sequence[int], *, lr: float, steps: int = 3,
                     seeds: Sequence[int] = (0, 1, 2), step_rule: str = "gd") -> dict:
    """Mean absolute coordinates of every layer's pre-activations, and of their change over ``steps`` GD steps.

    Args:
        problem: A supervised problem (its training inputs are what the activations are taken on).
        model: An :class:`~volumelab.models.MLPModel`; its ``width`` is replaced by each of ``widths``.
        widths: The widths to compare.
        lr: GD's learning rate (plain steps; ``mup`` adds its per-layer rates).
        step_rule: GD's step rule: ``"gd"`` (plain steps) or ``"adam"`` (``mup`` with its Adam rates,
            Tensor Programs V's Table 3).
        steps: GD steps before the activations are compared with their initial values.
        seeds: Initializations averaged over.

    Returns:
        ``{"widths", "size" (W, d), "change" (W, d), "size_slope" (d,), "change_slope" (d,)}``:
        per width and layer ``j`` (``a_1 .. a_d``, ``a_d`` the output), the mean over seeds of
        ``mean |a_j(T)|`` and ``mean |a_j(T) - a_j(0)|``, and their log-log slopes in width.
    """
    from ..optimizers import GradientDescent
    from ..optimizers.observers import FinalOutputs

    if not isinstance(model, MLPModel):
        raise ModelError(f"the coordinate check needs an MLP model, got {type(model).__name__}")
    if model.depth < 2:
        raise ModelError("the coordinate check needs depth >= 2 (a hidden layer)")
    if not widths or any(isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in widths):
        raise ModelError(f"widths must be positive integers, got {widths!r}")
    inputs = problem.inputs()[: problem.num_train]
    sizes, changes = [], []
    for width in widths:
        wide = replace(model, width=width)
        optimizer, keep = GradientDescent(lr=lr, init_scale=1.0, step_rule=step_rule), [FinalOutputs()]
        start = optimizer.run_batch([problem], wide, 0, list(seeds), observers=keep)
        end = optimizer.run_batch([problem], wide, steps, list(seeds), observers=keep)
        size_rows, change_rows = [], []
        for before, after in zip(start, end):
            if after.status == "diverged":
                raise ModelError(f"GD diverged at width {width} (lr {lr}); lower the learning rate")
            initial, final = (
                _pre_activations(wide, [torch.as_tensor(r.arrays[f"layer_{j + 1}"]) for j in range(wide.depth)],
                                 inputs) for r in (before, after))
            size_rows.append([float(a.abs().mean()) for a in final])
            change_rows.append([float((b - a).abs().mean()) for a, b in zip(initial, final)])
        sizes.append(np.mean(size_rows, axis=0))
        changes.append(np.mean(change_rows, axis=0))
    sizes, changes = np.array(sizes), np.array(changes)
    return {
        "widths": list(widths),
        "size": sizes,
        "change": changes,
        "size_slope": np.array([loglog_slope(widths, sizes[:, j]) for j in range(sizes.shape[1])]),
        "change_slope": np.array([loglog_slope(widths, changes[:, j]) for j in range(changes.shape[1])]),
    }
