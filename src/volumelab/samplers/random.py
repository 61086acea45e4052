"""Exact random variates the fast samplers need beyond ``normal_`` and ``uniform_``.

Everything here draws from an explicit ``torch.Generator`` in a fixed order, so the
output is a deterministic function of the generator's state and the requested shape.
"""

from __future__ import annotations

import torch

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
        shape_a: ``(...)`` shape parameters ``a >= 1``.
        x: ``(...)`` standard normals.
        u: ``(...)`` uniforms on ``[0, 1)``.

    Returns:
        ``(value, accepted)``: the proposals ``d v`` and a boolean mask, both ``(...)``.
    """
    d = shape_a - 1.0 / 3.0
    c = torch.rsqrt(9.0 * d)
    w = c * x
    positive = w > -1.0
    safe_w = torch.where(positive, w, torch.zeros_like(w))
    log_ratio = 0.5 * x * x + d * (3.0 * torch.log1p(safe_w) - safe_w * (3.0 + safe_w * (3.0 + safe_w)))
    accepted = positive & (torch.log(u) < log_ratio)
    value = d * (1.0 + safe_w) ** 3
    return value, accepted


def chi_square(degrees: list[int], num_samples: int, generator: torch.Generator, *, device="cpu") -> torch.Tensor:
    """Exact chi-square variates with the given integer degrees of freedom.

    ``chi2(1)`` is drawn as ``z^2``; ``chi2(nu)`` for ``nu >= 2`` as ``2 Gamma(nu / 2)``
    by Marsaglia–Tsang rejection, redrawing rejected entries (in index order, from the
    same generator) until all are accepted. Acceptance is above 95% for every ``nu >= 2``.

    Args:
        degrees: ``r`` positive integers, one per output row.
        num_samples: ``n``.
        generator: The only source of randomness.

    Returns:
        ``(r, n)`` float64 tensor; row ``i`` holds ``n`` i.i.d. ``chi2(degrees[i])``.
    """
    rows = len(degrees)
    out = torch.empty(rows, num_samples, dtype=torch.float64, device=device)
    ones = [i for i, nu in enumerate(degrees) if nu == 1]
    gammas = [i for i, nu in enumerate(degrees) if nu >= 2]
    if any(nu < 1 for nu in degrees):
        raise ValueError(f"chi-square degrees of freedom must be positive integers, got {degrees}")
    if ones:
        z = torch.randn(len(ones), num_samples, generator=generator, dtype=torch.float64, device=device)
        out[ones] = z.square()
    if not gammas:
        return out
    shape_a = torch.tensor([degrees[i] / 2.0 for i in gammas], dtype=torch.float64, device=device)
    shape_a = shape_a.unsqueeze(1).expand(len(gammas), num_samples).reshape(-1)
    x = torch.randn(shape_a.numel(), generator=generator, dtype=torch.float64, device=device)
    u = torch.rand(shape_a.numel(), generator=generator, dtype=torch.float64, device=device)
    value, accepted = _marsaglia_tsang(shape_a, x, u)
    pending = (~accepted).nonzero().flatten()
    while pending.numel():
        x = torch.randn(pending.numel(), generator=generator, dtype=torch.float64, device=device)
        u = torch.rand(pending.numel(), generator=generator, dtype=torch.float64, device=device)
        retry, ok = _marsaglia_tsang(shape_a[pending], x, u)
        value[pending[ok]] = retry[ok]
        pending = pending[~ok]
    out[gammas] = (2.0 * value).reshape(len(gammas), num_samples)
    return out


def bartlett_factor(
    size: int, degrees: int, num_samples: int, generator: torch.Generator, *, scale: float = 1.0, dtype=torch.float32,
    device="cpu",
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

    Returns:
        ``(p, p, num_samples)`` tensor in ``dtype``; ``[..., s]`` is the ``s``-th factor.
    """
    if degrees < size:
        raise ValueError(f"Bartlett's decomposition needs degrees >= size, got {degrees} < {size}")
    factor = torch.zeros(size, size, num_samples, dtype=dtype, device=device)
    chi2 = chi_square([degrees - i for i in range(size)], num_samples, generator, device=device)
    diagonal = torch.arange(size, device=device)
    factor[diagonal, diagonal] = chi2.sqrt_().mul_(scale).to(dtype)
    if size > 1:
        lower_rows, lower_cols = torch.tril_indices(size, size, offset=-1, device=device)
        normals = torch.randn(lower_rows.numel(), num_samples, generator=generator, dtype=dtype, device=device)
        factor[lower_rows, lower_cols] = normals.mul_(scale)
    return factor

