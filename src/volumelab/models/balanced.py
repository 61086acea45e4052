"""Balanced factorizations: a depth-``d`` start with a given end-to-end function (GD's ``initialization="balanced"``).

A deep *linear* model's function depends on its layers only through their product, so
every depth can start from the same function: draw the depth-1 start ``W(0)`` and write
it as a product of ``d`` factors. Among the many such products, the *balanced* ones
(Arora, Cohen & Hazan, ICML 2018, Def. 1; Arora, Cohen, Golowich & Hu, ICLR 2019) are
those whose consecutive factors satisfy

    W_{j+1}^T W_{j+1} = W_j W_j^T,        j = 1 .. d-1,

a condition gradient flow conserves (the differences ``W_{j+1}^T W_{j+1} - W_j W_j^T`` are
its invariants), under which the end-to-end matrix follows a closed-form preconditioned
flow that depends on ``W`` alone. :func:`balanced_factors` builds one from the SVD
``W = U S V^T`` (``r = min(rows, cols)`` singular values): with ``s = S^{1/d}`` and ``E``
the first ``r`` columns of the ``k x k`` identity (the width-``k`` embedding),

    W_1 = E s V^T  (k x cols),    W_j = E s E^T  (k x k),    W_d = U s E^T  (rows x k),

so the product is ``U s^d V^T = W`` and every ``W_j W_j^T = W_{j+1}^T W_{j+1} = E s^2 E^T``.
Every factor has the singular values ``S^{1/d}`` (balanced factors must: they share their
non-zero singular values), so the hidden units beyond ``r`` are zero. Under GD and NGD
they stay zero (their gradient vanishes there): a balanced start runs the same end-to-end
dynamics at every width ``k >= r``. The embedding ``E`` is one choice among ``E Q`` for
any orthogonal ``Q``; GD and NGD (with its isotropic damping) are equivariant under an
orthogonal change of the hidden basis, so the end-to-end trajectory does not depend on it.

A width ``k < r`` can represent ``W`` only if its rank is at most ``k``: otherwise there is
no factorization at all, and :func:`balanced_factors` raises (it never truncates).

:func:`balanced_diagonal_factors` is the same for a diagonal network ``w = u_1 * ... * u_d``
(entrywise): ``|u_j| = |w|^{1/d}`` for every ``j`` (so ``u_i^2 - u_j^2 = 0``, the invariants of
gradient flow on diagonal networks), with the sign of ``w`` carried by ``u_1``: at even
depth a negative entry cannot be a power of one real number, and one factor carrying the
sign keeps the magnitudes, and so the balance, exact.
"""

from __future__ import annotations

import dataclasses

import torch

from ..errors import ModelError

__all__ = ["balanced_diagonal_factors", "balanced_factors", "balanced_product_start", "depth_one_start"]

#: A singular value at most this share of the largest counts as zero (the rank test of a too-narrow width).
RANK_RTOL = 1e-10


def balanced_factors(end_to_end: torch.Tensor, depth: int, width: int) -> list[torch.Tensor]:
    """Balanced factors ``W_1, ..., W_d`` (``W_1`` first) whose product ``W_d ... W_1`` is ``end_to_end``.

    The SVD is taken in float64 whatever the input's dtype; the factors come back in the
    input's dtype. At depth 1 the single factor is ``end_to_end`` itself (the same tensor).

    Args:
        end_to_end: ``(..., rows, cols)`` the end-to-end matrices ``W``, batched over any leading axes.
        depth: ``d >= 1``.
        width: The hidden width ``k >= 1`` (unused at depth 1).

    Returns:
        ``[W_1 (..., k, cols), W_2 ... W_{d-1} (..., k, k), W_d (..., rows, k)]``.

    Raises:
        ModelError: ``width`` is below the rank of some ``W`` (no product through width ``k`` equals it).
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ModelError(f"depth must be a positive integer, got {depth!r}")
    if depth == 1:
        return [end_to_end]
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ModelError(f"width must be a positive integer, got {width!r}")
    rows, cols = end_to_end.shape[-2:]
    wide = end_to_end.to(torch.float64)
    left, singular, right_t = torch.linalg.svd(wide, full_matrices=False)  # (..., rows, r), (..., r), (..., r, cols)
    rank_bound = singular.shape[-1]  # r = min(rows, cols)
    if width < rank_bound:
        # The width keeps the top `width` directions; the rest must be zero for the product to be W.
        rest = singular[..., width:]
        top = singular[..., :1]
        if bool((rest > RANK_RTOL * top).any()):
            rank = int((singular > RANK_RTOL * top).sum(-1).max())
            raise ModelError(f"a balanced factorization through width {width} needs W(0) of rank at most {width}; "
                             f"this {rows}x{cols} W(0) has rank {rank}: set width >= {rank}")
        left, singular, right_t = left[..., :width], singular[..., :width], right_t[..., :width, :]
    r = singular.shape[-1]
    root = singular.pow(1.0 / depth)  # s = S^(1/d): s^d = S to a few ulps
    batch = wide.shape[:-2]

    def embedded(block: torch.Tensor, out: int, inp: int, *, rows_first: bool) -> torch.Tensor:
        """``block`` (..., r, inp) as the first r rows of an (out, inp) layer, or (..., out, r) as the first r
        columns; zeros elsewhere (the embedding E)."""
        layer = wide.new_zeros((*batch, out, inp))
        if rows_first:
            layer[..., :r, :] = block
        else:
            layer[..., :, :r] = block
        return layer

    first = embedded(root.unsqueeze(-1) * right_t, width, cols, rows_first=True)  # E s V^T
    last = embedded(left * root.unsqueeze(-2), rows, width, rows_first=False)  # U s E^T
    hidden = wide.new_zeros((*batch, width, width))
    hidden.diagonal(dim1=-2, dim2=-1)[..., :r] = root  # E s E^T
    layers = [first] + [hidden.clone() for _ in range(depth - 2)] + [last]
    return [layer.to(end_to_end.dtype) for layer in layers]


def balanced_diagonal_factors(vector: torch.Tensor, depth: int) -> list[torch.Tensor]:
    """Factors ``u_1, ..., u_d`` of ``vector`` under the entrywise product, every ``|u_j| = |vector|^{1/d}``.

    ``u_1`` carries the sign of each entry (the others are non-negative), so the product is
    ``sign(w) |w| = w`` at any depth, even or odd. At depth 1 the single factor is ``vector``
    itself (the same tensor).

    Args:
        vector: ``(..., n)`` the predictors ``w``.
        depth: ``d >= 1``.

    Returns:
        ``[u_1, ..., u_d]``, each of ``vector``'s shape and dtype.
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 1:
        raise ModelError(f"depth must be a positive integer, got {depth!r}")
    if depth == 1:
        return [vector]
    magnitude = vector.abs().pow(1.0 / depth)
    return [torch.sign(vector) * magnitude] + [magnitude.clone() for _ in range(depth - 1)]


def depth_one_start(model, init_scale: float, generator: torch.Generator, **options) -> list[torch.Tensor]:
    """The layers the depth-1 model of ``model``'s family and settings draws from ``generator`` (its
    ``initialize``, with ``options``: ``batch_shape``, ``dtype``, ``device``): the start every depth's balanced
    start writes as its own factors."""
    return dataclasses.replace(model, depth=1).initialize(init_scale, generator, **options)


def balanced_product_start(model, init_scale: float, generator: torch.Generator, **options) -> list[torch.Tensor]:
    """The balanced start of a model whose function is the product of its layers (a linear matrix factorization,
    a deep linear network): the depth-1 start (:func:`depth_one_start`) as ``model.depth`` balanced factors
    through ``model.width`` (:func:`balanced_factors`); at depth 1 exactly the depth-1 layers.

    Raises:
        ModelError: ``model.balanced_mismatch()`` names a reason (a nonlinear layer, too narrow a width, ...).
    """
    reason = model.balanced_mismatch()
    if reason:
        raise ModelError(reason)
    (start,) = depth_one_start(model, init_scale, generator, **options)
    return balanced_factors(start, model.depth, model.width)
