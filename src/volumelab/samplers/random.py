"""Exact random variates the fast samplers need beyond ``normal_`` and ``uniform_``.

Everything here draws from an explicit ``torch.Generator`` in a fixed order, so the
output is a deterministic function of the generator's state and the requested shape.
"""

from __future__ import annotations

import torch

from ..errors import ModelError
from .workspace import Workspace, scratch

__all__ = ["chi_square", "bartlett_factor"]


def _marsaglia_tsang(shape_a: torch.Tensor, x: torch.Tensor, u: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """One round of Marsaglia & Tsang (2000) for ``Gamma(a, 1)``, ``a >= 1``, in float64.

    With ``d = a - 1/3``, ``c = 1 / sqrt(9 d)``, ``v = (1 + c x)^3`` for ``x ~ N(0, 1)``
    and ``u ~ U(0, 1)``, the proposal ``d v`` is accepted when ``v > 0`` and
    ``log u < x^2 / 2 + d - d v + d log v``; accepted values are exactly ``Gamma(a)``.
    The test is evaluated as ``x^2/2 + d (3 log1p(w) - 3w - 3w^2 - w^3)`` with ``w = c x``,
    which is ``d - d v + d log v`` without the cancellation that loses precision for
    large ``d`` (chi-square degrees of freedom up to 10^4 and beyond).

    Args:
        shape_a: shape parameters ``a >= 1``, broadcastable to ``x`` (e.g. ``(r, 1)``).
        x: float64 standard normals; overwritten.
        u: float64 uniforms on ``[0, 1)``, same shape as ``x``; overwritten.

    Returns:
        ``(value, accepted)``: the proposals ``d v`` and a boolean mask, shaped like ``x``.
    """
    d = shape_a - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    w = x * c
    valid = w > -1.0
    # Proposals with v <= 0 are rejected whatever u is; a neutral w keeps log1p finite
    # there and leaves every valid proposal untouched.
    w.masked_fill_(~valid, 0.0)
    polynomial = (w + 3.0).mul_(w).add_(3.0).mul_(w)  # 3w + 3w^2 + w^3
    log_ratio = torch.log1p(w).mul_(3.0).sub_(polynomial).mul_(d).add_(x.square_().mul_(0.5))
    accepted = torch.lt(u.log_(), log_ratio).logical_and_(valid)
    value = w.add_(1.0).pow_(3).mul_(d)
    return value, accepted


def chi_square(degrees: list[int], num_samples: int, generator: torch.Generator, *, dtype=torch.float32,
               device="cpu", workspace: Workspace | None = None) -> torch.Tensor:
    """Exact chi-square variates with the given integer degrees of freedom.

    ``chi2(1) = z^2``; for ``nu >= 2``, ``chi2(nu) = 2 Gamma(nu / 2)`` with ``Gamma(a)``,
    ``a >= 1``, drawn by Marsaglia-Tsang rejection (:func:`_gamma_by_rejection`).
    Every row draws its proposals together (``nu = 1`` rows use the normal as ``z`` and
    ignore their uniform), and rejected entries are redrawn in index order from the
    same generator, so the output is a function of the generator's state alone.

    The arithmetic is in ``dtype``, the precision of the draws that use the variates
    (float32 by default, like every normal the samplers draw); only the few proposals
    that the squeeze leaves undecided get the logarithmic test, always in float64.

    Args:
        degrees: ``r`` positive integers, one per output row.
        num_samples: ``n``.
        generator: The only source of randomness.
        dtype: ``torch.float32`` or ``torch.float64``.
        workspace: Scratch memory; the result then lives in it too (valid until the
            next call with the same workspace).

    Returns:
        ``(r, n)`` tensor in ``dtype``; row ``i`` holds ``n`` i.i.d. ``chi2(degrees[i])``.
    """
    if any(isinstance(nu, bool) or not isinstance(nu, int) or nu < 1 for nu in degrees):
        raise ModelError(f"chi-square degrees of freedom must be positive integers, got {degrees}")
    # Gamma(a) for a = nu / 2; a = 1/2 rows (nu = 1) take z^2 instead of the rejection value.
    value = _gamma_by_rejection([max(nu / 2.0, 1.0) for nu in degrees], num_samples, generator, device, workspace,
                                dtype=dtype, square_rows=[i for i, nu in enumerate(degrees) if nu == 1])
    return value.mul_(2.0)


def _gamma_by_rejection(shapes: list[float], num_samples: int, generator: torch.Generator, device,
                        workspace: Workspace | None = None, *, dtype=torch.float32,
                        square_rows: list[int] = ()) -> torch.Tensor:
    """``(r, n)`` ``Gamma(shapes[i], 1)`` variates (every shape ``>= 1``), by Marsaglia-Tsang, in ``dtype``.

    The proposals of all rows come from one normal draw ``x`` and one uniform draw ``u``
    (``(r, n)`` each, in that order). The first round uses Marsaglia and Tsang's
    squeeze: a valid proposal (``v > 0``) with ``u < 1 - 0.0331 x^4`` is accepted
    without logarithms, since that bound lies below the acceptance ratio for every
    ``a >= 1`` (their Sec. 4). Only the proposals the squeeze leaves undecided (about 2%)
    get the exact logarithmic test, in float64 on the same ``(x, u)``. Rejected entries
    are redrawn, in index order, until all are accepted.

    Rows listed in ``square_rows`` are ``x^2 / 2`` instead (``Gamma(1/2)``: half a
    chi-square with one degree of freedom) and are never rejected.
    """
    rows = len(shapes)
    shape_a = torch.tensor(shapes, dtype=torch.float64, device=device).unsqueeze(1)
    d64 = shape_a - 1.0 / 3.0
    d, c = d64.to(dtype), torch.rsqrt(9.0 * d64).to(dtype)
    size = (rows, num_samples)
    x = scratch(workspace, "gamma_x", size, dtype, device).normal_(generator=generator)
    u = scratch(workspace, "gamma_u", size, dtype, device).uniform_(generator=generator)
    value = torch.mul(x, c, out=scratch(workspace, "gamma_value", size, dtype, device)).add_(1.0)  # 1 + w
    valid = torch.gt(value, 0.0, out=scratch(workspace, "gamma_valid", size, torch.bool, device))
    value.pow_(3).mul_(d)  # d v, v = (1 + w)^3
    squeeze = torch.mul(x, x, out=scratch(workspace, "gamma_squeeze", size, dtype, device))
    squeeze = torch.addcmul(u, squeeze, squeeze, value=0.0331, out=squeeze)  # u + 0.0331 x^4
    accepted = torch.lt(squeeze, 1.0, out=scratch(workspace, "gamma_ok", size, torch.bool, device))
    accepted.logical_and_(valid)
    for i in square_rows:
        torch.mul(x[i], x[i], out=value[i]).mul_(0.5)
        accepted[i] = True
    flat_value, accepted, valid = value.view(-1), accepted.view(-1), valid.view(-1)
    undecided = valid.logical_and_(accepted.logical_not()).nonzero().flatten()
    if undecided.numel():
        row_shapes = shape_a.flatten()[undecided // num_samples]
        _, ok = _marsaglia_tsang(row_shapes, x.view(-1)[undecided].to(torch.float64),
                                 u.view(-1)[undecided].to(torch.float64))
        accepted[undecided[ok]] = True
    pending = torch.logical_not(accepted).nonzero().flatten()
    while pending.numel():
        count = pending.numel()
        retry_x = torch.randn(count, generator=generator, dtype=dtype, device=device).to(torch.float64)
        retry_u = torch.rand(count, generator=generator, dtype=dtype, device=device).to(torch.float64)
        retry, ok = _marsaglia_tsang(shape_a.flatten()[pending // num_samples], retry_x, retry_u)
        flat_value[pending[ok]] = retry[ok].to(dtype)
        pending = pending[~ok]
    return value


def bartlett_factor(
    size: int, degrees: int, num_samples: int, generator: torch.Generator, *, scale: float = 1.0, dtype=torch.float32,
    device="cpu", workspace: Workspace | None = None, tag: str = "",
) -> torch.Tensor:
    """Lower-triangular Bartlett factors of ``Wishart_p(n, I)``, stored batch-last.

    Bartlett decomposition (Bartlett 1933; Anderson, *An Introduction to Multivariate
    Statistical Analysis*, Thm. 7.2.1): for ``n >= p`` the matrix ``A = L L^T`` with
    ``L`` lower triangular, independent entries ``L_ii = sqrt(chi2_{n - i + 1})``
    (``i = 1..p``) and ``L_ij ~ N(0, 1)`` for ``i > j``, is ``Wishart_p(n, I)``; that is,
    ``A`` has the law of ``Z^T Z`` for a ``n x p`` matrix ``Z`` of i.i.d. ``N(0, 1)``.

    Args:
        size: ``p``.
        degrees: ``n >= p``.
        num_samples: Number of independent factors.
        generator: The only source of randomness (chi-squares first, then normals).
        scale: Multiplies every entry (so ``(scale L)(scale L)^T ~ scale^2 Wishart``).
        workspace: Scratch memory; the factor then lives in it under ``tag``.

    Returns:
        ``(p, p, num_samples)`` tensor in ``dtype``; ``[..., s]`` is the ``s``-th factor.
    """
    if degrees < size:
        raise ModelError(f"Bartlett's decomposition needs degrees >= size, got {degrees} < {size}")
    factor = scratch(workspace, f"bartlett{tag}", (size, size, num_samples), dtype, device).zero_()
    chi2 = chi_square([degrees - i for i in range(size)], num_samples, generator, dtype=dtype, device=device,
                      workspace=workspace)
    chi2.sqrt_().mul_(scale)
    for i in range(size):
        factor[i, i].copy_(chi2[i])
    if size > 1:
        count = size * (size - 1) // 2
        normals = scratch(workspace, "bartlett_normals", (count, num_samples), dtype, device)
        normals.normal_(generator=generator).mul_(scale)
        k = 0
        for i in range(1, size):  # row-major over the strictly lower triangle, as tril_indices orders it
            factor[i, :i].copy_(normals[k : k + i])
            k += i
    return factor
